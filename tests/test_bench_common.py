"""benchmarks/common.py: the run-wide top-1 cache and the warm-up rule of the interleaved rounds."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import common  # noqa: E402
from workbench import load_dataset, load_model  # noqa: E402
from workbench.core.passes import PassContext, Recipe  # noqa: E402


@pytest.fixture(scope="module")
def sample():
    m = load_model("sample:resnet-fashion")
    return m, load_dataset(None, m)


def test_top1_is_read_back_for_the_same_bytes_only(sample, tmp_path, monkeypatch, capsys):
    m, test = sample
    cache = tmp_path / "top1.jsonl"
    monkeypatch.setenv("WB_BENCH_EVAL_CACHE", str(cache))
    first = common.top1(m, test, limit=64)
    assert first[1] == 64 and 0.0 <= first[0] <= 1.0
    assert len(cache.read_text().splitlines()) == 1
    assert "read back" not in capsys.readouterr().out
    # the same bytes loaded again (another step's process would do this): read back, not run
    again = common.top1(m.proto, test, limit=64)
    assert again == first and "read back" in capsys.readouterr().out
    assert len(cache.read_text().splitlines()) == 1
    # another limit, or another model, is evaluated and appended
    assert common.top1(m, test, limit=32)[1] == 32
    fused = Recipe.parse("int8:samples=16").instantiate()[0](
        m.proto, PassContext(calibration=load_dataset("sample:resnet-fashion:calib", m))).model
    common.top1(fused, test, limit=64)
    assert "read back" not in capsys.readouterr().out
    assert len(cache.read_text().splitlines()) == 3
    # a torn last line (a step killed mid-write) is skipped, the rest still reads back
    with cache.open("a") as f:
        f.write('{"key": "abc", "top1"')
    assert common.top1(m, test, limit=64) == first


def test_top1_without_the_variable_evaluates_every_time(sample, tmp_path, monkeypatch):
    m, test = sample
    monkeypatch.delenv("WB_BENCH_EVAL_CACHE", raising=False)
    assert common.top1(m, test, limit=16)[1] == 16
    assert not list(tmp_path.iterdir())


def test_slow_configs_are_warmed_up_before_the_first_round_only():
    calls = {"slow": 0, "fast": 0}

    def slow() -> None:
        calls["slow"] += 1
        time.sleep(common.REWARM_BELOW_MS / 1e3 + 0.01)

    def fast() -> None:
        calls["fast"] += 1

    res = common.interleaved({"slow": slow, "fast": fast}, rounds=3, batch_of={"slow": 1, "fast": 1},
                             min_iterations=1, budget_s=1e-4, log=lambda s: None)
    # slow: 1 warm-up + 1 timed run in round 1, then 1 timed run per round; fast: warmed every round
    assert calls["slow"] == 3 + 1
    assert res["slow"]["iterations"] == 3
    assert calls["fast"] == res["fast"]["iterations"] + 3
