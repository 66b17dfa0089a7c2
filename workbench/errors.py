"""User-facing errors.

Every error a user can cause (a missing file, a model that is not ONNX, bad data, a device that is
not there) is a :class:`WorkbenchError`: the CLI prints it as one ``error:`` line and exits with
status 2, the UI shows it in the panel. Anything else that escapes is a bug in the workbench and
keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "WorkbenchError",
    "ModelLoadError",
    "ModelValidationError",
    "InputSpecError",
    "DataError",
    "EngineUnavailableError",
    "EngineRunError",
    "UsageError",
    "PassError",
    "CacheError",
    "BundleError",
    "ConversionError",
    "install_hint",
]

DIST = "onnx-inference-workbench"  # this project's distribution on the package index


def install_hint(extra: str | None = None) -> str:
    """How to install an optional part of this project: always this distribution, never another
    package's name (``workbench`` on PyPI is a different project)."""
    if extra is None:
        return f"pip install --force-reinstall {DIST} (or pip install -e . from a clone)"
    return f"pip install '{DIST}[{extra}]' (or pip install -e '.[{extra}]' from a clone)"


class WorkbenchError(Exception):
    """A problem with what the user asked for, with a hint on what to do about it."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class ModelLoadError(WorkbenchError):
    """The model file cannot be read or is not an ONNX model."""


class ModelValidationError(WorkbenchError):
    """The model parses but is not a valid ONNX graph (checker or shape inference failed)."""


class InputSpecError(WorkbenchError):
    """Input shapes or values given by the user do not fit the model."""


class DataError(WorkbenchError):
    """Evaluation or calibration data is missing, malformed or does not fit the model."""


class EngineUnavailableError(WorkbenchError):
    """The requested engine or device cannot be used on this machine."""


class EngineRunError(WorkbenchError):
    """The engine rejected the model or its inputs at session creation or run time."""


class UsageError(WorkbenchError):
    """A bad combination of options."""


class PassError(WorkbenchError):
    """An optimization pass cannot handle this model (and says which pass and why)."""


class CacheError(WorkbenchError):
    """The build cache cannot be used (unwritable folder, ...)."""


class BundleError(WorkbenchError):
    """An exported bundle is malformed, tampered with, truncated or points outside itself."""


class ConversionError(WorkbenchError):
    """A PyTorch module cannot be converted to ONNX (or PyTorch is not installed)."""
