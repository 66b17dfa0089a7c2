"""GPU trials on a multi-GPU host: one worker process per GPU, pinned to it, one trial at a time.

``GpuExecutor`` keeps a single-process pool per GPU, started with ``CUDA_VISIBLE_DEVICES`` set to
that GPU, so ``cuda:0`` inside the worker is the GPU the pool owns and engines are built for the
GPU that runs them. A thread per GPU takes the next trial from a shared queue when its GPU is
free: never two trials on one GPU at a time, every GPU busy while trials remain. Results come back
in the order the trials were given (as with the other executors), and ``placements`` records
which GPU ran which trial and when, for the sweep report (wall time and per-GPU busy share).
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from ...errors import UsageError
from .executors import Executor

__all__ = ["GpuExecutor", "Placement", "gpu_indices", "utilization"]


@dataclass(frozen=True)
class Placement:
    item: int  # index of the trial in the list given to ``map``
    gpu: int
    start: float  # time.monotonic() in the parent
    end: float


def _pin(gpu: int) -> None:
    os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)


def gpu_indices(spec: str | Sequence[int] | None = None) -> list[int]:
    """GPUs to use: ``"0,2"``, a list, or None for every GPU the driver sees (ctypes, no torch)."""
    if spec is None:
        from ..gpu import scan_gpus  # noqa: PLC0415

        found = [g.index for g in scan_gpus().gpus]
        if not found:
            raise UsageError("no GPU found for a GPU search", "run it with --device cpu, or on a GPU host")
        return found
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    try:
        out = sorted({int(i) for i in items})
    except ValueError as e:
        raise UsageError(f"bad GPU list {spec!r}", "give indices like 0,1,2") from e
    if not out or out[0] < 0:
        raise UsageError(f"bad GPU list {spec!r}", "give indices like 0,1,2")
    return out


class GpuExecutor(Executor):
    """One pinned worker process per GPU; trials are handed to whichever GPU is free."""

    name = "local-gpu"

    def __init__(self, gpus: Sequence[int]) -> None:
        if not gpus:
            raise UsageError("GpuExecutor needs at least one GPU", "give gpus=[0, ...]")
        self.gpus = list(dict.fromkeys(gpus))
        self.workers = len(self.gpus)
        self.placements: list[Placement] = []
        self._pools: dict[int, ProcessPoolExecutor] = {}
        self._t0 = time.monotonic()

    def _pool(self, gpu: int) -> ProcessPoolExecutor:
        if gpu not in self._pools:
            self._pools[gpu] = ProcessPoolExecutor(
                1, mp_context=multiprocessing.get_context("spawn"), initializer=_pin, initargs=(gpu,))
        return self._pools[gpu]

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        todo: queue.SimpleQueue[int] = queue.SimpleQueue()
        for i in range(len(items)):
            todo.put(i)
        results: list[Any] = [None] * len(items)
        errors: list[BaseException] = []
        lock = threading.Lock()

        def feed(gpu: int) -> None:
            pool = self._pool(gpu)
            while not errors:
                try:
                    i = todo.get_nowait()
                except queue.Empty:
                    return
                start = time.monotonic()
                try:
                    results[i] = pool.submit(fn, items[i]).result()
                except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
                    errors.append(e)
                    return
                with lock:
                    self.placements.append(Placement(i, gpu, start - self._t0, time.monotonic() - self._t0))

        threads = [threading.Thread(target=feed, args=(g,), name=f"gpu-{g}") for g in self.gpus]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return results

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name, "workers": self.workers, "gpus": self.gpus,
                "placement": "one pinned worker per GPU (CUDA_VISIBLE_DEVICES), one trial at a time"}

    def close(self) -> None:
        for p in self._pools.values():
            p.shutdown()
        self._pools.clear()


def utilization(placements: Sequence[Placement]) -> dict[str, Any]:
    """Wall time of the placed trials and each GPU's busy share of it."""
    if not placements:
        return {"wall_s": 0.0, "gpus": {}}
    t0, t1 = min(p.start for p in placements), max(p.end for p in placements)
    wall = max(t1 - t0, 1e-9)
    per: dict[int, float] = {}
    for p in placements:
        per[p.gpu] = per.get(p.gpu, 0.0) + (p.end - p.start)
    return {"wall_s": round(wall, 3),
            "gpus": {g: {"trials": sum(p.gpu == g for p in placements), "busy_s": round(b, 3),
                         "busy_share": round(b / wall, 3)} for g, b in sorted(per.items())}}
