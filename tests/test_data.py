"""Data loaders: .npz arrays, image folders, the sample's sets, and clear errors for bad data."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import text_model, tiny_cnn
from workbench import evaluate, load_dataset, load_model, random_dataset
from workbench.errors import DataError


def test_sample_test_set_is_preprocessed_from_metadata():
    m = load_model("sample:resnet-fashion")
    ds = load_dataset(None, m)
    assert len(ds) == 10_000 and ds.labels is not None
    x = ds.inputs["input"]
    assert x.dtype == np.float32 and x.shape == (10_000, 1, 28, 28)
    pre = ds.preprocessing
    assert pre is not None and pre.std == (0.353,)
    assert x.min() == pytest.approx((0 - 0.286) / 0.353, abs=1e-5)  # black pixels
    calib = load_dataset("sample:resnet-fashion:calib", m)
    assert len(calib) >= 1000 and np.bincount(calib.labels).min() > 0


def test_npz_by_input_name_and_by_images_key(tmp_path):
    m = load_model(tiny_cnn())
    x = np.random.default_rng(0).standard_normal((6, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "a.npz", x=x, labels=np.arange(6) % 5)
    np.savez(tmp_path / "b.npz", images=x)
    a = load_dataset(tmp_path / "a.npz", m)
    b = load_dataset(tmp_path / "b.npz", m)
    assert np.array_equal(a.inputs["x"], b.inputs["x"]) and b.labels is None
    assert a.content_hash() != b.content_hash()  # labels are part of the hash
    batches = list(a.batches(4))
    assert [len(f["x"]) for f, _ in batches] == [4, 2]


def test_uint8_without_declared_preprocessing_is_scaled_and_noted(tmp_path):
    m = load_model(tiny_cnn())
    np.savez(tmp_path / "u.npz", images=np.full((2, 3, 8, 8), 255, np.uint8), labels=[0, 1])
    ds = load_dataset(tmp_path / "u.npz", m)
    assert ds.inputs["x"].max() == pytest.approx(1.0)
    assert any("scaled to [0, 1]" in n for n in ds.notes)


def test_image_folder(tmp_path):
    m = load_model(tiny_cnn())
    for cls, color in (("cat", 10), ("dog", 200)):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.new("RGB", (16, 12), (color, color, color)).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "dog" / "notes.txt").write_text("ignored")
    ds = load_dataset(tmp_path, m)
    assert ds.inputs["x"].shape == (6, 3, 8, 8)
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert "classes (label order): cat, dog" in ds.notes


@pytest.mark.parametrize("arrays,match", [
    ({"images": np.zeros((2, 3, 9, 8), np.float32)}, "dimension 2 is 9, the model expects 8"),
    ({"images": np.zeros((2, 8, 8), np.float32)}, "rank 4"),
    ({"images": np.full((2, 3, 8, 8), np.nan, np.float32)}, "NaN or Inf"),
    ({"images": np.zeros((0, 3, 8, 8), np.float32)}, "no samples"),
    ({"other": np.zeros((2, 3, 8, 8), np.float32)}, "no array for input 'x'"),
    ({"images": np.zeros((2, 3, 8, 8), np.float32), "labels": np.array([0, 1, 2])}, "labels have shape"),
    ({"images": np.zeros((2, 3, 8, 8), np.float32), "labels": np.array([0.5, 1])}, "not integer"),
    ({"images": np.zeros((2, 3, 8, 8), np.float32), "labels": np.array([0, -1])}, "negative"),
])
def test_bad_npz(tmp_path, arrays, match):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=match):
        load_dataset(tmp_path / "bad.npz", load_model(tiny_cnn()))


def test_unreadable_or_missing_data(tmp_path):
    m = load_model(tiny_cnn())
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="cannot read"):
        load_dataset(tmp_path / "x.npz", m)
    with pytest.raises(DataError, match="no such data"):
        load_dataset(tmp_path / "missing.npz", m)
    with pytest.raises(DataError, match="no evaluation data given"):
        load_dataset(None, m)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        load_dataset(tmp_path / "empty", m)


def test_labels_out_of_range_in_evaluation(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 3, 8, 8), np.float32), labels=[0, 1, 9])
    with pytest.raises(DataError, match="label 9 is out of range for 5 classes"):
        evaluate(tiny_cnn(), data=str(tmp_path / "d.npz"))


def test_random_dataset_batched_and_grouped():
    ds = random_dataset(load_model(text_model()), 5)
    assert ds.inputs["input_ids"].shape[0] == 5 and ds.groups is None
    from conftest import scalar_int32_model

    ds = random_dataset(load_model(scalar_int32_model()), 3)
    assert ds.groups is not None and len(ds) == 3


def test_a_build_made_from_a_sample_uses_the_samples_data(tmp_path, monkeypatch):
    """Builds are named `sample:NAME+recipe`: evaluating one, or building on it again, must find
    the sample's test and calibration sets (this once failed with "no sample named ...")."""
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    from workbench import evaluate
    from workbench.core.build import optimize

    fused = optimize("sample:resnet-fashion", "fuse").model
    assert fused.source.startswith("sample:resnet-fashion+")
    r = evaluate(fused, limit=40)
    assert r.samples == 40 and r.accuracy is not None and r.data.endswith("fashion_mnist_test.npz")
    q = optimize(fused, "int8:samples=16")
    assert q.calibration is not None and q.calibration["source"].endswith("fashion_mnist_calib.npz")
