"""Loading: every source kind, good and malformed files, external data safety, fingerprints."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import make_model, tiny_cnn
from workbench import load_model
from workbench.errors import ModelLoadError, ModelValidationError


def test_load_from_path_bytes_and_proto_agree(model_file):
    proto = tiny_cnn()
    path = model_file(proto)
    a = load_model(path)
    b = load_model(path.read_bytes())
    c = load_model(proto)
    assert a.fingerprint == b.fingerprint == c.fingerprint
    assert a.fingerprint.startswith("sha256:") and len(a.fingerprint) == 7 + 64
    assert a.size_bytes == path.stat().st_size
    assert a.path == path and b.path is None


def test_fingerprint_changes_with_weights():
    p1, p2 = tiny_cnn(seed=0), tiny_cnn(seed=1)
    assert load_model(p1).fingerprint != load_model(p2).fingerprint


def test_load_sample_by_name():
    m = load_model("sample:resnet-fashion")
    assert m.source == "sample:resnet-fashion"
    assert m.metadata_json("workbench.preprocessing")["std"]


@pytest.mark.parametrize("content,match", [
    (b"", "empty"),
    (os.urandom(4096), "not an ONNX model"),
    (b"this is a text file, not a model\n" * 10, "not an ONNX model"),
])
def test_malformed_files_are_rejected(tmp_path: Path, content: bytes, match: str):
    p = tmp_path / "bad.onnx"
    p.write_bytes(content)
    with pytest.raises(ModelLoadError, match=match):
        load_model(p)


def test_truncated_file(model_file):
    path = model_file(tiny_cnn())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises((ModelLoadError, ModelValidationError)):
        load_model(path)


def test_missing_file_and_directory(tmp_path: Path):
    with pytest.raises(ModelLoadError, match="no such file"):
        load_model(tmp_path / "nope.onnx")
    with pytest.raises(ModelLoadError, match="is a directory"):
        load_model(tmp_path)


def test_unknown_sample():
    with pytest.raises(ModelLoadError, match="no sample named 'resnet9000'.*sample:resnet-fashion"):
        load_model("sample:resnet9000")


def test_dangling_input_fails_checker():
    nodes = [helper.make_node("Relu", ["not_defined"], ["y"])]
    proto = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    with pytest.raises(ModelValidationError, match="not a valid ONNX model"):
        load_model(proto)


def test_inconsistent_shapes_fail_inference():
    # MatMul of [2,3] by [4,5]: inner dimensions differ.
    w = numpy_helper.from_array(np.zeros((4, 5), np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
    proto = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5])], [w])
    with pytest.raises(ModelValidationError, match="shape inference"):
        load_model(proto)


def _external_model(tmp_path: Path, location: str) -> Path:
    """A model whose weight 'w' points at external data ``location``."""
    proto = tiny_cnn()
    for t in proto.graph.initializer:
        if t.name == "w":
            raw = t.raw_data or numpy_helper.to_array(t).tobytes()
            t.ClearField("raw_data")
            t.ClearField("float_data")
            t.data_location = TensorProto.EXTERNAL
            for k, v in (("location", location), ("offset", "0"), ("length", str(len(raw)))):
                t.external_data.add(key=k, value=v)
            payload = raw
    path = tmp_path / "model" / "m.onnx"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(proto.SerializeToString())
    return path, payload


def test_external_data_inside_folder_loads(tmp_path: Path):
    path, payload = _external_model(tmp_path, "weights.bin")
    (path.parent / "weights.bin").write_bytes(payload)
    m = load_model(path)
    assert m.size_bytes == path.stat().st_size + len(payload)
    assert m.fingerprint == load_model(tiny_cnn()).fingerprint  # same content, wherever stored


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "sub/../../secret.bin"])
def test_external_data_escaping_the_folder_is_rejected(tmp_path: Path, location: str):
    path, payload = _external_model(tmp_path, location)
    (tmp_path / "secret.bin").write_bytes(payload)
    with pytest.raises(ModelLoadError, match="outside the model's folder"):
        load_model(path)


def test_external_data_symlink_escape_is_rejected(tmp_path: Path):
    path, payload = _external_model(tmp_path, "link.bin")
    (tmp_path / "secret.bin").write_bytes(payload)
    (path.parent / "link.bin").symlink_to(tmp_path / "secret.bin")
    with pytest.raises(ModelLoadError, match="symbolic link"):
        load_model(path)


def test_external_data_missing_or_short(tmp_path: Path):
    path, payload = _external_model(tmp_path, "weights.bin")
    with pytest.raises(ModelLoadError, match="missing"):
        load_model(path)
    (path.parent / "weights.bin").write_bytes(payload[:10])
    with pytest.raises(ModelLoadError, match="shorter"):
        load_model(path)


def test_loading_never_modifies_the_file(model_file):
    path = model_file(tiny_cnn())
    before = path.read_bytes()
    load_model(path)
    assert path.read_bytes() == before


def test_bytes_with_external_data_are_refused(tmp_path: Path):
    path, _ = _external_model(tmp_path, "weights.bin")
    with pytest.raises(ModelLoadError, match="external data"):
        load_model(path.read_bytes())


def test_roundtrip_proto_copy_is_independent():
    proto = tiny_cnn()
    m = load_model(proto)
    proto.graph.node[0].name = "changed"
    assert m.proto.graph.node[0].name == "conv"
    assert isinstance(m.proto, onnx.ModelProto)
