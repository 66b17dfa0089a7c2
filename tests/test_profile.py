"""Per-layer profiles: ONNX Runtime's trace parsed, runtime nodes mapped back to the model's, the sum
checked against a separate measurement, a build beside its baseline, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import make_model, tiny_cnn
from workbench.cli import main
from workbench.core.model import load_model
from workbench.core.profiling.compare import compare_profiles, profile_pair
from workbench.core.profiling.layers import LayerProfile, NodeTime, model_node_names
from workbench.core.profiling.ort import map_optimized, parse_trace
from workbench.core.profiling.run import named_copy, profile
from workbench.errors import EngineUnavailableError, UsageError


def resblock(channels: int = 32, size: int = 28, seed: int = 0) -> onnx.ModelProto:
    """Conv-BN-Relu-Conv-BN-Add(residual)-Relu-GAP-Flatten-Gemm: ~1 ms on 2 cores, every fusion ORT has."""
    rng = np.random.default_rng(seed)
    c = channels

    def t(name, *shape, scale=0.1):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    inits = [t("w0", c, 3, 3, 3), t("w1", c, c, 3, 3), t("w2", c, c, 3, 3), t("fw", 10, c)]
    for k in (1, 2):
        inits += [numpy_helper.from_array(np.ones(c, np.float32), f"s{k}"), t(f"b{k}", c),
                  t(f"m{k}", c), numpy_helper.from_array(np.ones(c, np.float32), f"v{k}")]
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["a0"], name="stem", kernel_shape=[3, 3], pads=[1] * 4),
        helper.make_node("Relu", ["a0"], ["r0"], name="stem_relu"),
        helper.make_node("Conv", ["r0", "w1"], ["a1"], name="conv1", kernel_shape=[3, 3], pads=[1] * 4),
        helper.make_node("BatchNormalization", ["a1", "s1", "b1", "m1", "v1"], ["n1"], name="bn1"),
        helper.make_node("Relu", ["n1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["a2"], name="conv2", kernel_shape=[3, 3], pads=[1] * 4),
        helper.make_node("BatchNormalization", ["a2", "s2", "b2", "m2", "v2"], ["n2"], name="bn2"),
        helper.make_node("Add", ["n2", "r0"], ["s"], name="add"),
        helper.make_node("Relu", ["s"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["p"], name="gap"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fw"], ["y"], name="fc", transB=1),
    ]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, size, size])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)


def _res_profile() -> LayerProfile:
    # Big enough (~2 ms) that kernels, not the profiler's own ~25 us per node, make up the run.
    return profile(resblock(channels=64, size=32), "cpu", threads=2, runs=8, warmup=3, measure_s=0.4)


@pytest.fixture(scope="module")
def res_profile() -> LayerProfile:
    return _res_profile()


def test_every_model_node_maps_once(res_profile: LayerProfile) -> None:
    names = [n.name for n in resblock(channels=64, size=32).graph.node]
    covered = [c for n in res_profile.nodes for c in n.covers]
    assert set(covered) <= set(names)
    assert len(covered) == len(set(covered)), "a model node is attributed to two runtime nodes"
    assert set(covered) | set(res_profile.folded) == set(names)
    fused = [n for n in res_profile.nodes if n.origin == "fused"]
    assert fused, "ONNX Runtime fuses Conv+BatchNormalization(+Relu) on the CPU"
    assert any({"conv1", "bn1"} <= set(n.covers) for n in fused)
    by_cover = {c: n for n in res_profile.nodes for c in n.covers}
    assert by_cover["conv1"].kernel  # the kernel ORT chose (FusedConv or an NCHWc Conv)
    assert all(n.median_ms >= 0 and n.p90_ms >= n.median_ms for n in res_profile.nodes)
    assert all(n.covers == () for n in res_profile.nodes if n.origin == "inserted")


def test_the_sum_is_checked_against_an_unprofiled_measurement(res_profile: LayerProfile) -> None:
    p = res_profile
    assert p.measured_ms > 0 and p.runs == 8 and p.warmup == 3
    # The nodes run inside ORT's own run: their per-run sum cannot exceed its total.
    assert p.node_sum_ms <= p.profiled_run_ms * 1.02
    # The profile explains the profiled run: each run's node times add up to most of ONNX Runtime's
    # own run time (a node counted twice would exceed it; half the nodes lost would miss it).
    assert 0.5 <= p.node_sum_ms / p.profiled_run_ms <= 1.02, (p.node_sum_ms, p.profiled_run_ms)
    # Against the separately measured p50 the share moves with the machine's load: on fresh-clone
    # CI runs beside the other test worker it read 1.7-2.0 and once 4.7 (the profiler's cost per node
    # grows under contention), 0.9-1.1 on a quiet machine; the >= 90% target is checked by
    # benchmarks/profiles.py. Here only a unit error (us for ms: a factor of 1000) is caught.
    assert 0.05 <= p.explained_per_run <= 20.0, p.explained_per_run
    assert p.explained == pytest.approx(p.total_ms / p.measured_ms)
    ops = p.by_op_type()
    assert sum(o.ms for o in ops) == pytest.approx(p.total_ms)
    assert ops[0].ms == max(o.ms for o in ops)
    heat = p.per_model_node()
    assert sum(heat.values()) == pytest.approx(sum(n.median_ms for n in p.nodes if n.covers))
    d = json.loads(json.dumps(p.to_dict()))
    assert d["nodes"] and d["by_op_type"] and "explained" in d and d["machine"]["cpu"]


def _graph(nodes, inputs=("X",), inits=()) -> onnx.GraphProto:
    return helper.make_graph(nodes, "g", [helper.make_tensor_value_info(i, TensorProto.FLOAT, [1]) for i in inputs],
                             [], [numpy_helper.from_array(np.zeros(1, np.float32), n) for n in inits])


def test_map_optimized_fused_nchwc_and_nhwc_token_nodes() -> None:
    original = _graph([
        helper.make_node("Conv", ["X", "W"], ["c"], name="conv"),
        helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"], name="bn"),
        helper.make_node("Relu", ["n"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "W2"], ["c2"], name="conv2"),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Conv", ["r2", "W3"], ["c3"], name="conv3"),
        helper.make_node("Shape", ["c3"], ["sh"], name="shape"),
        helper.make_node("Constant", [], ["k"], name="const", value_float=1.0),
        helper.make_node("Mul", ["sh", "k"], ["unused"], name="dead"),
    ], inits=("W", "W2", "W3", "s", "b", "m", "v"))
    optimized = _graph([
        helper.make_node("ReorderInput", ["X"], ["t0"], name="ReorderInput", domain="com.microsoft.nchwc"),
        helper.make_node("Conv", ["t0", "Wr"], ["t1"], name="r_nchwc", domain="com.microsoft.nchwc"),
        helper.make_node("ReorderOutput", ["t1"], ["r"], name="ReorderOutput", domain="com.microsoft.nchwc"),
        helper.make_node("FusedConv", ["r", "W2"], ["tok"], name="conv2_token_7", domain="com.microsoft"),
        helper.make_node("Conv", ["tok", "W3"], ["c3"], name="conv3"),
    ], inits=("Wr", "W2", "W3"))
    m = map_optimized(original, optimized)
    assert m["ReorderInput"] == () and m["ReorderOutput"] == ()
    assert m["r_nchwc"] == ("conv", "bn", "relu")  # named after the tensor it writes, through the reorder
    assert m["conv2_token_7"] == ("conv2",)  # renamed tensors: the name says which node (relu2 is lost)
    assert m["conv3"] == ("relu2", "conv3")  # ... and the next node's walk picks it up, once
    # shape/const/dead were folded at load: nobody covers them
    assert not {"shape", "const", "dead"} & {c for v in m.values() for c in v}


def test_parse_trace_keeps_the_last_runs_only() -> None:
    ev = []
    for r in range(4):
        t0 = r * 1000
        ev.append({"cat": "Session", "name": "model_run", "ts": t0, "dur": 500})
        ev.append({"cat": "Node", "name": "a_kernel_time", "ts": t0 + 10, "dur": 100 + r,
                   "args": {"op_name": "Conv", "provider": "CPUExecutionProvider"}})
        ev.append({"cat": "Node", "name": "b_kernel_time", "ts": t0 + 200, "dur": 50})
        ev.append({"cat": "Node", "name": "b_fence_before", "ts": t0 + 199, "dur": 1})
    ev.append({"cat": "Node", "name": "a_kernel_time", "ts": 9000, "dur": 7})  # outside every run
    per_node, totals, args, sums = parse_trace(ev, 2)
    assert per_node == {"a": [0.102, 0.103], "b": [0.05, 0.05]}
    assert totals == [0.5, 0.5] and sums == pytest.approx([0.152, 0.153])
    assert args["a"]["op_name"] == "Conv"


def test_unnamed_nodes_get_names_and_map() -> None:
    m = tiny_cnn()
    for n in m.graph.node:
        n.name = ""
    named, given = named_copy(load_model(m))
    names = model_node_names(named.proto)
    assert all(names) and len(set(names)) == len(names) == len(given)
    p = profile(m, "cpu", threads=1, runs=3, warmup=1, measure_s=0.05)
    assert {c for n in p.nodes for c in n.covers} | set(p.folded) == set(names)
    assert any("given names" in note for note in p.notes)


def test_if_body_nodes_are_not_counted_twice() -> None:
    from zoo import if_model

    p = profile(if_model(), "cpu", threads=1, runs=3, warmup=1, measure_s=0.05,
                values={"x": np.ones((2, 16), np.float32)})
    names = [n.name for n in p.nodes]
    assert "branch" in names
    inner = set(model_node_names(load_model(if_model()).proto)) - {n.name for n in if_model().graph.node}
    assert not inner & set(names)


def _nt(name: str, op: str, ms: float, covers: tuple[str, ...], origin: str = "model", note: str = "") -> NodeTime:
    return NodeTime(name, op, ms, ms, covers, origin, note=note)


def _lp(nodes: list[NodeTime], measured: float) -> LayerProfile:
    return LayerProfile("m", "sha256:0", "ort-cpu", "cpu", 1, 5, 1, nodes, measured, measured, measured)


def test_compare_profiles_matches_through_model_node_names() -> None:
    base = _lp([_nt("conv", "FusedConv", 3.0, ("conv", "bn", "relu"), "fused"),
                _nt("fc", "Gemm", 1.0, ("fc",)),
                _nt("ReorderInput", "ReorderInput", 0.2, (), "inserted", "layout reorder NCHW -> NCHWc"),
                _nt("gone", "Relu", 0.1, ("gone",))], 4.5)
    build = _lp([_nt("x_q", "QuantizeLinear", 0.3, ("x_QuantizeLinear",)),
                 _nt("conv_token_1", "QLinearConv", 1.0, ("x_DequantizeLinear", "conv")),
                 _nt("fc", "QGemm", 1.5, ("fc",))], 2.9)
    c = compare_profiles(base, build)
    units = {d.label: d for d in c.by_node}
    assert units["conv"].kind == "matched" and units["conv"].delta_ms == pytest.approx(-2.0)
    assert units["conv"].baseline_ops == "FusedConv" and units["conv"].build_ops == "QLinearConv"
    assert units["x_QuantizeLinear"].kind == "added" and units["gone"].kind == "removed"
    reorder = next(d for d in c.by_node if d.kind == "inserted")
    assert reorder.baseline_ms == pytest.approx(0.2) and reorder.build_ms == 0
    assert [d.label for d in c.faster(2)] == ["conv", reorder.label]
    assert c.slower(1)[0].label == "fc"
    ops = {o.op_type: o for o in c.by_op_type}
    assert ops["FusedConv"].build_ms == 0 and ops["QLinearConv"].baseline_ms == 0
    assert sum(o.baseline_ms for o in c.by_op_type) == pytest.approx(base.total_ms)
    with pytest.raises(UsageError):
        compare_profiles(base, LayerProfile("m", "s", "ort-cpu", "cpu", 8, 5, 1, [], 1, 1, 1))


def test_profile_pair_on_an_int8_build() -> None:
    from workbench.core.build import optimize

    src = load_model(resblock(channels=16, size=16))
    built = optimize(src, "int8:samples=8", device="cpu", calibration="random")
    c = profile_pair(src, built.model, "cpu", threads=1, runs=4, warmup=1, rounds=2, budget_s=0.05)
    assert np.isfinite(c.speedup) and c.speedup > 0 and c.rounds == 2
    lo, hi = c.speedup_range
    assert lo <= c.speedup <= hi
    matched = {d.label for d in c.by_node if d.kind == "matched"}
    assert {"conv1", "conv2"} & {c_ for d in c.by_node if d.kind == "matched" for c_ in d.covers}, matched
    assert any(o.op_type.startswith("QLinear") and o.build_ms > 0 for o in c.by_op_type)
    assert json.dumps(c.to_dict(), allow_nan=True)


def test_bad_input_is_declined_clearly() -> None:
    with pytest.raises(UsageError):
        profile(tiny_cnn(), "cpu", runs=0)
    with pytest.raises(EngineUnavailableError):
        profile(tiny_cnn(), "cuda")  # no GPU here (and on CI)


def test_cli_profile_json_and_comparison(model_file, capsys) -> None:
    path = model_file(resblock(channels=8, size=12))
    assert main(["profile", str(path), "--runs", "3", "--warmup", "1", "--threads", "1", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["nodes"] and d["measured_p50_ms"] > 0 and d["engine"] == "ort-cpu"
    assert main(["profile", str(path), "--runs", "3", "--warmup", "1", "--threads", "1", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "explains" in out and "by op type" in out and "top 3 nodes" in out
    assert main(["profile", str(path), "--passes", "fuse", "--runs", "3", "--warmup", "1", "--threads", "1",
                 "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "speed-up" in out and "by op type" in out
    assert main(["profile", str(path), "--passes", "fuse", "--baseline", str(path)]) == 2


def test_nodes_a_pass_renamed_are_matched_by_order_and_kernel() -> None:
    from workbench.core.profiling.compare import align_nodes

    base = resblock(channels=8, size=8)
    build = resblock(channels=8, size=8)
    for k, n in enumerate(build.graph.node):  # what onnxslim's folding does to names
        if n.op_type == "Conv":
            n.name = f"node_Conv_{k}"
    aliases = align_nodes(base, build)
    assert aliases == {"node_Conv_0": "stem", "node_Conv_2": "conv1", "node_Conv_5": "conv2"}
    a = _lp([_nt("conv1", "FusedConv", 2.0, ("conv1", "bn1", "relu1"), "fused")], 2.0)
    b = _lp([_nt("node_Conv_2_token_4", "QLinearConv", 0.5, ("w_DequantizeLinear", "node_Conv_2"))], 0.5)
    unit = compare_profiles(a, b, aliases=aliases).by_node[0]
    assert unit.kind == "matched" and unit.label == "conv1" and unit.delta_ms == pytest.approx(-1.5)
    assert compare_profiles(a, b).by_node[0].kind != "matched"  # without the aliases: no match
