"""Per-layer collectors of OpenVINO (run here, on the CPU plugin) and TensorRT (its name and inspector
JSON parsing, on strings TensorRT prints; TensorRT itself is not installed here)."""

from __future__ import annotations

import datetime
import importlib.util
import json
import sys

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import make_model
from workbench.core.model import load_model
from workbench.core.profiling import openvino as ovp
from workbench.core.profiling.layers import model_node_names
from workbench.core.profiling.tensorrt import (
    collect_tensorrt,
    map_layers,
    parse_inspector_json,
    parse_layer_name,
)
from workbench.errors import EngineUnavailableError, install_hint

needs_openvino = pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                                    reason="openvino is not installed (pip install '.[openvino]')")


def residual_cnn():
    """x[1,3,16,16] -> Conv -> BatchNormalization -> Relu -> Conv -> Add(residual) -> Relu
    -> GlobalAveragePool -> Flatten -> Gemm(4); every node named."""
    rng = np.random.default_rng(0)

    def init(name, *shape):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    inits = [init("w1", 8, 3, 3, 3), init("b1", 8), init("s", 8), init("bb", 8), init("mu", 8),
             numpy_helper.from_array(rng.uniform(0.5, 1.5, 8).astype(np.float32), "var"),
             init("w2", 8, 8, 3, 3), init("b2", 8), init("fw", 4, 8), init("fb", 4)]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", kernel_shape=[3, 3], pads=[1] * 4),
        helper.make_node("BatchNormalization", ["c1", "s", "bb", "mu", "var"], ["n1"], name="bn1"),
        helper.make_node("Relu", ["n1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", kernel_shape=[3, 3], pads=[1] * 4),
        helper.make_node("Add", ["c2", "r1"], ["a"], name="add"),
        helper.make_node("Relu", ["a"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["p"], name="gap"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1),
    ]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], inits)


# ---------------------------------------------------------------------------------------------
# OpenVINO


@needs_openvino
def test_openvino_layers_map_to_the_models_nodes(monkeypatch):
    model = load_model(residual_cnn())
    calls = {"run": 0, "between": 0}
    real = ovp.profile_request

    def counting(run, request, **kw):
        def counted():
            calls["run"] += 1
            return run()
        return real(counted, request, **kw)

    monkeypatch.setattr(ovp, "profile_request", counting)
    feeds = {"x": np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)}

    def between():
        calls["between"] += 1

    got = ovp.collect_openvino(model, feeds, runs=3, warmup=2, options={"threads": 1}, between=between)
    # 2 warm-up runs, 3 kept ones in blocks of one with a timing slice after each, and one
    # re-warm run after each slice but the last (layers.run_schedule)
    assert calls == {"run": 7, "between": 3}
    assert got.nodes and all(n.median_ms >= 0 and n.p90_ms >= n.median_ms for n in got.nodes)
    names = set(model_node_names(model.proto))
    covered = [c for n in got.nodes for c in n.covers]
    assert set(covered) <= names
    assert {"conv1", "conv2"} <= set(covered)  # the Conv OpenVINO renames when it folds the BatchNorm
    fused = [n for n in got.nodes if n.origin == "fused"]
    assert fused and all(len(n.covers) > 1 for n in fused)
    conv1 = next(n for n in got.nodes if "conv1" in n.covers)
    assert {"bn1", "relu1"} <= set(conv1.covers) and conv1.kernel and conv1.precision == "f32"
    assert got.settings["perf_count"] is True
    assert got.profiled_run_ms > 0 and got.node_sum_ms > 0


@needs_openvino
def test_openvino_sample_time_is_on_model_nodes():
    model = load_model("sample:resnet-fashion")
    feeds = {"input": np.random.default_rng(0).random((1, 1, 28, 28)).astype(np.float32)}
    got = ovp.collect_openvino(model, feeds, runs=3, warmup=1, options={"threads": 2})
    total = sum(n.median_ms for n in got.nodes)
    mapped = sum(n.median_ms for n in got.nodes if n.origin in ("model", "fused"))
    assert mapped >= 0.9 * total
    reorders = [n for n in got.nodes if n.op_type == "Reorder"]
    assert reorders and all(n.origin == "inserted" and n.note.startswith("layout reorder") for n in reorders)


def test_profile_request_counts_and_keeps_executed_layers_only():
    class Status:
        EXECUTED, NOT_RUN = "EXECUTED", "NOT_RUN"

    class Info:
        def __init__(self, name, status, us):
            self.node_name, self.node_type, self.status = name, "Convolution", status
            self.real_time, self.Status = datetime.timedelta(microseconds=us), Status

    class Request:
        runs = 0

        def infer(self):
            self.runs += 1

        def get_profiling_info(self):
            return [Info("conv", Status.EXECUTED, 100 * self.runs), Info("relu", Status.NOT_RUN, 0)]

    req = Request()
    per_run, wall, types = ovp.profile_request(req.infer, req, runs=3, warmup=2)
    assert req.runs == 5 and len(per_run) == len(wall) == 3
    assert per_run == [{"conv": pytest.approx(0.3)}, {"conv": pytest.approx(0.4)}, {"conv": pytest.approx(0.5)}]
    assert types == {"conv": "Convolution"}


def test_perf_count_option_sets_perf_count_only_when_asked():
    from workbench.core.engines.openvino import OpenVinoOptions, compile_config

    assert compile_config(OpenVinoOptions(perf_count=True))["PERF_COUNT"] is True
    assert "PERF_COUNT" not in compile_config(OpenVinoOptions())


def test_openvino_resolver_cuts_suffixes_from_the_right():
    nodes = [helper.make_node("Relu", ["x"], ["layer1.0.conv1/Relu_6:0"], name="layer1.0.conv1/Relu_6"),
             helper.make_node("Relu", ["layer1.0.conv1/Relu_6:0"], ["y"], name="node_relu")]
    resolve = ovp.resolver(make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])]))
    assert resolve("layer1.0.conv1/Relu_6/WithoutBiases") == "layer1.0.conv1/Relu_6"
    assert resolve("node_relu/fq_weights_1") == "node_relu"
    assert resolve("y") == "node_relu"  # an output tensor name
    assert resolve("Multiply_5673") is None


# ---------------------------------------------------------------------------------------------
# TensorRT: layer names as TensorRT prints them (TREx's example engines, trtexec --dumpLayerInfo
# and --dumpProfile output posted in issues), and the engine inspector's JSON


@pytest.mark.parametrize(("name", "names", "kind"), [
    ("Conv_5 + Add_6 + Relu_7", ["Conv_5", "Add_6", "Relu_7"], "fused"),
    ("MaxPool_2", ["MaxPool_2"], "single"),
    ("PWN(PWN(/model.8/cv2/act/Sigmoid), PWN(/model.8/cv2/act/Mul))",
     ["/model.8/cv2/act/Sigmoid", "/model.8/cv2/act/Mul"], "fused"),
    ("PWN(PWN(PWN(/m/cv2/act/Sigmoid), PWN(/m/cv2/act/Mul)), PWN(/m/Add))",
     ["/m/cv2/act/Sigmoid", "/m/cv2/act/Mul", "/m/Add"], "fused"),
    ("/fc1/Conv + PWN(PWN(/act/Constant_output_0 + (Unnamed Layer* 550) [Shuffle], /act/Div), /act/Erf)",
     ["/fc1/Conv", "/act/Constant_output_0", "/act/Div", "/act/Erf"], "fused"),
    ("/model.13/m.0/cv2/conv/Conv || /model.13/m.0/cv1/conv/Conv",
     ["/model.13/m.0/cv2/conv/Conv", "/model.13/m.0/cv1/conv/Conv"], "fused"),
    ("{ForeignNode[/model.10/m/m.0/attn/Split_16.../model.10/m/m.0/attn/Add]}",
     ["/model.10/m/m.0/attn/Split_16", "/model.10/m/m.0/attn/Add"], "span"),
    ("{ForeignNode[(Unnamed Layer* 0) [ElementWise]]}", [], "made"),
    ("Reformatting CopyNode for Input Tensor 0 to Conv_5 + Add_6 + Relu_7", ["Conv_5", "Add_6", "Relu_7"],
     "reformat"),
    ("Reformatting CopyNode for Output Tensor 0 to {ForeignNode[/a/Split_16.../a/Add]}", ["/a/Split_16", "/a/Add"],
     "reformat"),
    ("/model.9/cv1/conv/Conv_output_0 copy", ["/model.9/cv1/conv/Conv_output_0"], "copy"),
    ("[trainStation1]", [], "made"),
    ("(Unnamed Layer* 539) [Shuffle]", [], "made"),
    ("__myl_MulMaxSubExpSum_myl109_3", [], "myelin"),
    ("/model_10/m/m_0/attn/MatMul_myl109_2", ["/model_10/m/m_0/attn/MatMul"], "single"),
    ("Conv_0 + Relu_1 [profile 1]", ["Conv_0", "Relu_1"], "fused"),
])
def test_parse_layer_name(name, names, kind):
    got = parse_layer_name(name)
    assert list(got) == names and got.kind == kind
    if kind == "reformat":
        assert got.target == name.split(" to ", 1)[1]


INSPECTOR = {"Layers": [
    {"Name": "Reformatting CopyNode for Input Tensor 0 to Conv_0 + Relu_1", "LayerType": "Reformat",
     "Inputs": [{"Name": "input.1", "Location": "Device", "Dimensions": [32, 3, 224, 224],
                 "Format/Datatype": "Row major linear FP32"}],
     "Outputs": [{"Name": "Reformatted Input Tensor 0 to Conv_0 + Relu_1", "Location": "Device",
                  "Dimensions": [32, 3, 224, 224], "Format/Datatype": "Channel major FP16 format where channel % 4 == 0"}],
     "ParameterType": "Reformat", "Origin": "REFORMAT", "TacticValue": "0x0000000000000000"},
    {"Name": "Conv_0 + Relu_1", "LayerType": "CaskConvolution",
     "Inputs": [{"Name": "Reformatted Input Tensor 0 to Conv_0 + Relu_1", "Location": "Device",
                 "Dimensions": [32, 3, 224, 224], "Format/Datatype": "Channel major FP16 format where channel % 4 == 0"}],
     "Outputs": [{"Name": "onnx::MaxPool_125", "Location": "Device", "Dimensions": [32, 64, 112, 112],
                  "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}],
     "ParameterType": "Convolution", "Kernel": [7, 7], "OutMaps": 64,
     "TacticName": "trt_turing_cutlass_image_network_first_layer_hmma_fprop_f16f16f32_nhwc_nhwc_k64r7s7c4_stride2x2",
     "TacticValue": "0xe2222883a6602489"},
    {"Name": "/layer1/conv/Conv + /layer1/relu/Relu", "LayerType": "CaskGemmConvolution",
     "Inputs": [{"Name": "x", "Format/Datatype": "Int8"}], "Outputs": [{"Name": "y", "Format/Datatype": "Half"}],
     "Metadata": "[ONNX Layer: /layer1/conv/Conv]\x1f[ONNX Layer: /layer1/relu/Relu | Local Function: F]",
     "TacticName": "sm80_xmma_fprop_implicit_gemm_interleaved_i8i8_i8i32_f32"},
    "a layer of an engine built without ProfilingVerbosity.DETAILED",
], "Bindings": ["input.1", "191"]}


def test_parse_inspector_json():
    got = parse_inspector_json(json.dumps(INSPECTOR))
    reformat = got["Reformatting CopyNode for Input Tensor 0 to Conv_0 + Relu_1"]
    assert reformat["type"] == "Reformat" and reformat["kernel"] == "" and reformat["precision"] == "fp32"
    assert reformat["formats"] == (["Row major linear FP32"], ["Channel major FP16 format where channel % 4 == 0"])
    conv = got["Conv_0 + Relu_1"]
    assert conv["type"] == "CaskConvolution" and conv["precision"] == "fp16"
    assert conv["kernel"].startswith("trt_turing_cutlass") and conv["onnx"] == []
    assert got["/layer1/conv/Conv + /layer1/relu/Relu"]["onnx"] == ["/layer1/conv/Conv", "/layer1/relu/Relu"]
    assert got["/layer1/conv/Conv + /layer1/relu/Relu"]["precision"] == "int8"
    assert got["a layer of an engine built without ProfilingVerbosity.DETAILED"] == {}
    assert parse_inspector_json("not json") == {} and parse_inspector_json(json.dumps(["x"])) == {}


def test_map_layers_without_tensorrt():
    model = residual_cnn()
    cat = helper.make_node("Concat", ["r2", "r2"], ["cat"], name="concat", axis=1)
    model.graph.node.insert(6, cat)
    order = ["Reformatting CopyNode for Input Tensor 0 to conv1 + bn1 + relu1", "conv1 + bn1 + relu1",
             "{ForeignNode[conv2...relu2]}", "r2 copy", "__myl_Add_myl3_4", "[trainStation1]", "fc"]
    per_run = [{n: 0.1 * (i + 1) for i, n in enumerate(order)}, {n: 0.2 * (i + 1) for i, n in enumerate(order)}]
    info = {"fc": {"type": "CaskGemmConvolution", "kernel": "sm80_gemm", "precision": "fp16",
                   "onnx": ["fc", "flatten"]}}
    got = {n.name: n for n in map_layers(model, per_run, order, info)}
    assert [n for n in got] == order
    assert got[order[0]].origin == "inserted" and not got[order[0]].covers and "conv1 + bn1" in got[order[0]].note
    assert got["conv1 + bn1 + relu1"].covers == ("conv1", "bn1", "relu1")
    assert got["conv1 + bn1 + relu1"].origin == "fused"
    span = got["{ForeignNode[conv2...relu2]}"]
    assert span.covers == ("conv2", "add", "relu2") and "Myelin region" in span.note
    assert got["r2 copy"].covers == ("concat",) and got["r2 copy"].origin == "model"
    assert got["__myl_Add_myl3_4"].origin == "unmapped" and got["[trainStation1]"].origin == "inserted"
    fc = got["fc"]
    assert fc.covers == ("flatten", "fc") and fc.kernel == "sm80_gemm" and fc.precision == "fp16"
    assert fc.median_ms == pytest.approx(0.7 * 1.5)


def test_collect_tensorrt_without_tensorrt_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt fails, installed or not
    with pytest.raises(EngineUnavailableError) as e:
        collect_tensorrt(load_model(residual_cnn()), {}, runs=1, warmup=0)
    assert install_hint("tensorrt") in (e.value.hint or "")
