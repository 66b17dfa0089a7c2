"""Launch JupyterLab on the workbench notebooks, bound to 127.0.0.1."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .errors import UsageError

__all__ = ["notebooks_dir", "lab_command"]

DEFAULT_NOTEBOOK = "01_optimize_resnet.ipynb"


def notebooks_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "notebooks"


def lab_command(port: int = 8888, open_browser: bool = True, notebook: str = DEFAULT_NOTEBOOK,
                token: str | None = None, extra: list[str] | None = None,
                root: str | Path | None = None) -> list[str]:
    """The ``jupyter lab`` command line: loopback only, no news or update checks.

    ``root`` serves another folder (e.g. a copy of the notebooks); it must hold ``notebooks/``.
    """
    base = Path(root).resolve() if root else notebooks_dir().parent
    nb = base / "notebooks" / notebook
    if not nb.is_file():
        raise UsageError(f"notebook {nb} is missing",
                         "restore it from the repository (git checkout notebooks/)")
    cmd = [
        sys.executable, "-m", "jupyterlab", str(nb),
        f"--ServerApp.root_dir={base}",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if not open_browser:
        cmd.append("--no-browser")
    if token is not None:
        cmd.append(f"--IdentityProvider.token={token}")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    return cmd + list(extra or [])
