"""The user's own data in the Session, the panel and the CLI: paths, arrays, torch loaders,
unlabeled data (fidelity), a custom metric, random calibration, preprocessing overrides."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from conftest import make_model, tiny_cnn
from workbench import load_model
from workbench.core.evaluation.data import Preprocessing, load_dataset
from workbench.core.evaluation.sources import as_dataset
from workbench.core.session import Session
from workbench.errors import DataError, UsageError
from workbench.ui import Workbench

RNG = np.random.default_rng(0)
X = RNG.standard_normal((24, 3, 8, 8)).astype(np.float32)
Y = (np.arange(24) % 5).astype(np.int64)


def mean_logit(outputs, labels):
    """A stand-in for a task metric: it sees every output and the labels."""
    assert set(outputs) == {"y"} and len(outputs["y"]) == len(labels)
    return float(outputs["y"].mean())


@pytest.fixture(scope="module")
def cnn_path(tmp_path_factory):
    p = tmp_path_factory.mktemp("m") / "cnn.onnx"
    onnx.save(tiny_cnn(), str(p))
    return p


def nhwc_model() -> onnx.ModelProto:
    """x[N,4,4,3] (NHWC) -> Flatten -> MatMul -> y[N,2]."""
    w = numpy_helper.from_array(RNG.standard_normal((48, 2)).astype(np.float32), "w")
    nodes = [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("MatMul", ["f", "w"], ["y"])]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 4, 3])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])], [w])


def test_npz_with_metric_in_panel_deltas_best_pareto_history(cnn_path, tmp_path):
    np.savez(tmp_path / "d.npz", x=X, labels=Y)
    w = Workbench(str(cnn_path), data=str(tmp_path / "d.npz"), metric=mean_logit, threads=1,
                  quick_samples=16, refine=False)
    try:
        s = w.session
        assert s.data.source.endswith("d.npz") and len(s.data) == 24
        assert "24 samples, labeled" in w.data_box.w_info.value and "mean_logit" in w.data_box.w_info.value
        w.enable("fuse")
        rec = w.build()
        d = s.deltas(rec)
        assert d["mean_logit"]["baseline"] == pytest.approx(float(s._baseline_outputs[16].mean()), rel=1e-5)
        assert abs(d["mean_logit"]["delta"]) < 1e-4  # fusion keeps the outputs
        assert "data-metric='mean_logit'" in w.w_deltas.value
        assert rec.row()["metric"] == pytest.approx(d["mean_logit"]["current"])
        assert s.score_key == "metric" and w.fig_pareto.layout.yaxis.title.text == "mean_logit"
        assert len(w.fig_pareto.data[-1].y) == 2
        assert "<th>mean_logit</th>" in w.w_history.value
        assert s.best(max_drop=0.01) is rec
        assert s.best(max_drop=-1.0) is None  # asks more than the baseline's score: none qualifies
        # int8 without calib: a slice of the evaluation data, said in the notes
        assert s.calib is not None and "first 24 samples" in s.calib.source
    finally:
        w.close()


def test_image_folder_and_unlabeled_arrays_in_panel(cnn_path, tmp_path):
    for cls, color in (("a", 30), ("b", 220)):
        (tmp_path / cls).mkdir()
        for i in range(2):
            Image.new("RGB", (10, 10), (color, i * 50, 0)).save(tmp_path / cls / f"{i}.png")
    s = Session(cnn_path, data=str(tmp_path), threads=1, latency_budget_s=0.1, quick_samples=8)
    assert s.data.labels.tolist() == [0, 0, 1, 1] and s.data.inputs["x"].shape == (4, 3, 8, 8)
    assert any("preprocessing" in n and "resize to 8x8" in n for n in s.data.notes)
    w = Workbench(str(cnn_path), data=X[:6], threads=1, quick_samples=8, refine=False)
    try:
        assert "6 samples, unlabeled" in w.data_box.w_info.value
        assert "no labels: accuracy is fidelity to the baseline on 6 samples" in w.data_box.w_info.value
        w.enable("fold")
        rec = w.build()
        assert rec.accuracy.top1 is None and rec.accuracy.top1_agreement == 1.0
        assert rec.accuracy.sqnr_db is not None and rec.accuracy.sqnr_db > 60
        assert "no labels: accuracy is fidelity to the baseline on 6 samples" in w.w_deltas.value
        w.load_data(str(tmp_path), "")  # the Load-data button
        assert "4 samples, labeled" in w.data_box.w_info.value and "preprocessing: resize" in \
            w.data_box.w_info.value
        assert w.session.baseline.accuracy.top1 is not None
    finally:
        w.close()


def test_random_calibration_warns_in_panel_manifest_and_readme(cnn_path, tmp_path):
    w = Workbench(str(cnn_path), data=X[:8], calib="random", threads=1, quick_samples=8, refine=False)
    try:
        assert "calibration: random inputs" in w.data_box.w_info.value
        w.enable("int8", samples=16)
        rec = w.build()
        assert rec.build.calibration["random"] is True
        assert "wb-warning" in w.w_deltas.value and "its accuracy says nothing" in w.w_deltas.value
        out = w.export(str(tmp_path / "bundle"), force=True).parent
        m = json.loads((out / "manifest.json").read_text())
        assert m["calibration"]["random"] is True and "accuracy says nothing" in m["calibration"]["warning"]
        assert "accuracy says nothing" in (out / "README.md").read_text()
    finally:
        w.close()


def test_int8_without_calibration_says_how_to_get_a_latency_only_look(cnn_path):
    s = Session(cnn_path, threads=1, latency_budget_s=0.1)
    with pytest.raises(DataError, match="--calib random"):
        s.build("int8", measure=False)


def test_torch_dataloader_and_dataset():
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    m = load_model(tiny_cnn())
    tds = TensorDataset(torch.from_numpy(X), torch.from_numpy(Y))
    ds = as_dataset(DataLoader(tds, batch_size=5), m)
    assert np.array_equal(ds.inputs["x"], X) and np.array_equal(ds.labels, Y)
    ds2 = as_dataset(tds, m, limit=7)  # one sample per item: stacked
    assert np.array_equal(ds2.inputs["x"], X[:7]) and ds2.labels.tolist() == Y[:7].tolist()
    # Inputs only: TensorDataset(x) yields (x,), a DataLoader over it [batch]: unlabeled data.
    only = TensorDataset(torch.from_numpy(X))
    for src in (only, DataLoader(only, batch_size=6)):
        ds3 = as_dataset(src, m)
        assert np.array_equal(ds3.inputs["x"], X) and ds3.labels is None
    s = Session(tiny_cnn(), data=DataLoader(tds, batch_size=8), threads=1, latency_budget_s=0.1,
                quick_samples=24)
    s.measure(s.baseline)
    assert s.baseline.accuracy.samples == 24 and s.baseline.accuracy.top1 is not None


def test_arrays_dicts_and_iterables():
    m = load_model(tiny_cnn())
    assert as_dataset({"x": X}, m).labels is None
    ds = as_dataset((X, Y), m)
    assert np.array_equal(ds.labels, Y)
    ds = as_dataset([(X[i], int(Y[i])) for i in range(4)], m)  # per-sample pairs
    assert ds.inputs["x"].shape == (4, 3, 8, 8) and ds.labels.tolist() == Y[:4].tolist()
    ds = as_dataset(iter([X[:3], X[3:5]]), m)  # inputs-only batches
    assert len(ds) == 5 and ds.labels is None


@pytest.mark.parametrize("data,match", [
    (np.zeros((2, 3, 9, 8), np.float32), "input 'x' dimension 2 is 9, the model expects 8"),
    ((X[:4], Y[:3]), "3 labels for 4 samples"),
    ([], "empty: it yielded no items"),
    ([(X[:2], Y[:3])], "item 0: 3 labels for 2 samples"),
    ({"z": X}, "'z' is not an input of the model"),
])
def test_bad_user_data(data, match):
    with pytest.raises(DataError, match=match):
        as_dataset(data, load_model(tiny_cnn()))


def test_nhwc_bgr_preprocessing_gives_exactly_the_expected_arrays(tmp_path):
    pix = np.arange(48, dtype=np.uint8).reshape(4, 4, 3) * 5
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        Image.fromarray(pix if cls == "a" else 255 - pix).save(tmp_path / cls / "0.png")
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    ds = load_dataset(tmp_path, load_model(nhwc_model()),
                      preprocessing={"channels": "BGR", "mean": mean, "std": std})
    for i, img in enumerate((pix, 255 - pix)):
        want = (img[..., ::-1].astype(np.float32) / 255 - np.float32(mean)) / np.float32(std)
        np.testing.assert_allclose(ds.inputs["x"][i], want, rtol=1e-6, atol=1e-6)
    assert ds.preprocessing.layout == "NHWC" and ds.preprocessing.channels == "BGR"
    assert any("BGR, NHWC" in n for n in ds.notes)
    # explicit size and NCHW on the default model; a bad layout is a DataError
    nchw = load_dataset(tmp_path, load_model(tiny_cnn()), Preprocessing.parse("scale=1,mean=0,std=1"))
    assert nchw.inputs["x"].shape == (2, 3, 8, 8) and nchw.inputs["x"].max() > 1
    with pytest.raises(DataError, match="layout"):
        load_dataset(tmp_path, load_model(nhwc_model()), {"layout": "HWC"})


def test_metric_errors_are_user_errors():
    with pytest.raises(UsageError, match="takes \\(outputs, labels\\)"):
        Session(tiny_cnn(), metric=lambda outputs: 0.0)
    s = Session(tiny_cnn(), data=X[:4], metric=lambda o, y: "high", threads=1, latency_budget_s=0.1)
    with pytest.raises(UsageError, match="not a number"):
        s.measure(s.baseline)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True,
                          timeout=300)


def test_cli_calib_random_and_preprocess(cnn_path, tmp_path):
    p = _cli("optimize", str(cnn_path), "--passes", "int8:samples=8", "--calib", "random",
             "--out", str(tmp_path / "o"), "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["calibration"]["random"] is True
    p = _cli("eval", str(cnn_path), "--data", str(tmp_path), "--preprocess", "size=8,colour=x")
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "unknown key 'colour'" in p.stderr
