"""What machine a measurement ran on: CPU model, cores, instruction sets, library versions."""

from __future__ import annotations

import os
import platform
from functools import lru_cache
from importlib import metadata
from pathlib import Path

__all__ = ["machine_info", "cpu_isa", "default_threads"]

# /proc/cpuinfo flag -> name users know. VNNI and AMX decide which INT8 kernels are fast.
_ISA_FLAGS = {
    "avx2": "AVX2", "fma": "FMA", "avx512f": "AVX-512F", "avx512bw": "AVX-512BW",
    "avx512_vnni": "AVX-512 VNNI", "avx_vnni": "AVX-VNNI", "avx512_bf16": "AVX-512 BF16",
    "amx_tile": "AMX", "amx_int8": "AMX-INT8", "amx_bf16": "AMX-BF16", "asimd": "NEON",
    "asimddp": "NEON dot-product", "i8mm": "Arm I8MM",
}


def _cpuinfo() -> dict[str, str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    info: dict[str, str] = {}
    for line in text.splitlines():
        if ":" in line:
            k, v = (s.strip() for s in line.split(":", 1))
            info.setdefault(k, v)
    return info


@lru_cache(maxsize=1)
def cpu_isa() -> tuple[str, ...]:
    """Instruction-set extensions of this CPU that matter for inference kernels."""
    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    return tuple(name for flag, name in _ISA_FLAGS.items() if flag in flags)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


@lru_cache(maxsize=1)
def machine_info() -> dict:
    """A JSON-ready description of this machine and the libraries that matter."""
    info = _cpuinfo()
    try:
        import psutil  # noqa: PLC0415

        physical = psutil.cpu_count(logical=False)
        mem = psutil.virtual_memory().total
    except ImportError:
        physical, mem = None, None
    libs = {d: _version(d) for d in ("onnx", "onnxruntime", "onnxruntime-gpu", "numpy",
                                     "onnxscript", "onnx-ir", "onnxslim", "tensorrt", "openvino")}
    return {
        "cpu": info.get("model name") or platform.processor() or platform.machine(),
        "arch": platform.machine(),
        "logical_cpus": os.cpu_count(),
        "physical_cores": physical,
        "isa": list(cpu_isa()),
        "memory_bytes": mem,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "libraries": {k: v for k, v in libs.items() if v},
    }


def default_threads() -> int:
    """Physical cores, which is what ONNX Runtime picks by default, made explicit for reports (both
    CPU runtimes, ONNX Runtime and OpenVINO, get this count);
    ``WORKBENCH_THREADS=N`` caps it (a shared machine, or several test workers on one)."""
    env = os.environ.get("WORKBENCH_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        import psutil  # noqa: PLC0415

        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:
        return os.cpu_count() or 1
