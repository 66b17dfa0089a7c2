"""Shared by the benchmark scripts: interleaved, repeated measurement and report helpers."""

from __future__ import annotations

import hashlib
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from workbench.core.evaluation.latency import time_callable
from workbench.core.machine import machine_info

# OpenVINO's usage telemetry stays off (see workbench.core.engines.openvino.no_telemetry):
# tests and benchmarks import openvino and nncf directly.
sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]

HERE = Path(__file__).resolve().parent


# A config whose runs take this long is not warmed up again in later rounds: its session and
# arena are warm from the first round, and a cold cache is a negligible part of such a run (the
# warm-up of a 3-second ResNet-50 batch-8 run doubled its cost per round and changed nothing).
REWARM_BELOW_MS = 50.0


def interleaved(configs: dict[str, Callable[[], Any]], *, rounds: int, batch_of: dict[str, int],
                min_iterations: int, budget_s: float, seed: int = 0,
                log: Callable[[str], None] = print) -> dict[str, dict[str, Any]]:
    """Measure every config in each round, in a fresh shuffled order each round.

    Each (round, config) is one ``time_callable`` run (time budget, at least ``min_iterations``)
    after one warm-up run (from the second round on, only for configs faster than
    ``REWARM_BELOW_MS``). Returns, per config, the median of the per-round p50s, their spread,
    and pooled percentiles.
    """
    rng = random.Random(seed)
    per_round: dict[str, list[float]] = {k: [] for k in configs}
    pooled: dict[str, list[float]] = {k: [] for k in configs}
    order = list(configs)
    for r in range(rounds):
        rng.shuffle(order)
        t0 = time.time()
        for name in order:
            warm = 1 if not per_round[name] or per_round[name][-1] < REWARM_BELOW_MS else 0
            res = time_callable(configs[name], batch=batch_of[name], warmup=warm, iterations=None,
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


def top1(model: Any, data: Any, *, limit: int | None = None, batch: int = 500, threads: int | None = None,
         label: str = "") -> tuple[float, int]:
    """Top-1 and sample count of ``workbench.evaluate`` on labeled data, computed once per run of
    scripts/bench for the same model bytes.

    ``scripts/bench`` sets ``WB_BENCH_EVAL_CACHE`` to a file of its own run: a model that an
    earlier step already scored with the same data, limit, batch and threads (FP32 on the 10,000
    test images is scored by passes_quant, passes_best and search) is read back instead of run again. Top-1 of the same
    bytes on the same images is deterministic; latency is never cached. Without the variable
    (a script run alone) every call evaluates.
    """
    from workbench import evaluate, load_dataset, load_model  # noqa: PLC0415

    m = load_model(model, check=False)
    ds = data if hasattr(data, "batches") else load_dataset(data, m)
    path = os.environ.get("WB_BENCH_EVAL_CACHE")
    key = None
    if path:  # the model's content hash, the data file, and every argument that can change the result
        ident = [m.fingerprint, ds.source, len(ds), limit, batch, threads]
        key = hashlib.sha256(json.dumps(ident).encode()).hexdigest()
        cache = _read_cache(path)
        if key in cache:
            hit = cache[key]
            print(f"  top-1 of {label or 'this model'} read back from this run's evaluation cache", flush=True)
            return hit["top1"], hit["samples"]
    extra = {"threads": threads} if threads is not None else {}
    e = evaluate(m, data=ds, limit=limit, batch=batch, **extra)
    if key:
        with open(path, "a") as f:  # one JSON line per result; a torn last line is skipped on read
            f.write(json.dumps({"key": key, "top1": e.accuracy.top1, "samples": e.samples}) + "\n")
    return e.accuracy.top1, e.samples


def _read_cache(path: str) -> dict[str, dict]:
    out: dict[str, dict] = {}
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        return out
    for line in lines:
        try:
            rec = json.loads(line)
            out[rec["key"]] = rec
        except (ValueError, KeyError):
            continue
    return out
