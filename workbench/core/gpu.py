"""GPU discovery through the CUDA driver API (``libcuda``) with ctypes: no torch, no toolkit.

Answers "is there an NVIDIA GPU here, which, and which driver" for the engine registry, with the
reason when there is none.
"""

from __future__ import annotations

import ctypes
from dataclasses import asdict, dataclass
from functools import lru_cache

__all__ = ["GpuInfo", "GpuScan", "scan_gpus"]

_CC_MAJOR, _CC_MINOR = 75, 76  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR / _MINOR


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    memory_bytes: int
    compute_capability: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class GpuScan:
    gpus: tuple[GpuInfo, ...]
    driver: str | None
    reason: str  # why there are none, or a short description

    def to_dict(self) -> dict:
        return {"gpus": [g.to_dict() for g in self.gpus], "driver": self.driver, "reason": self.reason}


@lru_cache(maxsize=1)
def scan_gpus() -> GpuScan:
    """List NVIDIA GPUs via the driver library; never raises."""
    lib = None
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    if lib is None:
        return GpuScan((), None, "no NVIDIA driver (libcuda.so.1 not found): no GPU on this machine")
    rc = lib.cuInit(0)
    if rc != 0:
        return GpuScan((), None, f"the NVIDIA driver is installed but cuInit failed (CUDA error {rc}): "
                                 "no usable GPU (check nvidia-smi)")
    version = ctypes.c_int()
    lib.cuDriverGetVersion(ctypes.byref(version))
    driver = f"CUDA {version.value // 1000}.{(version.value % 1000) // 10}"
    count = ctypes.c_int()
    if lib.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value == 0:
        return GpuScan((), driver, "the NVIDIA driver sees no GPU")
    gpus = []
    for i in range(count.value):
        dev = ctypes.c_int()
        lib.cuDeviceGet(ctypes.byref(dev), i)
        buf = ctypes.create_string_buffer(256)
        lib.cuDeviceGetName(buf, 256, dev)
        mem = ctypes.c_size_t()
        lib.cuDeviceTotalMem_v2(ctypes.byref(mem), dev)
        major, minor = ctypes.c_int(), ctypes.c_int()
        lib.cuDeviceGetAttribute(ctypes.byref(major), _CC_MAJOR, dev)
        lib.cuDeviceGetAttribute(ctypes.byref(minor), _CC_MINOR, dev)
        gpus.append(GpuInfo(i, buf.value.decode(errors="replace"), mem.value,
                            f"{major.value}.{minor.value}"))
    return GpuScan(tuple(gpus), driver, f"{len(gpus)} GPU(s), driver {driver}")
