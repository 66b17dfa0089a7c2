"""ONNX Runtime's TensorRT execution provider: TensorRT engines built by ONNX Runtime.

ONNX Runtime hands the subgraphs TensorRT supports to TensorRT (the CUDA provider runs the rest)
and builds one engine per subgraph on the first run, which takes seconds to minutes; the engine and
timing caches in ``cache_dir()/"trt"`` make later sessions start fast. IO binding and CUDA graphs
work as in the CUDA engine (this runner is the CUDA runner with other providers).

The provider needs TensorRT's own libraries (``libnvinfer.so.10`` and ``libnvonnxparser.so.10`` for
the onnxruntime-gpu 1.2x/1.3x wheels): when they are missing ONNX Runtime would quietly run on
CUDA alone; this engine refuses instead and says which library could not be loaded.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from ...errors import CacheError, UsageError, install_hint
from ..model import Model
from ..paths import cache_dir
from ..shapes import parse_profiles
from .base import Availability
from .ort_cuda import OPT_LEVELS, OrtCudaOptions, OrtCudaRunner, model_precision, ort_cuda_version

__all__ = ["OrtTensorRTOptions", "OrtTensorRTRunner", "PRECISIONS", "trt_cache_dir", "trt_libraries",
           "probe_libraries"]

PRECISIONS = ("auto", "fp32", "fp16", "int8")


def trt_cache_dir() -> Path:
    """Where TensorRT engines and timing caches are kept: ``cache_dir()/"trt"``."""
    return cache_dir() / "trt"


@dataclass(frozen=True)
class OrtTensorRTOptions:
    """TensorRT provider options (the ``trt_*`` options of ONNX Runtime) and session options.

    Attributes:
        device_id: which GPU.
        precision: ``auto`` (int8 for QDQ models, fp16 for float16 models, else fp32), ``fp32``,
            ``fp16`` (``trt_fp16_enable``: TensorRT may pick float16 kernels) or ``int8``
            (``trt_int8_enable``: QDQ models; without Q/DQ nodes TensorRT needs a calibration table).
        engine_cache: keep built engines in ``cache_dir()/"trt"/"ort"`` (``trt_engine_cache_*``).
        timing_cache: keep TensorRT's layer timings in ``cache_dir()/"trt"`` (``trt_timing_cache_*``).
        builder_optimization_level: 0-5 (``trt_builder_optimization_level``; higher builds longer).
        workspace_bytes: TensorRT's workspace limit (``trt_max_workspace_size``; default: TensorRT's).
        profile_shapes: optimization profile, {input: (min, opt, max)} shapes
            (``trt_profile_min_shapes`` / ``_opt_`` / ``_max_``); default: built for the shapes seen.
        io_binding, cuda_graph, optimization_level, threads: as for the CUDA engine
            (``cuda_graph`` sets ``trt_cuda_graph_enable``).
        provider_options: extra TensorRT provider options, as (name, value) strings.
        config: extra ``SessionOptions.add_session_config_entry`` pairs.
    """

    device_id: int = 0
    precision: str = "auto"
    engine_cache: bool = True
    timing_cache: bool = True
    builder_optimization_level: int = 3
    workspace_bytes: int | None = None
    profile_shapes: tuple[tuple[str, tuple[int, ...], tuple[int, ...], tuple[int, ...]], ...] = \
        field(default_factory=tuple)
    io_binding: bool = True
    cuda_graph: bool = False
    optimization_level: str = "all"
    threads: int | None = None
    provider_options: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    config: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not isinstance(self.device_id, int) or self.device_id < 0:
            raise UsageError(f"device_id must be an integer >= 0, got {self.device_id!r}")
        if self.precision not in PRECISIONS:
            raise UsageError(f"unknown precision {self.precision!r}", f"use one of {', '.join(PRECISIONS)}")
        if not 0 <= self.builder_optimization_level <= 5:
            raise UsageError(f"builder_optimization_level must be 0-5, got {self.builder_optimization_level}")
        if self.workspace_bytes is not None and self.workspace_bytes < 1:
            raise UsageError(f"workspace_bytes must be positive, got {self.workspace_bytes}")
        if self.optimization_level not in OPT_LEVELS:
            raise UsageError(f"unknown optimization level {self.optimization_level!r}",
                             f"use one of {', '.join(OPT_LEVELS)}")
        if self.cuda_graph and not self.io_binding:
            raise UsageError("cuda_graph needs io_binding",
                             "a CUDA graph replays fixed device buffers: keep io_binding=True")
        object.__setattr__(self, "profile_shapes", parse_profiles(self.profile_shapes))
        object.__setattr__(self, "provider_options", tuple((str(k), str(v)) for k, v in (
            self.provider_options.items() if isinstance(self.provider_options, dict)
            else self.provider_options)))
        object.__setattr__(self, "config", tuple((str(k), str(v)) for k, v in (
            self.config.items() if isinstance(self.config, dict) else self.config)))

    def trt_provider_options(self, precision: str, cache: Path) -> dict[str, str]:
        """The provider's options for a model whose resolved precision is ``precision``."""
        opts = {
            "device_id": str(self.device_id),
            "trt_fp16_enable": "1" if precision in ("fp16", "int8") else "0",
            "trt_int8_enable": "1" if precision == "int8" else "0",
            "trt_builder_optimization_level": str(self.builder_optimization_level),
            "trt_cuda_graph_enable": "1" if self.cuda_graph else "0",
            "trt_engine_cache_enable": "1" if self.engine_cache else "0",
            "trt_timing_cache_enable": "1" if self.timing_cache else "0",
        }
        if self.engine_cache:
            opts["trt_engine_cache_path"] = str(cache / "ort")
        if self.timing_cache:
            opts["trt_timing_cache_path"] = str(cache)
        if self.workspace_bytes:
            opts["trt_max_workspace_size"] = str(self.workspace_bytes)
        if self.profile_shapes:
            for i, key in enumerate(("min", "opt", "max")):
                opts[f"trt_profile_{key}_shapes"] = ",".join(
                    f"{name}:{'x'.join(str(d) for d in shapes[i])}" for name, *shapes in self.profile_shapes)
        opts.update(dict(self.provider_options))
        return opts


def _ort_trt_provider_lib() -> Path | None:
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        return None
    lib = Path(next(iter(spec.submodule_search_locations))) / "capi" / "libonnxruntime_providers_tensorrt.so"
    return lib if lib.exists() else None


@lru_cache(maxsize=1)
def trt_libraries() -> tuple[str, ...]:
    """The TensorRT libraries this onnxruntime's TensorRT provider links against (by soname)."""
    lib = _ort_trt_provider_lib()
    names: list[str] = []
    if lib is not None:
        with contextlib.suppress(OSError):
            data = lib.read_bytes()
            for stem in (b"libnvinfer", b"libnvonnxparser"):
                m = re.search(re.escape(stem) + rb"\.so\.(\d+)", data)
                if m:
                    names.append(m.group(0).decode())
    return tuple(names) or ("libnvinfer.so.10", "libnvonnxparser.so.10")


def _load_tensorrt_libs() -> list[str]:
    """Make TensorRT's libraries loadable: the pip wheels keep them in ``tensorrt_libs/``, which
    is not on the loader's path until that package (or ``tensorrt``) is imported."""
    loaded = []
    for mod in ("tensorrt_libs", "tensorrt"):
        if importlib.util.find_spec(mod) is not None:
            with contextlib.suppress(Exception):
                __import__(mod)
                loaded.append(mod)
                break
    return loaded


def probe_libraries() -> Availability:
    """Whether the libraries the TensorRT provider needs load, naming the first that does not."""
    _load_tensorrt_libs()
    for name in trt_libraries():
        try:
            ctypes.CDLL(name)
        except OSError as e:
            major = name.rsplit(".", 1)[-1]
            cuda = (ort_cuda_version() or "13").split(".")[0]
            return Availability(False, f"TensorRT's {name} cannot be loaded ({e}): ONNX Runtime's "
                                       f"TensorRT provider needs TensorRT {major} for CUDA {cuda}: "
                                       f"{install_hint('tensorrt')}")
    return Availability(True, f"{', '.join(trt_libraries())} load")


class OrtTensorRTRunner(OrtCudaRunner):
    """Runs a model with ONNX Runtime's TensorRT provider (CUDA provider for the rest)."""

    engine = "ort-tensorrt"
    required_provider = "TensorrtExecutionProvider"
    multi_graph = False  # the TensorRT provider captures one CUDA graph per session

    def __init__(self, model: Model, options: OrtTensorRTOptions | None = None) -> None:
        self.trt_options = options or OrtTensorRTOptions()
        o = self.trt_options
        super().__init__(model, OrtCudaOptions(device_id=o.device_id, io_binding=o.io_binding,
                                               cuda_graph=False, optimization_level=o.optimization_level,
                                               threads=o.threads, config=o.config, preload_dlls=None))
        self.precision = self._resolve_precision(o.precision, model_precision(model.proto))
        self.cache = trt_cache_dir()

    @staticmethod
    def _resolve_precision(asked: str, model: str) -> str:
        if asked != "auto":
            return asked
        return {"int8-qdq": "int8", "fp16": "fp16"}.get(model, "fp32")

    @property
    def graph_capture(self) -> bool:
        return self.trt_options.cuda_graph

    def providers(self) -> list[Any]:
        return [("TensorrtExecutionProvider", self.trt_options.trt_provider_options(self.precision, self.cache)),
                ("CUDAExecutionProvider", {"device_id": str(self.trt_options.device_id)}),
                "CPUExecutionProvider"]

    def before_session(self) -> None:
        try:
            for d in (self.cache, self.cache / "ort"):
                d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CacheError(f"cannot create the TensorRT cache folder {self.cache}: {e}",
                             "set WORKBENCH_CACHE_DIR to a writable folder") from e
        self._loaded = _load_tensorrt_libs()

    def unavailable_hint(self) -> str:
        libs = probe_libraries()
        return (libs.reason if not libs else
                "TensorRT's libraries load, but ONNX Runtime could not start its TensorRT provider: "
                "check that the TensorRT major version matches the one onnxruntime-gpu was built for")

    @property
    def settings(self) -> dict[str, Any]:
        s = super().settings
        o = self.trt_options
        s.update({
            "precision": self.precision,
            "precision_asked": o.precision,
            "engine_cache": str(self.cache / "ort") if o.engine_cache else None,
            "timing_cache": str(self.cache) if o.timing_cache else None,
            "builder_optimization_level": o.builder_optimization_level,
            "workspace_bytes": o.workspace_bytes,
            "profile_shapes": {n: [list(a), list(b), list(c)] for n, a, b, c in o.profile_shapes} or None,
            "tensorrt_libraries": list(trt_libraries()),
        })
        for k in ("prefer_nhwc", "prefer_nhwc_note", "cudnn_conv_algo_search", "use_tf32", "cuda_graph_asked"):
            s.pop(k, None)  # CUDA-provider options; TensorRT decides layouts and kernels itself
        return s
