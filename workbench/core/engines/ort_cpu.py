"""ONNX Runtime on the CPU: threads, graph optimization level, execution mode, session options."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import numpy as np

from ...errors import EngineRunError, UsageError, install_hint
from ..machine import default_threads
from ..model import TWO_GB, Model, proto_size
from .base import Availability, Runner

__all__ = ["OrtCpuOptions", "OrtCpuRunner", "probe", "OPT_LEVELS", "default_threads"]

OPT_LEVELS = {
    "disabled": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}
EXECUTION_MODES = {"sequential": "ORT_SEQUENTIAL", "parallel": "ORT_PARALLEL"}


@dataclass(frozen=True)
class OrtCpuOptions:
    """Session options for the CPU engine.

    Attributes:
        threads: intra-op threads (default: physical cores).
        inter_op_threads: threads across independent nodes (``parallel`` mode only).
        optimization_level: ``disabled``, ``basic``, ``extended`` or ``all``.
        execution_mode: ``sequential`` or ``parallel``.
        config: extra ``SessionOptions.add_session_config_entry`` pairs.
        optimized_model_path: where ONNX Runtime writes the graph it optimized, if set.
        profile_prefix: turn on ONNX Runtime's profiler, writing its JSON trace to this prefix.
    """

    threads: int | None = None
    inter_op_threads: int | None = None
    optimization_level: str = "all"
    execution_mode: str = "sequential"
    config: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    optimized_model_path: str | None = None
    profile_prefix: str | None = None

    def __post_init__(self) -> None:
        if self.optimization_level not in OPT_LEVELS:
            raise UsageError(f"unknown optimization level {self.optimization_level!r}",
                             f"use one of {', '.join(OPT_LEVELS)}")
        if self.execution_mode not in EXECUTION_MODES:
            raise UsageError(f"unknown execution mode {self.execution_mode!r}",
                             f"use one of {', '.join(EXECUTION_MODES)}")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"threads must be >= 1, got {self.threads}")


def probe() -> Availability:
    try:
        import onnxruntime as ort  # noqa: PLC0415
    except ImportError as e:
        return Availability(False, f"onnxruntime is not installed ({e}): {install_hint()}")
    if "CPUExecutionProvider" not in ort.get_available_providers():
        return Availability(False, f"onnxruntime {ort.__version__} has no CPU provider")
    return Availability(True, f"onnxruntime {ort.__version__}")


class OrtCpuRunner(Runner):
    """Runs a model with ONNX Runtime's CPU execution provider."""

    engine = "ort-cpu"
    device = "cpu"

    def __init__(self, model: Model, options: OrtCpuOptions | None = None) -> None:
        super().__init__()
        self.model = model
        self.options = options or OrtCpuOptions()
        self.session: Any = None

    @property
    def settings(self) -> dict[str, Any]:
        d = asdict(self.options)
        d["threads"] = self.options.threads or default_threads()
        d["providers"] = ["CPUExecutionProvider"]
        return d

    def _session_options(self) -> Any:
        import onnxruntime as ort  # noqa: PLC0415

        o = self.options
        so = ort.SessionOptions()
        so.intra_op_num_threads = o.threads or default_threads()
        if o.inter_op_threads:
            so.inter_op_num_threads = o.inter_op_threads
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPT_LEVELS[o.optimization_level])
        so.execution_mode = getattr(ort.ExecutionMode, EXECUTION_MODES[o.execution_mode])
        if o.optimized_model_path:
            so.optimized_model_filepath = o.optimized_model_path
        if o.profile_prefix:  # per-node kernel times to <prefix>_<date>.json (workbench profile)
            so.enable_profiling = True
            so.profile_file_prefix = o.profile_prefix
        for k, v in o.config:
            so.add_session_config_entry(k, v)
        # Fatal only: ORT logs a failed run to stderr itself; the workbench raises a clear error instead.
        so.log_severity_level = 4
        return so

    def activate_impl(self) -> None:
        import onnxruntime as ort  # noqa: PLC0415

        # Large models must load from their file so that ONNX Runtime finds the external data.
        src: Any = (str(self.model.path) if proto_size(self.model.proto) > TWO_GB and self.model.path
                    else self.model.proto.SerializeToString())
        try:
            self.session = ort.InferenceSession(src, self._session_options(),
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/NotImplemented types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            hint = ("the model uses an operator ONNX Runtime does not implement on the CPU"
                    if "NOT_IMPLEMENTED" in first or "Could not find an implementation" in first
                    else "check the model with `workbench info`")
            raise EngineRunError(f"ONNX Runtime could not load {self.model.name}: {first}", hint) from e

    def deactivate_impl(self) -> None:
        self.session = None

    def _check_feeds(self, feeds: dict[str, np.ndarray]) -> None:
        expected = {i.name for i in self.session.get_inputs()}
        missing = expected - set(feeds)
        if missing:
            name = sorted(missing)[0]
            raise EngineRunError(f"no value for model input {name!r}",
                                 f"set it with --input {name}=VALUE or --shape {name}=DIMS")

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._check_feeds(feeds)
        try:
            outs = self.session.run(None, feeds)
        except Exception as e:  # InvalidArgument (shape/dtype), RuntimeException (kernel failure)
            raise EngineRunError(_describe_run_error(e, feeds, self.session),
                                 "set the input's shape with --shape NAME=DIMS or its value with "
                                 "--input NAME=VALUE") from e
        return {o.name: v for o, v in zip(self.session.get_outputs(), outs)}

    def prepare_impl(self, feeds: dict[str, np.ndarray]) -> Callable[[], Any]:
        self.infer_impl(feeds)  # fail here, with a clear message, rather than inside a timing loop
        return partial(self.session.run, None, feeds)


def _describe_run_error(e: Exception, feeds: dict[str, np.ndarray], session: Any) -> str:
    """Name the input a failed run was most likely about."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    names = [i.name for i in session.get_inputs()]
    culprit = next((n for n in names if f"'{n}'" in str(e) or f" {n}" in str(e)), None)
    shapes = ", ".join(f"{n} {list(feeds[n].shape)} {feeds[n].dtype}" for n in names if n in feeds)
    where = f"input {culprit!r}: " if culprit else ""
    return f"ONNX Runtime failed on {where}{text} (inputs were: {shapes})"
