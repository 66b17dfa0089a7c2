"""Pass framework, recipes, fold/fuse numerics, the build cache, and `workbench optimize`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import make_model, tiny_cnn
from workbench import load_dataset, load_model
from workbench.core.build import optimize, write_build
from workbench.core.cache import BuildCache
from workbench.core.passes import PassContext, Recipe, all_passes, get_pass
from workbench.core.passes.base import PassResult
from workbench.errors import UsageError


def run_ref(proto: onnx.ModelProto, feeds: dict) -> np.ndarray:
    """ONNX Runtime with every graph optimization off: the model's own arithmetic."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(proto.SerializeToString(), so).run(None, feeds)[0]


def conv_bn_model() -> onnx.ModelProto:
    """Conv (no bias) -> BatchNormalization -> Relu -> MatMul + Add (-> Gemm) with Identity/Dropout."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in [
        ("w", rng.standard_normal((4, 3, 3, 3))), ("g", rng.uniform(0.5, 2, 4)), ("b", rng.standard_normal(4)),
        ("m", rng.standard_normal(4)), ("v", rng.uniform(0.5, 2, 4)), ("mw", rng.standard_normal((4, 6))),
        ("mb", rng.standard_normal(6))]]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1] * 4),
        helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["bn"], name="bn"),
        helper.make_node("Relu", ["bn"], ["r"], name="relu"),
        helper.make_node("Identity", ["r"], ["ri"], name="ident"),
        helper.make_node("Dropout", ["ri"], ["rd"], name="drop"),
        helper.make_node("GlobalAveragePool", ["rd"], ["p"], name="gap"),
        helper.make_node("Flatten", ["p"], ["f"], name="flat"),
        helper.make_node("MatMul", ["f", "mw"], ["mm"], name="mm"),
        helper.make_node("Add", ["mm", "mb"], ["y"], name="add"),
    ]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6])], inits)


def test_fuse_folds_bn_matmul_add_and_cleans_up_with_same_numerics():
    proto = conv_bn_model()
    res = get_pass("fuse")()(proto, PassContext())
    ops = [n.op_type for n in res.model.graph.node]
    assert "BatchNormalization" not in ops and "Identity" not in ops and "Dropout" not in ops
    assert "Gemm" in ops and "MatMul" not in ops
    assert res.report.fused["Conv+BatchNormalization"] == 1
    assert res.report.fused["MatMul+Add->Gemm"] == 1
    assert res.report.nodes_before == 9 and res.report.nodes_after == len(ops)
    x = {"x": np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)}
    a, b = run_ref(proto, x), run_ref(res.model, x)
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
    assert len(proto.graph.node) == 9  # the input model is untouched


def test_fuse_says_why_a_batchnorm_stays():
    proto = conv_bn_model()
    # Make the conv output feed a second consumer: folding BN into the conv would change it.
    proto.graph.node.append(helper.make_node("Relu", ["c"], ["c2"], name="other"))
    proto.graph.output.append(helper.make_tensor_value_info("c2", TensorProto.FLOAT, ["N", 4, 8, 8]))
    res = get_pass("fuse")()(proto, PassContext())
    assert "BatchNormalization" in [n.op_type for n in res.model.graph.node]
    reasons = [d["reason"] for d in res.report.declined if d["what"].startswith("BatchNormalization")]
    assert reasons and "also feeds other nodes" in reasons[0]


@pytest.mark.parametrize("recipe", ["fold", "fuse", "fuse:ort_fusions=true"])
def test_fusions_on_the_sample_match_within_1e4(recipe):
    m = load_model("sample:resnet-fashion")
    x = {"input": load_dataset(None, m).inputs["input"][:200]}
    res = Recipe.parse(recipe).instantiate()[0](m.proto, PassContext())
    a = run_ref(m.proto, x)
    b = ort.InferenceSession(res.model.SerializeToString()).run(None, x)[0] if "ort" in recipe \
        else run_ref(res.model, x)
    assert np.abs(b - a).max() <= 1e-4 * np.abs(a).max()
    assert res.report.nodes_after < res.report.nodes_before


def test_recipe_parse_roundtrip_and_errors(tmp_path):
    r = Recipe.parse("fold,fuse:ort_fusions=true")
    assert [s.name for s in r.passes] == ["fold", "fuse"]
    assert r.resolved().passes[1].options == {"fold_first": True, "ort_fusions": True}
    r.save(tmp_path / "r.json")
    assert Recipe.load(tmp_path / "r.json") == r
    for bad, match in [("nope", "unknown pass 'nope'"), ("fuse:ort_fusions=maybe", "not a bool"),
                       ("fuse:colour=red", "unknown option 'colour'"), ("fuse,,fold", "empty pass"),
                       ("fuse:ort_fusions", "has no value")]:
        with pytest.raises(UsageError, match=match):
            Recipe.parse(bad)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UsageError, match="not valid JSON"):
        Recipe.load(tmp_path / "bad.json")
    (tmp_path / "bad2.json").write_text(json.dumps({"passes": [{"nope": 1}]}))
    with pytest.raises(UsageError, match="entry 0 is not a pass"):
        Recipe.load(tmp_path / "bad2.json")


def test_registry_describes_every_pass():
    passes = all_passes()
    assert {"fold", "fuse"} <= set(passes)
    for p in passes.values():
        d = p.describe()
        assert d["summary"] and all(o["help"] for o in d["options"])


def test_a_failing_pass_declines_and_returns_the_model_unchanged():
    # Was: raised PassError. A valid model must never end in an exception from a pass.
    class Broken(get_pass("fold")):
        name = "broken"

        def call(self, model, ctx):
            raise RuntimeError("boom")

    proto = tiny_cnn()
    res = Broken()(proto, PassContext())
    assert not res.report.modified
    assert res.model.SerializeToString() == proto.SerializeToString()
    assert res.report.declined == [{"what": "the whole model", "reason":
                                    "broken failed on this model (RuntimeError: boom); returned unchanged"}]


def test_a_pass_that_would_break_the_model_declines_instead():
    class Breaker(get_pass("fold")):
        name = "breaker"

        def call(self, model, ctx):
            model.graph.node[0].input[0] = "nowhere"
            report = self.new_report()
            report.modified = True
            return PassResult(model, report)

    proto = tiny_cnn()
    res = Breaker()(proto, PassContext())
    assert not res.report.modified and res.model.graph == proto.graph
    reason = res.report.declined[0]["reason"]
    assert reason.startswith("breaker would have produced an invalid model (") and "workbench bug" not in reason


def test_usage_errors_still_raise():
    class Bad(get_pass("fold")):
        name = "bad"

        def call(self, model, ctx):
            raise UsageError("bad: option x is wrong")

    with pytest.raises(UsageError, match="option x is wrong"):
        Bad()(tiny_cnn(), PassContext())


def test_cache_hit_corruption_and_off_switch(tmp_path):
    cache = BuildCache(tmp_path / "c")
    first = optimize(tiny_cnn(), "fuse", cache=cache)
    assert not first.cache_hit
    again = optimize(tiny_cnn(), "fuse", cache=cache)
    assert again.cache_hit and again.model.fingerprint == first.model.fingerprint
    assert again.reports[0].fused == first.reports[0].fused
    # Another recipe, device or model is another key.
    assert not optimize(tiny_cnn(), "fold", cache=cache).cache_hit
    assert not optimize(tiny_cnn(), "fuse", device="tensorrt", cache=cache).cache_hit
    assert optimize(tiny_cnn(seed=2), "fuse", cache=cache).key != first.key
    # Corrupt the stored model: detected, removed, rebuilt.
    entry = cache.get(first.key)
    entry.model_path.write_bytes(b"garbage")
    rebuilt = optimize(tiny_cnn(), "fuse", cache=cache)
    assert not rebuilt.cache_hit and cache.corrupt_removed == 1
    assert rebuilt.model.fingerprint == first.model.fingerprint
    assert optimize(tiny_cnn(), "fuse", cache=cache).cache_hit
    # Off: never served, never written.
    off = BuildCache(tmp_path / "off", enabled=False)
    assert not optimize(tiny_cnn(), "fuse", cache=off).cache_hit
    assert not (tmp_path / "off").exists()
    assert cache.clear() >= 3 and cache.info()["entries"] == 0


def test_no_temporary_leftovers_after_put(tmp_path):
    cache = BuildCache(tmp_path / "c")
    optimize(tiny_cnn(), "fuse", cache=cache)
    leftovers = [p for p in (tmp_path / "c").rglob(".*")]
    assert leftovers == []


def test_write_build_refuses_to_overwrite(tmp_path):
    res = optimize(tiny_cnn(), "fuse", cache=BuildCache(enabled=False))
    path = write_build(res, tmp_path / "out")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["output"]["fingerprint"] == load_model(path).fingerprint
    assert manifest["recipe"]["passes"][0]["pass"] == "fuse"
    with pytest.raises(UsageError, match="already holds a build"):
        write_build(res, tmp_path / "out")
    write_build(res, tmp_path / "out", force=True)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True,
                          timeout=300)


def test_cli_optimize_json_and_errors(tmp_path):
    model = tmp_path / "m.onnx"
    onnx.save(conv_bn_model(), str(model))
    p = _cli("optimize", str(model), "--passes", "fuse", "--out", str(tmp_path / "o"), "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["model"].endswith("model.onnx") and d["reports"][0]["fused"]["Conv+BatchNormalization"] == 1
    assert load_model(d["model"]).fingerprint == d["output"]["fingerprint"]
    passes = json.loads(_cli("passes", "--json").stdout)
    assert {"fold", "fuse"} <= {p["name"] for p in passes}
    for args, match in [
        (["--passes", "nope"], "unknown pass"),
        (["--passes", "fuse:x=1"], "unknown option"),
        (["--recipe", str(tmp_path / "none.json")], "no such recipe"),
        ([], "exactly one of --passes"),
        (["--passes", "fuse"], "already holds a build"),
    ]:
        q = _cli("optimize", str(model), *args, "--out", str(tmp_path / "o"))
        assert q.returncode == 2 and q.stderr.startswith("error: ") and match in q.stderr, q.stderr
        assert "Traceback" not in q.stderr
