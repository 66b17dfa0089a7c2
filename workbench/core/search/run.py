"""Search for the best build within an accuracy budget, with Optuna, on a local pool or Ray.

The loop, for a fixed seed, is deterministic apart from latency:

1. Rank int8's layers by leave-one-out sensitivity (``core.sensitivity``); int8 trials may keep the
   top ``k`` in float.
2. Trials go in rounds of ``round_size``: Optuna's TPE sampler (multi-objective: top-1 up, cost
   down, with the top-1 drop within the budget as a constraint) asks for a round, the executor
   builds and scores the round in parallel (top-1 on a screening subset of labeled images), then
   latency is measured one build at a time, interleaved against the baseline, with no other trial
   running, and the round is told back in trial order. The round size does not depend on the
   number of workers, so a local pool and a Ray cluster ask for the same trials.
3. The cheapest screened trials within the budget (plus a margin for the subset's noise) are
   re-scored on the whole labeled set; those within the budget are measured again side by side
   (shuffled rounds in one process, ratios to the baseline per round), and the best build is the
   cheapest of them on that measurement.

Costs are ratios to the baseline (lower is better): ``latency`` p50 at batch 1, ``throughput``
the inverse throughput ratio at batch 8, ``size`` the model-size ratio (deterministic, so a seeded
search then gives identical results on any executor).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ...errors import UsageError
from ..cache import BuildCache
from ..machine import machine_info
from ..model import ModelSource, load_model
from .executors import Executor, make_executor
from .space import SearchSpace
from .trial import (
    GroupLatencySpec,
    LatencySpec,
    TrialOutcome,
    TrialSpec,
    measure_latency,
    measure_latency_together,
    run_trial,
)

__all__ = ["SearchResult", "SearchTrial", "search", "OBJECTIVES", "pareto_front"]

OBJECTIVES = ("latency", "throughput", "size")
WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclass
class SearchTrial:
    number: int
    params: dict[str, Any]
    recipe: str
    top1: float | None
    drop_points: float | None  # on the screening subset
    samples: int
    size_bytes: int
    cost: float | None  # objective ratio to the baseline, lower is better
    latency: dict[str, Any] | None = None
    feasible: bool = False
    duplicate_of: int | None = None
    error: str | None = None
    build_s: float = 0.0
    final: dict[str, Any] | None = None  # top1 / drop on the full labeled set (finalists)


@dataclass
class SearchResult:
    model: str
    device: str
    objective: str
    budget_points: float
    seed: int
    trials: list[SearchTrial]
    pareto: list[int]  # trial numbers on the frontier of (drop, cost)
    best: int | None  # the cheapest finalist within the budget on the full labeled set
    baseline_top1: dict[str, float]  # per sample count
    space: dict[str, Any]
    conditions: dict[str, Any]
    wall_s: float
    notes: list[str] = field(default_factory=list)

    def trial(self, number: int) -> SearchTrial:
        return next(t for t in self.trials if t.number == number)

    @property
    def best_trial(self) -> SearchTrial | None:
        return None if self.best is None else self.trial(self.best)

    def deterministic_view(self) -> dict[str, Any]:
        """Everything a seeded search must reproduce exactly on any executor (no latency)."""
        return {"trials": [(t.number, t.params, t.recipe, t.top1, t.size_bytes, t.duplicate_of, t.error,
                            t.cost if self.objective == "size" else None,
                            t.final and t.final.get("top1")) for t in self.trials],
                "best": self.best, "pareto": self.pareto if self.objective == "size" else None}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pareto_front(points: dict[int, tuple[float, float]]) -> list[int]:
    """Keys of the points no other point beats on both coordinates (both lower-is-better)."""
    out = []
    for k, (a, b) in points.items():
        if not any((a2 <= a and b2 <= b) and (a2 < a or b2 < b) for k2, (a2, b2) in points.items() if k2 != k):
            out.append(k)
    return sorted(out, key=lambda k: points[k])


def _ranking(src: Any, device: str, samples: int, max_exclude: int, cache: BuildCache,
             progress: Callable[[str, int, int], None] | None) -> list[str]:
    from ..build import optimize  # noqa: PLC0415
    from ..sensitivity import layer_ranking  # noqa: PLC0415

    full = optimize(src, "int8", device=device, cache=cache)
    ops = {n.name: n.op_type for n in full.model.proto.graph.node}
    cands = [n for r in full.reports for n in r.quantized if ops.get(n) in WEIGHTED]
    scores, _ = layer_ranking(src, "int8", device=device, samples=samples, candidates=cands, cache=cache,
                              threads=None, progress=progress)
    return [s.node for s in scores if s.score > 0][:max_exclude]


def search(model: ModelSource, *, device: str = "cpu", budget_points: float = 0.5,
           objective: str = "latency", trials: int = 24, seed: int = 0,
           executor: str | Executor = "local", address: str | None = None, workers: int | None = None,
           round_size: int = 4, data: str | None = None, screen_samples: int = 2000,
           final_samples: int | None = None, finalists: int = 3, screen_margin: float = 0.25,
           max_exclude: int = 3, rank_samples: int = 128, space: SearchSpace | None = None,
           latency_batch: int | None = None, threads: int | None = None, latency_budget_s: float = 1.5,
           cache_dir: str | Path | None = None,
           progress: Callable[[str, int, int], None] | None = None) -> SearchResult:
    """Explore recipes for ``model`` and return every trial, the Pareto frontier and the best build.

    Example:
        >>> r = search("sample:resnet-fashion", budget_points=0.5, trials=24)
        >>> r.best_trial.recipe
    """
    import optuna  # noqa: PLC0415

    if objective not in OBJECTIVES:
        raise UsageError(f"unknown objective {objective!r}", f"use one of {', '.join(OBJECTIVES)}")
    if budget_points < 0:
        raise UsageError(f"the budget must be >= 0 points, got {budget_points}")
    if trials < 1 or round_size < 1 or screen_samples < 1 or finalists < 1:
        raise UsageError("trials, round size, samples and finalists must be >= 1")
    if executor == "local" and address:
        raise UsageError("--address is for --executor ray")  # before any work
    t_start = time.perf_counter()
    src = load_model(model)
    model_ref = str(model) if isinstance(model, (str, Path)) else None
    if model_ref is None:
        raise UsageError("search needs a model path or sample name", "workers load the model themselves")
    cache = BuildCache(Path(cache_dir)) if cache_dir else BuildCache()
    cache_arg = str(cache_dir) if cache_dir else None
    notes: list[str] = []
    exclusions: list[str] = []
    base_space = space or SearchSpace.for_device(device)
    if not base_space.exclusions and max_exclude > 0 and "int8" in base_space.precisions:
        exclusions = _ranking(src, device, rank_samples, max_exclude, cache, progress)
        notes.append(f"int8 exclusions drawn from the leave-one-out ranking of its weighted layers on "
                     f"{rank_samples} calibration images: {', '.join(exclusions) or 'none helped'}")
        base_space = replace(base_space, exclusions=tuple(exclusions))
    space = base_space
    lat_batch = latency_batch or (8 if objective == "throughput" else 1)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(1, trials // 3)))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    for params in space.anchors(max(1, trials // 4)):
        study.enqueue_trial(params, skip_if_exists=True)
    ex = make_executor(executor, workers=workers, address=address, device=device) \
        if isinstance(executor, str) else executor
    records: list[SearchTrial] = []
    seen: dict[str, SearchTrial] = {}
    baseline_top1: dict[str, float] = {}
    try:
        while len(records) < trials:
            n = min(round_size, trials - len(records))
            asked = [study.ask() for _ in range(n)]
            params = [space.suggest(t) for t in asked]
            recipes = [space.recipe(p) for p in params]
            fresh = [i for i, r in enumerate(recipes) if r.label() not in seen
                     and r.label() not in {recipes[j].label() for j in range(i)}]
            specs = [TrialSpec(asked[i].number, model_ref, recipes[i].to_dict(), device, data, screen_samples,
                               1, cache_arg) for i in fresh]
            outcomes: dict[int, TrialOutcome] = {o.number: o for o in ex.map(run_trial, specs)}
            for i, t in enumerate(asked):
                label = recipes[i].label()
                first = seen.get(label) or next((r for r in records if r.recipe == label), None)
                if t.number in outcomes:
                    o = outcomes[t.number]
                    rec = SearchTrial(t.number, params[i], label, o.top1, o.drop_points, o.samples, o.size_bytes,
                                      None, error=o.error, build_s=o.build_s)
                    if o.baseline_top1 is not None:
                        baseline_top1[str(o.samples)] = o.baseline_top1
                    if o.error is None:
                        rec.cost = o.size_bytes / o.baseline_size_bytes if objective == "size" else None
                        if objective != "size":
                            rec.latency = ex.one(measure_latency, LatencySpec(
                                t.number, model_ref, recipes[i].to_dict(), device, lat_batch, threads,
                                latency_budget_s, cache_arg))
                            lat = rec.latency
                            rec.cost = lat["ratio"] if objective == "latency" else \
                                lat["baseline_throughput"] / lat["throughput"]
                    seen[label] = rec
                else:  # the same recipe as an earlier trial: its results, without building again
                    assert first is not None
                    rec = SearchTrial(t.number, params[i], label, first.top1, first.drop_points, first.samples,
                                      first.size_bytes, first.cost, first.latency, duplicate_of=first.number,
                                      error=first.error)
                rec.feasible = rec.drop_points is not None and rec.drop_points <= budget_points
                records.append(rec)
                if rec.error is not None or rec.cost is None or rec.top1 is None:
                    study.tell(t, state=optuna.trial.TrialState.FAIL)
                else:
                    t.set_constraint("drop_over_budget", float(rec.drop_points - budget_points))  # type: ignore[operator]
                    study.tell(t, [rec.top1, rec.cost])
            if progress:
                progress("trials", len(records), trials)

        ok = {r.number: (r.drop_points, r.cost) for r in records
              if r.error is None and r.cost is not None and r.duplicate_of is None}
        front = pareto_front(ok)  # type: ignore[arg-type]
        # finalists: cheapest screened trials within budget + margin, re-scored on the full set
        cands = sorted((r for r in records if r.number in ok and r.drop_points is not None
                        and r.drop_points <= budget_points + screen_margin),
                       key=lambda r: (r.cost, r.number))
        best = None
        full_n = final_samples or 10**9
        for start in range(0, min(len(cands), 3 * finalists), finalists):
            group = cands[start:start + finalists]
            specs = [TrialSpec(r.number, model_ref, space.recipe(r.params).to_dict(), device, data, full_n, 1,
                               cache_arg) for r in group]
            for r, o in zip(group, ex.map(run_trial, specs)):
                r.final = {"top1": o.top1, "drop_points": o.drop_points, "samples": o.samples, "error": o.error}
                if o.baseline_top1 is not None:
                    baseline_top1[str(o.samples)] = o.baseline_top1
            within = [r for r in group if r.final and r.final["drop_points"] is not None
                      and r.final["drop_points"] <= budget_points]
            if len(within) > 1 and objective != "size":
                # One trial's latency is noisier than the finalists' differences: measure them
                # again side by side, interleaved with the baseline, and rank on that.
                together = ex.one(measure_latency_together, GroupLatencySpec(
                    tuple(r.number for r in within), model_ref,
                    tuple(space.recipe(r.params).to_dict() for r in within), device, lat_batch, threads,
                    cache_dir=cache_arg))
                for r in within:
                    lat = together[r.number]
                    r.final["latency"] = lat
                    r.final["cost"] = lat["ratio"] if objective == "latency" else \
                        lat["baseline_throughput"] / lat["throughput"]
            if within:
                best = min(within, key=lambda r: (r.final.get("cost", r.cost), r.number)).number  # type: ignore[union-attr]
                break
            if progress:
                progress("finalists", start + len(group), len(cands))
        if best is None:
            notes.append("no build stayed within the budget on the full labeled set")
        conditions = {
            "executor": ex.describe(), "round_size": round_size, "screen_samples": screen_samples,
            "final_samples": final_samples or "all", "screen_margin_points": screen_margin,
            "finalists_per_round": finalists, "accuracy_threads": 1, "latency_batch": lat_batch,
            "latency_threads": threads or "engine default", "latency_budget_s": latency_budget_s,
            "latency_method": "p50 of the build and the baseline, measured interleaved in 6 alternating "
                              "chunks, one build at a time with no trial running; finalists within the "
                              "budget measured again together (8 shuffled rounds, median per-round ratio "
                              "to the baseline) and ranked on that",
            "optuna": optuna.__version__, "sampler": "TPESampler (multi-objective, constraint: drop <= budget)",
            "load_average": list(os.getloadavg()), "machine": machine_info(),
        }
    finally:
        if isinstance(executor, str):
            ex.close()
    return SearchResult(src.name, device, objective, budget_points, seed, records, front, best, baseline_top1,
                        space.to_dict(), conditions, time.perf_counter() - t_start, notes)
