"""Native TensorRT: ONNX parser -> builder -> serialized engine -> runtime, with cuda-python buffers.

The build (seconds to minutes) happens once per model, options, TensorRT version and GPU: serialized
engines are kept in ``cache_dir()/"trt"/"engines"`` and TensorRT's layer timings in a timing cache
beside them, so a second build of a similar model is faster too.

Precision, the one thing that differs between TensorRT versions:

- **TensorRT 10** has builder flags: ``precision="fp16"`` sets ``BuilderFlag.FP16`` (TensorRT may
  pick float16 kernels), ``"int8"`` sets ``INT8`` (+``FP16``) and uses the model's Q/DQ nodes, or
  an entropy calibrator over ``calibration`` batches when there are none (weakly typed).
- **TensorRT 11** (and TensorRT-RTX) removed those flags: networks are strongly typed and the
  precision comes from the ONNX itself: build a float16 model with the ``fp16`` pass or an int8 QDQ
  model with ``int8 --device tensorrt`` first.
- ``precision="model"`` (the default) builds a strongly typed network on both: the model runs in
  the precision it was built in. ``settings["build_path"]`` records which path was taken.

Dynamic inputs get an optimization profile: ``batch_range=(min, opt, max)`` for the batch dimension
or ``profile_shapes`` per input; without them the engine is built on first use for the shapes seen.
``sparse_weights`` lets TensorRT use 2:4 sparse kernels for weights pruned that way (the
``prune-2:4`` pass). The engine inspector's per-layer information is in ``layer_information``.

``tensorrt`` and ``cuda-python`` are imported on first use; without them the engine is reported
unavailable (``workbench devices``) with the reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ...errors import CacheError, EngineRunError, EngineUnavailableError, UsageError, install_hint
from ..gpu import scan_gpus
from ..model import TWO_GB, Model, proto_size
from ..paths import atomic_write, cache_dir
from ..shapes import parse_profiles
from .base import Runner

__all__ = ["TensorRTOptions", "TensorRTRunner", "EngineBuild", "build_engine", "typing_mode",
           "import_tensorrt", "import_cudart", "PRECISIONS"]

PRECISIONS = ("model", "fp32", "fp16", "int8")
_INSTALL = f"{install_hint('tensorrt')}: tensorrt>=10 and cuda-python"


def import_tensorrt(module: str = "tensorrt") -> Any:
    """TensorRT's Python module, or a clear EngineUnavailableError."""
    try:
        return importlib.import_module(module)
    except (ImportError, OSError) as e:  # OSError: the wheel is there but its libraries are not
        raise EngineUnavailableError(f"TensorRT ({module}) cannot be imported: {e}", _INSTALL) from e


def import_cudart() -> Any:
    """cuda-python's CUDA runtime module (``cuda.bindings.runtime``, or the older ``cuda.cudart``)."""
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        with contextlib.suppress(ImportError):
            return importlib.import_module(name)
    raise EngineUnavailableError("cuda-python is not installed (no cuda.bindings.runtime)",
                                 install_hint("tensorrt"))


def typing_mode(trt: Any) -> str:
    """``weak`` where this TensorRT has precision builder flags (10.x), else ``strong`` (11.x, RTX)."""
    return "weak" if hasattr(trt.BuilderFlag, "FP16") else "strong"


def model_precision(proto: onnx.ModelProto) -> str:
    """``int8-qdq``, ``int8-qop``, ``fp16`` or ``fp32``: what the passes made of the model."""
    ops = {n.op_type for n in proto.graph.node}
    if ops & {"QuantizeLinear", "DequantizeLinear"}:
        return "int8-qdq"
    if ops & {"QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger", "DynamicQuantizeLinear"}:
        return "int8-qop"
    fp16 = onnx.TensorProto.FLOAT16
    if any(t.data_type == fp16 for t in proto.graph.initializer) or any(
            n.op_type == "Cast" and any(a.name == "to" and a.i == fp16 for a in n.attribute)
            for n in proto.graph.node):
        return "fp16"
    return "fp32"


Shape = tuple[int, ...]


@dataclass(frozen=True)
class TensorRTOptions:
    """How the engine is built and run.

    Attributes:
        device_id: which GPU.
        precision: ``model`` (strongly typed: as the ONNX is), ``fp32``, ``fp16`` or ``int8``
            (builder flags on TensorRT 10; on 11 only if the model already is that precision).
        batch_range: (min, opt, max) of the batch dimension for the optimization profile.
        profile_shapes: {input: (min, opt, max)} shapes; overrides ``batch_range`` for that input.
        builder_optimization_level: 0-5 (TensorRT's default is 3; higher searches longer).
        workspace_bytes: the builder's workspace memory pool limit (default: TensorRT's).
        sparse_weights: ``BuilderFlag.SPARSE_WEIGHTS`` (2:4 structured sparse kernels).
        engine_cache: reuse serialized engines from ``cache_dir()/"trt"/"engines"``.
        timing_cache: load and save TensorRT's timing cache in ``cache_dir()/"trt"``.
        detailed_profile: build with ``ProfilingVerbosity.DETAILED`` so the inspector can say
            each layer's kernel and precision.
        calibration: batches (dicts of input arrays) for INT8 calibration on TensorRT 10 when the
            model has no Q/DQ nodes.
        module: the TensorRT Python module (``tensorrt``; ``tensorrt_rtx_bindings`` builds with
            TensorRT-RTX, which cannot run on data-center GPUs).
        plan: a serialized engine to run instead of building one (an exported bundle's plan);
            it must come from the same TensorRT version and GPU.
    """

    device_id: int = 0
    precision: str = "model"
    batch_range: tuple[int, int, int] | None = None
    profile_shapes: tuple[tuple[str, Shape, Shape, Shape], ...] = field(default_factory=tuple)
    builder_optimization_level: int = 3
    workspace_bytes: int | None = None
    sparse_weights: bool = False
    engine_cache: bool = True
    timing_cache: bool = True
    detailed_profile: bool = True
    calibration: Any = field(default=None, compare=False, repr=False)
    module: str = "tensorrt"
    plan: bytes | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.device_id, int) or self.device_id < 0:
            raise UsageError(f"device_id must be an integer >= 0, got {self.device_id!r}")
        if self.precision not in PRECISIONS:
            raise UsageError(f"unknown precision {self.precision!r}", f"use one of {', '.join(PRECISIONS)}")
        if not 0 <= self.builder_optimization_level <= 5:
            raise UsageError(f"builder_optimization_level must be 0-5, got {self.builder_optimization_level}")
        if self.workspace_bytes is not None and self.workspace_bytes < 1:
            raise UsageError(f"workspace_bytes must be positive, got {self.workspace_bytes}")
        if self.batch_range is not None:
            try:
                lo, opt, hi = (int(b) for b in self.batch_range)
            except (TypeError, ValueError) as e:
                raise UsageError(f"batch_range must be (min, opt, max), got {self.batch_range!r}") from e
            if not 1 <= lo <= opt <= hi:
                raise UsageError(f"batch_range needs 1 <= min <= opt <= max, got {(lo, opt, hi)}")
            object.__setattr__(self, "batch_range", (lo, opt, hi))
        object.__setattr__(self, "profile_shapes", parse_profiles(self.profile_shapes))

    def key(self) -> dict[str, Any]:
        """What goes into the engine cache key (what changes the built engine)."""
        return {"precision": self.precision, "batch_range": self.batch_range,
                "profile_shapes": [[n, list(a), list(b), list(c)] for n, a, b, c in self.profile_shapes],
                "level": self.builder_optimization_level, "workspace": self.workspace_bytes,
                "sparse": self.sparse_weights, "detailed": self.detailed_profile, "module": self.module}


# ---------------------------------------------------------------------------------------------
# cuda-python helpers


def _cuda(cudart: Any, result: Any, what: str) -> Any:
    """Unpack a cuda-python ``(err, *values)`` result, raising a clear error on failure."""
    err, *rest = result if isinstance(result, tuple) else (result,)
    if err != cudart.cudaError_t.cudaSuccess:
        try:
            name = cudart.cudaGetErrorName(err)[1].decode()
            text = cudart.cudaGetErrorString(err)[1].decode()
        except Exception:  # noqa: BLE001 - the error itself is what matters
            name, text = str(err), ""
        raise EngineRunError(f"CUDA {what} failed: {name} {text}".strip(),
                             "out of GPU memory? use a smaller batch" if "Memory" in name
                             else "see `workbench devices`")
    if not rest:
        return None
    return rest[0] if len(rest) == 1 else tuple(rest)


class DeviceBuffer:
    """A cudaMalloc'ed buffer that grows on demand."""

    def __init__(self, cudart: Any, nbytes: int = 0) -> None:
        self.cudart = cudart
        self.ptr = 0
        self.capacity = 0
        if nbytes:
            self.reserve(nbytes)

    def reserve(self, nbytes: int) -> int:
        if nbytes > self.capacity:
            self.free()
            self.ptr = int(_cuda(self.cudart, self.cudart.cudaMalloc(max(nbytes, 256)), f"cudaMalloc({nbytes})"))
            self.capacity = max(nbytes, 256)
        return self.ptr

    def upload(self, arr: np.ndarray, stream: Any) -> None:
        arr = np.ascontiguousarray(arr)
        self.reserve(arr.nbytes)
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        _cuda(self.cudart, self.cudart.cudaMemcpyAsync(self.ptr, arr.ctypes.data, arr.nbytes, kind, stream),
              "host-to-device copy")

    def download(self, out: np.ndarray, stream: Any) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _cuda(self.cudart, self.cudart.cudaMemcpyAsync(out.ctypes.data, self.ptr, out.nbytes, kind, stream),
              "device-to-host copy")

    def free(self) -> None:
        if self.ptr:
            with contextlib.suppress(Exception):
                self.cudart.cudaFree(self.ptr)
        self.ptr, self.capacity = 0, 0


# ---------------------------------------------------------------------------------------------
# building


class NeedShapes(EngineRunError):
    """The model has dynamic inputs and nothing says which shapes to build for."""


@dataclass
class EngineBuild:
    """A serialized engine and how it was made."""

    plan: bytes
    info: dict[str, Any]


def _logger(trt: Any) -> Any:
    class _Log(trt.ILogger):  # the documented way: subclass ILogger, call its __init__
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []
            self.warnings: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            sev = trt.ILogger.Severity
            if severity in (sev.INTERNAL_ERROR, sev.ERROR):
                self.errors.append(msg)
            elif severity == sev.WARNING:
                self.warnings.append(msg)

    return _Log()


def _plan_precision(trt: Any, asked: str, model_prec: str, model_name: str) -> tuple[bool, list[str], str]:
    """(strongly typed network?, builder flags, description of the path taken)."""
    ver = getattr(trt, "__version__", "?")
    mode = typing_mode(trt)
    if asked == "model":
        return True, [], f"strongly typed: precision from the ONNX ({model_prec}), TensorRT {ver}"
    if mode == "strong":
        wanted = {"fp32": ("fp32",), "fp16": ("fp16",), "int8": ("int8-qdq",)}[asked]
        if model_prec not in wanted:
            raise UsageError(
                f"TensorRT {ver} is strongly typed: it has no {asked} builder flag, and {model_name} "
                f"is {model_prec}",
                "build the precision into the model first (`workbench optimize MODEL fp16`, or "
                "`int8 --device tensorrt` for QDQ), then use precision='model'")
        return True, [], f"strongly typed (TensorRT {ver} has no precision flags): {model_prec} model"
    flags = {"fp32": [], "fp16": ["FP16"], "int8": ["INT8", "FP16"]}[asked]
    return False, flags, f"weakly typed: builder flags {flags or 'none'} (TensorRT {ver})"


def _profile_for(network: Any, options: TensorRTOptions, shapes: dict[str, Shape] | None
                 ) -> dict[str, tuple[Shape, Shape, Shape]] | None:
    """Min/opt/max for every dynamic input, or None when shapes must come from the first feeds."""
    given = {n: (a, b, c) for n, a, b, c in options.profile_shapes}
    out: dict[str, tuple[Shape, Shape, Shape]] = {}
    for i in range(network.num_inputs):
        t = network.get_input(i)
        dims = tuple(int(d) for d in t.shape)
        if all(d >= 0 for d in dims):
            continue
        if t.name in given:
            out[t.name] = given[t.name]
            continue
        seen = (shapes or {}).get(t.name)
        br = options.batch_range
        if seen is None:
            if br is None or any(d < 0 for d in dims[1:]):
                return None  # need the first feeds
            seen = (br[1], *dims[1:])
        if len(seen) != len(dims):
            raise EngineRunError(f"input {t.name!r} has rank {len(dims)}, the feed has shape {list(seen)}")
        base = tuple(s if d < 0 else d for s, d in zip(seen, dims))
        lo, opt, hi = list(base), list(base), list(base)
        if dims[0] < 0 and len(dims) > 1:
            b = base[0]
            lo[0], opt[0], hi[0] = (br if br else (1, b, b))
            opt[0], hi[0] = max(opt[0], lo[0]), max(hi[0], opt[0], lo[0])
        out[t.name] = (tuple(lo), tuple(opt), tuple(hi))
    return out


def _make_calibrator(trt: Any, cudart: Any, batches: Iterable[dict[str, np.ndarray]], stream: Any) -> Any:
    """An entropy calibrator (TensorRT 10) that feeds ``batches`` through cuda-python buffers."""
    rest = iter(batches)
    head = next(rest, None)
    if head is None:
        raise UsageError("calibration has no batches")
    first: dict[str, np.ndarray] = head

    class _Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.pending = [first]
            self.rest = rest
            self.bufs: dict[str, DeviceBuffer] = {}
            self.batch = int(len(next(iter(first.values()))))
            self.seen = 0

        def get_batch_size(self) -> int:
            return self.batch

        def get_batch(self, names: list[str]) -> list[int] | None:
            feeds = self.pending.pop() if self.pending else next(self.rest, None)
            if feeds is None:
                return None
            ptrs = []
            for n in names:
                buf = self.bufs.setdefault(n, DeviceBuffer(cudart))
                buf.upload(np.asarray(feeds[n]), stream)
                ptrs.append(buf.ptr)
            _cuda(cudart, cudart.cudaStreamSynchronize(stream), "calibration copy")
            self.seen += 1
            return ptrs

        def read_calibration_cache(self) -> None:
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            return None

    return _Calibrator()


def _gpu_key(device_id: int) -> tuple[str, str]:
    gpus = scan_gpus().gpus
    g = gpus[device_id] if device_id < len(gpus) else None
    return (g.name, g.compute_capability) if g else ("unknown-gpu", "0.0")


def build_engine(model: Model, options: TensorRTOptions | None = None,
                 shapes: dict[str, Shape] | None = None, *, trt: Any = None,
                 calibrator: Any = None) -> EngineBuild:
    """Parse ``model`` with TensorRT's ONNX parser and build a serialized engine.

    ``shapes`` (input name -> shape) fill in the optimization profile for dynamic inputs that the
    options do not cover. Needs no CUDA buffers, so it also checks that a model builds.
    """
    o = options or TensorRTOptions()
    trt = trt or import_tensorrt(o.module)
    ver = getattr(trt, "__version__", "?")
    log = _logger(trt)
    notes: list[str] = []
    t0 = time.perf_counter()
    mprec = model_precision(model.proto)
    strong, flags, path = _plan_precision(trt, o.precision, mprec, model.name)

    builder = trt.Builder(log)
    creation = 0
    flag_enum = getattr(trt, "NetworkDefinitionCreationFlag", None)
    if strong and typing_mode(trt) == "weak" and flag_enum is not None and hasattr(flag_enum, "STRONGLY_TYPED"):
        creation |= 1 << int(flag_enum.STRONGLY_TYPED)  # TensorRT 10: opt in; 11: always on
    network = builder.create_network(creation)
    parser = trt.OnnxParser(network, log)
    big = proto_size(model.proto) > TWO_GB and model.path is not None
    ok = parser.parse_from_file(str(model.path)) if big else parser.parse(model.proto.SerializeToString())
    if not ok:
        errs = []
        for i in range(parser.num_errors):
            e = parser.get_error(i)
            where = ""
            with contextlib.suppress(Exception):
                where = f"node {e.node_name() or e.node()} ({e.node_operator()}): "
            desc = e.desc() if hasattr(e, "desc") else str(e)
            errs.append(f"{where}{desc}")
        hint = ("TensorRT takes QDQ int8 models: build with `int8 --device tensorrt`" if mprec == "int8-qop"
                else "check the operators with `workbench info`; TensorRT's ONNX parser may not support one")
        raise EngineRunError(f"TensorRT {ver} could not parse {model.name}: "
                             + ("; ".join(errs[:3]) or "; ".join(log.errors[:3]) or "no reason given"), hint)

    config = builder.create_builder_config()
    if o.workspace_bytes:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(o.workspace_bytes))
    if hasattr(config, "builder_optimization_level"):
        config.builder_optimization_level = o.builder_optimization_level
    else:
        notes.append("builder_optimization_level: not in this TensorRT")
    if o.detailed_profile and hasattr(trt, "ProfilingVerbosity"):
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    for f in flags:
        config.set_flag(getattr(trt.BuilderFlag, f))
    if o.sparse_weights:
        if hasattr(trt.BuilderFlag, "SPARSE_WEIGHTS"):
            config.set_flag(trt.BuilderFlag.SPARSE_WEIGHTS)
            flags = [*flags, "SPARSE_WEIGHTS"]
        else:
            notes.append("sparse_weights: no SPARSE_WEIGHTS flag in this TensorRT")

    profile_shapes = _profile_for(network, o, shapes)
    if profile_shapes is None:
        raise NeedShapes(f"{model.name} has dynamic inputs and no shapes to build for",
                             "give batch_range=(min, opt, max) or profile_shapes, or run it once first")
    if profile_shapes:
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in profile_shapes.items():
            profile.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(profile)

    if "INT8" in flags and mprec != "int8-qdq":
        if calibrator is None:
            raise UsageError(f"int8 on TensorRT {ver} needs Q/DQ nodes in {model.name} or calibration data",
                             "build with `int8 --device tensorrt` first, or pass calibration=[feeds, ...]")
        config.int8_calibrator = calibrator
        if profile_shapes and hasattr(config, "set_calibration_profile"):
            config.set_calibration_profile(profile)
        path += ", calibrated (IInt8EntropyCalibrator2)"
    elif "INT8" in flags:
        path += ", explicit quantization from the Q/DQ nodes"

    timing_file, timing_hit = None, False
    rtx = "rtx" in o.module  # TensorRT-RTX: timing cache calls are deprecated no-ops there
    if o.timing_cache and rtx:
        notes.append("timing cache: TensorRT-RTX has none (its calls are no-ops)")
    elif o.timing_cache and hasattr(config, "create_timing_cache"):
        name, cc = _gpu_key(o.device_id)
        slug = "".join(ch if ch.isalnum() else "-" for ch in f"{o.module}-{ver}-{name}-sm{cc}")
        timing_file = cache_dir() / "trt" / f"timing-{slug}.cache"
        blob = b""
        with contextlib.suppress(OSError):
            blob = timing_file.read_bytes()
        timing_hit = bool(blob)
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, False)
    elif o.timing_cache:
        notes.append("timing cache: not in this TensorRT")

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineRunError(f"TensorRT {ver} could not build {model.name}: "
                             + ("; ".join(log.errors[:3]) or "no reason given"),
                             "try precision='model', a larger workspace_bytes, or another profile")
    if timing_file is not None:
        try:
            atomic_write(timing_file, memoryview(config.get_timing_cache().serialize()))
        except OSError as e:
            notes.append(f"timing cache not saved: {e}")
    info = {
        "tensorrt": ver, "module": o.module, "typing": "strong" if strong else "weak",
        "build_path": path, "builder_flags": flags,
        "model_precision": mprec, "precision": o.precision,
        "profile": {n: [list(a), list(b), list(c)] for n, (a, b, c) in profile_shapes.items()} or None,
        "builder_optimization_level": o.builder_optimization_level, "workspace_bytes": o.workspace_bytes,
        "timing_cache": str(timing_file) if timing_file else None, "timing_cache_hit": timing_hit,
        "build_s": round(time.perf_counter() - t0, 2), "warnings": log.warnings[:5], "notes": notes,
    }
    return EngineBuild(bytes(memoryview(plan)), info)


def summarize_layers(text: str) -> dict[str, Any]:
    """Layer count, layer types and tensor formats from the engine inspector's JSON."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        return {"layers": None}
    layers = data.get("Layers", []) if isinstance(data, dict) else []
    types: Counter[str] = Counter()
    formats: Counter[str] = Counter()
    for layer in layers:
        if not isinstance(layer, dict):
            continue
        types[str(layer.get("LayerType", "?"))] += 1
        for out in layer.get("Outputs", []) or []:
            if isinstance(out, dict):
                fmt = out.get("Format/Datatype") or out.get("DataType") or out.get("Datatype")
                if fmt:
                    formats[str(fmt).split(" ")[0]] += 1
    return {"layers": len(layers), "layer_types": dict(types.most_common(8)),
            "output_formats": dict(formats.most_common(6))}


# ---------------------------------------------------------------------------------------------
# the runner


class TensorRTRunner(Runner):
    """Builds (or loads from the cache) a TensorRT engine and runs it with cuda-python buffers."""

    engine = "tensorrt"

    def __init__(self, model: Model, options: TensorRTOptions | None = None) -> None:
        super().__init__()
        self.model = model
        self.options = options or TensorRTOptions()
        self.device = f"cuda:{self.options.device_id}"
        self.trt: Any = None
        self.cudart: Any = None
        self.stream: Any = None
        self.trt_engine: Any = None
        self.context: Any = None
        self.build_info: dict[str, Any] = {}
        self.layer_information: str | None = None
        self._layers: dict[str, Any] = {}
        self._log: Any = None
        self._runtime: Any = None
        self._bufs: dict[str, DeviceBuffer] = {}
        self._io: list[tuple[str, bool, np.dtype]] = []

    @property
    def settings(self) -> dict[str, Any]:
        o = self.options
        s: dict[str, Any] = {
            "device_id": o.device_id, "gpu": _gpu_key(o.device_id)[0], "precision": o.precision,
            "batch_range": o.batch_range, "builder_optimization_level": o.builder_optimization_level,
            "workspace_bytes": o.workspace_bytes, "sparse_weights": o.sparse_weights,
            "engine_cache": o.engine_cache, "timing_cache": o.timing_cache, "module": o.module,
            "threads": None,
        }
        s.update(self.build_info)
        if self._layers:
            s["layer_summary"] = self._layers
        return s

    def activate_impl(self) -> None:
        o = self.options
        self.trt = import_tensorrt(o.module)
        self.cudart = import_cudart()
        gpus = scan_gpus().gpus
        if o.device_id >= len(gpus):
            have = ", ".join(f"{g.index}: {g.name}" for g in gpus) or scan_gpus().reason
            raise EngineUnavailableError(f"tensorrt: there is no CUDA device {o.device_id}; this machine "
                                         f"has {len(gpus)} GPU(s) ({have})", "see `workbench devices`")
        _cuda(self.cudart, self.cudart.cudaSetDevice(o.device_id), f"cudaSetDevice({o.device_id})")
        self.stream = _cuda(self.cudart, self.cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._log = _logger(self.trt)
        with contextlib.suppress(NeedShapes):  # dynamic inputs, no profile given: built on first use
            self._load(None)

    def deactivate_impl(self) -> None:
        for b in self._bufs.values():
            b.free()
        self._bufs.clear()
        self.context = self.trt_engine = self._runtime = None
        if self.stream is not None and self.cudart is not None:
            with contextlib.suppress(Exception):
                self.cudart.cudaStreamDestroy(self.stream)
        self.stream = None

    def _cache_path(self, shapes: dict[str, Shape] | None) -> Path:
        name, cc = _gpu_key(self.options.device_id)
        trt_ver = getattr(self.trt, "__version__", "?")
        key = json.dumps({"model": self.model.fingerprint, "trt": trt_ver, "gpu": name, "cc": cc,
                          "options": self.options.key(),
                          "shapes": {k: list(v) for k, v in sorted((shapes or {}).items())}}, sort_keys=True)
        return cache_dir() / "trt" / "engines" / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".engine")

    def _load(self, shapes: dict[str, Shape] | None) -> None:
        """Build (or load) the engine, deserialize it and make an execution context."""
        trt, o = self.trt, self.options
        path = self._cache_path(shapes)
        plan = o.plan
        if plan is not None:
            self.build_info = {"plan_given": True, "engine_cache_hit": False}
        elif o.engine_cache and path.exists():
            with contextlib.suppress(OSError, ValueError):
                plan = path.read_bytes()
                self.build_info = {**json.loads(path.with_suffix(".json").read_text()), "engine_cache_hit": True}
        if plan is None:
            calibrator = None
            if o.precision == "int8" and typing_mode(trt) == "weak" and o.calibration is not None \
                    and model_precision(self.model.proto) != "int8-qdq":
                calibrator = _make_calibrator(trt, self.cudart, o.calibration, self.stream)
            built = build_engine(self.model, o, shapes, trt=trt, calibrator=calibrator)
            plan, self.build_info = built.plan, {**built.info, "engine_cache_hit": False}
            if o.engine_cache:
                try:
                    atomic_write(path, plan)
                    atomic_write(path.with_suffix(".json"), json.dumps(built.info, indent=2).encode())
                except OSError as e:
                    raise CacheError(f"cannot write the TensorRT engine cache {path.parent}: {e}",
                                     "set WORKBENCH_CACHE_DIR to a writable folder, or engine_cache=False") from e
        self.build_info["engine_file"] = str(path) if o.engine_cache and o.plan is None else None
        self._runtime = trt.Runtime(self._log)
        self.trt_engine = self._runtime.deserialize_cuda_engine(plan)
        if self.trt_engine is None:
            raise EngineRunError(f"TensorRT {getattr(trt, '__version__', '?')} could not load the engine for "
                                 f"{self.model.name} on {self.device}: "
                                 + ("; ".join(self._log.errors[-3:]) or "no reason given"),
                                 "this TensorRT build may not support this GPU")
        self.context = self.trt_engine.create_execution_context()
        self._io = []
        for i in range(self.trt_engine.num_io_tensors):
            name = self.trt_engine.get_tensor_name(i)
            is_in = self.trt_engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            self._io.append((name, is_in, np.dtype(trt.nptype(self.trt_engine.get_tensor_dtype(name)))))
        self._inspect()

    def _inspect(self) -> None:
        trt = self.trt
        try:
            inspector = self.trt_engine.create_engine_inspector()
            with contextlib.suppress(Exception):
                inspector.execution_context = self.context
            self.layer_information = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
            self._layers = summarize_layers(self.layer_information)
        except Exception as e:  # noqa: BLE001 - layer information is optional
            self._layers = {"layers": None, "note": f"engine inspector unavailable: {e}"}

    def _bind(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Set shapes, upload inputs, bind every tensor address; returns empty output arrays."""
        inputs = [(n, dt) for n, is_in, dt in self._io if is_in]
        missing = [n for n, _ in inputs if n not in feeds]
        if missing:
            raise EngineRunError(f"no value for model input {missing[0]!r}",
                                 f"set it with --input {missing[0]}=VALUE or --shape {missing[0]}=DIMS")
        if self.trt_engine is None:
            self._load({n: tuple(np.shape(feeds[n])) for n, _ in inputs})
            inputs = [(n, dt) for n, is_in, dt in self._io if is_in]
        outs = {}
        for name, dt in inputs:
            arr = np.asarray(feeds[name])
            if arr.dtype != dt:
                if arr.dtype.kind != dt.kind and not (arr.dtype.kind in "iu" and dt.kind in "iu"):
                    raise EngineRunError(f"input {name!r} is {arr.dtype}, the engine takes {dt}")
                arr = arr.astype(dt)
            if not self.context.set_input_shape(name, tuple(arr.shape)):
                prof = (self.build_info.get("profile") or {}).get(name)
                raise EngineRunError(
                    f"input {name!r} shape {list(arr.shape)} is outside the engine's profile"
                    + (f" (min {prof[0]}, max {prof[2]})" if prof else ""),
                    "build with batch_range=(min, opt, max) or profile_shapes covering it")
            buf = self._bufs.setdefault(name, DeviceBuffer(self.cudart))
            buf.upload(arr, self.stream)
            self.context.set_tensor_address(name, buf.ptr)
        for name, is_in, dt in self._io:
            if is_in:
                continue
            shape = tuple(self.context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise EngineRunError(f"output {name!r} has a data-dependent shape {list(shape)}",
                                     "this runner needs output shapes known from the input shapes")
            out = np.empty(shape, dtype=dt)
            buf = self._bufs.setdefault(name, DeviceBuffer(self.cudart))
            self.context.set_tensor_address(name, buf.reserve(out.nbytes))
            outs[name] = out
        return outs

    def _execute(self) -> None:
        if not self.context.execute_async_v3(int(self.stream)):
            raise EngineRunError(f"TensorRT failed to run {self.model.name}: "
                                 + ("; ".join(self._log.errors[-3:]) or "no reason given"))

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = self._bind(feeds)
        self._execute()
        for name, out in outs.items():
            self._bufs[name].download(out, self.stream)
        _cuda(self.cudart, self.cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        return outs

    def prepare_impl(self, feeds: dict[str, np.ndarray]) -> Callable[[], Any]:
        self.infer_impl(feeds)  # builds if needed and fails here rather than in a timing loop
        self._bind(feeds)
        cudart, stream, execute = self.cudart, self.stream, self._execute

        def run() -> None:  # device-resident inputs and outputs: the engine alone, synchronized
            execute()
            _cuda(cudart, cudart.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

        return run
