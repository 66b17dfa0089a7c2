"""Shared fixtures: small hand-built ONNX graphs of several kinds, and an isolated cache."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

# OpenVINO's usage telemetry stays off (see workbench.core.engines.openvino.no_telemetry):
# tests and benchmarks import openvino and nncf directly.
sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_models" / "resnet_fashion.onnx"


def make_model(nodes, inputs, outputs, inits=(), opset=17, name="g") -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, list(inits))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def tiny_cnn(seed: int = 0) -> onnx.ModelProto:
    """x[N,3,8,8] -> Conv(4, 3x3, pad 1, bias) -> Relu -> GlobalAveragePool -> Flatten -> Gemm(5)."""
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")
    fw = numpy_helper.from_array(rng.standard_normal((5, 4)).astype(np.float32), "fw")
    fb = numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "fb")
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1] * 4),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="gap"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1),
    ]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], [w, b, fw, fb])


def text_model() -> onnx.ModelProto:
    """input_ids int64 [batch, seq] -> Gather(embedding) -> ReduceMean(seq) -> MatMul -> logits."""
    rng = np.random.default_rng(1)
    emb = numpy_helper.from_array(rng.standard_normal((100, 8)).astype(np.float32), "emb")
    proj = numpy_helper.from_array(rng.standard_normal((8, 3)).astype(np.float32), "proj")
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    nodes = [
        helper.make_node("Gather", ["emb", "input_ids"], ["e"]),
        helper.make_node("ReduceMean", ["e", "axes"], ["m"], keepdims=0),
        helper.make_node("MatMul", ["m", "proj"], ["logits"]),
    ]
    return make_model(nodes, [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])],
                      [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
                      [emb, proj, axes], opset=18)


def scalar_int32_model() -> onnx.ModelProto:
    """A float vector scaled by an int32 scalar: inputs 'x' float [4] and 'k' int32 []."""
    nodes = [helper.make_node("Cast", ["k"], ["kf"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["x", "kf"], ["y"])]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4]),
                              helper.make_tensor_value_info("k", TensorProto.INT32, [])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])


def audio_model() -> onnx.ModelProto:
    """waveform float [batch, samples] -> Abs -> ReduceMax over samples -> [batch, 1]."""
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    nodes = [helper.make_node("Abs", ["waveform"], ["a"]),
             helper.make_node("ReduceMax", ["a", "axes"], ["peak"], keepdims=1)]
    return make_model(nodes, [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, ["batch", "samples"])],
                      [helper.make_tensor_value_info("peak", TensorProto.FLOAT, ["batch", 1])], [axes], opset=18)


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Synthetic samples are built once per machine in WORKBENCH_CACHE_DIR (the test script sets
    it inside .venv); without it, a temporary folder keeps the user's cache untouched."""
    if "WORKBENCH_CACHE_DIR" not in os.environ:
        os.environ["WORKBENCH_CACHE_DIR"] = str(tmp_path_factory.mktemp("wbcache"))


@pytest.fixture
def model_file(tmp_path: Path):
    """Write a ModelProto to a file and return the path."""
    def write(proto: onnx.ModelProto, name: str = "m.onnx") -> Path:
        p = tmp_path / name
        onnx.save(proto, str(p))
        return p
    return write


@pytest.fixture(scope="session")
def sample_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("sample")
    shutil.copy(SAMPLE, d / SAMPLE.name)
    return d / SAMPLE.name


# The longest files first: on scripts/test's 2 xdist workers (--dist loadfile,
# --no-loadscope-reorder) each starts on one of them while the other takes the many short files.
# pytest-xdist would otherwise order files by test count, which put the one-test browser file last.
_LONGEST_FIRST = ("test_browser.py", "test_notebook.py")


def pytest_collection_modifyitems(config, items) -> None:  # noqa: ARG001
    rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(_LONGEST_FIRST)))  # stable


# On scripts/test's xdist workers, each worker's sessions get cores / workers threads (kernels,
# servers and subprocesses the tests start inherit it): two workers with ONNX Runtime's default
# of every core each ran ~2x slower per test than serially (spinning thread pools fighting).
if os.environ.get("PYTEST_XDIST_WORKER") and "WORKBENCH_THREADS" not in os.environ:
    _workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    os.environ["WORKBENCH_THREADS"] = str(max(1, (os.cpu_count() or 1) // _workers))
    os.environ.setdefault("OMP_NUM_THREADS", os.environ["WORKBENCH_THREADS"])
