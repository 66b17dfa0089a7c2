"""Latency measurement with as little overhead as a bare ``session.run`` loop.

The timed loop calls a prepared zero-argument callable and appends one ``perf_counter_ns``
timestamp per run; a run's latency is the difference of consecutive stamps. One clock read and
one list append per run, nothing else (``benchmarks/latency_overhead.py`` measures the loop
against a bare ``session.run`` loop).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ...errors import UsageError

__all__ = ["LatencyResult", "time_callable"]


@dataclass(frozen=True)
class LatencyResult:
    """Per-run latencies and their statistics; times in milliseconds."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    throughput: float  # samples per second: batch * iterations / sum of run times
    batch: int
    iterations: int
    warmup: int
    wall_s: float
    samples_ms: list[float] = field(repr=False)

    def to_dict(self, samples: bool = False) -> dict[str, Any]:
        d = asdict(self)
        if not samples:
            del d["samples_ms"]
        return d

    @classmethod
    def from_samples(cls, ns: np.ndarray, batch: int, warmup: int, wall_s: float) -> LatencyResult:
        ms = ns.astype(np.float64) / 1e6
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        return cls(
            p50_ms=float(p50), p90_ms=float(p90), p99_ms=float(p99),
            mean_ms=float(ms.mean()), std_ms=float(ms.std(ddof=1)) if len(ms) > 1 else 0.0,
            min_ms=float(ms.min()), max_ms=float(ms.max()),
            throughput=float(batch * len(ms) / (ms.sum() / 1e3)) if ms.sum() > 0 else float("inf"),
            batch=batch, iterations=len(ms), warmup=warmup, wall_s=wall_s,
            samples_ms=[round(float(x), 6) for x in ms],
        )


def time_callable(
    fn: Callable[[], Any],
    *,
    batch: int = 1,
    warmup: int = 10,
    iterations: int | None = 100,
    time_budget_s: float | None = None,
    min_iterations: int = 10,
    max_iterations: int = 100_000,
    on_progress: Callable[[int, int], None] | None = None,
) -> LatencyResult:
    """Time ``fn`` after ``warmup`` calls, for a fixed count or until a time budget is spent.

    With ``time_budget_s`` the loop runs at least ``min_iterations`` and stops at the first
    iteration that ends past the budget (or at ``max_iterations``).
    """
    if warmup < 0:
        raise UsageError(f"warmup must be >= 0, got {warmup}")
    if time_budget_s is None and (iterations is None or iterations < 1):
        raise UsageError("give iterations >= 1 or a time budget")
    if time_budget_s is not None and time_budget_s <= 0:
        raise UsageError(f"the time budget must be > 0 s, got {time_budget_s}")
    for _ in range(warmup):
        fn()
    # One clock read per run: run i took stamps[i+1] - stamps[i], loop bookkeeping included.
    clock = time.perf_counter_ns
    stamps: list[int] = []
    stamp = stamps.append
    start = clock()
    stamp(start)
    if time_budget_s is None:
        n = int(iterations)  # type: ignore[arg-type]
        if on_progress is None:
            for _ in range(n):
                fn()
                stamp(clock())
        else:  # progress callbacks stay outside the timed spans
            chunk = max(1, n // 20)
            spans = []
            for i in range(n):
                t0 = clock()
                fn()
                spans.append(clock() - t0)
                if i % chunk == 0:
                    on_progress(i + 1, n)
            stamps = [0, *np.cumsum(spans).tolist()]
    else:
        deadline = start + int(time_budget_s * 1e9)
        n = 0
        while n < max_iterations:
            fn()
            t = clock()
            stamp(t)
            n += 1
            if t >= deadline and n >= min_iterations:
                break
    times = np.diff(np.asarray(stamps, dtype=np.int64))
    wall = (clock() - start) / 1e9
    if on_progress:
        on_progress(len(times), len(times))
    return LatencyResult.from_samples(times, batch, warmup, wall)
