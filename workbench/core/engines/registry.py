"""Every engine the workbench knows, whether it is available here, and if not, exactly why."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from ...errors import EngineUnavailableError, install_hint
from ..gpu import scan_gpus
from .base import Availability

__all__ = ["EngineEntry", "EngineStatus", "DeviceStatus", "ENGINES", "list_engines", "list_devices",
           "engine_for_device"]


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
        return Availability(False, f"onnxruntime is not installed: {install_hint('gpu')}")
    if provider not in ort.get_available_providers():
        return Availability(False, f"onnxruntime {ort.__version__} was built without {provider}: "
                                   f"{extra}")
    return Availability(True, f"onnxruntime {ort.__version__} has {provider}")


def _major(version: str | None) -> int | None:
    try:
        return int(str(version).replace("CUDA", "").strip().split(".")[0])
    except ValueError:
        return None


def _ort_cuda_driver() -> Availability:
    """The driver must support the CUDA major version onnxruntime-gpu was built for."""
    try:
        from onnxruntime.capi import build_and_package_info as info  # noqa: PLC0415
    except ImportError:
        return Availability(True, "")
    built, driver = getattr(info, "cuda_version", None), scan_gpus().driver
    b, d = _major(built), _major(driver)
    if b is not None and d is not None and d < b:
        return Availability(False, f"onnxruntime-gpu is built for CUDA {built} but the NVIDIA driver "
                                   f"supports {driver}: update the driver, or install an onnxruntime-gpu "
                                   f"built for CUDA {d}")
    return Availability(True, f"built for CUDA {built}" if built else "")


def _all(*checks: Callable[[], Availability]) -> Availability:
    """Available only if every check passes; otherwise every failing check's reason, joined."""
    results = [c() for c in checks]
    failed = [r.reason for r in results if not r]
    if failed:
        return Availability(False, "; ".join(failed))
    return Availability(True, "; ".join(r.reason for r in results if r.reason))


_ORT_GPU = f"{install_hint('gpu')}, which brings onnxruntime-gpu in place of onnxruntime"


def _trt_libs() -> Availability:
    """TensorRT's libraries, the ones this onnxruntime's TensorRT provider links against."""
    from .ort_trt import probe_libraries  # noqa: PLC0415

    return probe_libraries()


def _module(name: str, dist: str) -> Availability:
    try:
        found = importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package is missing
        found = False
    if not found:
        return Availability(False, f"{dist} is not installed: {install_hint('tensorrt')}")
    return Availability(True, f"{dist} imports")


@lru_cache(maxsize=1)
def _tensorrt_module() -> Availability:
    """``tensorrt`` installed and importable (its wheel loads libnvinfer on import)."""
    found = _module("tensorrt", "tensorrt")
    if not found:
        return found
    try:
        import tensorrt  # noqa: PLC0415
    except (ImportError, OSError) as e:
        return Availability(False, f"tensorrt is installed but cannot be imported ({e}): "
                                   "reinstall tensorrt for this CUDA version")
    kind = "weakly typed builder flags" if hasattr(tensorrt.BuilderFlag, "FP16") else "strongly typed"
    return Availability(True, f"tensorrt {tensorrt.__version__} ({kind})")


def _cuda_python() -> Availability:
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        if _module(name, "cuda-python"):
            return Availability(True, "cuda-python imports")
    return Availability(False, f"cuda-python is not installed: {install_hint('tensorrt')}")


def _probe_ort_cuda() -> Availability:
    return _all(_gpu, lambda: _ort_provider("CUDAExecutionProvider", _ORT_GPU), _ort_cuda_driver)


def _probe_ort_trt() -> Availability:
    return _all(_gpu, lambda: _ort_provider("TensorrtExecutionProvider", _ORT_GPU), _ort_cuda_driver,
                _trt_libs)


def _probe_tensorrt() -> Availability:
    return _all(_gpu, _tensorrt_module, _cuda_python)


def _probe_openvino(family: str) -> Callable[[], Availability]:
    def probe() -> Availability:
        from .openvino import probe as openvino_probe  # noqa: PLC0415

        return openvino_probe(family)
    return probe


ENGINES: dict[str, EngineEntry] = {
    e.name: e for e in [
        EngineEntry("ort-cpu", "cpu", "ONNX Runtime, CPU execution provider", _probe_cpu, True),
        EngineEntry("ort-cuda", "cuda", "ONNX Runtime, CUDA execution provider", _probe_ort_cuda, True),
        EngineEntry("ort-tensorrt", "cuda", "ONNX Runtime, TensorRT execution provider",
                    _probe_ort_trt, True),
        EngineEntry("tensorrt", "cuda", "native TensorRT engine (cuda-python buffers)",
                    _probe_tensorrt, True),
        EngineEntry("openvino", "cpu", "OpenVINO, CPU plugin", _probe_openvino("CPU"), True),
        EngineEntry("openvino-gpu", "gpu", "OpenVINO, Intel GPU plugin (openvino:GPU[.N])",
                    _probe_openvino("GPU"), True),
        EngineEntry("openvino-npu", "npu", "OpenVINO, Intel NPU plugin (openvino:NPU)",
                    _probe_openvino("NPU"), True),
    ]
}

_DEVICE_ALIASES = {"cpu": "ort-cpu", "cuda": "ort-cuda", "gpu": "ort-cuda", "trt": "tensorrt",
                   "ort-trt": "ort-tensorrt"}


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


@dataclass(frozen=True)
class DeviceStatus:
    """One device a build can target: the CPU, or one GPU (``cuda:N``), with its engines."""

    device: str
    name: str
    memory_bytes: int | None
    compute_capability: str | None
    engines: tuple[str, ...]  # available engines that can run on it

    def to_dict(self) -> dict:
        return {"device": self.device, "name": self.name, "memory_bytes": self.memory_bytes,
                "compute_capability": self.compute_capability, "engines": list(self.engines)}


def list_devices() -> list[DeviceStatus]:
    """The CPU and every GPU separately (``cuda:0``, ``cuda:1``, ...), each with the engines that
    can run on it here. A multi-GPU host lists every GPU; searches place one trial per GPU.
    Intel GPUs and NPUs that OpenVINO reports follow (``openvino:GPU.0``, ``openvino:NPU``)."""
    from ..machine import machine_info  # noqa: PLC0415

    engines = list_engines()
    cpu = tuple(e.name for e in engines if e.device == "cpu" and e.available)
    out = [DeviceStatus("cpu", machine_info()["cpu"], None, None, cpu)]
    gpu_engines = tuple(e.name for e in engines if e.device == "cuda" and e.available)
    for g in scan_gpus().gpus:
        out.append(DeviceStatus(f"cuda:{g.index}", g.name, g.memory_bytes, g.compute_capability,
                                gpu_engines))
    out += _openvino_devices(engines)
    return out


def _openvino_devices(engines: list[EngineStatus]) -> list[DeviceStatus]:
    """OpenVINO's non-CPU devices, where its engine for them is available."""
    ready = {e.name for e in engines if e.available and e.name in ("openvino-gpu", "openvino-npu")}
    if not ready:
        return []
    from .openvino import ENGINE_OF_FAMILY, available_devices  # noqa: PLC0415

    return [DeviceStatus(f"openvino:{d}", full, None, None, (ENGINE_OF_FAMILY[d.split(".")[0]],))
            for d, full in available_devices().items() if ENGINE_OF_FAMILY.get(d.split(".")[0]) in ready]


def engine_for_device(device: str) -> EngineEntry:
    """Map ``cpu``, ``cuda[:N]``, ``openvino[:DEVICE]`` or an engine name to an engine, raising if
    it cannot run here."""
    key = device.split(":")[0].lower()
    name = _DEVICE_ALIASES.get(key, key)
    if name.startswith("openvino"):  # openvino:GPU.1 -> openvino-gpu
        from .openvino import split_device  # noqa: PLC0415

        name = split_device(device)[0] if name in ENGINES else name
    if name not in ENGINES:
        raise EngineUnavailableError(
            f"unknown device or engine {device!r}",
            f"use one of: {', '.join(['cpu', 'cuda', *ENGINES, 'openvino:DEVICE'])} (see `workbench devices`)")
    entry = ENGINES[name]
    status = next(s for s in list_engines() if s.name == name)
    if not status.available:
        raise EngineUnavailableError(f"{name} is not available here: {status.reason}",
                                     "see `workbench devices`; use --device cpu")
    return entry
