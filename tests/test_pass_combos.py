"""Every pass alone and in sensible combinations, on both samples: valid, runnable, sound."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import make_model, tiny_cnn
from workbench import evaluate, load_dataset, load_model, random_dataset
from workbench.core.build import optimize
from workbench.core.cache import BuildCache

FAST = {"int8": "int8:samples=64", "prune-channels": "prune-channels:samples=200",
        "fp16": "fp16:samples=16"}
ALONE = ["fold", "fuse", "fp16", "int8", "int8-dynamic", "prune-magnitude", "prune-2:4", "prune-channels"]
# Each pass runs alone above; the combinations are the orders users pick. prune-channels (its
# reconstruction is the slow part) appears in one combination here: `prune-channels,int8`,
# `prune-channels,fp16` and `fold,fuse,prune-channels` repeated it (~45 s each in CI) for nothing
# `fuse,prune-channels,int8` does not already check. Every pass on 13 other models:
# tests/test_pass_safety.py.
COMBOS = ["fuse,int8", "fuse,prune-channels,int8", "fuse,fp16", "prune-2:4,int8", "prune-magnitude,fuse"]
# ResNet-50 (random weights, 25 M parameters) checks validity at scale: the three combinations
# cover every pass but fold, int8-dynamic and the magnitude prunes, which are checked on the sample
# and the zoo (each pass alone on ResNet-50 took 30-50 s in CI).
RESNET50 = ["fuse,int8", "prune-channels,int8", "fuse,fp16"]


def _spell(recipe: str) -> str:
    return ",".join(FAST.get(p, p) for p in recipe.split(","))


@pytest.fixture(scope="module")
def sample():
    m = load_model("sample:resnet-fashion")
    calib = load_dataset("sample:resnet-fashion:calib", m)
    test = load_dataset(None, m)
    small = type(test)({k: v[:300] for k, v in test.inputs.items()}, test.labels[:300], "first 300")
    return m, calib, small


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ALONE + COMBOS)
def test_sample_recipe(sample, recipe):
    m, calib, small = sample
    res = optimize(m, _spell(recipe), calibration=calib, cache=BuildCache(enabled=False))
    assert [r.name for r in res.reports] == recipe.split(",")
    e = evaluate(res.model, data=small, reference=m, batch=100)
    assert e.samples == 300
    # Sound, not merely valid: predictions stay close to FP32 and accuracy stays high.
    assert e.fidelity.top1_agreement >= 0.9, e.fidelity
    assert e.accuracy.top1 >= 0.88, e.accuracy


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RESNET50)
def test_resnet50_recipe(recipe):
    """Random weights: only validity, runnability and finite outputs are meaningful here."""
    m = load_model("sample:resnet50")
    calib = random_dataset(m, 4, seed=1)
    res = optimize(m, _spell(recipe).replace("samples=200", "samples=4").replace("samples=64", "samples=4"),
                   calibration=calib, cache=BuildCache(enabled=False))
    e = evaluate(res.model, data=random_dataset(m, 2, seed=2), reference=m, batch=2)
    assert e.samples == 2 and np.isfinite(e.fidelity.max_abs)


# -- models the passes must handle or decline (found on third-party models in the peers benchmark) --

def _opset12_cnn() -> onnx.ModelProto:
    m = tiny_cnn()
    m.opset_import[0].version = 12
    return m


def test_int8_converts_opset12_models_for_per_channel_qdq(tmp_path, monkeypatch):
    """PP-OCRv4 (opset 12) failed with "Unrecognized attribute: axis for DequantizeLinear":
    per-channel Q/DQ needs opset 13, so the pass converts the model first and says so."""
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    from workbench.core.build import optimize
    from workbench.core.evaluation.data import random_dataset

    m = load_model(_opset12_cnn())
    r = optimize(m, "int8:samples=8", calibration=random_dataset(m, 8))
    onnx.checker.check_model(r.model.proto)
    assert next(o.version for o in r.model.proto.opset_import if o.domain == "") >= 13
    assert any("converted from opset 12 to 13" in n for n in r.reports[0].notes)
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    import onnxruntime as ort
    got = ort.InferenceSession(r.model.proto.SerializeToString()).run(None, {"x": x})[0]
    assert got.shape == (2, 5) and np.isfinite(got).all()


def test_fuse_leaves_out_ops_newer_than_the_models_opset():
    """fuse once put HardSwish (opset 14) into an opset-12 model that then failed to load."""
    from workbench.core.passes.base import PassContext
    from workbench.core.passes.fusion import FusePass

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    consts = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in
              (("three", 3.0), ("zero", 0.0), ("six", 6.0))]
    # x * Clip(x + 3, 0, 6) / 6: onnxscript's HardSwish pattern
    nodes = [helper.make_node("Add", ["x", "three"], ["a"]), helper.make_node("Clip", ["a", "zero", "six"], ["c"]),
             helper.make_node("Mul", ["c", "x"], ["m"]), helper.make_node("Div", ["m", "six"], ["y"])]
    for opset, fused in ((12, False), (14, True)):
        model = make_model(nodes, [x], [y], consts, opset=opset)
        out = FusePass()(model, PassContext())
        ops = {n.op_type for n in out.model.graph.node}
        assert ("HardSwish" in ops) == fused, (opset, ops)
        onnx.checker.check_model(out.model, full_check=True)
        if not fused:
            assert any(d["what"] == "HardSwish" and "opset 12" in d["reason"] for d in out.report.declined)


def test_control_flow_models_are_declined_unchanged():
    """Silero VAD (If subgraphs) broke fold and int8; they now decline with the reason."""
    from workbench.core.passes.base import PassContext
    from workbench.core.passes.registry import get_pass

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    cond = numpy_helper.from_array(np.array(True), "cond")
    then_g = helper.make_graph([helper.make_node("Relu", ["x"], ["t"])], "then", [],
                               [helper.make_tensor_value_info("t", TensorProto.FLOAT, [1, 4])])
    else_g = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [],
                               [helper.make_tensor_value_info("e", TensorProto.FLOAT, [1, 4])])
    model = make_model([helper.make_node("If", ["cond"], ["y"], then_branch=then_g, else_branch=else_g)],
                       [x], [y], [cond])
    calib = random_dataset(load_model(model), 4)
    for name in ("fold", "fuse", "int8", "int8-dynamic"):
        out = get_pass(name)()(model, PassContext(calibration=calib))
        assert out.model == model and not out.report.modified, name
        assert [d["what"] for d in out.report.declined] == ["the whole model"], name
        assert "If" in out.report.declined[0]["reason"]
