"""The latency loop: counts, statistics, time budget, and that it adds next to nothing."""

from __future__ import annotations

import time

import numpy as np
import pytest

from workbench.core.evaluation.latency import LatencyResult, time_callable
from workbench.errors import UsageError


def test_calls_warmup_plus_iterations():
    calls = []
    r = time_callable(lambda: calls.append(1), warmup=3, iterations=17)
    assert len(calls) == 20 and r.iterations == 17 and r.warmup == 3
    assert len(r.samples_ms) == 17


def test_statistics_from_known_samples():
    ns = np.array([1, 2, 3, 4, 100], dtype=np.int64) * 1_000_000  # ms as ns
    r = LatencyResult.from_samples(ns, batch=4, warmup=0, wall_s=0.11)
    assert r.p50_ms == 3.0 and r.min_ms == 1.0 and r.max_ms == 100.0
    assert r.mean_ms == 22.0
    assert r.p90_ms == pytest.approx(np.percentile([1, 2, 3, 4, 100], 90))
    assert r.std_ms == pytest.approx(np.std([1, 2, 3, 4, 100], ddof=1))
    assert r.throughput == pytest.approx(4 * 5 / 0.110)  # samples per second of run time


def test_time_budget_stops_after_budget_with_minimum():
    r = time_callable(lambda: time.sleep(0.002), warmup=0, iterations=None, time_budget_s=0.05,
                      min_iterations=3)
    assert 3 <= r.iterations <= 30
    assert r.wall_s >= 0.05
    r = time_callable(lambda: time.sleep(0.02), warmup=0, iterations=None, time_budget_s=0.001,
                      min_iterations=4)
    assert r.iterations == 4


def test_loop_time_is_the_callables_own_time():
    """Each recorded time covers the call and almost nothing else: the callable's own clock
    (inside) and the loop's (outside) differ by the call overhead, not by bookkeeping."""
    inside = []

    def fn():
        t0 = time.perf_counter_ns()
        end = t0 + 500_000  # busy 0.5 ms: no scheduler sleep noise
        while time.perf_counter_ns() < end:
            pass
        inside.append(time.perf_counter_ns() - t0)

    r = time_callable(fn, warmup=0, iterations=200)
    outside = np.array(r.samples_ms) * 1e6
    extra = np.median(outside - np.array(inside))
    assert extra >= 0
    assert extra < 0.05 * np.median(inside)  # loose bound; the benchmark measures the real figure
    assert sum(r.samples_ms) / 1e3 <= r.wall_s


def test_bad_arguments():
    with pytest.raises(UsageError):
        time_callable(lambda: None, iterations=0)
    with pytest.raises(UsageError):
        time_callable(lambda: None, warmup=-1)
    with pytest.raises(UsageError):
        time_callable(lambda: None, iterations=None, time_budget_s=0)


def test_progress_callbacks_are_reported_and_not_timed():
    seen = []

    def slow_progress(done, total):
        seen.append((done, total))
        time.sleep(0.01)  # far longer than the timed call

    r = time_callable(lambda: None, warmup=0, iterations=40, on_progress=slow_progress)
    assert seen[-1] == (40, 40) and len(seen) > 2
    assert r.max_ms < 5  # the 10 ms callbacks are not in any run's time
