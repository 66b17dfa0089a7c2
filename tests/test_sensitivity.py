"""Sensitivity: per-tensor errors, the leave-one-out layer ranking, mixed precision, the CLI verb,
and the done-when check that excluding the top-ranked layers beats excluding random ones."""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import make_model
from workbench.cli import main
from workbench.core.build import optimize
from workbench.core.cache import BuildCache
from workbench.core.evaluation.data import Dataset, load_dataset
from workbench.core.model import load_model
from workbench.core.sensitivity import (
    analyze,
    auto_mixed_precision,
    layer_ranking,
    model_logits,
    with_exclusions,
)
from workbench.errors import UsageError


def mlp_with_outlier_layer() -> object:
    """x[N,16] >= 0 -> g1 -> Relu -> g2 -> Relu -> g3 -> y[N,10]. g2's weights hold one huge value,
    so per-tensor int8 rounds all its other weights to zero: g2 is the sensitive layer. The huge
    weight multiplies a channel that is always 0 (g1's column 0 is negative on non-negative inputs),
    so the float activations are not distorted by it."""
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((16, 32)).astype(np.float32) * 0.3
    w1[:, 0] = -1.0
    w2 = rng.standard_normal((32, 32)).astype(np.float32) * 0.3
    w2[0, 0] = 400.0  # the outlier: weight scale ~ 400/127, the rest rounds away
    w3 = rng.standard_normal((32, 10)).astype(np.float32) * 0.3
    inits = [numpy_helper.from_array(w, n) for w, n in ((w1, "w1"), (w2, "w2"), (w3, "w3"))]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h1"], name="g1"),
             helper.make_node("Relu", ["h1"], ["r1"], name="relu1"),
             helper.make_node("MatMul", ["r1", "w2"], ["h2"], name="g2"),
             helper.make_node("Relu", ["h2"], ["r2"], name="relu2"),
             helper.make_node("MatMul", ["r2", "w3"], ["y"], name="g3")]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)


@pytest.fixture(scope="module")
def mlp():
    m = load_model(mlp_with_outlier_layer())
    x = np.abs(np.random.default_rng(1).standard_normal((128, 16))).astype(np.float32)
    return m, Dataset({"x": x}, None, "random normal")


def test_ranking_finds_the_sensitive_layer_on_a_small_model(mlp, tmp_path):
    m, data = mlp
    r = analyze(m, "int8:per_channel=false", calibration=data, samples=64, tensor_samples=16,
                cache=BuildCache(tmp_path))
    assert r.pass_name == "int8" and r.samples == 64
    assert r.ranking()[0] == "g2", r.layers
    top = r.layers[0]
    assert top.score > 0.5 and top.score > 3 * max(s.score for s in r.layers[1:])
    assert r.heat()["g2"] == top.score
    # per tensor (ORT's qdq_loss_debug; the quantizer folds each Relu into its producer's range):
    # r2, downstream of g2, is far worse than r1, upstream of it
    sq = {t.tensor: t for t in r.tensors}
    assert {"r1", "r2", "y"} <= set(sq)
    assert sq["r2"].sqnr_db < sq["r1"].sqnr_db - 10 and sq["r2"].node == "relu2"
    assert all(-1.0 <= t.cosine <= 1.0 + 1e-9 and t.max_abs >= 0 for t in r.tensors)
    assert r.tensors == sorted(r.tensors, key=lambda t: t.sqnr_db)
    json.dumps(r.to_dict())
    # leaving g2 in float is a real build: its output error is much smaller than the full build's
    excluded = optimize(m, with_exclusions("int8:per_channel=false", ["g2"]), calibration=data,
                        cache=BuildCache(tmp_path))
    assert any(e["node"] == "g2" for e in excluded.reports[0].excluded)


def test_with_exclusions_merges_into_the_last_quantization_pass():
    r = with_exclusions("fuse,int8:exclude=a", ["b", "a"])
    assert r.passes[1].options["exclude"] == ["a", "b"]
    assert with_exclusions("fp16", ["n"]).passes[0].options["exclude"] == ["n"]
    with pytest.raises(UsageError, match="no quantization pass"):
        with_exclusions("fuse", ["x"])


def test_sensitivity_cli_json_and_errors(mlp, tmp_path, capsys):
    m, data = mlp
    model_path = tmp_path / "mlp.onnx"
    model_path.write_bytes(m.proto.SerializeToString())
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=data.inputs["x"])
    rc = main(["sensitivity", str(model_path), "--passes", "int8:per_channel=false", "--calib", str(calib),
               "--samples", "32", "--tensor-samples", "8", "--no-cache", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["layers"][0]["node"] == "g2" and out["tensors"]
    assert main(["sensitivity", str(model_path), "--passes", "fuse", "--calib", str(calib)]) == 2
    assert "no quantization pass" in capsys.readouterr().err


# --- the done-when check on the trained sample ---------------------------------------------------

# The default int8 build loses too little on the sample (under 0.1 pt) to tell which layers matter.
# Full 8-bit weights (reduce_range=false) on an x86 CPU without VNNI lose measurably: MLAS's AVX2
# u8 x s8 kernels multiply-add pairs into saturating int16 (the int8 pass's docstring), a loss that
# sits in a few layers, as real int8 losses usually do. With VNNI there is no saturation, hence no
# loss to recover: the test then has nothing to measure and says so. Measured on an AVX-512 VNNI/AMX
# Xeon (first 3,000 test images): int8 with defaults, reduce_range=false, per_channel=false, S8S8,
# 2 calibration images, and u8 weights per tensor all stayed within 0.1 pt of FP32; percentile
# clipping at 99 lost 1.9 pt, spread out (excluding the first conv recovered none of it; on an AVX2
# machine no layer's leave-one-out score reached 4.5% under percentile clipping), and a
# function-preserving channel rescale lost 17 pt in a tensor two layers share (only excluding both
# recovered it). None is the few-layer loss this test is about, so on VNNI it is skipped, by design.
LOSSY = "int8:reduce_range=false"


def _saturating_cpu() -> bool:
    from workbench.core.machine import cpu_isa  # noqa: PLC0415
    from workbench.core.passes.quantize import resolve_int8_scheme  # noqa: PLC0415

    return resolve_int8_scheme("cpu", cpu_isa()).target == "cpu-x86"


needs_saturation = pytest.mark.skipif(not _saturating_cpu(), reason="the int8 loss this test recovers is "
                                      "int16 saturation, which only x86 CPUs without VNNI have")


def _sample_ranking(cache_dir, limit: int | None):
    cache = BuildCache(cache_dir)
    src = load_model("sample:resnet-fashion")
    full = optimize(src, LOSSY, cache=cache)
    ops = {n.name: n.op_type for n in full.model.proto.graph.node}
    weighted = [n for n in full.reports[0].quantized if ops[n] in ("Conv", "Gemm")][:limit]
    scores, _ = layer_ranking(src, LOSSY, samples=64, candidates=weighted, cache=cache)
    test = load_dataset("sample:resnet-fashion", src)
    n = 3000  # the first 3,000 test images (the ranking used 64 calibration images, disjoint from them)
    ref, labels = model_logits(src, test, n)
    return src, cache, weighted, [s.node for s in scores], test, n, float(np.mean(ref.argmax(-1) == labels))


@pytest.fixture(scope="module")
def sample_ranking_all(tmp_path_factory):
    """Every weighted layer ranked (leave-one-out scores are per layer, so a ranking of a subset
    is this one filtered: a separate 7-layer ranking repeated builds and evaluations)."""
    return _sample_ranking(tmp_path_factory.mktemp("sens-cache"), None)


def _top_beats_random(ranking_fixture, k: int) -> None:
    src, cache, weighted, ranking, test, n, base = ranking_fixture

    def drop(names: list[str]) -> float:
        b = optimize(src, with_exclusions(LOSSY, names), cache=cache)
        got, labels = model_logits(b.model, test, n)
        return float(base - np.mean(got.argmax(-1) == labels)) * 100

    full, top = drop([]), drop(ranking[:k])
    rng = np.random.default_rng(0)
    randoms = [drop(list(rng.choice(weighted, k, replace=False))) for _ in range(3)]
    assert full >= 0.2, f"the int8 build should lose at least 6 of 3,000 images, lost {full:.2f} pt"
    # the top-k recovers at least 3/4 of the loss, and beats random k-sets on average by 0.15 pt
    # (4.5 images of 3,000) and by twice their recovered share
    assert top <= 0.25 * full, (ranking[:k], top, full)
    mean_random = float(np.mean(randoms))
    assert mean_random >= top + 0.15, (ranking[:k], top, randoms)
    assert (full - top) >= 2 * (full - mean_random), (top, randoms, full)


@pytest.mark.slow
@needs_saturation
def test_excluding_top_ranked_layers_of_all_recovers_more_than_random_ones(sample_ranking_all):
    _top_beats_random(sample_ranking_all, 3)


@needs_saturation
def test_auto_mixed_precision_keeps_the_fewest_layers_within_budget(sample_ranking_all):
    src, cache, _, ranking, test, n, _ = sample_ranking_all
    r = auto_mixed_precision(src, LOSSY, 0.1, ranking=ranking, data=test, samples=n, max_layers=3, cache=cache)
    assert r.tried[0]["k"] == 0 and r.tried[0]["drop_points"] > 0.1  # int8 alone is over budget
    assert r.within_budget and r.excluded == ranking[:len(r.excluded)] and len(r.excluded) >= 1
    assert all(t["drop_points"] > 0.1 for t in r.tried[:-1]) and r.tried[-1]["drop_points"] <= 0.1
