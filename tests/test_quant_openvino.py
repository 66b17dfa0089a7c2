"""int8 for --device openvino (issue 18): NNCF's conventions in a Q/DQ file, run on OpenVINO."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import make_model
from workbench import load_dataset, load_model
from workbench.core.build import optimize
from workbench.core.cache import BuildCache
from workbench.core.evaluation.data import Dataset
from workbench.core.passes import PassContext, Recipe
from workbench.core.passes.quantize import Int8Scheme, resolve_int8_scheme
from workbench.errors import UsageError


def test_openvino_scheme_follows_nncf_defaults_on_every_openvino_device():
    for dev in ("openvino", "openvino:CPU", "openvino:GPU", "openvino:GPU.1", "openvino:NPU", "openvino-gpu"):
        s = resolve_int8_scheme(dev, ("AVX2", "FMA"))
        assert isinstance(s, Int8Scheme) and s.target == "openvino" and s.placement == "openvino"
        assert (s.activation_signedness, s.weight_type, s.symmetric_activations, s.symmetric_weights,
                s.per_channel, s.reduce_range, s.reduce_range_first_layer, s.quantize_outputs) == \
            ("per-tensor", "s8", True, True, True, False, True, False)
        text = " ".join(s.reasons)
        for cited in ("preset PERFORMANCE", "symmetric_range", "q8_w_sym", "OverflowFix.FIRST_LAYER",
                      "setups/cpu.py", "quantize_outputs=False", "FakeQuantize", "fast bias correction"):
            assert cited in text, cited
        assert ("CPU setup" in text) == (dev not in ("openvino", "openvino:CPU"))  # GPU/NPU: NNCF's CPU config
    assert resolve_int8_scheme("openvino").short() == (
        "U8 or S8 activations by sign (symmetric), S8 weights, per-channel, 7-bit first-layer weights, "
        "placement openvino, outputs in float")
    # options still override, and say so
    every = resolve_int8_scheme("openvino", reduce_range="true")
    assert every.reduce_range and not every.reduce_range_first_layer
    assert not resolve_int8_scheme("openvino", reduce_range="false").reduce_range_first_layer
    fixed = resolve_int8_scheme("openvino", activation_type="u8", symmetric_activations="false")
    assert (fixed.activation_signedness, fixed.activation_type, fixed.symmetric_activations) == ("fixed", "u8", False)
    assert "overridden by options: activation_type=u8, symmetric_activations=false" in fixed.reasons
    with pytest.raises(UsageError, match="unknown target device"):
        resolve_int8_scheme("openvino2")


def _residual_net() -> onnx.ModelProto:
    """x[N,3,8,8] -> conv1 -> relu -> conv2 -> add(relu) -> relu -> GAP -> flatten -> fc -> softmax.
    Signed tensors (the input, conv2's output into the Add) next to non-negative ones (ReLUs)."""
    rng = np.random.default_rng(3)

    def init(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)

    inits = [init("w1", 8, 3, 3, 3), init("b1", 8), init("w2", 8, 8, 3, 3), init("b2", 8),
             init("fw", 10, 8), init("fb", 10)]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", kernel_shape=[3, 3], pads=[1] * 4),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", kernel_shape=[3, 3], pads=[1] * 4),
        helper.make_node("Add", ["c2", "r1"], ["a"], name="add"),
        helper.make_node("Relu", ["a"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["p"], name="gap"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["logits"], name="fc", transB=1),
        helper.make_node("Softmax", ["logits"], ["y"], name="softmax", axis=1),
    ]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)


def _zero_point(out: onnx.ModelProto, q: onnx.NodeProto) -> np.ndarray:
    inits = {i.name: i for i in out.graph.initializer}
    return numpy_helper.to_array(inits[q.input[2]])


def test_openvino_int8_places_signed_and_unsigned_qdq_as_nncf_does():
    src = _residual_net()
    rng = np.random.default_rng(0)
    calib = Dataset({"x": rng.standard_normal((32, 3, 8, 8)).astype(np.float32)}, None, "random", None)
    p = Recipe.parse("int8:samples=32").instantiate()[0]
    res = p(src, PassContext(device="openvino", calibration=calib))
    out, report = res.model, res.report
    onnx.checker.check_model(out)
    prod = {o: n for n in out.graph.node for o in n.output}
    qs = {n.input[0]: n for n in out.graph.node if n.op_type == "QuantizeLinear"}
    # every activation zero point is 0: U8 where the calibrated minimum is >= 0, S8 where negative
    assert all(int(np.max(np.abs(_zero_point(out, q).astype(np.int32)))) == 0 for q in qs.values())
    dtype = {t: _zero_point(out, q).dtype for t, q in qs.items()}
    assert dtype["x"] == np.int8 and dtype["c2"] == np.int8  # signed: the input, conv2 into the Add
    assert dtype["r1"] == np.uint8 and dtype["r2"] == np.uint8  # after ReLU: unsigned
    # the first convolution's weights are 7-bit ([-64, 64]), the others use [-127, 127]
    inits = {i.name: numpy_helper.to_array(i) for i in out.graph.initializer}
    w_q = {n.output[0]: inits[n.input[0]] for n in out.graph.node
           if n.op_type == "DequantizeLinear" and n.input[0] in inits and inits[n.input[0]].dtype == np.int8
           and inits[n.input[0]].ndim == 4}
    conv_w = {n.name: w_q[n.input[1]] for n in out.graph.node if n.op_type == "Conv"}
    assert np.abs(conv_w["conv1"].astype(int)).max() <= 64 < np.abs(conv_w["conv2"].astype(int)).max() <= 127
    # no Q/DQ where no quantized op reads the tensor: the logits into Softmax, the model output
    assert prod["logits"].op_type == "Gemm" and prod["y"].op_type == "Softmax"
    assert report.notes[0] == "scheme: " + resolve_int8_scheme("openvino").short()
    assert any("NNCF" in n for n in report.notes[1:4])
    assert report.metrics["first_layer_7bit"] == ["conv1"] and report.metrics["outputs_float"] >= 1
    assert report.metrics["activation_signs"]["signed"] >= 2
    assert {"conv1", "conv2", "add", "fc"} <= set(report.quantized)


def test_openvino_int8_of_the_sample_agrees_with_fp32_on_openvino():
    pytest.importorskip("openvino")
    from workbench.core.evaluation.run import make_runner  # noqa: PLC0415

    m = load_model("sample:resnet-fashion")
    calib = load_dataset("sample:resnet-fashion:calib", m)
    build = optimize(m, "int8:samples=64", device="openvino", calibration=calib, cache=BuildCache(enabled=False))
    q = build.model
    onnx.checker.check_model(q.proto)
    assert sum(n.op_type == "QuantizeLinear" for n in q.proto.graph.node) > 20
    notes = build.reports[0].notes
    assert notes[0].startswith("scheme: U8 or S8 activations by sign") and "NNCF" in notes[1]
    test = load_dataset(None, m)
    feeds, labels = next(iter(test.batches(64, 64)))
    out = m.proto.graph.output[0].name
    with make_runner(m, "openvino", threads=2, precision="f32") as ref_r, \
            make_runner(q, "openvino", threads=2, precision="f32") as q_r:
        ref, got = ref_r.infer(feeds)[out], q_r.infer(feeds)[out]
    cos = (ref * got).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
    assert float(cos.mean()) > 0.99 and float(cos.min()) > 0.95
    assert (ref.argmax(1) == got.argmax(1)).mean() >= 0.95
    assert (got.argmax(1) == labels).mean() >= 0.9  # the trained sample: ~95% top-1 in FP32


def test_int8_dynamic_declines_on_openvino_with_the_reason():
    from conftest import tiny_cnn  # noqa: PLC0415

    src = tiny_cnn()
    p = Recipe.parse("int8-dynamic").instantiate()[0]
    res = p(src, PassContext(device="openvino:CPU"))
    assert not res.report.modified and res.model.SerializeToString() == src.SerializeToString()
    (d,) = res.report.declined
    assert d["what"] == "the whole model" and "MatMulInteger as f32" in d["reason"]
    assert "int8 (static Q/DQ" in d["reason"]
