"""Search: the space, the Pareto frontier, errors, and a seeded search giving identical results on
the local process pool and on a local Ray instance (2 CPUs)."""

from __future__ import annotations

import json

import optuna
import pytest

from workbench.cli import main
from workbench.core.search import SearchSpace, pareto_front, search
from workbench.core.search.executors import LocalExecutor, RayExecutor
from workbench.errors import UsageError

# int8 and float builds without pruning (channel pruning's reconstruction adds ~5 s a build)
SMALL = SearchSpace(precisions=("fp32", "int8"), calibrations=("minmax", "entropy"), prune_ratios=(0.0,),
                    fuse=True)


def test_pareto_front_keeps_only_undominated_points():
    pts = {0: (0.1, 0.5), 1: (0.0, 0.9), 2: (0.2, 0.6), 3: (0.5, 0.2), 4: (0.1, 0.5)}
    assert pareto_front(pts) == [1, 0, 4, 3]  # 2 is beaten by 0; ties are both kept


def test_space_maps_parameters_to_recipes():
    space = SearchSpace(exclusions=("a", "b", "c"))
    p = space.suggest(optuna.trial.FixedTrial({"precision": "int8", "prune_ratio": 0.5, "prune_multiple": 8,
                                               "calibration": "entropy", "exclude_top": 2}))
    assert space.recipe(p).label() == "prune-channels:multiple=8:ratio=0.5,int8:calibration=entropy:exclude=a+b"
    p = space.suggest(optuna.trial.FixedTrial({"precision": "fp32", "prune_ratio": 0.0, "fuse": True}))
    assert p == {"precision": "fp32", "prune_ratio": 0.0, "fuse": True} and space.recipe(p).label() == "fuse"
    assert SearchSpace.for_device("cuda").precisions == ("fp32", "fp16", "int8")
    assert "fp16" not in SearchSpace.for_device("cpu").precisions


def test_bad_arguments_are_user_errors(capsys):
    with pytest.raises(UsageError, match="objective"):
        search("sample:resnet-fashion", objective="speed")
    with pytest.raises(UsageError, match="budget"):
        search("sample:resnet-fashion", budget_points=-1)
    assert main(["search", "sample:resnet-fashion", "--budget", "0.5", "--address", "auto"]) == 2
    assert "--address is for --executor ray" in capsys.readouterr().err


def _probe(x):
    return x


def _run(executor, cache_dir):
    return search("sample:resnet-fashion", objective="size", budget_points=0.5, trials=4, seed=7,
                  round_size=2, executor=executor, space=SMALL, max_exclude=0, screen_samples=200,
                  final_samples=400, finalists=2, cache_dir=cache_dir)


def test_local_and_ray_executors_give_identical_results_for_a_fixed_seed(tmp_path):
    ray = pytest.importorskip("ray", reason="the test extra installs ray")  # noqa: F841
    with LocalExecutor(2) as ex:
        local = _run(ex, tmp_path / "local-cache")
    import ray as ray_mod  # noqa: PLC0415

    ray_mod.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with RayExecutor(workers=2) as rex:
            # The same build cache: builds are deterministic (tests/test_bundle.py rebuilds them
            # byte for byte); what differs here is where trials run and how results come back.
            remote = _run(rex, tmp_path / "local-cache")
            assert rex.describe()["cluster_cpus"] == 2
        # GPU trials ask Ray for one GPU each (the remote function's resources, no GPU needed here)
        gpu = RayExecutor(workers=1, device="cuda")
        opts = gpu._remote(_probe)._default_options
        assert opts["num_gpus"] == 1 and opts["num_cpus"] == 1
    finally:
        ray_mod.shutdown()
    assert local.deterministic_view() == remote.deterministic_view()
    assert len(local.trials) == 4 and all(t.error is None for t in local.trials)
    assert local.trials[0].params == SMALL.anchors(1)[0]  # the anchor (plain int8) is asked first
    # size is the objective: int8 builds are ~4x smaller and within budget, so one of them is best
    best = local.best_trial
    assert best is not None and best.recipe.startswith("int8") and best.cost < 0.3
    assert best.final is not None and best.final["samples"] == 400 and best.final["drop_points"] <= 0.5
    assert local.pareto and best.number in local.pareto or best.duplicate_of in local.pareto
    assert local.conditions["executor"]["executor"] == "local"
    assert remote.conditions["executor"]["executor"] == "ray"
    json.dumps(local.to_dict(), default=str)


def test_finalists_are_measured_together_against_the_baseline(tmp_path):
    from workbench.core.passes.recipe import Recipe
    from workbench.core.search.trial import GroupLatencySpec, measure_latency_together

    recipes = tuple(Recipe.parse(r).to_dict() for r in ("int8:samples=64", "fuse"))
    out = measure_latency_together(GroupLatencySpec((3, 5), "sample:resnet-fashion", recipes, "cpu", rounds=4,
                                                    budget_s=0.15, cache_dir=str(tmp_path)))
    assert set(out) == {3, 5} and all(o["rounds"] == 4 for o in out.values())
    lo, hi = out[3]["ratio_range"]
    assert lo <= out[3]["ratio"] <= hi
    # int8 runs ~2x faster than FP32 on any x86 CPU here; fusion leaves ORT_ENABLE_ALL's speed alone
    assert out[3]["ratio"] < 0.8 * out[5]["ratio"]
    assert out[3]["p50_ms"] < out[3]["baseline_p50_ms"]
