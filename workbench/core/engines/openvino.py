"""OpenVINO: Intel's runtime, on the CPU, and on Intel GPUs and NPUs where OpenVINO finds them.

The ONNX model is read by OpenVINO's ONNX frontend from memory (from its file above 2 GB, for the
external data) and compiled for one OpenVINO device (``CPU``, ``GPU``, ``GPU.1``, ``NPU``). A
bundle's pre-converted IR (``engine.xml`` + ``engine.bin``, an :class:`OpenVinoIR`) is compiled as
it is. Workbench device strings: ``openvino`` (the CPU), ``openvino:CPU``, ``openvino:GPU[.N]``,
``openvino:NPU``, or the engine names ``openvino-gpu[:N]`` and ``openvino-npu``.

The precision OpenVINO runs in is read back from the compiled model, never assumed. OpenVINO's own
CPU default is bf16 on CPUs with AVX-512 BF16 or AMX; the workbench asks for f32 unless the
recipe's ``bf16`` pass (or the ``precision`` option) asks for bf16, so a lower precision is always
a visible toggle with its accuracy measured. A precision the device lacks is refused, since
OpenVINO would silently run f32 instead. ``openvino`` is imported on first use; without it the
engine is reported unavailable with the reason.
"""

from __future__ import annotations

import hashlib
import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import EngineRunError, EngineUnavailableError, UsageError, install_hint
from ..machine import default_threads  # the same default thread count for both CPU runtimes
from ..model import PRECISION_KEY, TWO_GB, Model, proto_size
from .base import Availability, Runner

__all__ = ["OpenVinoOptions", "OpenVinoIR", "OpenVinoRunner", "probe", "available_devices",
           "openvino_version", "no_telemetry", "device_precisions", "split_device", "save_ir", "ir_fingerprint", "compile_config", "ENGINE_OF_FAMILY",
           "PERFORMANCE_HINTS", "PRECISIONS"]

PERFORMANCE_HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT",
                     "cumulative_throughput": "CUMULATIVE_THROUGHPUT"}
PRECISIONS = {"f32": "FP32", "bf16": "BF16", "f16": "FP16"}  # -> OPTIMIZATION_CAPABILITIES entry
ENGINE_OF_FAMILY = {"CPU": "openvino", "GPU": "openvino-gpu", "NPU": "openvino-npu"}
_WHAT = {"CPU": "CPU plugin", "GPU": "Intel GPU", "NPU": "Intel NPU"}
_DEVICE = re.compile(r"^(CPU|GPU|NPU)(\.\d+)?$")
_RUN_HINT = "set the input's shape with --shape NAME=DIMS or its value with --input NAME=VALUE"


def _normalize(device: str) -> str:
    d = device.strip().upper()
    if not _DEVICE.match(d):
        raise UsageError(f"unknown OpenVINO device {device!r}",
                         "use openvino:CPU, openvino:GPU[.N] or openvino:NPU (see `workbench devices`)")
    return d


def _family(device: str) -> str:
    return device.split(".")[0]


def split_device(device: str) -> tuple[str, str]:
    """A workbench device string -> (engine name, OpenVINO device).

    ``openvino`` -> (``openvino``, ``CPU``); ``openvino:GPU.1`` and ``openvino-gpu:1`` ->
    (``openvino-gpu``, ``GPU.1``); ``openvino-npu`` -> (``openvino-npu``, ``NPU``).
    """
    head, _, tail = device.partition(":")
    head = head.strip().lower()
    if head == "openvino":
        ov_device = _normalize(tail) if tail else "CPU"
    elif head in ("openvino-gpu", "openvino-npu"):
        fam = head.rsplit("-", 1)[1].upper()
        ov_device = _normalize(f"{fam}.{tail}" if tail.isdigit() else tail or fam)
        if _family(ov_device) != fam:
            raise UsageError(f"bad device {device!r}", f"use {head} or {head}:N")
    else:
        raise UsageError(f"{device!r} is not an OpenVINO device", "use openvino or openvino:DEVICE")
    return ENGINE_OF_FAMILY[_family(ov_device)], ov_device


def no_telemetry() -> None:
    """Keep OpenVINO's usage telemetry off. ``import openvino`` imports its converter, which
    initializes ``openvino_telemetry``: it writes a client id under ``~/intel`` and sends an
    "import" event to Google Analytics unless the user opted out. The workbench promises that
    nothing leaves the machine and that nothing is written outside its cache, so where
    openvino_telemetry is not imported yet its import is made to fail: OpenVINO then uses its own
    no-op stub (``openvino/tools/ovc/telemetry_stub.py``), and NNCF sends nothing either."""
    import sys  # noqa: PLC0415

    sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]


def _import_openvino() -> Any:
    no_telemetry()
    try:
        return importlib.import_module("openvino")
    except (ImportError, OSError) as e:  # OSError: the wheel is there, its libraries are not
        raise EngineUnavailableError(f"openvino cannot be imported ({e})", install_hint()) from e


def openvino_version() -> str | None:
    """``2026.4.1`` (the release, without OpenVINO's build suffix), or None without openvino."""
    try:
        ov = _import_openvino()
    except EngineUnavailableError:
        return None
    return str(ov.__version__).split("-")[0]


@lru_cache(maxsize=1)
def _core() -> Any:
    return _import_openvino().Core()


@lru_cache(maxsize=1)
def _devices() -> tuple[tuple[str, str], ...]:
    core = _core()
    out = []
    for d in core.available_devices:
        try:
            full = str(core.get_property(d, "FULL_DEVICE_NAME"))
        except RuntimeError:
            full = d
        out.append((str(d), full))
    return tuple(out)


def available_devices() -> dict[str, str]:
    """OpenVINO's devices here (``CPU``, ``GPU.0``, ...) and their full names (probed once)."""
    return dict(_devices())


def device_precisions(device: str = "CPU") -> list[str]:
    """The workbench precisions (``f32``, ``bf16``, ``f16``) OpenVINO's ``device`` lists among its
    OPTIMIZATION_CAPABILITIES here (bf16 on the CPU only with AVX-512 BF16 or AMX)."""
    caps = set(_core().get_property(_normalize(device), "OPTIMIZATION_CAPABILITIES"))
    return [p for p, cap in PRECISIONS.items() if cap in caps]


def _ov_message(e: BaseException) -> str:
    """The line of an OpenVINO exception that says what went wrong (not where in its sources)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    rule = next((ln for ln in lines if ln.startswith("-- No conversion rule")), None)
    if rule:
        return rule.removeprefix("-- ")
    useful = [ln for ln in lines if not ln.startswith(("Exception from ", "Check '"))]
    return (useful or lines or [type(e).__name__])[0]


def probe(family: str = "CPU") -> Availability:
    """Whether OpenVINO has a device of ``family`` (``CPU``, ``GPU``, ``NPU``) here."""
    try:
        ov = _import_openvino()
    except EngineUnavailableError as e:
        return Availability(False, f"openvino is not installed or does not import: {e.hint}")
    version = str(ov.__version__).split("-")[0]
    try:
        devices = _devices()
    except RuntimeError as e:
        return Availability(False, f"openvino {version} cannot list its devices: {_ov_message(e)}")
    mine = [(d, full) for d, full in devices if _family(d) == family]
    if not mine:
        return Availability(False, f"OpenVINO {version} reports devices "
                                   f"{', '.join(d for d, _ in devices) or 'none'}; no {_WHAT[family]} here")
    return Availability(True, f"openvino {version}: devices " + ", ".join(f"{d} ({f})" for d, f in mine))


@dataclass(frozen=True)
class OpenVinoOptions:
    """How OpenVINO compiles the model.

    Attributes:
        device: the OpenVINO device: ``CPU``, ``GPU``, ``GPU.N`` or ``NPU``.
        threads: ``INFERENCE_NUM_THREADS`` (default on the CPU: ``default_threads()``, as for
            ONNX Runtime, so both runtimes get the same thread count).
        streams: ``NUM_STREAMS`` (default: what the performance hint picks).
        performance_hint: ``latency``, ``throughput`` or ``cumulative_throughput``.
        precision: ``INFERENCE_PRECISION_HINT``: ``f32``, ``bf16`` or ``f16``; None = the
            model's hint (the ``bf16`` pass), else f32 on the CPU and the plugin's default on a
            GPU/NPU (what ran is read back after compiling, in ``settings["precision"]``).
        cache_dir: OpenVINO's compiled-model cache folder (``CACHE_DIR``), if set.
        perf_count: ``PERF_COUNT``: the infer request keeps per-layer times of its last
            inference (``get_profiling_info()``), for the layer profiler; off for timing runs.
    """

    device: str = "CPU"
    threads: int | None = None
    streams: int | None = None
    performance_hint: str = "latency"
    precision: str | None = None
    cache_dir: str | None = None
    perf_count: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.device, str):
            raise UsageError(f"device must be a string, got {self.device!r}")
        object.__setattr__(self, "device", _normalize(self.device))
        for name in ("threads", "streams"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise UsageError(f"{name} must be an integer >= 1, got {v!r}")
        if self.performance_hint not in PERFORMANCE_HINTS:
            raise UsageError(f"unknown performance hint {self.performance_hint!r}",
                             f"use one of {', '.join(PERFORMANCE_HINTS)}")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise UsageError(f"unknown OpenVINO precision {self.precision!r}",
                             f"use one of {', '.join(PRECISIONS)}, or None for the device default")


_OPTION_OF = {"INFERENCE_NUM_THREADS": "threads", "NUM_STREAMS": "streams",
              "INFERENCE_PRECISION_HINT": "precision", "PERF_COUNT": "perf_count"}


def compile_config(options: OpenVinoOptions, threads: int | None = None) -> dict[str, Any]:
    """The ``compile_model`` properties for ``options`` (``threads`` where options leave it unset)."""
    config: dict[str, Any] = {"PERFORMANCE_HINT": PERFORMANCE_HINTS[options.performance_hint]}
    for key, value in (("INFERENCE_NUM_THREADS", options.threads or threads),
                       ("NUM_STREAMS", options.streams), ("INFERENCE_PRECISION_HINT", options.precision)):
        if value is not None:
            config[key] = value
    if options.perf_count:
        config["PERF_COUNT"] = True
    return config


@dataclass(frozen=True)
class OpenVinoIR:
    """A pre-converted OpenVINO IR (graph XML and weights) of the ONNX model ``source_fingerprint``."""

    xml: bytes = field(repr=False)
    weights: bytes = field(repr=False)
    source_fingerprint: str
    name: str = "engine.xml"

    @classmethod
    def read(cls, xml_path: str | Path, source_fingerprint: str) -> OpenVinoIR:
        """The IR at ``xml_path`` and the ``.bin`` beside it (plain data: nothing is executed)."""
        p = Path(xml_path)
        weights = p.with_suffix(".bin")
        return cls(p.read_bytes(), weights.read_bytes() if weights.is_file() else b"",
                   source_fingerprint, p.name)


def _read_onnx(ov: Any, core: Any, model: Model) -> Any:
    if proto_size(model.proto) > TWO_GB:
        if model.path is None:
            raise EngineRunError(f"{model.name} is over 2 GB and has no file OpenVINO can read",
                                 "save it with external data and load it from that file")
        return core.read_model(str(model.path))  # external data beside it
    return core.read_model(model=model.proto.SerializeToString(), weights=b"")


def save_ir(model: Model, xml_path: Path) -> None:
    """Convert ``model`` to OpenVINO IR (``xml_path`` and its ``.bin``), weights kept as they are
    (``ov.save_model`` compresses float weights to float16 unless told not to)."""
    ov = _import_openvino()
    try:
        ov_model = _read_onnx(ov, _core(), model)
    except RuntimeError as e:
        raise EngineRunError(f"OpenVINO could not read {model.name}: {_ov_message(e)}") from e
    ov.save_model(ov_model, str(xml_path), compress_to_fp16=False)


_LAYER_NAME = re.compile(rb'(<layer id="\d+" name=")[^"]*(")')


def ir_fingerprint(xml: bytes, weights: bytes) -> str:
    """sha256 of an IR with its layer names left out: OpenVINO numbers the layers it creates from
    a process-wide counter (``Constant_135`` one run, ``Constant_1077`` the next), so the same
    conversion saves different XML. Edges go by layer id and tensor names stay, so nothing that
    changes what runs is left out."""
    h = hashlib.sha256(_LAYER_NAME.sub(rb"\1\2", xml))
    h.update(hashlib.sha256(weights).digest())
    return "sha256:" + h.hexdigest()


@dataclass(frozen=True)
class _Port:
    name: str  # the ONNX tensor name
    port: Any
    dtype: np.dtype
    shape: Any  # ov.PartialShape


class OpenVinoRunner(Runner):
    """Runs a model with OpenVINO on one of its devices (``with runner: runner.infer(feeds)``).

    ``ir``: a pre-converted IR of ``model`` (a bundle's ``engine.xml``) to compile instead of
    reading the ONNX. It is used only for the model it was converted from (its fingerprint):
    another model (an evaluation's reference, given the same options) is read from its ONNX.
    """

    def __init__(self, model: Model, options: OpenVinoOptions | None = None, *,
                 ir: OpenVinoIR | None = None) -> None:
        super().__init__()
        self.model = model
        self.options = options or OpenVinoOptions()
        self.ir = ir if ir is not None and ir.source_fingerprint == model.fingerprint else None
        fam = _family(self.options.device)
        self.engine = ENGINE_OF_FAMILY[fam]
        self.device = "cpu" if fam == "CPU" else f"openvino:{self.options.device}"
        self._compiled: Any = None
        self._request: Any = None
        self._in: list[_Port] = []
        self._out: list[tuple[str, int]] = []
        self._held: list[np.ndarray] = []  # arrays the request's input tensors share memory with
        self._prepared: list[tuple[Any, list[np.ndarray]]] = []  # prepare()d requests and their inputs
        self._effective: dict[str, Any] = {}

    @classmethod
    def from_ir(cls, xml_path: str | Path, model: Model,
                options: OpenVinoOptions | None = None) -> OpenVinoRunner:
        """A runner of the IR at ``xml_path`` (+ ``.bin``), converted from ``model``."""
        return cls(model, options, ir=OpenVinoIR.read(xml_path, model.fingerprint))

    @property
    def settings(self) -> dict[str, Any]:
        """Requested options, and after activation what the compiled model reports it uses."""
        o = self.options
        d: dict[str, Any] = {"device": o.device, "threads": o.threads, "streams": o.streams,
                             "performance_hint": o.performance_hint, "precision": o.precision,
                             "precision_requested": self.wanted_precision(),
                             "model_format": "openvino ir" if self.ir else "onnx"}
        if o.cache_dir:
            d["cache_dir"] = o.cache_dir
        return {**d, **self._effective}

    def wanted_precision(self) -> str | None:
        """The precision asked of OpenVINO: the option, else the model's hint (the ``bf16`` pass),
        else f32 on the CPU (OpenVINO's own CPU default is bf16 where the CPU has it: the workbench
        never picks a lower precision silently), else the GPU/NPU plugin's default (None)."""
        if self.options.precision is not None:
            return self.options.precision
        hint = self.model.metadata.get(PRECISION_KEY)
        if hint in PRECISIONS:
            return hint
        return "f32" if _family(self.options.device) == "CPU" else None

    def _config(self, core: Any) -> dict[str, Any]:
        dev = self.options.device
        o = replace(self.options, precision=self.wanted_precision())
        supported = core.get_property(dev, "SUPPORTED_PROPERTIES")
        threads = o.threads
        if threads is None and "INFERENCE_NUM_THREADS" in supported:
            threads = default_threads()
        config = compile_config(o, threads)
        for key, option in _OPTION_OF.items():
            if key in config and key not in supported:
                raise UsageError(f"OpenVINO's {dev} plugin has no {key} setting (the {option} option)",
                                 f"leave {option} unset on {dev}")
        if o.precision is not None:
            caps = list(core.get_property(dev, "OPTIMIZATION_CAPABILITIES"))
            if PRECISIONS[o.precision] not in caps:
                raise UsageError(
                    f"precision {o.precision!r}: OpenVINO's {dev} ({available_devices().get(dev, dev)}) "
                    f"has no {PRECISIONS[o.precision]} support (its capabilities: {', '.join(caps)}); "
                    "OpenVINO would silently run another precision",
                    "leave precision unset (the device default) or use one the device lists")
        if o.cache_dir:
            config["CACHE_DIR"] = o.cache_dir
        return config

    def activate_impl(self) -> None:
        ov = _import_openvino()
        core, dev = _core(), self.options.device
        here = available_devices()
        if dev not in here and not any(_family(d) == dev for d in here):
            raise EngineUnavailableError(f"OpenVINO has no {dev} device here (it reports "
                                         f"{', '.join(here) or 'none'})", "see `workbench devices`")
        config = self._config(core)
        what = self.ir.name if self.ir else self.model.name
        try:
            ov_model = (core.read_model(model=self.ir.xml, weights=self.ir.weights) if self.ir
                        else _read_onnx(ov, core, self.model))
        except RuntimeError as e:
            msg = _ov_message(e)
            hint = ("the model uses an operator OpenVINO's ONNX frontend does not convert; run it with "
                    "ONNX Runtime (--device cpu)" if "conversion rule" in msg
                    else "check the model with `workbench info`")
            raise EngineRunError(f"OpenVINO could not read {what}: {msg}", hint) from e
        try:
            self._compiled = core.compile_model(ov_model, dev, config)
        except RuntimeError as e:
            raise EngineRunError(f"OpenVINO could not compile {what} for {dev}: {_ov_message(e)}",
                                 "run it with ONNX Runtime (--device cpu)") from e
        self._request = self._compiled.create_infer_request()
        self._map_ports()
        self._effective = self._read_back(ov)

    def _map_ports(self) -> None:
        """OpenVINO's ports by the ONNX names (a port can carry several tensor names)."""
        g = self.model.proto.graph
        inits = {t.name for t in g.initializer}
        onnx_in = [i.name for i in g.input if i.name not in inits]
        self._in = []
        for port in self._compiled.inputs:
            names = port.get_names()
            name = next((n for n in onnx_in if n in names), port.get_any_name())
            self._in.append(_Port(name, port, np.dtype(port.get_element_type().to_dtype()),
                                  port.get_partial_shape()))
        outs = list(self._compiled.outputs)
        index = {n: i for i, p in enumerate(outs) for n in p.get_names()}
        onnx_out = [o.name for o in g.output]
        if all(n in index for n in onnx_out):
            self._out = [(n, index[n]) for n in onnx_out]
        elif len(onnx_out) == len(outs):  # names lost in conversion: ONNX order is OpenVINO's order
            self._out = list(zip(onnx_out, range(len(outs))))
        else:
            self._out = [(p.get_any_name(), i) for i, p in enumerate(outs)]

    def _read_back(self, ov: Any) -> dict[str, Any]:
        def prop(key: str) -> Any:
            try:
                return self._compiled.get_property(key)
            except RuntimeError:  # not every plugin reports every property
                return None

        prec = prop("INFERENCE_PRECISION_HINT")
        hint = prop("PERFORMANCE_HINT")
        return {"device": self.options.device,
                "device_name": available_devices().get(self.options.device, self.options.device),
                "threads": prop("INFERENCE_NUM_THREADS") or None, "streams": prop("NUM_STREAMS"),
                "performance_hint": str(hint).lower() if hint else self.options.performance_hint,
                "precision": prec.get_type_name() if isinstance(prec, ov.Type) else prec,
                "execution_devices": list(prop("EXECUTION_DEVICES") or []),
                "openvino": str(ov.__version__).split("-")[0]}

    def deactivate_impl(self) -> None:
        self._request = self._compiled = None
        self._held = []
        self._prepared = []

    def _describe(self, feeds: dict[str, np.ndarray], culprit: str | None, text: str) -> str:
        shapes = ", ".join(f"{p.name} {list(np.shape(feeds[p.name]))} {np.asarray(feeds[p.name]).dtype}"
                           for p in self._in if p.name in feeds)
        where = f"input {culprit!r}: " if culprit else ""
        return f"OpenVINO failed on {where}{text} (inputs were: {shapes})"

    def _bind(self, feeds: dict[str, np.ndarray], request: Any = None) -> list[np.ndarray]:
        """Check every input against the compiled model's ports and set it on ``request`` (default:
        the runner's own); returns the arrays the request now shares memory with."""
        request = self._request if request is None else request
        ov = _import_openvino()
        names = [p.name for p in self._in]
        missing = [n for n in names if n not in feeds]
        if missing:
            raise EngineRunError(f"no value for model input {missing[0]!r}",
                                 f"set it with --input {missing[0]}=VALUE or --shape {missing[0]}=DIMS")
        extra = sorted(set(feeds) - set(names))
        if extra:
            raise EngineRunError(f"{extra[0]!r} is not an input of {self.model.name}",
                                 f"its inputs are: {', '.join(names)}")
        held = []
        for p in self._in:
            a = np.asarray(feeds[p.name])
            a = a if a.flags.c_contiguous else a.copy(order="C")  # (ascontiguousarray makes 0-d 1-d)
            if a.dtype != p.dtype:
                raise EngineRunError(self._describe(feeds, p.name, f"expected {p.dtype}, got {a.dtype}"),
                                     _RUN_HINT)
            if not p.shape.compatible(ov.PartialShape(list(a.shape))):
                raise EngineRunError(self._describe(feeds, p.name, f"expected shape {p.shape}, got "
                                                    f"{list(a.shape)}"), _RUN_HINT)
            request.set_tensor(p.port, ov.Tensor(a, shared_memory=a.ndim > 0))
            held.append(a)
        if request is self._request:
            self._held = held
        return held

    def _run(self, feeds: dict[str, np.ndarray]) -> Any:
        try:
            return self._request.infer()  # outputs copied out (OpenVINO reuses its buffers)
        except RuntimeError as e:
            raise EngineRunError(self._describe(feeds, None, _ov_message(e)), _RUN_HINT) from e

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._bind(feeds)
        res = self._run(feeds)
        return {name: res[i] for name, i in self._out}

    def prepare_impl(self, feeds: dict[str, np.ndarray]) -> Callable[[], Any]:
        self.infer_impl(feeds)  # fail here, with a clear message, rather than inside a timing loop
        # A request of its own: later infer() or prepare() calls rebind the runner's request, and
        # must not change what an earlier prepared callable runs on.
        request = self._compiled.create_infer_request()
        held = self._bind(feeds, request)
        self._prepared.append((request, held))
        return request.infer
