"""The openvino engine (issue 18): availability, outputs against ONNX Runtime (FP32, int8 Q/DQ,
pruned, fp16 builds), dynamic batch, errors, precision read back, and bundles with OpenVINO IR.

Tiny generated graphs and the small Fashion-MNIST sample; OpenVINO is a default dependency, so
nothing here skips: where the machine decides (BF16 on the CPU), each branch asserts its own case.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import onnx
import openvino as ov
import pytest
from onnx import TensorProto, helper, numpy_helper
from zoo import old_cnn

from conftest import make_model, tiny_cnn
from workbench import bench, load_model, make_runner
from workbench.core.build import optimize
from workbench.core.bundle import BundleWarning, load_bundle
from workbench.core.engines import openvino as ovm
from workbench.core.engines.openvino import OpenVinoIR, OpenVinoOptions, OpenVinoRunner, split_device
from workbench.core.engines.ort_cpu import OrtCpuRunner
from workbench.core.engines.registry import engine_for_device, list_devices, list_engines
from workbench.core.evaluation.data import Dataset, load_dataset
from workbench.core.export import MeasureSpec, export_bundle
from workbench.errors import BundleError, EngineRunError, UsageError

CAPS = list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
X8 = np.random.default_rng(0).standard_normal((8, 3, 8, 8)).astype(np.float32)
X16 = np.random.default_rng(4).standard_normal((8, 3, 16, 16)).astype(np.float32)  # old_cnn's input


@pytest.fixture(scope="module")
def sample():
    m = load_model("sample:resnet-fashion")
    feeds, _ = next(load_dataset("sample:resnet-fashion", m).batches(8, 8))
    return m, feeds


def three_conv() -> onnx.ModelProto:
    """x[N,3,8,8] -> Conv(8) -> Relu -> Conv(16) -> Relu -> Conv(8, 1x1) -> GAP -> Flatten -> Gemm(5):
    the middle Conv's channels are prunable (the first and last layers are protected)."""
    rng = np.random.default_rng(3)

    def t(name, *shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)

    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", kernel_shape=[3, 3], pads=[1] * 4),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", kernel_shape=[3, 3], pads=[1] * 4),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             helper.make_node("Conv", ["r2", "w3", "b3"], ["c3"], name="conv3", kernel_shape=[1, 1]),
             helper.make_node("GlobalAveragePool", ["c3"], ["p"], name="gap"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1)]
    inits = [t("w1", 8, 3, 3, 3), t("b1", 8), t("w2", 16, 8, 3, 3), t("b2", 16), t("w3", 8, 16, 1, 1),
             t("b3", 8), t("fw", 5, 8), t("fb", 5)]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], inits)


def _both(model, feeds, **options):
    with OrtCpuRunner(model) as ref, make_runner(model, "openvino", **options) as r:
        return ref.infer(feeds), r.infer(feeds), r.settings


# --- availability and devices -------------------------------------------------------------------


def test_probe_registry_and_devices(capsys):
    from workbench.cli import main

    engines = {e.name: e for e in list_engines()}
    ver = ov.__version__.split("-")[0]
    assert engines["openvino"].available and engines["openvino"].device == "cpu"
    assert engines["openvino"].reason.startswith(f"openvino {ver}: devices CPU (")
    for fam, name in (("GPU", "openvino-gpu"), ("NPU", "openvino-npu")):
        here = [d for d in ov.Core().available_devices if d.startswith(fam)]
        assert engines[name].available == bool(here)
        if not here:
            assert engines[name].reason == f"OpenVINO {ver} reports devices CPU; no Intel {fam} here"
    assert "openvino" in list_devices()[0].engines
    assert engine_for_device("openvino").name == engine_for_device("openvino:cpu").name == "openvino"
    assert split_device("openvino:gpu.1") == split_device("openvino-gpu:1") == ("openvino-gpu", "GPU.1")
    with pytest.raises(UsageError, match="unknown OpenVINO device 'TPU'"):
        engine_for_device("openvino:TPU")
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    assert f"  openvino      cpu   yes  openvino {ver}: devices CPU" in out


def test_intel_gpu_and_npu_are_listed_where_openvino_reports_them(monkeypatch, capsys):
    from workbench.cli import main

    fake = (("CPU", "Intel Xeon"), ("GPU.0", "Intel(R) Arc(TM) A770 Graphics (dGPU)"), ("NPU", "Intel(R) AI Boost"))
    monkeypatch.setattr(ovm, "_devices", lambda: fake)
    assert engine_for_device("openvino:GPU").name == "openvino-gpu"
    assert engine_for_device("openvino:NPU").name == "openvino-npu"
    devices = {d.device: d for d in list_devices()}
    assert devices["openvino:GPU.0"].engines == ("openvino-gpu",)
    assert devices["openvino:NPU"].name == "Intel(R) AI Boost"
    r = make_runner(load_model(tiny_cnn()), "openvino:GPU.0", threads=4)  # a CPU setting: dropped
    assert (r.engine, r.device, r.options.device, r.options.threads) == ("openvino-gpu", "openvino:GPU.0",
                                                                         "GPU.0", None)
    assert main(["devices"]) == 0
    assert "openvino:GPU.0  Intel(R) Arc(TM) A770 Graphics (dGPU); engines: openvino-gpu" in capsys.readouterr().out


def test_missing_openvino_is_unavailable_with_this_projects_hint():
    code = ("import sys, json; sys.modules['openvino'] = None\n"
            "from workbench.core.engines.registry import list_engines\n"
            "from workbench import load_model, make_runner\n"
            "from workbench.core.engines.openvino import OpenVinoRunner\n"
            "from workbench.errors import EngineUnavailableError\n"
            "s = {e.name: [e.available, e.reason] for e in list_engines()}\n"
            "m = load_model('sample:resnet-fashion')\n"
            "errs = []\n"
            "for f in (lambda: make_runner(m, 'openvino'), lambda: OpenVinoRunner(m).activate()):\n"
            "    try: f()\n"
            "    except EngineUnavailableError as e: errs.append(str(e))\n"
            "print(json.dumps({'status': s, 'errors': errs}))\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    available, reason = out["status"]["openvino"]
    assert not available and "openvino is not installed" in reason
    assert "pip install --force-reinstall onnx-inference-workbench" in reason
    assert out["status"]["ort-cpu"][0]  # the rest of the workbench still works
    assert len(out["errors"]) == 2 and "onnx-inference-workbench" in out["errors"][1]


# --- numerics against ONNX Runtime --------------------------------------------------------------


def test_fp32_matches_ort_on_batch_1_and_8_with_one_compiled_model(sample):
    m, feeds = sample
    x = feeds["input"]
    with OrtCpuRunner(m) as ref, make_runner(m, "openvino", threads=2, precision="f32") as r:
        for b in (1, 8):
            got = r.infer({"input": x[:b]})
            assert list(got) == ["logits"] and got["logits"].shape == (b, 10)
            np.testing.assert_allclose(got["logits"], ref.infer({"input": x[:b]})["logits"], rtol=1e-4, atol=1e-4)
        first = r.infer({"input": x})["logits"]
        keep = first.copy()
        r.infer({"input": -x})
        np.testing.assert_array_equal(first, keep)  # outputs are copies, not OpenVINO's reused buffers
        s = r.settings
    assert (s["threads"], s["streams"], s["precision"], s["performance_hint"]) == (2, 1, "f32", "latency")
    assert s["openvino"] == ov.__version__.split("-")[0] and s["device_name"] and s["model_format"] == "onnx"


def test_output_names_map_back_to_the_onnx_names():
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Identity", ["r"], ["y"]),
             helper.make_node("Identity", ["x"], ["x2"]), helper.make_node("Neg", ["r"], ["z"])]
    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 4]) for n in ("y", "r", "z", "x2")]
    m = load_model(make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])], vi))
    feeds = {"x": np.array([[-1, 2, 3, -4]], np.float32)}
    ref, got, _ = _both(m, feeds)
    assert list(got) == ["y", "r", "z", "x2"]
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k])


def test_default_precision_is_f32_and_read_back(sample):
    # OpenVINO's own CPU default is bf16 where the CPU has it; the workbench asks for f32 unless
    # the recipe's bf16 pass (or the precision option) asks otherwise: no hidden lower precision.
    m, feeds = sample
    _, _, s = _both(m, {"input": feeds["input"][:1]})
    assert s["precision_requested"] == "f32" and s["precision"] == "f32"


def test_int8_prune_and_fp16_builds_match_ort():
    cal = Dataset({"x": np.random.default_rng(1).standard_normal((16, 3, 8, 8)).astype(np.float32)}, None, "r16")
    src = load_model(three_conv())
    int8 = optimize(src, "int8", device="cpu", calibration=cal)
    assert any(n.op_type == "QuantizeLinear" for n in int8.model.proto.graph.node)
    ref, got, _ = _both(int8.model, {"x": X8}, precision="f32")
    # Both run int8 kernels with their own requantization rounding: a few int8 steps at most.
    scale = float(np.abs(ref["y"]).max())
    assert np.abs(got["y"] - ref["y"]).max() < 0.05 * scale
    pruned = optimize(src, "prune-channels:ratio=0.5", device="cpu", calibration=cal)
    assert pruned.reports[0].modified
    assert [list(t.dims) for t in pruned.model.proto.graph.initializer if t.name == "w2"] == [[8, 8, 3, 3]]
    ref, got, _ = _both(pruned.model, {"x": X8}, precision="f32")
    np.testing.assert_allclose(got["y"], ref["y"], rtol=1e-4, atol=1e-5)
    # fp16 keeps float32 inputs and outputs (Casts at the edges): OpenVINO's CPU plugin without
    # FP16 runs the float16 graph in f32 with float16-rounded weights, as ONNX Runtime's CPU does.
    fp16 = optimize(src, "fp16", device="cpu", calibration=cal)
    assert fp16.reports[0].modified
    ref, got, s = _both(fp16.model, {"x": X8})
    assert got["y"].dtype == np.float32 and s["precision"] == "f32"
    np.testing.assert_allclose(got["y"], ref["y"], rtol=1e-2, atol=2e-3)


# --- errors and options -------------------------------------------------------------------------


def test_bad_inputs_name_the_input(sample):
    m, feeds = sample
    x = feeds["input"]
    with make_runner(m, "openvino") as r:
        with pytest.raises(EngineRunError, match=r"input 'input': expected shape \[\?,1,28,28\], got \[8, 3, 28, 28\]"):
            r.infer({"input": np.repeat(x, 3, axis=1)})
        with pytest.raises(EngineRunError, match="input 'input': expected float32, got float64"):
            r.infer({"input": x.astype(np.float64)})
        with pytest.raises(EngineRunError, match="no value for model input 'input'"):
            r.infer({})
        with pytest.raises(EngineRunError, match="'other' is not an input"):
            r.infer({"input": x, "other": x})
        fn = r.prepare({"input": x[:1]})
        fn()
    with pytest.raises(EngineRunError, match="not active"):
        r.infer({"input": x})


def test_unconvertible_model_is_an_engine_run_error():
    nodes = [helper.make_node("Frobnicate", ["x"], ["y"], domain="my.ops")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("my.ops", 1)])
    with pytest.raises(EngineRunError, match="No conversion rule found for operations: my.ops.Frobnicate") as e:
        make_runner(load_model(proto, check=False), "openvino").activate()
    assert "ONNX Runtime" in (e.value.hint or "")


def test_precision_the_cpu_lacks_is_refused_else_used(sample):
    m, feeds = sample
    for prec, cap in (("bf16", "BF16"), ("f16", "FP16")):
        r = make_runner(m, "openvino", precision=prec)
        if cap in CAPS:
            with r:
                r.infer({"input": feeds["input"][:1]})
            assert r.settings["precision"] == prec
        else:
            with pytest.raises(UsageError, match=f"precision '{prec}'.*no {cap} support"):
                r.activate()


def test_options_and_dispatch(monkeypatch):
    m = load_model(tiny_cnn())
    with pytest.raises(UsageError, match="performance hint"):
        OpenVinoOptions(performance_hint="fast")
    with pytest.raises(UsageError, match="threads must be"):
        OpenVinoOptions(threads=0)
    with pytest.raises(UsageError, match="ONNX Runtime's graph optimization level"):
        make_runner(m, "openvino", optimization_level="basic")
    with pytest.raises(UsageError, match="bad option for openvino"):
        make_runner(m, "openvino", inter_op_threads=2)
    monkeypatch.setenv("WORKBENCH_THREADS", "1")  # the default, as for ONNX Runtime
    r = make_runner(m, "openvino:CPU", threads=None, optimization_level="all", performance_hint="throughput")
    with r:
        r.infer({"x": X8})
    assert (r.settings["threads"], r.settings["performance_hint"]) == (1, "throughput")
    res = bench(m, device="openvino", batch=2, warmup=1, iterations=3, threads=1)
    assert res.engine == "openvino" and res.latency_e2e is None and res.settings["precision"]
    assert res.timing.startswith("host")


# --- bundles ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ov_bundle(tmp_path_factory):
    build = optimize(old_cnn(13, 7), "fuse", device="openvino")
    out = tmp_path_factory.mktemp("ovb") / "bundle"
    export_bundle(build, out, measure=MeasureSpec(warmup=1, iterations=3, samples=16, eval_batch=16))
    return build, out


def test_bundle_writes_and_runs_the_ir(ov_bundle, capsys):
    from workbench.cli import main

    build, out = ov_bundle
    man = json.loads((out / "manifest.json").read_text())
    eng = man["engine"]
    assert {"engine.xml", "engine.bin", "model.onnx"} <= set(man["files"])
    assert (eng["artifact"], eng["weights"], eng["artifact_kind"]) == ("engine.xml", "engine.bin", "openvino ir")
    assert eng["openvino"] == ov.__version__.split("-")[0] and eng["options"]["threads"] >= 1
    assert eng["verified"]["max_abs"] < 1e-5 and eng["compiled"]["precision"]
    ir = ov.Core().read_model(str(out / "engine.xml"))
    consts = [op.get_element_type() for op in ir.get_ops() if op.get_type_name() == "Constant"]
    assert ov.Type.f32 in consts and ov.Type.f16 not in consts  # weights as built, not compressed
    assert 'compile_model("engine.xml", "CPU"' in (out / "README.md").read_text()
    b = load_bundle(out)
    assert b.ir is not None and b.warnings == []
    x = np.random.default_rng(2).standard_normal((3, 3, 16, 16)).astype(np.float32)
    with b.runner() as r, OrtCpuRunner(build.model) as ref:
        np.testing.assert_allclose(r.infer({"x": x})["prob"], ref.infer({"x": x})["prob"], atol=1e-5)
        assert r.settings["model_format"] == "openvino ir"
    assert main(["bench", str(out), "--iterations", "3", "--warmup", "1"]) == 0
    assert "on openvino" in capsys.readouterr().out
    # An IR runs only for the model it was converted from: any other model reads its own ONNX.
    other = OpenVinoRunner(load_model(tiny_cnn()), ir=OpenVinoIR(b.ir.xml, b.ir.weights, b.ir.source_fingerprint))
    with other:
        assert other.infer({"x": X8})["y"].shape == (8, 5) and other.settings["model_format"] == "onnx"


def test_bundle_tamper_options_and_version_mismatch(ov_bundle, tmp_path, monkeypatch):
    _, out = ov_bundle
    bad = tmp_path / "tampered"
    shutil.copytree(out, bad)
    data = bytearray((bad / "engine.bin").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad / "engine.bin").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="engine.bin does not match its sha256"):
        load_bundle(bad)
    opt = tmp_path / "options"
    shutil.copytree(out, opt)
    man = json.loads((opt / "manifest.json").read_text())
    man["engine"]["options"]["cache_dir"] = "/tmp/elsewhere"
    (opt / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(BundleError, match="option 'cache_dir'"):
        load_bundle(opt)
    with pytest.raises(UsageError, match="option 'cache_dir' cannot go into a bundle"):
        export_bundle(optimize(old_cnn(13, 7), "fuse", device="openvino"), tmp_path / "b2",
                      engine_options={"cache_dir": str(tmp_path)}, measure=None)
    monkeypatch.setattr(ovm, "openvino_version", lambda: "2024.6.0")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        b = load_bundle(out)
    msgs = [str(w.message) for w in seen if issubclass(w.category, BundleWarning)]
    assert any("exported with openvino" in m and "this machine has 2024.6.0" in m for m in msgs), msgs
    assert any("engine.xml is not used here" in m for m in msgs)
    assert b.ir is None
    with b.runner() as r:
        assert r.infer({"x": X16})["prob"].shape == (8, 10)
        assert r.settings["model_format"] == "onnx"


def test_a_prepared_call_keeps_its_own_inputs(sample):
    """prepare() binds a request of its own: a later prepare or infer on other inputs (batch 8
    after batch 1) must not change what the first prepared callable runs."""
    m, feeds = sample
    with make_runner(m, "openvino", threads=1) as r:
        one = r.prepare({"input": feeds["input"][:1]})
        eight = r.prepare({"input": feeds["input"][:8]})
        r.infer({"input": feeds["input"][:4]})
        assert next(iter(one().values())).shape[0] == 1
        assert next(iter(eight().values())).shape[0] == 8


def test_openvino_telemetry_stays_off(tmp_path):
    """`import openvino` would write ~/intel/openvino_ga_cid and send an import event; through the
    workbench's engine nothing is written to HOME and the telemetry package is never loaded."""
    home = tmp_path / "home"
    home.mkdir()
    code = ("import sys; from workbench.core.engines.openvino import available_devices; "
            "available_devices(); import importlib.util, openvino; "
            "importlib.util.find_spec('nncf') and __import__('nncf'); "
            "print(sorted(m for m, v in sys.modules.items() if m.startswith('openvino_telemetry') and v))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "HOME": str(home)})
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == "[]" and not any(home.iterdir())
