"""Hostile evaluation and calibration data (issue 9): every case is a DataError naming the problem,
through load_dataset, evaluation and an int8 build's calibration, never a numpy or ONNX Runtime
exception. (Basic shape/NaN/empty/label cases are in test_data.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import text_model, tiny_cnn
from workbench.core.build import optimize
from workbench.core.cache import BuildCache
from workbench.core.evaluation.data import load_dataset
from workbench.core.evaluation.run import evaluate
from workbench.core.model import load_model
from workbench.errors import DataError

X = np.zeros((2, 3, 8, 8), np.float32)
CNN, TEXT = "cnn", "text"

CASES = {
    "strings": (CNN, {"images": np.full((2, 3, 8, 8), "a")}, "is <U1, the model wants float32"),
    "complex": (CNN, {"images": X.astype(np.complex64)}, "is complex64, the model wants float32"),
    "inf": (CNN, {"images": np.full((2, 3, 8, 8), np.inf, np.float32)}, "NaN or Inf"),
    "nan-float16": (CNN, {"images": np.full((2, 3, 8, 8), np.nan, np.float16)}, "NaN or Inf"),
    "nan-one-value": (CNN, {"images": np.where(np.arange(384).reshape(2, 3, 8, 8) == 7, np.nan, X)},
                      "holds 1 NaN or Inf"),
    "fractional-ids": (TEXT, {"input_ids": np.full((2, 5), 0.5, np.float32)}, "fractional values"),
    "scalar": (CNN, {"images": np.float32(1)}, "no samples"),
    "empty": (CNN, {"images": X[:0], "labels": np.zeros(0, np.int64)}, "no samples"),
    "wrong-channels": (CNN, {"images": np.zeros((2, 1, 8, 8), np.float32)}, "dimension 1 is 1"),
    "uint8-wrong-rank": (CNN, {"images": np.zeros((2, 8), np.uint8)}, "rank 4"),
    "labels-strings": (CNN, {"images": X, "labels": np.array(["a", "b"])}, "not integer class indices"),
    "labels-inf": (CNN, {"images": X, "labels": np.array([np.inf, 0])}, "not integer class indices"),
    "labels-2d": (CNN, {"images": X, "labels": np.zeros((2, 1), np.int64)}, "labels have shape"),
}


def _model(kind: str):
    return load_model(tiny_cnn() if kind == CNN else text_model())


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("use", ["load", "eval", "calibration"])
def test_bad_data_is_a_data_error(name: str, use: str, tmp_path) -> None:
    kind, arrays, match = CASES[name]
    path = tmp_path / f"{name}.npz"
    np.savez(path, **arrays)
    model = _model(kind)
    with pytest.raises(DataError, match=match):
        if use == "load":
            load_dataset(path, model)
        elif use == "eval":
            evaluate(model, data=str(path))
        else:
            optimize(model, "int8", calibration=str(path), cache=BuildCache(enabled=False))


def test_integral_floats_for_integer_inputs_are_converted(tmp_path) -> None:
    np.savez(tmp_path / "d.npz", input_ids=np.ones((2, 5), np.float32))
    ds = load_dataset(tmp_path / "d.npz", _model(TEXT))
    assert ds.inputs["input_ids"].dtype == np.int64


@pytest.mark.parametrize("labels,match", [([0, 7], "label 7 is out of range for 5 classes"),
                                          ([2**62, 0], "out of range for 5 classes")])
def test_labels_out_of_range(tmp_path, labels, match) -> None:
    np.savez(tmp_path / "d.npz", images=X, labels=np.array(labels, np.int64))
    with pytest.raises(DataError, match=match):
        evaluate(tiny_cnn(), data=str(tmp_path / "d.npz"))


def test_pickled_npz_is_refused(tmp_path) -> None:
    """allow_pickle=False: an object array (which could run code on load) is a DataError."""
    np.savez(tmp_path / "d.npz", images=np.array([object(), object()], dtype=object))
    with pytest.raises(DataError, match="no pickled objects"):
        load_dataset(tmp_path / "d.npz", _model(CNN))
