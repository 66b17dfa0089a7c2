"""Where trials run: a local process pool (default) or a Ray cluster, one trial per task.

Both return results in the order the trials were given, whatever order they finish in, which is
what keeps a seeded search identical on either executor. Ray is imported only when asked for.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from ...errors import UsageError, install_hint
from .space import GPU_DEVICES

__all__ = ["Executor", "LocalExecutor", "RayExecutor", "make_executor"]


class Executor:
    """Runs ``fn`` over items in parallel (``map``) or one at a time (``one``)."""

    name = "base"
    workers = 1

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        raise NotImplementedError

    def one(self, fn: Callable[[Any], Any], item: Any) -> Any:
        """One task with nothing else of this search running (latency measurements)."""
        return self.map(fn, [item])[0]

    def put(self, obj: Any) -> Any:
        """What tasks receive for a large object sent to many of them (Ray: an object-store reference,
        put once; elsewhere the object itself, pickled with each task)."""
        return obj

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name, "workers": self.workers}

    def close(self) -> None:
        pass

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalExecutor(Executor):
    """A pool of ``workers`` processes (spawned: ONNX Runtime's thread pools do not survive fork).
    ``workers=0`` runs everything in this process."""

    name = "local"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(0, workers if workers is not None else min(2, os.cpu_count() or 1))
        self._pool: ProcessPoolExecutor | None = None

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        if self.workers == 0 or len(items) == 1:
            return [fn(x) for x in items]
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        return list(self._pool.map(fn, items))

    def one(self, fn: Callable[[Any], Any], item: Any) -> Any:
        return fn(item)  # in this process, with the pool idle

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


class RayExecutor(Executor):
    """One Ray task per trial, ``num_cpus=1`` each (``num_gpus=1`` for GPU devices).

    ``address=None`` starts a local Ray instance with ``workers`` CPUs; otherwise it connects to
    the cluster (``auto`` or ``ray://host:10001``), whose workers need the workbench installed.
    """

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, device: str = "cpu") -> None:
        try:
            import ray  # noqa: PLC0415
        except ImportError as e:
            raise UsageError("--executor ray needs Ray, which is not installed",
                             f"{install_hint('ray')}, or use --executor local") from e
        self._ray = ray
        self.address = address
        self.gpu = device.split(":")[0].lower() in GPU_DEVICES
        self._started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address is None:
                kwargs["num_cpus"] = workers or min(2, os.cpu_count() or 1)
                if self.gpu:
                    kwargs["num_gpus"] = None  # Ray detects them
            try:
                ray.init(address=address, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise UsageError(f"cannot start or reach Ray at {address or 'a local instance'}: {e}",
                                 "check --address (e.g. auto or ray://HOST:10001), or use --executor local"
                                 ) from e
            self._started = True
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = workers or cpus
        self._remotes: dict[Callable[..., Any], Any] = {}

    def _remote(self, fn: Callable[[Any], Any]) -> Any:
        if fn not in self._remotes:
            self._remotes[fn] = self._ray.remote(num_cpus=1, num_gpus=1 if self.gpu else 0,
                                                 max_retries=0)(fn)
        return self._remotes[fn]

    def put(self, obj: Any) -> Any:
        return self._ray.put(obj)

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        remote = self._remote(fn)
        return self._ray.get([remote.remote(x) for x in items])

    def describe(self) -> dict[str, Any]:
        res = self._ray.cluster_resources()
        return {"executor": self.name, "workers": self.workers, "address": self.address or "local",
                "cluster_cpus": res.get("CPU"), "cluster_gpus": res.get("GPU", 0),
                "num_gpus_per_trial": 1 if self.gpu else 0}

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False


def make_executor(kind: str = "local", *, workers: int | None = None, address: str | None = None,
                  device: str = "cpu") -> Executor:
    if kind == "local":
        if address:
            raise UsageError("--address is for --executor ray")
        if device.split(":")[0].lower() in GPU_DEVICES and workers != 0:
            # GPU trials: one worker per GPU, pinned to it, never two trials on one GPU at a time.
            from .placement import GpuExecutor, gpu_indices  # noqa: PLC0415

            gpus = gpu_indices(None)
            return GpuExecutor(gpus[:workers] if workers else gpus)
        return LocalExecutor(workers)
    if kind == "ray":
        return RayExecutor(address, workers, device)
    raise UsageError(f"unknown executor {kind!r}", "use local or ray")
