"""Shared by the benchmark scripts: interleaved, repeated measurement and report helpers."""

from __future__ import annotations

import json
import os
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from workbench.core.evaluation.latency import time_callable
from workbench.core.machine import machine_info

HERE = Path(__file__).resolve().parent


def interleaved(configs: dict[str, Callable[[], Any]], *, rounds: int, batch_of: dict[str, int],
                min_iterations: int, budget_s: float, seed: int = 0,
                log: Callable[[str], None] = print) -> dict[str, dict[str, Any]]:
    """Measure every config in each round, in a fresh shuffled order each round.

    Each (round, config) is one ``time_callable`` run (time budget, at least ``min_iterations``).
    Returns, per config, the median of the per-round p50s, their spread, and pooled percentiles.
    """
    rng = random.Random(seed)
    per_round: dict[str, list[float]] = {k: [] for k in configs}
    pooled: dict[str, list[float]] = {k: [] for k in configs}
    order = list(configs)
    for r in range(rounds):
        rng.shuffle(order)
        t0 = time.time()
        for name in order:
            res = time_callable(configs[name], batch=batch_of[name], warmup=1, iterations=None,
                                time_budget_s=budget_s, min_iterations=min_iterations)
            per_round[name].append(res.p50_ms)
            pooled[name].extend(res.samples_ms)
        log(f"  round {r + 1}/{rounds}: {time.time() - t0:.0f} s")
    out = {}
    for name in configs:
        s = np.asarray(pooled[name])
        p50 = statistics.median(per_round[name])
        out[name] = {
            "p50_ms": p50,
            "round_p50s_ms": per_round[name],
            "spread_ms": [min(per_round[name]), max(per_round[name])],
            "p90_ms": float(np.percentile(s, 90)),
            "p99_ms": float(np.percentile(s, 99)),
            "iterations": int(len(s)),
            "throughput": batch_of[name] / (p50 / 1e3),
        }
    return out


def write_json(name: str, payload: dict) -> Path:
    path = HERE / "results" / f"{name}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"machine": machine_info(), **payload}, indent=2))
    return path


def machine_line() -> str:
    m = machine_info()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{m['cpu']}, {m['physical_cores']} physical cores ({m['logical_cpus']} logical), "
            f"ISA: {', '.join(m['isa']) or 'none read'}; {m['os']}; Python {m['python']}; "
            + ", ".join(f"{k} {v}" for k, v in m["libraries"].items())
            + f"; load average when written (1, 5, 15 min): {load}")
