"""The runtime as a search dimension on the CPU: trials on ONNX Runtime and OpenVINO, one baseline."""

from __future__ import annotations

import pytest

from workbench.core.search import SearchSpace, search
from workbench.core.search import trial as trial_mod
from workbench.core.search.executors import LocalExecutor
from workbench.core.search.trial import LatencySpec, measure_latency


def test_default_cpu_space_has_the_runtime_as_a_dimension():
    assert SearchSpace.for_device("cpu").engines == ("cpu", "openvino")
    assert SearchSpace.for_device("cuda").engines == ()
    assert SearchSpace.for_device("openvino").engines == ()  # a search pinned to one runtime
    space = SearchSpace.for_device("cpu")
    assert space.device_for({"engine": "openvino"}, "cpu") == "openvino"
    assert space.device_for({}, "cpu") == "cpu"
    assert space.to_dict()["engines"] == ["cpu", "openvino"]


def test_latency_of_a_trial_on_openvino_is_against_the_onnx_runtime_baseline(monkeypatch, tmp_path):
    seen = []
    real = trial_mod.make_runner

    def spy(model, device="cpu", **opts):
        seen.append((model.fingerprint, device))
        return real(model, device, **opts)

    monkeypatch.setattr(trial_mod, "make_runner", spy)
    out = measure_latency(LatencySpec(0, "sample:resnet-fashion", {"passes": []}, "openvino", threads=1,
                                      budget_s=0.1, cache_dir=str(tmp_path), baseline_device="cpu"))
    assert [d for _, d in seen] == ["openvino", "cpu"] and seen[0][0] == seen[1][0]  # same FP32 bytes
    assert out["ratio"] > 0 and out["p50_ms"] > 0


@pytest.mark.slow
def test_search_explores_both_runtimes_and_reports_where_each_trial_ran(tmp_path):
    space = SearchSpace(precisions=("fp32",), prune_ratios=(0.0,), fuse=True, engines=("cpu", "openvino"))
    with LocalExecutor(0) as ex:
        res = search("sample:resnet-fashion", objective="latency", budget_points=0.5, trials=4, seed=3,
                     round_size=2, executor=ex, space=space, max_exclude=0, screen_samples=100,
                     final_samples=200, finalists=2, cache_dir=tmp_path, latency_budget_s=0.2)
    devices = {t.device for t in res.trials}
    assert devices == {"cpu", "openvino"}, [(t.params, t.device) for t in res.trials]
    for t in res.trials:
        assert t.error is None, t.error
        assert t.device == t.params["engine"] and t.label.endswith(f"on {t.device}")
        assert t.drop_points is not None and abs(t.drop_points) < 0.5  # FP32 on either runtime
    # the same recipe on two runtimes is two trials, not a duplicate
    keys = {(t.recipe, t.device) for t in res.trials if t.duplicate_of is None}
    assert len(keys) == len([t for t in res.trials if t.duplicate_of is None])
    assert res.space["engines"] == ["cpu", "openvino"]
    assert res.best_trial is not None and res.best_trial.latency is not None
