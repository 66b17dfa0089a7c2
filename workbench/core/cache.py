"""A content-addressed build cache.

Key = sha256 over the source model's fingerprint, the resolved recipe, the target device (and the
CPU's instruction sets, which device-aware defaults depend on), the calibration data's hash and
the versions of every library that can change the result. Entries are written to a temporary
folder and renamed into place, so a reader never sees half an entry; every read checks the
model's checksum, and a corrupt entry is removed and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CacheError
from .machine import cpu_isa, machine_info
from .paths import cache_dir, sha256_file

__all__ = ["BuildCache", "CacheEntry", "cache_key", "CACHE_SCHEMA"]

CACHE_SCHEMA = 1  # bump when the entry layout or the key's meaning changes
MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"




def cache_key(model_fingerprint: str, recipe: dict[str, Any], device: str,
              calibration_hash: str | None) -> str:
    from .. import __version__  # noqa: PLC0415

    payload = {
        "schema": CACHE_SCHEMA,
        "workbench": __version__,
        "model": model_fingerprint,
        "recipe": recipe,
        "device": device,
        "isa": list(cpu_isa()),
        "calibration": calibration_hash,
        "libraries": machine_info()["libraries"],
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    key: str
    path: Path
    manifest: dict[str, Any]

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE


class BuildCache:
    """``get``/``put`` built models by key; ``enabled=False`` makes every lookup a miss."""

    STALE_TMP_S = 3600.0  # a temporary entry this old belongs to a build that was killed

    def __init__(self, root: str | Path | None = None, enabled: bool = True) -> None:
        self.root = Path(root) if root else cache_dir() / "builds"
        self.enabled = enabled
        self.corrupt_removed = 0

    def _dir(self, key: str) -> Path:
        return self.root / key[:2] / key

    def contains(self, key: str) -> bool:
        """A cheap look (no checksum): whether an entry for ``key`` exists."""
        return self.enabled and (self._dir(key) / MANIFEST_FILE).is_file()

    def get(self, key: str) -> CacheEntry | None:
        if not self.enabled:
            return None
        d = self._dir(key)
        if not d.is_dir():
            return None
        try:
            manifest = json.loads((d / MANIFEST_FILE).read_text())
            ok = (manifest.get("key") == key
                  and sha256_file(d / MODEL_FILE) == manifest.get("model_sha256"))
        except (OSError, ValueError):
            ok = False
        if not ok:
            self._remove(d)
            self.corrupt_removed += 1
            return None
        return CacheEntry(key, d, manifest)

    def put(self, key: str, model_bytes: bytes, manifest: dict[str, Any]) -> CacheEntry | None:
        """Store an entry atomically; returns None when the cache is off."""
        if not self.enabled:
            return None
        final = self._dir(key)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            self._sweep(final.parent)
            tmp = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=final.parent))
        except OSError as e:
            raise CacheError(f"cannot write to the build cache {self.root}: {e.strerror}",
                             "set WORKBENCH_CACHE_DIR to a writable folder, or use --no-cache") from e
        try:
            (tmp / MODEL_FILE).write_bytes(model_bytes)
            manifest = {**manifest, "key": key, "model_sha256": sha256_file(tmp / MODEL_FILE)}
            with open(tmp / MANIFEST_FILE, "w") as f:
                json.dump(manifest, f, indent=2, default=str)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.rename(tmp, final)
            except OSError:  # another process stored the same key first: keep theirs if sound
                existing = self.get(key)  # removes it if corrupt
                if existing is not None:
                    self._remove(tmp)
                    return existing
                os.rename(tmp, final)
        except BaseException:
            self._remove(tmp)
            raise
        return CacheEntry(key, final, manifest)

    def clear(self) -> int:
        """Remove every entry; return how many there were."""
        if not self.root.is_dir():
            return 0
        n = sum(1 for p in self.root.glob("*/*") if p.is_dir() and not p.name.startswith("."))
        self._remove(self.root)
        return n

    def info(self) -> dict[str, Any]:
        entries = [p for p in self.root.glob("*/*") if p.is_dir() and not p.name.startswith(".")] \
            if self.root.is_dir() else []
        size = sum(f.stat().st_size for e in entries for f in e.iterdir() if f.is_file())
        return {"root": str(self.root), "enabled": self.enabled, "entries": len(entries), "bytes": size}

    def _sweep(self, folder: Path) -> int:
        """Remove temporary entries left by builds killed mid-write (older than STALE_TMP_S)."""
        now, n = time.time(), 0
        for p in folder.glob(".*"):
            try:
                if p.is_dir() and now - p.stat().st_mtime > self.STALE_TMP_S:
                    self._remove(p)
                    n += 1
            except OSError:  # another process removed or renamed it meanwhile
                continue
        return n

    @staticmethod
    def _remove(path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)
