"""Input specs: parsing --shape/--input, resolving dynamic dimensions, generated inputs."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import scalar_int32_model, text_model, tiny_cnn
from workbench.core.shapes import (
    DEFAULT_DIM,
    parse_input_arg,
    parse_shape_arg,
    random_feeds,
    resolve_inputs,
    tensor_specs,
)
from workbench.errors import InputSpecError


@pytest.mark.parametrize("text,expected", [
    ("input=1x3x224x224", ("input", (1, 3, 224, 224))),
    ("input_ids:[2,128]", ("input_ids", (2, 128))),
    ("k=", ("k", ())),
])
def test_parse_shape(text, expected):
    assert parse_shape_arg(text) == expected


@pytest.mark.parametrize("text", ["input", "input=1xAx3", "=1x2"])
def test_parse_shape_errors(text):
    with pytest.raises(InputSpecError):
        parse_shape_arg(text)


def test_parse_input(tmp_path):
    assert parse_input_arg("k=3")[1] == 3
    assert parse_input_arg("x=[1, 2]")[1].tolist() == [1, 2]
    np.save(tmp_path / "a.npy", np.ones((2, 2)))
    assert parse_input_arg(f"x={tmp_path / 'a.npy'}")[1].shape == (2, 2)
    with pytest.raises(InputSpecError, match="no such file"):
        parse_input_arg(f"x={tmp_path / 'missing.npy'}")
    with pytest.raises(InputSpecError, match="cannot read value"):
        parse_input_arg("x=abc")


def test_resolve_defaults_and_given_shapes():
    ins, _ = tensor_specs(text_model().graph)
    (r,) = resolve_inputs(ins, batch=4)
    assert r.shape == (4, DEFAULT_DIM)
    assert any("batch" in n for n in r.defaults) and any("--shape input_ids" in n for n in r.defaults)
    (r,) = resolve_inputs(ins, {"input_ids": (2, 7)})
    assert r.shape == (2, 7) and r.defaults == ()


def test_resolve_errors_name_the_input():
    ins, _ = tensor_specs(tiny_cnn().graph)
    with pytest.raises(InputSpecError, match="no input named 'y'.*its inputs are: x"):
        resolve_inputs(ins, {"y": (1,)})
    with pytest.raises(InputSpecError, match="rank 4"):
        resolve_inputs(ins, {"x": (1, 3, 8)})
    with pytest.raises(InputSpecError, match="dimension 1 is fixed at 3"):
        resolve_inputs(ins, {"x": (1, 4, 8, 8)})


def test_random_feeds_dtypes_and_values():
    ins, _ = tensor_specs(scalar_int32_model().graph)
    resolved = resolve_inputs(ins)
    feeds = random_feeds(resolved, values={"k": np.array(3)})
    assert feeds["x"].dtype == np.float32 and feeds["x"].shape == (4,)
    assert feeds["k"].dtype == np.int32 and feeds["k"].shape == () and int(feeds["k"]) == 3
    ids = random_feeds(resolve_inputs(tensor_specs(text_model().graph)[0]))["input_ids"]
    assert ids.dtype == np.int64 and set(np.unique(ids)) <= {0, 1}
