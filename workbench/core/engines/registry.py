"""Every engine the workbench knows, whether it is available here, and if not, exactly why."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

from ...errors import EngineUnavailableError
from ..gpu import scan_gpus
from .base import Availability

__all__ = ["EngineEntry", "EngineStatus", "ENGINES", "list_engines", "engine_for_device"]


@dataclass(frozen=True)
class EngineEntry:
    name: str
    device: str
    description: str
    probe: Callable[[], Availability]
    implemented: bool  # False: known and probed, but this version cannot build it yet


@dataclass(frozen=True)
class EngineStatus:
    name: str
    device: str
    description: str
    available: bool
    reason: str

    def to_dict(self) -> dict:
        return {"name": self.name, "device": self.device, "description": self.description,
                "available": self.available, "reason": self.reason}


def _probe_cpu() -> Availability:
    from .ort_cpu import probe  # noqa: PLC0415

    return probe()


def _gpu() -> Availability:
    scan = scan_gpus()
    return Availability(bool(scan.gpus), scan.reason)


def _ort_provider(provider: str, extra: str) -> Availability:
    try:
        import onnxruntime as ort  # noqa: PLC0415
    except ImportError:
        return Availability(False, "onnxruntime is not installed: pip install 'workbench[gpu]'")
    if provider not in ort.get_available_providers():
        return Availability(False, f"onnxruntime {ort.__version__} was built without {provider}: "
                                   f"{extra}")
    return Availability(True, f"onnxruntime {ort.__version__} has {provider}")


def _all(*checks: Callable[[], Availability]) -> Availability:
    """Available only if every check passes; otherwise every failing check's reason, joined."""
    results = [c() for c in checks]
    failed = [r.reason for r in results if not r]
    if failed:
        return Availability(False, "; ".join(failed))
    return Availability(True, "; ".join(r.reason for r in results))


_ORT_GPU = "pip install 'workbench[gpu]' (onnxruntime-gpu) in place of onnxruntime"


def _trt_libs() -> Availability:
    import ctypes  # noqa: PLC0415

    for lib in ("libnvinfer.so.10", "libnvinfer.so"):
        try:
            ctypes.CDLL(lib)
            return Availability(True, f"{lib} loads")
        except OSError:
            continue
    return Availability(False, "TensorRT's libraries (libnvinfer.so.10) are not found: "
                               "pip install 'workbench[tensorrt]'")


def _module(name: str, dist: str) -> Availability:
    if importlib.util.find_spec(name) is None:
        return Availability(False, f"{dist} is not installed: pip install 'workbench[tensorrt]'")
    return Availability(True, f"{dist} imports")


def _probe_ort_cuda() -> Availability:
    return _all(_gpu, lambda: _ort_provider("CUDAExecutionProvider", _ORT_GPU))


def _probe_ort_trt() -> Availability:
    return _all(_gpu, lambda: _ort_provider("TensorrtExecutionProvider", _ORT_GPU), _trt_libs)


def _probe_tensorrt() -> Availability:
    return _all(_gpu, lambda: _module("tensorrt", "tensorrt"), lambda: _module("cuda", "cuda-python"))


ENGINES: dict[str, EngineEntry] = {
    e.name: e for e in [
        EngineEntry("ort-cpu", "cpu", "ONNX Runtime, CPU execution provider", _probe_cpu, True),
        EngineEntry("ort-cuda", "cuda", "ONNX Runtime, CUDA execution provider", _probe_ort_cuda, False),
        EngineEntry("ort-tensorrt", "cuda", "ONNX Runtime, TensorRT execution provider",
                    _probe_ort_trt, False),
        EngineEntry("tensorrt", "cuda", "native TensorRT engine (cuda-python buffers)",
                    _probe_tensorrt, False),
    ]
}

_DEVICE_ALIASES = {"cpu": "ort-cpu", "cuda": "ort-cuda", "gpu": "ort-cuda", "trt": "tensorrt"}


def list_engines() -> list[EngineStatus]:
    """Probe every engine (cheap: no session is created)."""
    out = []
    for e in ENGINES.values():
        a = e.probe()
        reason = a.reason
        available = a.available and e.implemented
        if a.available and not e.implemented:
            reason = f"{a.reason}, but this workbench version has no {e.name} engine yet"
        out.append(EngineStatus(e.name, e.device, e.description, available, reason))
    return out


def engine_for_device(device: str) -> EngineEntry:
    """Map ``cpu``, ``cuda[:N]`` or an engine name to an engine, raising if it cannot run here."""
    key = device.split(":")[0].lower()
    name = _DEVICE_ALIASES.get(key, key)
    if name not in ENGINES:
        raise EngineUnavailableError(
            f"unknown device or engine {device!r}",
            f"use one of: {', '.join(['cpu', 'cuda', *ENGINES])} (see `workbench devices`)")
    entry = ENGINES[name]
    status = next(s for s in list_engines() if s.name == name)
    if not status.available:
        raise EngineUnavailableError(f"{name} is not available here: {status.reason}",
                                     "see `workbench devices`; use --device cpu")
    return entry
