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

What a trial loses is measured, in order of preference, with the user's ``metric`` (the drop is
``baseline_metric - trial_metric``, in the metric's own units), as top-1 on labeled data (points),
or as top-1 agreement with the baseline on unlabeled data (``1 - agreement``, in points); the
budget is in the same units (``SearchResult.drop_unit``). User data (arrays, loaders, iterables)
is resolved once here into a NumPy ``Dataset`` and shipped to the workers; a model given as an
object is written once to a temporary ``.onnx`` in the cache folder (on Ray: put in its object
store), removed when the search ends.

Costs are ratios to the baseline (lower is better): ``latency`` p50 at batch 1, ``throughput``
the inverse throughput ratio at batch 8, ``size`` the model-size ratio (deterministic, so a seeded
search then gives identical results on any executor).
"""

from __future__ import annotations

import inspect
import os
import pickle
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ...errors import UsageError
from ..build import RANDOM_CALIB_WARNING, _calibration_for
from ..cache import BuildCache
from ..evaluation.data import Dataset
from ..evaluation.sources import as_dataset, describe
from ..machine import machine_info
from ..model import TWO_GB, Model, ModelSource, load_model, proto_size
from ..passes.recipe import Recipe
from .executors import Executor, LocalExecutor, RayExecutor, make_executor
from .space import SearchSpace
from .trial import (
    GroupLatencySpec,
    LatencySpec,
    Shipped,
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
    top1: float | None  # top-1 on labeled data (None when the budget is on a metric or agreement)
    drop_points: float | None  # on the screening subset, in the result's ``drop_unit``
    samples: int
    size_bytes: int
    cost: float | None  # objective ratio to the baseline, lower is better
    latency: dict[str, Any] | None = None
    feasible: bool = False
    duplicate_of: int | None = None
    error: str | None = None
    build_s: float = 0.0
    final: dict[str, Any] | None = None  # score / drop on the full evaluation set (finalists)
    score: float | None = None  # what the budget is on: top-1, the metric, or top-1 agreement
    device: str = ""  # where the trial ran (its engine: cpu, openvino, ...)

    @property
    def label(self) -> str:
        """The recipe, and the runtime where the space has several (``int8 on openvino``)."""
        return f"{self.recipe} on {self.device}" if "engine" in self.params else self.recipe


@dataclass
class SearchResult:
    """Every trial, the frontier and the best build. ``budget_points`` and every ``drop_points``
    are in ``drop_unit``: points of top-1 (``score == "top1"``), the metric's own units
    (``"metric"``), or points of top-1 agreement with the baseline (``"agreement"``)."""

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
    score: str = "top1"  # top1, metric or agreement
    score_name: str = "top-1"  # the metric's name, "top-1" or "top-1 agreement"
    drop_unit: str = "pt top-1"  # what drops and the budget are counted in
    baseline_score: dict[str, float] = field(default_factory=dict)  # per sample count

    @property
    def drop_label(self) -> str:
        """``drop in <metric_name>``, ``pt top-1`` or ``pt top-1 agreement`` (tables, plots)."""
        return f"drop in {self.score_name}" if self.score == "metric" else self.drop_unit

    def trial(self, number: int) -> SearchTrial:
        return next(t for t in self.trials if t.number == number)

    @property
    def best_trial(self) -> SearchTrial | None:
        return None if self.best is None else self.trial(self.best)

    def deterministic_view(self) -> dict[str, Any]:
        """Everything a seeded search must reproduce exactly on any executor (no latency)."""
        return {"trials": [(t.number, t.params, t.recipe, t.score, t.size_bytes, t.duplicate_of, t.error,
                            t.cost if self.objective == "size" else None,
                            t.final and t.final.get("score")) for t in self.trials],
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
             progress: Callable[[str, int, int], None] | None, calibration: str | Dataset | None = None
             ) -> list[str]:
    from ..build import optimize  # noqa: PLC0415
    from ..sensitivity import layer_ranking  # noqa: PLC0415

    full = optimize(src, "int8", device=device, calibration=calibration, cache=cache)
    ops = {n.name: n.op_type for n in full.model.proto.graph.node}
    cands = [n for r in full.reports for n in r.quantized if ops.get(n) in WEIGHTED]
    scores, _ = layer_ranking(src, "int8", device=device, samples=samples, calibration=calibration,
                              candidates=cands, cache=cache, threads=None, progress=progress)
    return [s.node for s in scores if s.score > 0][:max_exclude]


def _pickles(executor: str | Executor, workers: int | None) -> bool:
    """Whether trials run in other processes that receive the metric through ``pickle`` (a local
    or per-GPU pool); in-process trials (``workers=0``) do not, and Ray uses cloudpickle."""
    if isinstance(executor, str):
        return executor == "local" and workers != 0
    return not (isinstance(executor, RayExecutor) or (isinstance(executor, LocalExecutor)
                                                       and executor.workers == 0))


def _check_metric(metric: Any, name: str, executor: str | Executor, workers: int | None) -> None:
    if not callable(metric):
        raise UsageError(f"metric must be a callable, got {type(metric).__name__}",
                         "give metric(outputs: dict[str, np.ndarray], labels) -> float")
    try:
        params = inspect.signature(metric).parameters
    except (TypeError, ValueError):
        params = None  # builtins and some C callables: take them on trust
    if params is not None and len(params) < 2:
        raise UsageError("metric takes (outputs, labels)",
                         "def metric(outputs: dict[str, np.ndarray], labels) -> float")
    if not _pickles(executor, workers):
        return
    fix = ("define it at the top level of a .py module and import it, or pass workers=0 to run the "
           "trials in this process")
    try:
        pickle.dumps(metric)
    except Exception as e:  # noqa: BLE001  (PicklingError, AttributeError: "Can't pickle local object")
        raise UsageError(f"the metric {name!r} cannot be sent to the search's worker processes "
                         f"(it does not pickle: {type(e).__name__}: {e}); lambdas and functions defined "
                         "inside other functions cannot", fix) from e
    main = sys.modules.get("__main__")
    if getattr(metric, "__module__", None) == "__main__" and not hasattr(main, "__file__"):
        # pickled by reference to __main__, which a spawned worker does not share with a notebook
        raise UsageError(f"the metric {name!r} is defined in a notebook or an interactive session, "
                         "which the search's worker processes cannot import", fix)


def _model_ref(model: Any, src: Model, ex: Executor, tmp: list[Path], root: Path) -> str | Shipped:
    """What workers load the model from: its path or sample name, else shipped bytes (Ray) or a
    temporary .onnx written once under ``root`` (removed by the caller through ``tmp``)."""
    import onnx  # noqa: PLC0415

    if isinstance(model, (str, Path)):
        return str(model)
    if isinstance(model, Model) and model.source.startswith("sample:") and "+" not in model.source:
        return model.source  # workers load the sample (and find its own data) by name
    big = proto_size(src.proto) > TWO_GB
    if isinstance(ex, RayExecutor) and not big:
        return Shipped(src.fingerprint, ex.put(src.proto.SerializeToString()))
    root.mkdir(parents=True, exist_ok=True)
    d = Path(tempfile.mkdtemp(prefix="search-model-", dir=root))
    tmp.append(d)
    path = d / "model.onnx"
    onnx.save_model(src.proto, str(path), save_as_external_data=big, location="model.onnx.data")
    return str(path)


def search(model: ModelSource, *, device: str = "cpu", budget_points: float = 0.5,
           objective: str = "latency", trials: int = 24, seed: int = 0,
           executor: str | Executor = "local", address: str | None = None, workers: int | None = None,
           round_size: int = 4, data: Any = None, calib: Any = None,
           metric: Callable[[dict[str, Any], Any], float] | None = None, metric_name: str | None = None,
           screen_samples: int = 2000,
           final_samples: int | None = None, finalists: int = 3, screen_margin: float = 0.25,
           max_exclude: int = 3, rank_samples: int = 128, space: SearchSpace | None = None,
           latency_batch: int | None = None, threads: int | None = None, latency_budget_s: float = 1.5,
           cache_dir: str | Path | None = None,
           progress: Callable[[str, int, int], None] | None = None) -> SearchResult:
    """Explore recipes for ``model`` and return every trial, the Pareto frontier and the best build.

    Example:
        >>> r = search("sample:resnet-fashion", budget_points=0.5, trials=24)
        >>> r.best_trial.recipe
        >>> r = search(model, data=(x, y), metric=my_iou, budget_points=0.01, workers=0)

    Args:
        model: a path, ``sample:NAME``, a ``Model``, an ``onnx.ModelProto`` or bytes.
        data: evaluation data, anything ``evaluation.sources.as_dataset`` takes (a path,
            ``sample:NAME``, a Dataset, arrays, ``(inputs, labels)``, a torch DataLoader, an
            iterable); None: the sample's labeled test set.
        calib: calibration data, the same kinds, or ``"random"`` (a latency-only look). None:
            the sample's calibration set, else the first 512 samples of ``data``.
        metric: ``metric(outputs: dict[str, np.ndarray], labels) -> float``, higher is better;
            the budget is then on ``baseline - trial`` in its units. Worker processes receive it
            by pickle: define it at a module's top level (or use ``workers=0``).
        metric_name: its name in the result (default: the callable's ``__name__``).
        budget_points: the largest drop allowed, in ``SearchResult.drop_unit``.
    """
    if objective not in OBJECTIVES:
        raise UsageError(f"unknown objective {objective!r}", f"use one of {', '.join(OBJECTIVES)}")
    if budget_points < 0:
        raise UsageError(f"the budget must be >= 0, got {budget_points}")
    if trials < 1 or round_size < 1 or screen_samples < 1 or finalists < 1:
        raise UsageError("trials, round size, samples and finalists must be >= 1")
    if executor == "local" and address:
        raise UsageError("--address is for --executor ray")  # before any work
    if metric is not None:  # before any work: a metric the workers cannot receive fails here
        metric_name = metric_name or getattr(metric, "__name__", "metric")
        _check_metric(metric, metric_name, executor, workers)
    t_start = time.perf_counter()
    src = load_model(model)
    cache = BuildCache(Path(cache_dir)) if cache_dir else BuildCache()
    cache_arg = str(cache_dir) if cache_dir else None
    notes: list[str] = []
    # The evaluation data, once: its labels decide what the budget is on; Python objects are
    # shipped as NumPy arrays, paths and sample names travel as they are (workers load them once).
    try:
        ds = as_dataset(data, src)
    except Exception as e:
        if data is None:
            raise UsageError(f"{src.name} has no evaluation data of its own",
                             "give data= (arrays, (inputs, labels), a DataLoader, a path) or --data") from e
        raise
    score = "metric" if metric is not None else "top1" if ds.labels is not None else "agreement"
    score_name = metric_name if metric is not None else "top-1" if score == "top1" else "top-1 agreement"
    drop_unit = str(metric_name) if score == "metric" else "pt top-1" if score == "top1" else \
        "pt top-1 agreement"
    if score == "agreement":
        notes.append(f"{ds.source} has no labels and no metric was given: the budget is on top-1 "
                     "agreement with the baseline (drop = 1 - agreement, in points)")
    elif score == "metric":
        notes.append(f"the budget is on the metric {metric_name!r}: drop = baseline {metric_name} - "
                     f"trial {metric_name}, in its own units (higher is better)")
    # Calibration, as a Session does it: given, "random", the sample's own, else the data's head.
    own_calib = _calibration_for(src, Recipe(()), None, False, True)
    calib_ds: str | Dataset | None
    if isinstance(calib, str) and calib == "random":
        calib_ds = "random"
        notes.append(RANDOM_CALIB_WARNING)
    elif calib is not None:
        calib_ds = as_dataset(calib, src)
    elif own_calib is not None:
        calib_ds = own_calib
    elif data is not None:
        n = min(len(ds), 512)
        calib_ds = Dataset({k: v[:n] for k, v in ds.inputs.items()}, None, f"{ds.source} (first {n} samples)",
                           ds.preprocessing, list(ds.notes), None if ds.groups is None else ds.groups[:n])
        notes.append(f"no calibration data given: calibrating on the first {n} samples of the evaluation data")
    else:
        calib_ds = None
    ex = make_executor(executor, workers=workers, address=address, device=device) \
        if isinstance(executor, str) else executor
    tmp: list[Path] = []
    try:
        return _search(src, model, ex, executor, tmp, cache, cache_arg, notes, ds, data, calib, calib_ds,
                       own_calib, score, score_name, drop_unit, metric, metric_name, t_start,
                       device=device, budget_points=budget_points, objective=objective, trials=trials,
                       seed=seed, round_size=round_size, screen_samples=screen_samples,
                       final_samples=final_samples, finalists=finalists, screen_margin=screen_margin,
                       max_exclude=max_exclude, rank_samples=rank_samples, space=space,
                       latency_batch=latency_batch, threads=threads, latency_budget_s=latency_budget_s,
                       progress=progress)
    finally:
        if isinstance(executor, str):
            ex.close()
        for d in tmp:
            shutil.rmtree(d, ignore_errors=True)


def _search(src: Model, model: Any, ex: Executor, executor: str | Executor, tmp: list[Path], cache: BuildCache,
            cache_arg: str | None, notes: list[str], ds: Dataset, data: Any, calib: Any,
            calib_ds: str | Dataset | None, own_calib: Dataset | None, score: str, score_name: str,
            drop_unit: str, metric: Any, metric_name: str | None, t_start: float, *, device: str,
            budget_points: float, objective: str, trials: int, seed: int, round_size: int,
            screen_samples: int, final_samples: int | None, finalists: int, screen_margin: float,
            max_exclude: int, rank_samples: int, space: SearchSpace | None, latency_batch: int | None,
            threads: int | None, latency_budget_s: float,
            progress: Callable[[str, int, int], None] | None) -> SearchResult:
    import optuna  # noqa: PLC0415

    model_ref = _model_ref(model, src, ex, tmp, cache.root)
    same_src = isinstance(model_ref, str) and model_ref == str(model)  # workers derive what we did
    data_arg: str | Shipped | None
    if (data is None and same_src) or isinstance(data, (str, Path)):
        data_arg = None if data is None else str(data)  # workers load it themselves, once each
    else:
        data_arg = Shipped(ds.content_hash(), ex.put(ds))  # pickled per task; on Ray, put once
    calib_arg: str | Shipped | None
    if calib_ds is None or isinstance(calib_ds, str):
        calib_arg = calib_ds
    elif isinstance(calib, (str, Path)):
        calib_arg = str(calib)
    elif calib_ds is own_calib and same_src:
        calib_arg = None
    else:
        calib_arg = Shipped(calib_ds.content_hash(), ex.put(calib_ds))
    trial_opts: dict[str, Any] = {"calib": calib_arg, "score": score, "metric": metric, "metric_name": metric_name}
    exclusions: list[str] = []
    base_space = space or SearchSpace.for_device(device)
    if not base_space.exclusions and max_exclude > 0 and "int8" in base_space.precisions:
        exclusions = _ranking(src, device, rank_samples, max_exclude, cache, progress, calib_ds)
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
    records: list[SearchTrial] = []
    seen: dict[str, SearchTrial] = {}
    baseline_top1: dict[str, float] = {}
    baseline_score: dict[str, float] = {}
    while len(records) < trials:
        n = min(round_size, trials - len(records))
        asked = [study.ask() for _ in range(n)]
        params = [space.suggest(t) for t in asked]
        recipes = [space.recipe(p) for p in params]
        devs = [space.device_for(p, device) for p in params]
        keys = [f"{r.label()} @ {d}" for r, d in zip(recipes, devs)]  # a recipe on one runtime
        fresh = [i for i, k in enumerate(keys) if k not in seen and k not in keys[:i]]
        specs = [TrialSpec(asked[i].number, model_ref, recipes[i].to_dict(), devs[i], data_arg,
                           screen_samples, 1, cache_arg, **trial_opts, baseline_device=device)
                 for i in fresh]
        outcomes: dict[int, TrialOutcome] = {o.number: o for o in ex.map(run_trial, specs)}
        for i, t in enumerate(asked):
            label, key = recipes[i].label(), keys[i]
            first = seen.get(key) or next((r for r in records if f"{r.recipe} @ {r.device}" == key), None)
            if t.number in outcomes:
                o = outcomes[t.number]
                rec = SearchTrial(t.number, params[i], label, o.top1, o.drop_points, o.samples, o.size_bytes,
                                  None, error=o.error, build_s=o.build_s, score=o.score, device=devs[i])
                if o.baseline_top1 is not None:
                    baseline_top1[str(o.samples)] = o.baseline_top1
                if o.baseline_score is not None:
                    baseline_score[str(o.samples)] = o.baseline_score
                if o.error is None:
                    rec.cost = o.size_bytes / o.baseline_size_bytes if objective == "size" else None
                    if objective != "size":
                        rec.latency = ex.one(measure_latency, LatencySpec(
                            t.number, model_ref, recipes[i].to_dict(), devs[i], lat_batch, threads,
                            latency_budget_s, cache_arg, calib_arg, baseline_device=device))
                        lat = rec.latency
                        rec.cost = lat["ratio"] if objective == "latency" else \
                            lat["baseline_throughput"] / lat["throughput"]
                seen[key] = rec
            else:  # the same recipe as an earlier trial: its results, without building again
                assert first is not None
                rec = SearchTrial(t.number, params[i], label, first.top1, first.drop_points, first.samples,
                                  first.size_bytes, first.cost, first.latency, duplicate_of=first.number,
                                  error=first.error, score=first.score, device=first.device)
            rec.feasible = rec.drop_points is not None and rec.drop_points <= budget_points
            records.append(rec)
            if rec.error is not None or rec.cost is None or rec.score is None:
                study.tell(t, state=optuna.trial.TrialState.FAIL)
            else:
                t.set_constraint("drop_over_budget", float(rec.drop_points - budget_points))  # type: ignore[operator]
                study.tell(t, [rec.score, rec.cost])
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
        specs = [TrialSpec(r.number, model_ref, space.recipe(r.params).to_dict(), r.device, data_arg, full_n,
                           1, cache_arg, **trial_opts, baseline_device=device) for r in group]
        for r, o in zip(group, ex.map(run_trial, specs)):
            r.final = {"top1": o.top1, "score": o.score, "drop_points": o.drop_points, "samples": o.samples,
                       "error": o.error}
            if o.baseline_top1 is not None:
                baseline_top1[str(o.samples)] = o.baseline_top1
            if o.baseline_score is not None:
                baseline_score[str(o.samples)] = o.baseline_score
        within = [r for r in group if r.final and r.final["drop_points"] is not None
                  and r.final["drop_points"] <= budget_points]
        if len(within) > 1 and objective != "size":
            # One trial's latency is noisier than the finalists' differences: measure them
            # again side by side, interleaved with the baseline, and rank on that.
            together = ex.one(measure_latency_together, GroupLatencySpec(
                tuple(r.number for r in within), model_ref,
                tuple(space.recipe(r.params).to_dict() for r in within), device, lat_batch, threads,
                cache_dir=cache_arg, calib=calib_arg, devices=tuple(r.device for r in within),
                baseline_device=device))
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
        notes.append("no build stayed within the budget on the full evaluation set")
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
        "data": describe(ds), "metric": metric_name,
        "calibration": "random inputs" if calib_ds == "random" else
        None if calib_ds is None else describe(calib_ds)["source"],  # type: ignore[arg-type]
    }
    return SearchResult(src.name, device, objective, budget_points, seed, records, front, best, baseline_top1,
                        space.to_dict(), conditions, time.perf_counter() - t_start, notes, score=score,
                        score_name=score_name, drop_unit=drop_unit, baseline_score=baseline_score)
