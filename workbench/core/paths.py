"""Where the workbench keeps its files: bundled samples and its cache folder."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

__all__ = ["samples_dir", "cache_dir", "atomic_write", "sha256_file"]


def samples_dir() -> Path:
    """The bundled ``sample_models/`` folder (``WORKBENCH_SAMPLES_DIR`` overrides)."""
    env = os.environ.get("WORKBENCH_SAMPLES_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "sample_models"


def cache_dir() -> Path:
    """The workbench's cache folder (``WORKBENCH_CACHE_DIR``, else ``~/.cache/workbench``)."""
    env = os.environ.get("WORKBENCH_CACHE_DIR")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "workbench"
    return base


def atomic_write(path: Path, data: bytes | memoryview) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place: a reader
    sees the old file or the whole new one, and an interrupted write leaves no partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256_file(path: Path) -> str:
    """``sha256:`` of a file's bytes, read in 1 MiB chunks (cache entries, bundle files)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()
