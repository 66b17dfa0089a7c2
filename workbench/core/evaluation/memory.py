"""Peak resident memory of this process during a block of work.

On Linux the kernel's high-water mark (``VmHWM``) is reset through ``/proc/self/clear_refs`` and
read after the block: exact, with no sampling thread. Elsewhere a thread samples RSS every 5 ms.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PeakMemory", "track_peak_memory"]


@dataclass
class PeakMemory:
    before_bytes: int = 0
    peak_bytes: int = 0
    method: str = ""

    @property
    def increase_bytes(self) -> int:
        return max(0, self.peak_bytes - self.before_bytes)

    def to_dict(self) -> dict:
        return {"peak_rss_bytes": self.peak_bytes, "rss_before_bytes": self.before_bytes,
                "peak_increase_bytes": self.increase_bytes, "method": self.method}


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@contextmanager
def track_peak_memory() -> Iterator[PeakMemory]:
    """``with track_peak_memory() as m: ...`` then read ``m.peak_bytes``."""
    result = PeakMemory()
    if _status_kb("VmHWM") is not None and _reset_hwm():
        result.before_bytes = _status_kb("VmRSS") or 0
        result.method = "VmHWM (kernel high-water mark, reset before the run)"
        try:
            yield result
        finally:
            result.peak_bytes = max(_status_kb("VmHWM") or 0, result.before_bytes)
        return
    import psutil  # noqa: PLC0415

    proc = psutil.Process()
    result.before_bytes = proc.memory_info().rss
    result.peak_bytes = result.before_bytes
    result.method = "RSS sampled every 5 ms"
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.005):
            result.peak_bytes = max(result.peak_bytes, proc.memory_info().rss)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        yield result
    finally:
        stop.set()
        t.join()
        result.peak_bytes = max(result.peak_bytes, proc.memory_info().rss)
