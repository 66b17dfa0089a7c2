"""Where the workbench keeps its files: bundled samples and its cache folder."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["samples_dir", "cache_dir"]


def samples_dir() -> Path:
    """The bundled ``sample_models/`` folder (``WORKBENCH_SAMPLES_DIR`` overrides)."""
    env = os.environ.get("WORKBENCH_SAMPLES_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "sample_models"


def cache_dir() -> Path:
    """The workbench's cache folder (``WORKBENCH_CACHE_DIR``, else ``~/.cache/workbench``)."""
    env = os.environ.get("WORKBENCH_CACHE_DIR")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "workbench"
    return base
