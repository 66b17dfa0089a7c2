"""ONNX Runtime on NVIDIA GPUs (CUDA execution provider).

What matters for speed on a GPU, and what this engine does about it:

- **IO binding** (default on): inputs are copied to the GPU once and outputs are written to
  buffers allocated there, so ``prepare()``'s timing loop runs on device-resident data and
  measures the model, not PCIe copies (NumPy in / NumPy out costs 1.5-3x more at large batch).
  ``infer()`` still takes and returns NumPy arrays.
- **CUDA graphs** (``cuda_graph``): ONNX Runtime captures the whole run once and replays it with
  one launch, which removes the per-kernel launch cost that dominates small batches. Needs every
  node on the GPU and fixed shapes; each new input shape gets its own captured graph.
- **NHWC** (``prefer_nhwc``): convolutions run in channels-last layout, which tensor-core kernels
  prefer, especially in float16.
- **cuDNN algorithm search** (``cudnn_conv_algo_search``): ``EXHAUSTIVE`` benchmarks every
  convolution algorithm at session creation (slower start, fastest kernels), ``HEURISTIC`` asks
  cuDNN's heuristics, ``DEFAULT`` takes the default algorithm.
- **FP16 / QDQ models** from the ``fp16`` and ``int8`` passes run as built: ONNX Runtime picks
  float16 kernels for float16 nodes; quantized nodes without CUDA kernels fall back to the CPU
  (``settings["ort_warnings"]`` says so).

``settings`` reports what ONNX Runtime actually resolved (its provider options, the providers the
session really got, the GPU) rather than what was asked for.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from ...errors import EngineRunError, EngineUnavailableError, UsageError, install_hint
from ..gpu import scan_gpus
from ..model import TWO_GB, Model, proto_size
from .base import Runner

__all__ = ["OrtCudaOptions", "OrtCudaRunner", "CudaGraphUnsupported", "CONV_ALGO_SEARCH", "model_precision",
           "ort_cuda_version"]

CONV_ALGO_SEARCH = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")
OPT_LEVELS = {
    "disabled": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}
_SKIP_CAPTURE = "-1"  # ONNX Runtime's gpu_graph_id that runs without capturing a CUDA graph
_QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}
_QOP_OPS = {"QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger", "DynamicQuantizeLinear",
            "QLinearAdd", "QLinearMul", "QGemm"}


def model_precision(proto: onnx.ModelProto) -> str:
    """``int8-qdq``, ``int8-qop``, ``fp16`` or ``fp32``: what the passes made of the model."""
    ops = {n.op_type for n in proto.graph.node}
    if ops & _QDQ_OPS:
        return "int8-qdq"
    if ops & _QOP_OPS:
        return "int8-qop"
    fp16 = onnx.TensorProto.FLOAT16
    if any(t.data_type == fp16 for t in proto.graph.initializer) or any(
            n.op_type == "Cast" and any(a.name == "to" and a.i == fp16 for a in n.attribute)
            for n in proto.graph.node):
        return "fp16"
    return "fp32"


@dataclass(frozen=True)
class OrtCudaOptions:
    """Session and CUDA provider options.

    Attributes:
        device_id: which GPU (``cuda:N`` on the command line).
        io_binding: device-resident inputs and outputs (IO binding); off = NumPy in, NumPy out.
        cuda_graph: capture the run in a CUDA graph and replay it (needs ``io_binding``).
            ``None`` (default): on where ONNX Runtime accepts the model as it is, else off, and
            ``settings["cuda_graph_note"]`` says why; ``True``: required, and a model whose dynamic
            dimensions keep shape computations on the CPU gets one session per input shape with
            those dimensions fixed; ``False``: off.
        prefer_nhwc: channels-last convolutions (the CUDA provider's ``prefer_nhwc``). ``None``
            (default): on, 1.2-1.4x on ResNet-50 on an H100 in float32 and float16 alike, except
            for Q/DQ (int8) models: ONNX Runtime 1.31's NHWC rewrite breaks their convolutions
            ("Input channels C is not equal to kernel channels * group", seen on an H100), so
            they run NCHW and ``settings["prefer_nhwc_note"]`` says so.
        cudnn_conv_algo_search: ``EXHAUSTIVE``, ``HEURISTIC`` or ``DEFAULT``.
        use_tf32: allow TF32 tensor-core math for float32 convolutions and matmuls.
        optimization_level: ONNX Runtime graph optimization level.
        threads: intra-op threads for nodes that fall back to the CPU.
        gpu_mem_limit: cap on the provider's memory arena, in bytes.
        provider_options: extra CUDA provider options, as (name, value) strings.
        config: extra ``SessionOptions.add_session_config_entry`` pairs.
        preload_dlls: ``onnxruntime.preload_dlls()`` before creating the session (CUDA and cuDNN
            from NVIDIA's pip packages); ``None`` = only if the first try cannot start the provider.
        optimized_model_path: where ONNX Runtime writes the graph it optimized, if set.
        profile_prefix: turn on ONNX Runtime's profiler, writing its JSON trace to this prefix.
    """

    device_id: int = 0
    io_binding: bool = True
    cuda_graph: bool | None = None
    prefer_nhwc: bool | None = None
    cudnn_conv_algo_search: str = "EXHAUSTIVE"
    use_tf32: bool = True
    optimization_level: str = "all"
    threads: int | None = None
    gpu_mem_limit: int | None = None
    provider_options: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    config: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    preload_dlls: bool | None = None
    optimized_model_path: str | None = None
    profile_prefix: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.device_id, int) or self.device_id < 0:
            raise UsageError(f"device_id must be an integer >= 0, got {self.device_id!r}")
        algo = str(self.cudnn_conv_algo_search).upper()
        if algo not in CONV_ALGO_SEARCH:
            raise UsageError(f"unknown cudnn_conv_algo_search {self.cudnn_conv_algo_search!r}",
                             f"use one of {', '.join(CONV_ALGO_SEARCH)}")
        object.__setattr__(self, "cudnn_conv_algo_search", algo)
        if self.optimization_level not in OPT_LEVELS:
            raise UsageError(f"unknown optimization level {self.optimization_level!r}",
                             f"use one of {', '.join(OPT_LEVELS)}")
        if self.cuda_graph is True and not self.io_binding:
            raise UsageError("cuda_graph needs io_binding",
                             "a CUDA graph replays fixed device buffers: keep io_binding=True")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"threads must be >= 1, got {self.threads}")
        if self.gpu_mem_limit is not None and self.gpu_mem_limit < 1:
            raise UsageError(f"gpu_mem_limit must be a positive byte count, got {self.gpu_mem_limit}")
        object.__setattr__(self, "provider_options", _pairs(self.provider_options, "provider_options"))
        object.__setattr__(self, "config", _pairs(self.config, "config"))

    def cuda_provider_options(self) -> dict[str, str]:
        """The CUDA execution provider's options, as ONNX Runtime takes them (strings)."""
        opts = {
            "device_id": str(self.device_id),
            "cudnn_conv_algo_search": self.cudnn_conv_algo_search,
            "prefer_nhwc": "0" if self.prefer_nhwc is False else "1",
            "enable_cuda_graph": "1" if self.cuda_graph is not False and self.io_binding else "0",
            "use_tf32": "1" if self.use_tf32 else "0",
        }
        if self.gpu_mem_limit:
            opts["gpu_mem_limit"] = str(self.gpu_mem_limit)
        opts.update(dict(self.provider_options))
        return opts


def _pairs(value: Any, what: str) -> tuple[tuple[str, str], ...]:
    items = value.items() if isinstance(value, dict) else value
    try:
        return tuple((str(k), str(v)) for k, v in items)
    except (TypeError, ValueError) as e:
        raise UsageError(f"{what} must be (name, value) pairs or a dict, got {value!r}") from e


@contextlib.contextmanager
def _captured_fd2() -> Iterator[list[str]]:
    """Collect what native code writes to file descriptor 2 (ONNX Runtime's log goes there)."""
    lines: list[str] = []
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 at all: nothing to capture
        yield lines
        return
    with tempfile.TemporaryFile() as tmp:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(tmp.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = re.sub(r"\x1b\[[0-9;]*m", "", tmp.read().decode(errors="replace"))
            lines.extend(s.strip() for s in text.splitlines() if s.strip())


def _clean(line: str) -> str:
    """An ONNX Runtime log line without its timestamp and source-location prefix."""
    return re.sub(r"^.*?\[[WEIV]:onnxruntime:[^\]]*\]\s*", "", line)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class CudaGraphUnsupported(EngineRunError):
    """ONNX Runtime refused to capture a CUDA graph: some nodes are not on the GPU."""


@dataclass
class _Bound:
    """Device buffers bound to one input signature: inputs updated in place, outputs fixed."""

    session: Any
    binding: Any
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    run_options: Any
    graph_id: int | None


_NOISE = ("No registered plugin EP device found",)
_MAX_AUTO_GRAPHS = 8  # ONNX Runtime 1.31 logs it for every session


class OrtCudaRunner(Runner):
    """Runs a model with ONNX Runtime's CUDA execution provider."""

    engine = "ort-cuda"
    required_provider = "CUDAExecutionProvider"
    ort_device = "cuda"  # where IO-bound buffers live
    multi_graph = True  # one captured CUDA graph per input signature (gpu_graph_id)

    def __init__(self, model: Model, options: OrtCudaOptions | None = None) -> None:
        super().__init__()
        self.model = model
        self.options = options or OrtCudaOptions()
        self.device = f"cuda:{self.options.device_id}"
        self.session: Any = None
        self._ort: Any = None
        self._run_options: Any = None
        self._bound: dict[tuple, _Bound] = {}
        self._warnings: list[str] = []
        self._resolved: dict[str, Any] = {}
        self._preloaded = False
        self._per_shape = False  # CUDA graphs with one session per input shape (dimensions fixed)
        self._graph = self.options.cuda_graph is not False and self.options.io_binding
        self._graph_note: str | None = None
        self._precision = model_precision(model.proto)
        self._nhwc = self.options.prefer_nhwc is not False
        self._nhwc_note: str | None = None
        if self.options.prefer_nhwc is None and self._precision == "int8-qdq":
            self._nhwc = False
            self._nhwc_note = ("NCHW for this Q/DQ model: ONNX Runtime's NHWC rewrite breaks Q/DQ "
                               "convolutions (set prefer_nhwc=True to try it anyway)")
        graph = model.proto.graph
        init = {i.name for i in graph.initializer}
        self._inputs = [i for i in graph.input if i.name not in init]
        self._output_names = [o.name for o in graph.output]

    # -- what this engine asks ONNX Runtime for; the TensorRT provider runner overrides these --

    @property
    def graph_capture(self) -> bool:
        return self._graph

    def providers(self) -> list[Any]:
        cuda = self.options.cuda_provider_options()
        cuda["enable_cuda_graph"] = "1" if self.graph_capture else "0"
        cuda["prefer_nhwc"] = "1" if self._nhwc else "0"
        return [("CUDAExecutionProvider", cuda), "CPUExecutionProvider"]

    def before_session(self) -> None:
        """Hook run before the session is created (the TensorRT runner loads TensorRT there)."""

    def unavailable_hint(self) -> str:
        ver = getattr(self._ort, "__version__", "?")
        cuda = ort_cuda_version()
        return (f"onnxruntime-gpu {ver} needs CUDA {cuda or '12/13'} and cuDNN 9 libraries it can load: "
                f"{install_hint('gpu-libs')} (it brings them as wheels), or `import torch` first, or pass "
                "preload_dlls=True; see `workbench devices`")

    # -- runner contract --

    @property
    def settings(self) -> dict[str, Any]:
        o = self.options
        s: dict[str, Any] = {
            "device_id": o.device_id,
            "gpu": _gpu_name(o.device_id),
            "io_binding": o.io_binding,
            "cuda_graph": self.graph_capture,
            "cuda_graph_asked": {None: "auto", True: "yes", False: "no"}[o.cuda_graph],
            "prefer_nhwc": self._nhwc,
            "cudnn_conv_algo_search": o.cudnn_conv_algo_search,
            "use_tf32": o.use_tf32,
            "optimization_level": o.optimization_level,
            "threads": o.threads,
            "model_precision": self._precision,
            "requested_providers": [p[0] if isinstance(p, tuple) else p for p in self.providers()],
        }
        s.update(self._resolved)  # what ONNX Runtime made of it (kept after deactivate, for reports)
        if self._graph_note:
            s["cuda_graph_note"] = self._graph_note
        if self._nhwc_note:
            s["prefer_nhwc_note"] = self._nhwc_note
        if self._per_shape:
            s["cuda_graph_sessions"] = ("one per input shape: ONNX Runtime runs the model's shape "
                                        "computations on the CPU unless its dimensions are fixed")
        if self._warnings:
            s["ort_warnings"] = self._warnings[:12]
        if self._preloaded:
            s["preload_dlls"] = True
        return s

    def activate_impl(self) -> None:
        import onnxruntime as ort  # noqa: PLC0415

        self._ort = ort
        self._check_device()
        self.before_session()
        preload = self.options.preload_dlls
        if preload:
            self._preload()
        try:
            self.session, lines = self._create_session()
        except CudaGraphUnsupported as e:
            if self.options.cuda_graph is None:  # auto: run without, and say why
                self._graph = False
                why = ("not every node is on the GPU (shape computations on dynamic dimensions, or "
                       "operators without CUDA kernels)" if "partitioned" in e.message else e.message)
                self._graph_note = (f"off: ONNX Runtime refused to capture it: {why}; cuda_graph=True "
                                    "tries one session per input shape with the dimensions fixed")
                self.session, lines = self._create_session()
            elif self._symbolic_dims():
                # Shape ops on dynamic dimensions stay on the CPU; fixed per input shape, they fold away.
                self._per_shape, lines = True, []
            else:
                raise
        if self.session is not None and self.required_provider not in self.session.get_providers() \
                and preload is None:
            self._preload()  # the usual cause: CUDA/cuDNN libraries not on the loader's path
            self.session, lines = self._create_session()
        if self.session is not None and self.required_provider not in self.session.get_providers():
            self.session = None
            causes = [_clean(ln) for ln in lines
                      if any(w in ln for w in ("Failed", "rror", "cannot open", "Require"))]
            reason = "; ".join(causes[:3]) or "ONNX Runtime gave no reason (it fell back to the CPU)"
            raise EngineUnavailableError(
                f"{self.engine}: onnxruntime {ort.__version__} could not start {self.required_provider} "
                f"on {self.device}: {reason}", self.unavailable_hint())
        self._note(self.session, lines)
        self._run_options = ort.RunOptions()
        self._run_options.log_severity_level = 4  # a failed run raises a clear error instead

    def deactivate_impl(self) -> None:
        self._bound.clear()
        self.session = None

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._check_feeds(feeds)
        names = self._output_names
        try:
            if not self.options.io_binding:
                outs = self.session.run(names, feeds, self._run_options)
            elif self.graph_capture:
                b = self._bound_for(feeds, update=True)
                b.session.run_with_iobinding(b.binding, b.run_options)
                outs = b.binding.copy_outputs_to_cpu()
            else:  # fresh binding: ONNX Runtime allocates outputs of whatever shape they turn out
                ort, dev, idx = self._ort, self.ort_device, self.options.device_id
                binding = self.session.io_binding()
                for name in self._input_names():
                    v = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(feeds[name]), dev, idx)
                    binding.bind_ortvalue_input(name, v)
                for name in names:
                    binding.bind_output(name, dev, idx)
                binding.synchronize_inputs()
                self.session.run_with_iobinding(binding, self._run_options)
                outs = binding.copy_outputs_to_cpu()
        except EngineRunError:
            raise
        except Exception as e:  # InvalidArgument (shape/dtype), RuntimeException (kernel, capture)
            raise EngineRunError(self._describe_run_error(e, feeds), self._run_hint(e)) from e
        return dict(zip(names, outs))

    def prepare_impl(self, feeds: dict[str, np.ndarray]) -> Callable[[], Any]:
        self._check_feeds(feeds)
        if not self.options.io_binding:
            self.infer_impl(feeds)  # fail here, with a clear message, not inside a timing loop
            sess, ro, names = self.session, self._run_options, self._output_names
            return lambda: sess.run(names, feeds, ro)
        try:
            b = self._bound_for(feeds, update=True)
            for _ in range(3):  # ONNX Runtime runs a few times before it captures the graph
                b.session.run_with_iobinding(b.binding, b.run_options)
        except EngineRunError:
            raise
        except Exception as e:
            raise EngineRunError(self._describe_run_error(e, feeds), self._run_hint(e)) from e
        sess, binding, ro = b.session, b.binding, b.run_options

        def run() -> None:
            sess.run_with_iobinding(binding, ro)
            binding.synchronize_outputs()  # the run is over on the GPU when this returns

        return run

    # -- internals --

    def _note(self, session: Any, lines: list[str]) -> None:
        """Keep what ONNX Runtime resolved and warned about, for ``settings``."""
        self._warnings += [w for w in (_clean(ln) for ln in lines if "[W:" in ln or "[E:" in ln)
                           if not any(n in w for n in _NOISE) and w not in self._warnings]
        if session is not None and not self._resolved:
            self._resolved = {
                "providers": list(session.get_providers()),
                "provider_options": {k: dict(v) for k, v in session.get_provider_options().items()
                                     if k != "CPUExecutionProvider"},
                "onnxruntime": self._ort.__version__,
            }

    def _check_device(self) -> None:
        scan = scan_gpus()
        n = len(scan.gpus)
        if self.options.device_id >= n:
            have = ", ".join(f"{g.index}: {g.name}" for g in scan.gpus) or scan.reason
            raise EngineUnavailableError(
                f"{self.engine}: there is no CUDA device {self.options.device_id}; this machine has "
                f"{n} GPU(s) ({have})",
                f"use device_id 0..{n - 1} (--device cuda:N)" if n else "see `workbench devices`")

    def _preload(self) -> None:
        fn = getattr(self._ort, "preload_dlls", None)
        if fn is None or self._preloaded:
            return
        with _captured_fd2(), open(os.devnull, "w") as null, contextlib.redirect_stdout(null), \
                contextlib.suppress(Exception):
            fn(directory="")  # NVIDIA's pip packages first, then the loader's default paths
        self._preloaded = True

    def _session_options(self, fixed: dict[str, int] | None = None) -> Any:
        ort, o = self._ort, self.options
        so = ort.SessionOptions()
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPT_LEVELS[o.optimization_level])
        if o.threads:
            so.intra_op_num_threads = o.threads
        for k, v in o.config:
            so.add_session_config_entry(k, v)
        for dim, value in (fixed or {}).items():
            so.add_free_dimension_override_by_name(dim, value)
        if o.optimized_model_path:
            so.optimized_model_filepath = o.optimized_model_path
        if o.profile_prefix:  # per-node kernel times to <prefix>_<date>.json (workbench profile)
            so.enable_profiling = True
            so.profile_file_prefix = o.profile_prefix
        so.log_severity_level = 2  # warnings (CPU fallbacks, Memcpy nodes) are captured for settings
        return so

    def _create_session(self, fixed: dict[str, int] | None = None) -> tuple[Any, list[str]]:
        ort = self._ort
        src: Any = (str(self.model.path) if proto_size(self.model.proto) > TWO_GB and self.model.path
                    else self.model.proto.SerializeToString())
        try:
            with _captured_fd2() as lines:
                # enable_fallback=0: never retry silently on other providers (or another device)
                sess = ort.InferenceSession(src, self._session_options(fixed), providers=self.providers(),
                                            enable_fallback=0)
        except Exception as e:
            raise self._load_error(e, lines, fixed) from e
        return sess, lines

    def _load_error(self, e: Exception, lines: list[str], fixed: dict[str, int] | None) -> Exception:
        first = _first_line(e)
        low = str(e).lower()
        if "invalid device ordinal" in low or "invalid device" in low:
            return EngineUnavailableError(f"{self.engine}: CUDA device {self.options.device_id} cannot be "
                                          f"used: {first}", "see `workbench devices`")
        if "graph capture" in low or "cuda graph" in low:
            return CudaGraphUnsupported(
                f"{self.engine}: {self.model.name} cannot run in a CUDA graph"
                + (f" even with its dimensions fixed ({fixed})" if fixed else "") + f": {first}",
                "CUDA graphs need every node on the GPU: use cuda_graph=False")
        if "out of memory" in low:
            return EngineRunError(f"{self.engine}: out of GPU memory loading {self.model.name}: {first}",
                                  "use a smaller batch, gpu_mem_limit, or another GPU")
        if "NOT_IMPLEMENTED" in str(e) or "Could not find an implementation" in str(e):
            return EngineRunError(f"ONNX Runtime could not load {self.model.name}: {first}",
                                  "the model uses an operator ONNX Runtime does not implement")
        detail = next((ln for ln in lines if "[E:" in ln), "")
        return EngineRunError(f"{self.engine}: ONNX Runtime could not load {self.model.name}: {first}"
                              + (f" ({_clean(detail)})" if detail else ""),
                              "check the model with `workbench info`")

    def _symbolic_dims(self) -> bool:
        return any(d.dim_param for i in self._inputs for d in i.type.tensor_type.shape.dim)

    def _fixed_dims(self, arrays: dict[str, np.ndarray]) -> dict[str, int]:
        """The model's named dynamic dimensions, set to the sizes of these inputs."""
        fixed: dict[str, int] = {}
        for i in self._inputs:
            shape = arrays[i.name].shape
            for k, d in enumerate(i.type.tensor_type.shape.dim):
                if not d.dim_param or k >= len(shape):
                    continue
                if fixed.setdefault(d.dim_param, int(shape[k])) != int(shape[k]):
                    raise EngineRunError(f"dimension {d.dim_param!r} is {fixed[d.dim_param]} in one input "
                                         f"and {shape[k]} in {i.name!r}", "give consistent shapes")
        return fixed

    def _input_names(self) -> list[str]:
        return [i.name for i in self._inputs]

    def _check_feeds(self, feeds: dict[str, np.ndarray]) -> None:
        missing = set(self._input_names()) - set(feeds)
        if missing:
            name = sorted(missing)[0]
            raise EngineRunError(f"no value for model input {name!r}",
                                 f"set it with --input {name}=VALUE or --shape {name}=DIMS")

    def _bound_for(self, feeds: dict[str, np.ndarray], update: bool) -> _Bound:
        """Device buffers for this input signature, creating (and probing output shapes) once.

        The outputs' shapes come from one run that ONNX Runtime does not capture
        (``gpu_graph_id=-1``); then fixed output buffers are allocated and bound, so that a CUDA
        graph captured on later runs writes where the caller reads.
        """
        ort, dev, idx = self._ort, self.ort_device, self.options.device_id
        names = self._input_names()
        arrays = {n: np.ascontiguousarray(feeds[n]) for n in names}
        key = tuple((n, arrays[n].shape, arrays[n].dtype.str) for n in names)
        b = self._bound.get(key)
        if b is not None:
            if update:
                for n in names:
                    b.inputs[n].update_inplace(arrays[n])
                b.binding.synchronize_inputs()  # the copies have landed before the next run reads them
            return b
        if self.graph_capture and self._bound and not self.multi_graph and not self._per_shape:
            raise EngineRunError(
                f"{self.engine} captured its CUDA graph for other input shapes "
                f"({', '.join(str(list(s)) for _, s, _ in next(iter(self._bound)))})",
                "keep the shapes fixed with cuda_graph=True, or use a new runner per shape")
        sess = self.session
        if self._per_shape:
            sess, lines = self._create_session(self._fixed_dims(arrays))
            self._note(sess, lines)
        inputs = {n: ort.OrtValue.ortvalue_from_numpy(arrays[n], dev, idx) for n in names}
        probe = sess.io_binding()
        for n in names:
            probe.bind_ortvalue_input(n, inputs[n])
        for n in self._output_names:
            probe.bind_output(n, dev, idx)
        probe.synchronize_inputs()
        skip = ort.RunOptions()
        skip.log_severity_level = 4
        if self.graph_capture:
            skip.add_run_config_entry("gpu_graph_id", _SKIP_CAPTURE)
        sess.run_with_iobinding(probe, skip)
        shapes = [(tuple(v.shape()), v.element_type()) for v in probe.get_outputs()]
        del probe
        binding = sess.io_binding()
        for n in names:
            binding.bind_ortvalue_input(n, inputs[n])
        outputs = {}
        for n, (shape, etype) in zip(self._output_names, shapes):
            outputs[n] = ort.OrtValue.ortvalue_from_shape_and_type(list(shape), etype, dev, idx)
            binding.bind_ortvalue_output(n, outputs[n])
        graph_id = None
        if self.graph_capture and self.multi_graph:
            graph_id = 0 if self._per_shape else len(self._bound)
            if self.options.cuda_graph is None and graph_id >= _MAX_AUTO_GRAPHS:
                graph_id = -1  # auto mode: past this many shapes, run new ones without capturing
        ro = ort.RunOptions()
        ro.log_severity_level = 4
        if graph_id is not None:
            ro.add_run_config_entry("gpu_graph_id", str(graph_id))
        b = _Bound(sess, binding, inputs, outputs, ro, graph_id)
        self._bound[key] = b
        return b

    def _run_hint(self, e: Exception) -> str:
        low = str(e).lower()
        if "out of memory" in low:
            return "use a smaller batch, or another GPU"
        if "graph" in low:
            return "CUDA graphs need fixed shapes and every node on the GPU: use cuda_graph=False"
        if "kernel channels" in low and self._nhwc and self._precision == "int8-qdq":
            return "ONNX Runtime's NHWC rewrite breaks Q/DQ convolutions: use prefer_nhwc=False"
        return "set the input's shape with --shape NAME=DIMS or its value with --input NAME=VALUE"

    def _describe_run_error(self, e: Exception, feeds: dict[str, np.ndarray]) -> str:
        text = _first_line(e)
        names = self._input_names()
        culprit = next((n for n in names if f"'{n}'" in str(e) or f" {n}" in str(e)), None)
        shapes = ", ".join(f"{n} {list(np.shape(feeds[n]))} {np.asarray(feeds[n]).dtype}"
                           for n in names if n in feeds)
        where = f"input {culprit!r}: " if culprit else ""
        return f"ONNX Runtime ({self.device}) failed on {where}{text} (inputs were: {shapes})"


def _gpu_name(device_id: int) -> str | None:
    gpus = scan_gpus().gpus
    return gpus[device_id].name if device_id < len(gpus) else None


def ort_cuda_version() -> str | None:
    """The CUDA version this onnxruntime-gpu was built for (None for CPU builds)."""
    try:
        from onnxruntime.capi import build_and_package_info as info  # noqa: PLC0415
    except ImportError:
        return None
    return getattr(info, "cuda_version", None)
