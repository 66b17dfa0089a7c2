"""The peers: each builds its model with its own real package (documented defaults / best settings).

A builder takes the FP32 ``ModelProto`` and the calibration feeds (a list of feed dicts, the same
list for every peer and for the workbench) and returns the built ``ModelProto``. ``PEERS`` maps a
row name to ``(pypi package that must be installed, builder)``; missing packages are reported, not
hidden. Import of every peer package is lazy.

``OV_PEERS`` are the rows OpenVINO runs: OpenVINO itself on the FP32 ONNX (with the f32 precision
hint, and with the device's default precision) and NNCF's ``nncf.quantize`` /
``nncf.quantize_with_accuracy_control`` on the model OpenVINO converts. Their builders also take the
labeled validation data (or None) and return an :class:`OvBuild`: the IR to compile (None: the
ONNX as given) and the precision hint. A builder that cannot apply raises :class:`PeerSkipped`.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from workbench.core.machine import cpu_isa

Feeds = list[dict[str, np.ndarray]]
Builder = Callable[[onnx.ModelProto, Feeds], onnx.ModelProto]

HERE = Path(__file__).resolve().parent
# Olive's documented switch: a benchmark run sends no usage telemetry
os.environ.setdefault("OLIVE_DISABLE_TELEMETRY", "1")


def _olive_telemetry_off() -> None:
    """Make OLIVE_DISABLE_TELEMETRY hold before Olive's first event.

    olive-ai 0.13 (``olive/telemetry/telemetry.py``, ``Telemetry.__init__``) logs a heartbeat
    *before* it reads OLIVE_DISABLE_TELEMETRY; with no route to the collector, the exporter then
    retries that heartbeat for ~12 s when the process exits (measured: an Olive build of a tiny
    model took 8 s and its process 20 s). Its CI check comes before the heartbeat, so the
    singleton is created once here with ``CI`` set, and ``CI`` restored.
    """
    try:
        from olive.telemetry.telemetry import Telemetry  # noqa: PLC0415
    except ImportError:  # another Olive layout: nothing to do
        return
    saved = os.environ.get("CI")
    os.environ["CI"] = "1"
    try:
        Telemetry()
    finally:
        if saved is None:
            os.environ.pop("CI", None)
        else:
            os.environ["CI"] = saved


class _Reader:
    """onnxruntime.quantization.CalibrationDataReader over a list of feed dicts."""

    def __init__(self, feeds: Feeds) -> None:
        self._it = iter(feeds)

    def get_next(self):
        return next(self._it, None)


def _tmp_roundtrip(proto: onnx.ModelProto, fn: Callable[[Path, Path, Path], None]) -> onnx.ModelProto:
    with tempfile.TemporaryDirectory() as d:
        src, out = Path(d) / "in.onnx", Path(d) / "out.onnx"
        onnx.save(proto, str(src))
        fn(src, out, Path(d))
        return onnx.load(str(out))


def onnxslim_default(proto: onnx.ModelProto, feeds: Feeds) -> onnx.ModelProto:
    import onnxslim  # noqa: PLC0415

    return onnxslim.slim(onnx.ModelProto.FromString(proto.SerializeToString()))


def onnxsim_default(proto: onnx.ModelProto, feeds: Feeds) -> onnx.ModelProto:
    import onnxsim  # noqa: PLC0415

    model, ok = onnxsim.simplify(onnx.ModelProto.FromString(proto.SerializeToString()))
    if not ok:
        raise RuntimeError("onnxsim: the simplified model failed onnxsim's own check")
    return model


def ort_static_defaults(proto: onnx.ModelProto, feeds: Feeds) -> onnx.ModelProto:
    """``quantize_static(in, out, reader)``: QDQ, S8S8, per-tensor, MinMax."""
    from onnxruntime.quantization import quantize_static  # noqa: PLC0415

    return _tmp_roundtrip(proto, lambda s, o, d: quantize_static(str(s), str(o), _Reader(feeds)))


def _ort_static_best(method: str) -> Builder:
    """ORT's documented best settings for CNNs on x86 CPUs: ``quant_pre_process`` first, QDQ,
    U8S8, per-channel weights, ``reduce_range`` where the CPU has no VNNI (the 7-bit workaround
    for the saturating AVX2/AVX-512 ``vpmaddubsw`` path), entropy or percentile calibration."""

    def build(proto: onnx.ModelProto, feeds: Feeds) -> onnx.ModelProto:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static  # noqa: PLC0415
        from onnxruntime.quantization.shape_inference import quant_pre_process  # noqa: PLC0415

        vnni = any("VNNI" in f or "AMX" in f for f in cpu_isa())

        def fn(s: Path, o: Path, d: Path) -> None:
            pre = d / "pre.onnx"
            quant_pre_process(str(s), str(pre), skip_symbolic_shape=True)
            quantize_static(str(pre), str(o), _Reader(feeds), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            per_channel=True, reduce_range=not vnni,
                            calibrate_method=getattr(CalibrationMethod, method))

        return _tmp_roundtrip(proto, fn)

    return build


def ort_dynamic_defaults(proto: onnx.ModelProto, feeds: Feeds) -> onnx.ModelProto:
    from onnxruntime.quantization import quantize_dynamic  # noqa: PLC0415

    return _tmp_roundtrip(proto, lambda s, o, d: quantize_dynamic(str(s), str(o)))


def _olive(pass_config: dict, needs_data: bool) -> Builder:
    """One Olive pass through ``olive.workflows.run`` with a JSON-style workflow config."""

    def build(proto: onnx.ModelProto, feeds: Feeds) -> onnx.ModelProto:
        _olive_telemetry_off()
        from olive.workflows import run as olive_run  # noqa: PLC0415

        def fn(s: Path, o: Path, d: Path) -> None:
            passes = {"p": dict(pass_config)}
            config: dict = {
                "input_model": {"type": "ONNXModel", "model_path": str(s)},
                "systems": {"local": {"type": "LocalSystem", "accelerators": [
                    {"device": "cpu", "execution_providers": ["CPUExecutionProvider"]}]}},
                "passes": passes, "host": "local", "target": "local",
                "evaluate_input_model": False, "cache_dir": str(d / "cache"),
                "output_dir": str(d / "out"), "log_severity_level": 3,
            }
            if needs_data:
                from olive_data import save_feeds  # noqa: PLC0415

                save_feeds(str(d / "calib.npz"), feeds)
                config["data_configs"] = [{
                    "name": "calib", "user_script": str(HERE / "olive_data.py"),
                    "load_dataset_config": {"type": "workbench_feeds", "data_path": str(d / "calib.npz")},
                    "dataloader_config": {"type": "no_auto_batch_dataloader"}}]
                passes["p"]["data_config"] = "calib"
            olive_run(config)
            found = sorted((d / "out").rglob("*.onnx"))
            if not found:
                raise RuntimeError(f"Olive wrote no model under {d / 'out'}")
            onnx.save(onnx.load(str(found[0])), str(o))

        return _tmp_roundtrip(proto, fn)

    return build


# --- OpenVINO and NNCF ----------------------------------------------------------------------------

Validation = tuple[Feeds, np.ndarray]  # per-sample feeds and their labels
NNCF_MAX_DROP = 0.01  # quantize_with_accuracy_control: at most 1 top-1 point below FP32 (absolute)


class PeerSkipped(Exception):
    """The peer does not apply to this subject (the reason is the message)."""


@dataclass(frozen=True)
class OvBuild:
    """An OpenVINO row: the IR to compile (``xml`` None: the FP32 ONNX as it is), the
    INFERENCE_PRECISION_HINT (None: the device's default, read back after compiling) and notes."""

    xml: bytes | None = None
    weights: bytes = b""
    precision: str | None = "f32"
    notes: tuple[str, ...] = ()


OvBuilder = Callable[[onnx.ModelProto, Feeds, "Validation | None"], OvBuild]


def per_sample(feeds: Feeds) -> Feeds:
    """The feeds cut into one sample each where every input has the same leading batch axis (NNCF's
    examples calibrate on a batch-1 DataLoader, and its activation ranges average per item)."""
    out: Feeds = []
    for f in feeds:
        sizes = {v.shape[0] if v.ndim else None for v in f.values()}
        if len(sizes) == 1 and None not in sizes:
            out += [{k: v[i:i + 1] for k, v in f.items()} for i in range(next(iter(sizes)))]
        else:
            out.append(f)
    return out


def _ov_model(proto: onnx.ModelProto, d: Path):
    """``ov.convert_model`` of the ONNX file (OpenVINO's documented entry for ONNX models before
    NNCF: it folds BatchNormalization into the convolutions, ``Core.read_model`` does not)."""
    import openvino as ov  # noqa: PLC0415

    src = d / "fp32.onnx"
    onnx.save(proto, str(src))
    return ov.convert_model(str(src))


def _ir(model, d: Path) -> tuple[bytes, bytes]:
    import openvino as ov  # noqa: PLC0415

    xml = d / "nncf.xml"
    ov.save_model(model, str(xml), compress_to_fp16=False)
    return xml.read_bytes(), xml.with_suffix(".bin").read_bytes()


def openvino_fp32(proto: onnx.ModelProto, feeds: Feeds, val: Validation | None) -> OvBuild:
    return OvBuild(precision="f32")


def openvino_default(proto: onnx.ModelProto, feeds: Feeds, val: Validation | None) -> OvBuild:
    return OvBuild(precision=None)


def nncf_default(proto: onnx.ModelProto, feeds: Feeds, val: Validation | None) -> OvBuild:
    """``nncf.quantize(ov_model, nncf.Dataset(calibration items))`` with every default (preset
    PERFORMANCE, fast bias correction, subset 300)."""
    import nncf  # noqa: PLC0415

    items = per_sample(feeds)
    with tempfile.TemporaryDirectory() as d:
        q = nncf.quantize(_ov_model(proto, Path(d)), nncf.Dataset(items))
        xml, weights = _ir(q, Path(d))
    return OvBuild(xml, weights, "f32", (f"calibration: {len(items)} items of batch 1",))


def nncf_accuracy_control(proto: onnx.ModelProto, feeds: Feeds, val: Validation | None) -> OvBuild:
    """``nncf.quantize_with_accuracy_control`` with top-1 on held-out labeled data as the metric,
    ``max_drop=0.01`` (absolute): layers are reverted to float until the drop is within it."""
    if val is None:
        raise PeerSkipped("unlabeled subject: NNCF's accuracy control needs a validation metric on "
                          "labeled data")
    import nncf  # noqa: PLC0415

    vfeeds, labels = val
    items = list(zip(vfeeds, labels))

    def validate(compiled, data) -> tuple[float, list[float]]:
        out = compiled.output(0)
        hits = [float(int(np.argmax(compiled(f)[out], 1)[0]) == int(y)) for f, y in data]
        return float(np.mean(hits)) if hits else 0.0, hits

    calib = per_sample(feeds)
    with tempfile.TemporaryDirectory() as d:
        q = nncf.quantize_with_accuracy_control(
            _ov_model(proto, Path(d)), nncf.Dataset(calib), nncf.Dataset(items), validate,
            max_drop=NNCF_MAX_DROP, drop_type=nncf.DropType.ABSOLUTE)
        xml, weights = _ir(q, Path(d))
    return OvBuild(xml, weights, "f32", (f"calibration: {len(calib)} items; validation: top-1 on "
                                         f"{len(items)} labeled samples; max_drop {NNCF_MAX_DROP}",))


# row name -> (package that must be installed, builder); OpenVINO runs them
OV_PEERS: dict[str, tuple[str, OvBuilder]] = {
    "OpenVINO FP32": ("openvino", openvino_fp32),
    "OpenVINO default": ("openvino", openvino_default),
    "NNCF int8 on OpenVINO": ("nncf", nncf_default),
    "NNCF int8 accuracy control": ("nncf", nncf_accuracy_control),
}


# row name -> (package that must be installed, builder)
PEERS: dict[str, tuple[str, Builder]] = {
    "onnxslim + ORT": ("onnxslim", onnxslim_default),
    "onnxsim + ORT": ("onnxsim", onnxsim_default),
    "ORT quantize_static defaults": ("onnxruntime", ort_static_defaults),
    "ORT quantize_static best (entropy)": ("onnxruntime", _ort_static_best("Entropy")),
    "ORT quantize_static best (percentile)": ("onnxruntime", _ort_static_best("Percentile")),
    "ORT quantize_dynamic defaults": ("onnxruntime", ort_dynamic_defaults),
    "Olive OnnxStaticQuantization": ("olive-ai", _olive({"type": "OnnxStaticQuantization"}, True)),
    "Olive OnnxDynamicQuantization": ("olive-ai", _olive({"type": "OnnxDynamicQuantization"}, False)),
    "Olive OnnxPeepholeOptimizer + ORT": ("olive-ai", _olive({"type": "OnnxPeepholeOptimizer"}, False)),
}

_MODULE = {"onnxslim": "onnxslim", "onnxsim": "onnxsim", "onnxruntime": "onnxruntime",
           "olive-ai": "olive", "polygraphy": "polygraphy", "openvino": "openvino", "nncf": "nncf"}


def missing(package: str) -> str | None:
    """Why a peer cannot run here (its package is not installed), or None."""
    if importlib.util.find_spec(_MODULE.get(package, package)) is None:
        return f"{package} is not installed (pip install -e '.[bench]')"
    return None
