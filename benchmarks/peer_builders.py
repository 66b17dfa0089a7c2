"""The peers: each builds an ONNX model with its own real package (documented defaults / best settings).

A builder takes the FP32 ``ModelProto`` and the calibration feeds (a list of feed dicts, the same
list for every peer and for the workbench) and returns the built ``ModelProto``. ``PEERS`` maps a
row name to ``(pypi package that must be installed, builder)``; missing packages are reported, not
hidden. Import of every peer package is lazy.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from collections.abc import Callable
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
           "olive-ai": "olive", "polygraphy": "polygraphy"}


def missing(package: str) -> str | None:
    """Why a peer cannot run here (its package is not installed), or None."""
    if importlib.util.find_spec(_MODULE.get(package, package)) is None:
        return f"{package} is not installed (pip install -e '.[bench]')"
    return None
