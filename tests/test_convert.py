"""Conversion from PyTorch: torchvision models through both exporters, the CLI, and the errors."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torchvision

import workbench as wb
from workbench.cli import main
from workbench.core.build import optimize
from workbench.core.cache import BuildCache
from workbench.core.convert import convert_torch
from workbench.errors import ConversionError, UsageError


def _ort(model: wb.Model, x: torch.Tensor) -> np.ndarray:
    sess = ort.InferenceSession(model.proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]


def _torch(module: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return module.eval()(x).numpy()


class SmallCNN(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


class Lgamma(torch.nn.Module):  # aten::lgamma has no ONNX conversion in either exporter
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.lgamma(x)


class DataDependent(torch.nn.Module):  # dynamo refuses; TorchScript tracing bakes in one branch
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return x * 2
        return x - 1


@pytest.fixture(scope="module")
def zoo():
    """Each torchvision model converted once (random weights) for every test that uses it."""
    done: dict = {}

    def get(name: str, **options):
        if name not in done:
            torch.manual_seed(0)
            module = getattr(torchvision.models, name)(weights=None).eval()
            x = torch.randn(1, 3, 224, 224)
            done[name] = module, x, wb.load_model(module, example_inputs=(x,),
                                                        fidelity_samples=1, **options)
        return done[name]

    return get


# The dynamo exporter takes 15-35 s per model on a 2-core machine: resnet18 goes through it (the
# default path), mobilenet through TorchScript (about 3 s), so both exporters meet a real network.
@pytest.mark.parametrize(("name", "exporter"), [("resnet18", "auto"), ("mobilenet_v3_small", "torchscript")])
def test_torchvision_converts_faithfully(zoo, name, exporter):
    module, x, model = zoo(name, exporter=exporter)
    c = model.conversion
    assert c["exporter"] == ("dynamo" if exporter == "auto" else exporter) and c["fallback_reason"] is None
    assert ("onnxscript" in c) == (c["exporter"] == "dynamo")
    assert c["torch"] == torch.__version__ and c["onnx"] == onnx.__version__
    assert c["fidelity"]["samples"] == 2 and c["fidelity"]["max_abs"] <= 1e-4
    assert c["fidelity"]["cosine"] > 0.99999
    assert set(c["fidelity"]["outputs"]) == set(c["output_names"])
    ref = _torch(module, x)
    assert np.abs(_ort(model, x) - ref).max() <= 1e-4  # recomputed here, not trusted
    x2 = torch.randn(2, 3, 224, 224)
    got = _ort(model, x2)
    assert got.shape == (2, 1000)
    assert np.abs(got - _torch(module, x2)).max() <= 1e-4
    dim0 = model.proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim0.dim_param == "batch" and not dim0.HasField("dim_value")


def test_manifest_carries_conversion(zoo, tmp_path):
    _, _, model = zoo("resnet18", exporter="auto")
    r = optimize(model, "fold", cache=BuildCache(tmp_path, enabled=False))
    assert r.manifest()["conversion"] == model.conversion
    assert r.model.conversion == model.conversion  # metadata survives the pass


def test_training_mode_restored_and_noted():
    module = SmallCNN().train()
    model = convert_torch(module, torch.randn(1, 3, 8, 8), exporter="torchscript", fidelity_samples=1)
    assert module.training
    assert model.conversion["exporter"] == "torchscript" and model.conversion["fallback_reason"] is None
    assert any("training mode" in n for n in model.conversion["notes"])
    assert model.conversion["fidelity"]["max_abs"] <= 1e-5


def test_fallback_records_the_reason(monkeypatch):
    import workbench.core.convert as conv

    def refuse(*a, **k):
        raise RuntimeError("dynamo says no: unsupported thing\nmore detail")

    monkeypatch.setattr(conv, "_export_dynamo", refuse)
    model = convert_torch(SmallCNN(), (torch.randn(1, 3, 8, 8),), fidelity_samples=1)
    assert model.conversion["exporter"] == "torchscript"
    assert model.conversion["fallback_reason"] == "dynamo says no: unsupported thing"
    assert "onnxscript" not in model.conversion


def test_unsupported_op_names_the_op():
    with pytest.raises(ConversionError) as e:
        convert_torch(Lgamma(), (torch.rand(2, 5) + 0.5,))
    msg = str(e.value)
    assert "lgamma" in msg and "dynamo:" in msg and "torchscript:" in msg
    assert e.value.__cause__ is not None


def test_data_dependent_branch_is_caught():
    with pytest.raises(ConversionError) as e:
        convert_torch(DataDependent(), (torch.rand(2, 5),), fidelity_samples=4)
    msg = str(e.value)
    assert "data-dependent" in msg and "TracerWarning" in msg and "GuardOnDataDependent" in msg


def test_module_needs_example_inputs():
    with pytest.raises(UsageError, match="example"):
        wb.load_model(SmallCNN())
    with pytest.raises(UsageError, match="torch.nn.Module only"):
        wb.load_model("sample:resnet18", example_inputs=(torch.zeros(1),))


def test_cli_convert_from_file(tmp_path, capsys):
    src = tmp_path / "mymodels.py"
    src.write_text(textwrap.dedent("""
        import torch

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.emb = torch.nn.Embedding(10, 4)
                self.conv = torch.nn.Conv2d(3, 4, 3)

            def forward(self, x, ids):
                return self.conv(x).mean((2, 3)) + self.emb(ids).mean(1)

        def factory():
            torch.manual_seed(0)
            return Net()
    """))
    out = tmp_path / "net.onnx"
    rc = main(["convert", f"{src}:factory", "--example", "1x3x8x8", "--example", "1x5:int64",
               "--out", str(out), "--exporter", "torchscript", "--json"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == str(out) and report["exporter"] == "torchscript"
    assert report["fidelity"]["max_abs"] <= 1e-5
    assert report["example_inputs"]["ids"]["dtype"] == "int64"
    loaded = wb.load_model(out)
    assert loaded.conversion == {k: v for k, v in report.items() if k not in ("model", "fingerprint")}
    assert [i.name for i in loaded.proto.graph.input] == ["x", "ids"]


@pytest.mark.parametrize(("ref", "says"), [
    ("nocolon", "not a module reference"),
    ("no_such_pkg_xyz:factory", "no module named 'no_such_pkg_xyz'"),
    ("workbench.errors:NoSuchFactory", "has no attribute 'NoSuchFactory'"),
    ("workbench.errors:DIST", "not a module or a factory"),
    ("/nonexistent/file.py:f", "no such file"),
])
def test_cli_bad_ref(ref, says, tmp_path, capsys):
    rc = main(["convert", ref, "--example", "1x3", "--out", str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error: ") and says in err and "\n" not in err
    assert not (tmp_path / "m.onnx").exists()


def test_no_torch_gives_install_hint():
    code = textwrap.dedent("""
        import sys
        sys.modules["torch"] = None
        from workbench.core.convert import convert_torch
        from workbench.errors import ConversionError
        try:
            convert_torch(object(), ())
        except ConversionError as e:
            print(e)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "needs PyTorch" in out.stdout and "onnx-inference-workbench[torch]" in out.stdout, out.stderr


def test_session_and_panel_take_a_module(tmp_path, monkeypatch):
    """`Session(module, example_inputs=...)` and `Workbench(module, ...)` convert on the spot: the
    baseline is the converted model, and the panel's model line shows the conversion fidelity."""
    from workbench.core.session import Session
    from workbench.ui import Workbench

    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    torch.manual_seed(0)
    module, x = SmallCNN(), torch.randn(2, 3, 8, 8)
    opts = {"exporter": "torchscript", "fidelity_samples": 1}
    s = Session(module, example_inputs=(x[:1],), convert_options=opts, latency_budget_s=0.05,
                quick_samples=8, data=x.numpy())
    assert s.source.conversion["exporter"] == "torchscript"
    rec = s.measure(s.baseline)
    assert rec.latency is not None and rec.accuracy.samples == 2
    panel = Workbench(module, example_inputs=(x[:1],), convert_options=opts, data=x.numpy(),
                      quick_samples=8, measure_baseline=False)
    try:
        assert "wb-conversion" in panel.w_summary.value and "torchscript" in panel.w_summary.value
        assert "max abs error" in panel.w_summary.value
        out = panel.session.source.proto
        got = ort.InferenceSession(out.SerializeToString()).run(None, {"x": x.numpy()})[0]
        assert np.abs(got - _torch(module, x)).max() <= 1e-5
    finally:
        panel.close()
