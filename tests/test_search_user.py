"""Search on the user's own model, data and metric: the budget is on the metric (baseline - trial,
in its units) or, for unlabeled data, on top-1 agreement; the model may be an object, the data
NumPy arrays; an unpicklable metric is refused before any work when trials run in other processes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from conftest import tiny_cnn
from workbench.cli import main
from workbench.core.build import optimize
from workbench.core.evaluation.data import random_dataset
from workbench.core.evaluation.sources import as_dataset
from workbench.core.model import load_model
from workbench.core.passes.recipe import Recipe
from workbench.core.search import SearchSpace, search
from workbench.errors import UsageError

# fp32 and int8 without pruning: every recipe is one pass (or none), so optimize() rebuilds it
SMALL = SearchSpace(precisions=("fp32", "int8"), calibrations=("minmax", "entropy"), prune_ratios=(0.0,),
                    fuse=True)
PID_FILE = "WB_TEST_METRIC_PIDS"


def mean_true_logprob(outputs, labels):
    """Mean log-softmax of the true class (higher is better); notes its process id when asked."""
    if os.environ.get(PID_FILE):
        with open(os.environ[PID_FILE], "a") as f:
            f.write(f"{os.getpid()}\n")
    y = outputs["y"].astype(np.float64)
    logp = y - y.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    return float(logp[np.arange(len(labels)), labels].mean())


@pytest.fixture(scope="module")
def user():
    """A Model object (not a path), 96 float inputs, labels near the model's own argmax."""
    m = load_model(tiny_cnn(3))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((96, 3, 8, 8)).astype(np.float32)
    y = _run(m.proto, x).argmax(-1)
    y[::7] = (y[::7] + 1) % 5  # not the model's own predictions everywhere
    return m, x, y


def _run(proto: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def _build(m, recipe: str, calib) -> onnx.ModelProto:
    return optimize(m, Recipe.parse(recipe) if recipe else Recipe(()), calibration=calib).model.proto


def _opts(tmp_path: Path, **kw):
    return {"objective": "size", "trials": 3, "seed": 1, "round_size": 3, "space": SMALL, "max_exclude": 0,
            "screen_samples": 64, "final_samples": 96, "finalists": 2, "cache_dir": tmp_path / "cache", **kw}


def _built_trials(r):
    return [t for t in r.trials if t.error is None and t.duplicate_of is None]


def test_the_budget_is_on_the_users_metric(user, tmp_path):
    m, x, y = user
    r = search(m, data=(x, y), calib=x[:32], metric=lambda o, lab: mean_true_logprob(o, lab),  # in process
               metric_name="logprob", budget_points=0.05, workers=0, **_opts(tmp_path))
    assert r.score == "metric" and r.drop_unit == "logprob" and r.drop_label == "drop in logprob"
    assert any("logprob" in n and "own units" in n for n in r.notes)
    cal = as_dataset(x[:32], m)
    base = mean_true_logprob({"y": _run(m.proto, x[:64])}, y[:64])
    assert r.baseline_score["64"] == pytest.approx(base, abs=1e-6)
    trials = _built_trials(r)
    assert len(trials) >= 2 and all(t.top1 is None for t in trials)
    for t in trials:
        mine = mean_true_logprob({"y": _run(_build(m, t.recipe, cal), x[:64])}, y[:64])
        assert t.score == pytest.approx(mine, abs=1e-5)
        assert t.drop_points == pytest.approx(base - mine, abs=1e-5)  # metric units, not points
        assert t.feasible == (t.drop_points <= 0.05)
    assert any(abs(t.drop_points) > 1e-4 for t in trials)  # int8 moves the metric: drops are not all 0
    assert any(t.recipe.startswith("int8") for t in trials)
    # finalists on the full 96 samples, same formula
    fin = [t for t in trials if t.final]
    assert fin and r.baseline_score["96"] == pytest.approx(mean_true_logprob({"y": _run(m.proto, x)}, y), abs=1e-6)
    for t in fin:
        full = mean_true_logprob({"y": _run(_build(m, t.recipe, cal), x)}, y)
        assert t.final["drop_points"] == pytest.approx(r.baseline_score["96"] - full, abs=1e-5)
    assert not list((tmp_path / "cache").glob("search-model-*"))  # the temporary model is removed
    json.dumps(r.to_dict(), default=str)


def test_a_pool_worker_receives_the_metric_and_the_data_by_pickle(user, tmp_path, monkeypatch):
    m, x, y = user
    pids = tmp_path / "pids.txt"
    monkeypatch.setenv(PID_FILE, str(pids))  # spawned workers inherit the environment
    r = search(m.proto, data=(x, y), calib=x[:32], metric=mean_true_logprob, budget_points=0.05, workers=1,
               **_opts(tmp_path, round_size=3))
    assert r.conditions["executor"] == {"executor": "local", "workers": 1}
    seen = {int(p) for p in pids.read_text().split()}
    assert seen - {os.getpid()}, "no trial ran in a worker process"
    assert r.score == "metric" and r.drop_unit == "mean_true_logprob"
    trials = _built_trials(r)
    assert len(trials) >= 2
    cal = as_dataset(x[:32], m)
    base = mean_true_logprob({"y": _run(m.proto, x[:64])}, y[:64])
    for t in trials:
        mine = mean_true_logprob({"y": _run(_build(m, t.recipe, cal), x[:64])}, y[:64])
        assert t.drop_points == pytest.approx(base - mine, abs=1e-5)


def test_unlabeled_data_puts_the_budget_on_agreement(user, tmp_path):
    m, x, _ = user
    r = search(m, data=x, calib="random", budget_points=5.0, workers=0, **_opts(tmp_path))
    assert r.score == "agreement" and r.drop_unit == "pt top-1 agreement"
    assert any("agreement" in n for n in r.notes) and any("random" in n for n in r.notes)
    assert r.conditions["data"]["labeled"] is False
    ref = _run(m.proto, x[:64]).argmax(-1)
    rand = random_dataset(m, 64)  # what calib="random" calibrates on (seed 0)
    trials = _built_trials(r)
    assert len(trials) >= 2
    for t in trials:
        agree = float(np.mean(_run(_build(m, t.recipe, rand), x[:64]).argmax(-1) == ref))
        assert t.drop_points == pytest.approx((1 - agree) * 100, abs=1e-9)
        assert t.top1 is None and t.score == pytest.approx(agree)


def test_an_unpicklable_metric_is_refused_before_any_work(user, tmp_path):
    m, x, y = user
    calls = []

    def local_metric(outputs, labels):
        return 0.0

    for metric in (lambda o, lab: 0.0, local_metric):
        with pytest.raises(UsageError) as info:
            search(m, data=(x, y), metric=metric, budget_points=0.05, workers=1,
                   progress=lambda *a: calls.append(a), **_opts(tmp_path))
        text = str(info.value) + " " + str(getattr(info.value, "hint", ""))
        assert "pickle" in text and "top level" in text and "workers=0" in text
    assert calls == [] and not (tmp_path / "cache").exists()  # nothing built, nothing written


def test_cli_search_takes_data_calib_and_a_metric(user, tmp_path, capsys, monkeypatch):
    m, x, y = user
    model = tmp_path / "m.onnx"
    onnx.save(m.proto, str(model))
    np.savez(tmp_path / "data.npz", x=x, labels=y)
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "wb"))
    argv = ["search", str(model), "--budget", "0.05", "--data", str(tmp_path / "data.npz"), "--calib", "random",
            "--metric", "test_search_user:mean_true_logprob", "--metric-name", "logprob", "--objective", "size",
            "--trials", "2", "--workers", "0", "--max-exclude", "0", "--screen-samples", "64", "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "budget 0.05 (drop in logprob)" in out and "pt top-1" not in out
    assert main(["search", str(model), "--budget", "1", "--metric", "nosuchmodule_xyz:f"]) == 2
    assert "cannot import 'nosuchmodule_xyz'" in capsys.readouterr().err


def test_the_panel_searches_with_the_sessions_model_data_and_metric(user, tmp_path):
    from workbench.ui.panel import Workbench

    m, x, y = user
    w = Workbench(m.proto, data=(x, y), calib=x[:32], metric=mean_true_logprob, metric_name="logprob",
                  threads=1, quick_samples=64, refine=False, measure_baseline=False)
    try:
        assert w.model_ref is None  # a ModelProto, not a path: the search gets the loaded Model
        o = _opts(tmp_path)
        del o["cache_dir"]
        r = w.search(budget_points=0.05, workers=0, **o)
        assert r.score == "metric" and r.drop_label == "drop in logprob"
        assert w.search_tab.w_budget.description == "budget (logprob)"
        assert "drop in logprob" in w.search_tab.w_table.value and "pt top-1" not in w.search_tab.w_table.value
        base = mean_true_logprob({"y": _run(m.proto, x[:64])}, y[:64])
        cal = as_dataset(x[:32], m)
        t = next(t for t in _built_trials(r) if t.recipe.startswith("int8"))
        mine = mean_true_logprob({"y": _run(_build(m, t.recipe, cal), x[:64])}, y[:64])
        assert t.drop_points == pytest.approx(base - mine, abs=1e-5)
    finally:
        w.close()
