"""prune-magnitude, prune-2:4 and prune-channels: hand-built graphs with known answers, the sample."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import make_model
from workbench import Dataset, evaluate, load_dataset, load_model, summarize
from workbench.core.passes import PassContext, Recipe, get_pass
from workbench.core.passes.prune import two_four_holds
from workbench.errors import UsageError


def run(proto: onnx.ModelProto, feeds: dict) -> np.ndarray:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(proto.SerializeToString(), so).run(None, feeds)[0]


def inits(proto: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}


def node(proto: onnx.ModelProto, name: str) -> onnx.NodeProto:
    return next(n for n in proto.graph.node if n.name == name)


class Builder:
    """Conv/BN/Relu graphs on x[N,3,8,8]; ``zero`` channels get all-zero filters and a BN that
    maps 0 to 0, so removing them cannot change any output."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def const(self, name: str, a: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(a, np.float32), name))
        return name

    def conv(self, name: str, x: str, cin: int, cout: int, k: int = 3, zero=(), bn: bool = True,
             relu: bool = True, bias: bool = True, stride: int = 1) -> str:
        w = self.rng.standard_normal((cout, cin, k, k)) / np.sqrt(cin * k * k)
        b = self.rng.standard_normal(cout) * 0.1
        w[list(zero)] = 0
        b[list(zero)] = 0
        ins = [x, self.const(f"{name}.w", w)] + ([self.const(f"{name}.b", b)] if bias else [])
        self.nodes.append(helper.make_node("Conv", ins, [name], name=name, pads=[k // 2] * 4,
                                           kernel_shape=[k, k], strides=[stride, stride]))
        out = name
        if bn:
            g, beta = self.rng.uniform(0.5, 1.5, cout), self.rng.standard_normal(cout) * 0.1
            mean, var = self.rng.standard_normal(cout) * 0.1, self.rng.uniform(0.5, 1.5, cout)
            beta[list(zero)] = mean[list(zero)] = 0
            self.nodes.append(helper.make_node(
                "BatchNormalization", [out, self.const(f"{name}.g", g), self.const(f"{name}.beta", beta),
                                       self.const(f"{name}.m", mean), self.const(f"{name}.v", var)],
                [f"{name}.bn"], name=f"{name}.bn"))
            out = f"{name}.bn"
        if relu:
            self.nodes.append(helper.make_node("Relu", [out], [f"{name}.relu"], name=f"{name}.relu"))
            out = f"{name}.relu"
        return out

    def head(self, x: str, cin: int, classes: int = 5) -> None:
        self.nodes += [helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"),
                       helper.make_node("Flatten", ["gap"], ["flat"], name="flat"),
                       helper.make_node("Gemm", ["flat", self.const("fc.w", self.rng.standard_normal((classes, cin))),
                                                 self.const("fc.b", np.zeros(classes))], ["y"], name="fc", transB=1)]

    def model(self, out: str = "y", out_shape=("N", 5)) -> onnx.ModelProto:
        return make_model(self.nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                          [helper.make_tensor_value_info(out, TensorProto.FLOAT, list(out_shape))], self.inits)


def chain(zero=(1, 4)) -> onnx.ModelProto:
    """conv0 (first) -> conv1 (8 ch; ``zero`` channels dead) -> conv2 -> GAP -> Flatten -> fc (last)."""
    b = Builder()
    t = b.conv("conv0", "x", 3, 6)
    t = b.conv("conv1", t, 6, 8, zero=zero)
    t = b.conv("conv2", t, 8, 7)
    b.head(t, 7)
    return b.model()


def residual(zero=(2, 5)) -> onnx.ModelProto:
    """A residual stream of 8 channels (conv0 and conv2 add up), an inner group (conv1), and conv3
    reading the stream; ``zero`` channels are dead in every group."""
    b = Builder(1)
    s = b.conv("conv0", "x", 3, 8, zero=zero)
    t = b.conv("conv1", s, 8, 8, zero=zero)
    t = b.conv("conv2", t, 8, 8, zero=zero, relu=False)
    b.nodes += [helper.make_node("Add", [t, s], ["add"], name="add"),
                helper.make_node("Relu", ["add"], ["add.relu"], name="add.relu")]
    t = b.conv("conv3", "add.relu", 8, 8, zero=zero, stride=2)
    b.head(t, 8)
    return b.model()


X = {"x": np.random.default_rng(9).standard_normal((4, 3, 8, 8)).astype(np.float32)}
prune_channels = get_pass("prune-channels")


def test_removing_dead_channels_changes_nothing_and_cuts_every_dependent_tensor():
    proto = chain(zero=(1, 4, 6))
    res = prune_channels(ratio=3 / 8)(proto, PassContext())
    w = inits(res.model)
    assert w["conv1.w"].shape == (5, 6, 3, 3) and w["conv1.b"].shape == (5,)
    assert all(w[f"conv1.{p}"].shape == (5,) for p in ("g", "beta", "m", "v"))
    assert w["conv2.w"].shape == (7, 5, 3, 3)
    np.testing.assert_allclose(run(res.model, X), run(proto, X), rtol=1e-5, atol=1e-6)
    entry = res.report.pruned["conv1"]
    assert (entry["channels_before"], entry["channels_after"]) == (8, 5)
    assert entry["consumers"] == ["conv2"] and "gamma" in entry["importance"]
    # first (conv0) and last (fc, fed by conv2) are untouched, with the reasons
    for name in ("conv0.w", "conv0.b", "conv2.b", "fc.w"):
        np.testing.assert_array_equal(w[name], inits(proto)[name])
    reasons = " ".join(d["reason"] for d in res.report.declined)
    assert "first layer conv0" in reasons and "last layer fc" in reasons
    assert res.report.metrics["params_after"] < res.report.metrics["params_before"]
    assert res.report.metrics["flops_after"] < res.report.metrics["flops_before"]


def test_after_fuse_the_same_channels_go_and_the_output_is_the_same():
    proto = chain(zero=(1, 4, 6))
    fused = get_pass("fuse")()(proto, PassContext()).model
    assert "BatchNormalization" not in [n.op_type for n in fused.graph.node]
    res = prune_channels(ratio=3 / 8)(fused, PassContext())
    (entry,) = res.report.pruned.values()
    assert entry["channels_after"] == 5 and entry["importance"] == "L1"
    np.testing.assert_allclose(run(res.model, X), run(proto, X), rtol=1e-5, atol=1e-5)


def test_exclude_leaves_the_group_alone():
    proto = chain()
    res = prune_channels(ratio=0.5, exclude="conv2+nosuch")(proto, PassContext())
    assert res.report.pruned == {}
    assert {"node": "conv2", "reason": "listed in exclude"} in res.report.excluded
    assert any(d["what"] == "exclude nosuch" for d in res.report.declined)
    for k, v in inits(proto).items():
        np.testing.assert_array_equal(inits(res.model)[k], v)


def test_residual_group_declined_by_default_and_pruned_consistently_on_request():
    proto = residual()
    res = prune_channels(ratio=0.25, protect_first_last=False)(proto, PassContext())
    assert "conv0 (+1 coupled)" not in res.report.pruned
    why = next(d["reason"] for d in res.report.declined if d["what"] == "channels of conv0 (+1 coupled)")
    assert "coupled across 2 Convs" in why and "prune_residual" in why
    assert inits(res.model)["conv0.w"].shape[0] == 8

    res = prune_channels(ratio=0.25, protect_first_last=False, prune_residual=True)(proto, PassContext())
    onnx.checker.check_model(res.model, full_check=True)
    w = inits(res.model)
    assert res.report.pruned["conv0 (+1 coupled)"]["channels_after"] == 6
    assert w["conv0.w"].shape[0] == w["conv2.w"].shape[0] == w["conv0.g"].shape[0] == w["conv2.v"].shape[0] == 6
    assert w["conv1.w"].shape == (6, 6, 3, 3) and w["conv3.w"].shape == (6, 6, 3, 3)  # both readers cut
    assert w["fc.w"].shape == (5, 6)  # the last group (conv3 -> fc) too, with protection off
    np.testing.assert_allclose(run(res.model, X), run(proto, X), rtol=1e-5, atol=1e-5)


def test_depthwise_conv_and_scalar_constants_follow_the_channels():
    """conv1 -> Relu -> depthwise Conv -> Mul by a Constant scalar -> conv2: one group, cut through."""
    b = Builder(2)
    t = b.conv("conv0", "x", 3, 6)
    t = b.conv("conv1", t, 6, 8, zero=(0, 3, 7), bn=False)
    dw = b.rng.standard_normal((8, 1, 3, 3))
    dwb = b.rng.standard_normal(8)
    dwb[[0, 3, 7]] = 0
    b.nodes += [
        helper.make_node("Conv", [t, b.const("dw.w", dw), b.const("dw.b", dwb)], ["dw"], name="dw",
                         group=8, pads=[1] * 4),
        helper.make_node("Constant", [], ["two"], name="two", value_float=2.0),
        helper.make_node("Mul", ["dw", "two"], ["dw2"], name="mul")]
    t = b.conv("conv2", "dw2", 8, 5)
    b.head(t, 5)
    proto = b.model()
    res = prune_channels(ratio=3 / 8)(proto, PassContext())
    assert res.report.pruned["conv1"]["channels_after"] == 5
    w = inits(res.model)
    assert w["dw.w"].shape == (5, 1, 3, 3) and w["dw.b"].shape == (5,) and w["conv2.w"].shape == (5, 5, 3, 3)
    assert next(a.i for a in node(res.model, "dw").attribute if a.name == "group") == 5
    np.testing.assert_allclose(run(res.model, X), run(proto, X), rtol=1e-5, atol=1e-5)


def test_a_group_reaching_an_unsupported_op_is_declined_with_the_reason():
    b = Builder()
    t = b.conv("conv0", "x", 3, 6)
    t = b.conv("conv1", t, 6, 8)
    b.nodes.append(helper.make_node("Concat", [t, t], ["cat"], name="cat", axis=1))
    t = b.conv("conv2", "cat", 16, 4)
    b.head(t, 4)
    res = prune_channels(ratio=0.5, protect_first_last=False)(b.model(), PassContext())
    why = next(d["reason"] for d in res.report.declined if d["what"] == "channels of conv1")
    assert "Concat cat" in why and "conv1" not in res.report.pruned
    assert "conv0" in res.report.pruned  # the group before it is fine


def calib(n: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, 1, 8, 8))  # correlated channels, like images
    x = np.concatenate([base, base * 0.5 + rng.standard_normal((n, 1, 8, 8)) * 0.5,
                        rng.standard_normal((n, 1, 8, 8))], 1)
    return Dataset({"x": x.astype(np.float32)}, None, "test")


def test_reconstruction_lowers_the_consumers_output_error():
    b = Builder(3)
    t = b.conv("conv0", "x", 3, 16, bn=False)
    t = b.conv("conv1", t, 16, 16)
    b.conv("conv2", t, 16, 8, relu=False, bn=False)  # its output is the graph output
    proto = b.model("conv2", ("N", 8, 8, 8))
    ds, test = calib(300, 1), calib(100, 2).inputs
    seen = []
    opts = {"ratio": 0.5, "protect_first_last": False}
    cut = prune_channels(**opts, reconstruct=False)(proto, PassContext())
    fit = prune_channels(**opts)(proto, PassContext(calibration=ds, progress=lambda *a: seen.append(a)))
    assert set(fit.report.pruned) == {"conv0", "conv1"} and fit.report.options["reconstruct"] is True
    assert seen[-1] == ("reconstruct", 2, 2)
    for entry in fit.report.pruned.values():
        (rec,) = entry["reconstruction"].values()
        assert rec["rel_error_after"] < 0.8 * rec["rel_error_before"]
    ref = run(proto, test)
    err_cut = np.mean((run(cut.model, test) - ref) ** 2)
    err_fit = np.mean((run(fit.model, test) - ref) ** 2)
    assert err_fit < 0.8 * err_cut  # on inputs the fit never saw
    assert inits(fit.model)["conv1.w"].shape == inits(cut.model)["conv1.w"].shape == (8, 8, 3, 3)


@pytest.mark.parametrize("stride,dil,pads", [(1, 1, [1, 1, 1, 1]), (2, 1, [0, 1, 2, 0]), (1, 2, [2, 2, 2, 2])])
def test_patches_times_channels_last_weights_give_the_conv_output(stride, dil, pads):
    from workbench.core.passes.prune_channels import _channels_last, _patches, _positions

    rng = np.random.default_rng(0)
    w = rng.standard_normal((5, 4, 3, 3)).astype(np.float32)
    conv = helper.make_node("Conv", ["x", "w"], ["y"], name="c", pads=pads, strides=[stride] * 2,
                            dilations=[dil] * 2, kernel_shape=[3, 3])
    graph = helper.make_graph([conv], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "w")])
    x = rng.standard_normal((3, 4, 9, 10)).astype(np.float32)
    y = run(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), {"x": x})
    b_idx, coords = _positions(3, y.shape[2:], 7, rng)
    got = _patches(conv, (3, 3), x, b_idx, coords) @ _channels_last(w).reshape(5, -1).T
    np.testing.assert_allclose(got, y[(b_idx, slice(None), *coords)], rtol=1e-4, atol=1e-4)


def test_incremental_forward_matches_whole_model_runs():
    """Consumer inputs computed step by step equal a full run of the model up to each tensor."""
    from workbench.core.passes.prune_channels import _Forward, _session

    b = Builder(5)
    t0 = b.conv("conv0", "x", 3, 8)
    t1 = b.conv("conv1", t0, 8, 8)
    t2 = b.conv("conv2", t1, 8, 8)
    b.nodes.append(helper.make_node("Add", [t2, t0], ["sum"], name="add"))
    b.conv("conv3", "sum", 8, 4, relu=False, bn=False)
    proto = b.model("conv3", ("N", 4, 8, 8))
    feeds = [calib(20, 1).inputs, calib(7, 2).inputs]
    types = {n.output[0]: TensorProto.FLOAT for n in proto.graph.node}
    fwd = _Forward(proto, feeds, types)
    for tensor in [t0, t1, "sum"]:
        got = fwd.compute(tensor)
        for f, g in zip(feeds, got):
            np.testing.assert_array_equal(g, _session(proto, [tensor]).run(f)[0])
        if tensor == t1:  # a refit of conv2 between steps must reach the next step
            w = next(i for i in proto.graph.initializer if i.name == "conv2.w")
            w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w) * 2, "conv2.w"))


def test_bad_options_raise_usage_error():
    for opts in ({"ratio": 1.0}, {"ratio": -0.1}, {"scope": "model"}, {"importance": "l3"},
                 {"multiple": 0}, {"ratio": "lots"}, {"nosuch": 1}):
        with pytest.raises(UsageError):
            prune_channels(**opts)
    for name, opts in (("prune-magnitude", {"sparsity": 1.5}), ("prune-magnitude", {"op_types": "Relu"}),
                       ("prune-magnitude", {"scope": "everything"}), ("prune-2:4", {"min_size": -1})):
        with pytest.raises(UsageError):
            get_pass(name)(**opts)
    with pytest.raises(UsageError, match="calibration"):
        prune_channels(reconstruct=True)(chain(), PassContext())
    with pytest.raises(UsageError):
        Recipe.parse("prune-channels:ratio=2")


def mlp_model() -> onnx.ModelProto:
    """chain() plus a MatMul head, so every weight op is present."""
    proto = chain(zero=())
    rng = np.random.default_rng(5)
    proto.graph.initializer.append(numpy_helper.from_array(rng.standard_normal((5, 4)).astype(np.float32), "mm.w"))
    proto.graph.node.append(helper.make_node("MatMul", ["y", "mm.w"], ["z"], name="mm"))
    proto.graph.output[0].CopyFrom(helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 4]))
    return proto


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_magnitude_reaches_the_requested_sparsity(scope):
    proto = mlp_model()
    res = get_pass("prune-magnitude")(sparsity=0.6, scope=scope, min_size=100, exclude="conv2")(proto, PassContext())
    w0, w = inits(proto), inits(res.model)
    assert set(res.report.pruned) == {"conv1"} | ({"conv0"} if w0["conv0.w"].size >= 100 else set())
    assert any(d["what"] == "fc" and "min_size=100" in d["reason"] for d in res.report.declined)
    assert any(d["what"] == "mm" for d in res.report.declined)
    np.testing.assert_array_equal(w["conv2.w"], w0["conv2.w"])  # excluded
    np.testing.assert_array_equal(w["fc.w"], w0["fc.w"])  # too small
    pruned = [w[e["weight"]] for e in res.report.pruned.values()]
    total = sum(a.size for a in pruned)
    assert abs(sum(int((a == 0).sum()) for a in pruned) / total - 0.6) <= 1 / total
    if scope == "layer":
        for e in res.report.pruned.values():
            assert abs(e["sparsity"] - 0.6) < 0.01
    # the kept weights are the largest: every zeroed weight was no larger than every kept one
    for e in res.report.pruned.values():
        a, b = w0[e["weight"]], w[e["weight"]]
        if scope == "layer":
            assert np.abs(a[b == 0]).max() <= np.abs(a[b != 0]).min()
    size = res.report.metrics["size"]
    assert size["zlib_bytes_after"] < size["zlib_bytes_before"]
    assert 0 < res.report.metrics["model_sparsity"] < res.report.metrics["sparsity"]
    assert any("no faster" in n for n in res.report.notes)
    run(res.model, X)


def test_two_four_pattern_holds_in_every_group_and_odd_layers_are_declined():
    proto = mlp_model()
    proto.graph.initializer.append(numpy_helper.from_array(np.ones((5, 8), np.float32), "unused"))
    res = get_pass("prune-2:4")(min_size=0)(proto, PassContext())
    w = inits(res.model)
    # conv0 has 3 input channels, conv1 6, fc K=7, mm K=5: declined, with the dimension
    for name, k in (("conv0", 3), ("conv1", 6), ("fc", 7), ("mm", 5)):
        reason = next(d["reason"] for d in res.report.declined if d["what"] == name)
        assert f"is {k}, not a multiple of 4" in reason
    assert set(res.report.pruned) == {"conv2"}
    assert two_four_holds(w["conv2.w"], 1) and res.report.pruned["conv2"]["sparsity"] == 0.5
    assert not two_four_holds(inits(proto)["conv2.w"], 1)
    # the kept 2 of each 4 are the largest
    a = np.moveaxis(inits(proto)["conv2.w"], 1, -1).reshape(-1, 4)
    b = np.moveaxis(w["conv2.w"], 1, -1).reshape(-1, 4)
    assert np.all(np.abs(a).max(1) == np.abs(b).max(1))


def test_two_four_on_gemm_and_matmul_weights_along_k():
    rng = np.random.default_rng(0)
    wt = rng.standard_normal((6, 8)).astype(np.float32)  # Gemm transB=1: [N, K]
    wm = rng.standard_normal((12, 8)).astype(np.float32)  # MatMul: [K, N]
    nodes = [helper.make_node("Gemm", ["x", "wt"], ["h"], name="g", transB=1),
             helper.make_node("Concat", ["h", "h"], ["h2"], name="c", axis=1),
             helper.make_node("MatMul", ["h2", "wm"], ["y"], name="m")]
    proto = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])],
                       [numpy_helper.from_array(wt, "wt"), numpy_helper.from_array(wm, "wm")])
    res = get_pass("prune-2:4")(min_size=0)(proto, PassContext())
    w = inits(res.model)
    assert two_four_holds(w["wt"], 1) and two_four_holds(w["wm"], 0)
    assert not two_four_holds(w["wt"], 0)  # the pattern is along K, not N
    assert res.report.metrics["sparsity"] == 0.5


@pytest.fixture(scope="module")
def sample():
    m = load_model("sample:resnet-fashion")
    return m, load_dataset("sample:resnet-fashion:calib", m)


@pytest.mark.slow
def test_sample_30_percent_with_reconstruction_within_2_points(sample):
    m, cal = sample
    res = prune_channels(ratio=0.3, samples=400)(m.proto, PassContext(calibration=cal))
    assert res.report.metrics["removed_fraction"] == pytest.approx(0.3, abs=0.01)
    assert summarize(load_model(res.model)).params < summarize(m).params
    base = evaluate(m, batch=500, limit=2000).accuracy.top1
    top1 = evaluate(load_model(res.model), data="sample:resnet-fashion", batch=500, limit=2000).accuracy.top1
    assert top1 >= base - 0.02, (top1, base)
    for entry in res.report.pruned.values():
        for rec in entry["reconstruction"].values():
            assert rec["rel_error_after"] < rec["rel_error_before"]


def test_sample_prune_then_fuse_equals_fuse_then_prune(sample):
    m, _ = sample
    fuse = Recipe.parse("fuse").instantiate()[0]
    a = fuse(prune_channels(ratio=0.4, prune_residual=True)(m.proto).model).model
    b = prune_channels(ratio=0.4, prune_residual=True)(fuse(m.proto).model).model
    x = {"input": load_dataset("sample:resnet-fashion", m).inputs["input"][:32]}
    np.testing.assert_allclose(run(b, x), run(a, x), rtol=1e-4, atol=1e-4)
    assert summarize(load_model(b)).params < 0.75 * summarize(load_model(fuse(m.proto).model)).params
