"""One trial's work, run in a worker process (local pool or Ray task): build, then measure.

Everything a worker needs travels as plain data (``TrialSpec``): a model path or sample name,
data as a path or a :class:`Shipped` NumPy ``Dataset`` the parent resolved once (on Ray, a
reference into its object store), and the user's metric, pickled by reference. Workers load
what they are given once and keep it for the next trial. Builds go pass by pass through the build cache,
so trials that share a prefix (the same pruning, say) reuse it. Accuracy runs with a fixed thread
count, so the same trial gives the same numbers in any worker, local or remote.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..build import BuildResult, _calibration_for, optimize
from ..cache import BuildCache
from ..evaluation.data import Dataset, load_dataset
from ..evaluation.latency import time_callable
from ..evaluation.metrics import call_metric
from ..evaluation.run import make_runner
from ..model import Model, load_model
from ..passes.recipe import Recipe
from ..shapes import random_feeds, resolve_inputs, tensor_specs

__all__ = ["Shipped", "SCORES", "TrialSpec", "TrialOutcome", "LatencySpec", "GroupLatencySpec", "run_trial", "measure_latency",
           "measure_latency_together", "build_chain"]


# What a trial's accuracy drop is measured on: top-1 on labeled data (points), the user's metric
# (its own units), or top-1 agreement with the baseline on unlabeled data (points).
SCORES = ("top1", "metric", "agreement")


@dataclass(frozen=True)
class Shipped:
    """Something the parent resolved once and sends to every worker, under a content key the
    workers cache it by: a ``Dataset``, model bytes, or a Ray ``ObjectRef`` to one of those."""

    key: str
    value: Any


def _unship(x: Any) -> Any:
    value = x.value if isinstance(x, Shipped) else x
    if type(value).__name__ == "ObjectRef" and type(value).__module__.startswith("ray"):
        import ray  # noqa: PLC0415  (only ever reached inside a Ray worker or driver)

        value = ray.get(value)
    return value


def _key(x: Any) -> Any:
    return x.key if isinstance(x, Shipped) else x


@dataclass(frozen=True)
class TrialSpec:
    """A recipe to build and score (plain data: it crosses process and machine boundaries)."""

    number: int
    model: str | Shipped  # a path or sample name, or shipped model bytes
    recipe: dict[str, Any]  # Recipe.to_dict()
    device: str
    data: str | Shipped | None  # evaluation data (None: the sample's test set)
    samples: int  # samples scored (the first N)
    threads: int = 1
    cache_dir: str | None = None
    calib: str | Shipped | None = None  # None: the sample's own calibration set; "random"; a path
    score: str = "top1"  # one of SCORES
    metric: Callable[[dict[str, np.ndarray], np.ndarray | None], float] | None = None
    metric_name: str | None = None
    baseline_device: str | None = None  # where the baseline runs (None: ``device``)


@dataclass
class TrialOutcome:
    number: int
    recipe: str
    top1: float | None = None  # top-1 on labeled data (score "top1")
    baseline_top1: float | None = None
    score: float | None = None  # top-1, the metric's value, or top-1 agreement (per spec.score)
    baseline_score: float | None = None
    kind: str = "top1"
    samples: int = 0
    size_bytes: int = 0
    baseline_size_bytes: int = 0
    fingerprint: str = ""
    build_s: float = 0.0
    cache_hits: int = 0
    error: str | None = None
    reports: list[dict[str, Any]] = field(default_factory=list)

    @property
    def drop_points(self) -> float | None:
        """The drop in the budget's units: points of top-1 (or of agreement), or the metric's own."""
        if self.score is None or self.baseline_score is None:
            return None
        return (self.baseline_score - self.score) * (1 if self.kind == "metric" else 100)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "drop_points": self.drop_points}


_WORKER: dict[str, Any] = {}  # per process: models, data, baseline predictions


def _source(name: str | Shipped) -> Model:
    key = ("model", _key(name))
    if key not in _WORKER:
        _WORKER[key] = load_model(_unship(name))  # type: ignore[index]
    return _WORKER[key]  # type: ignore[index]


def _dataset(model: str | Shipped, data: str | Shipped | None) -> Dataset:
    key = ("data", _key(model), _key(data))
    if key not in _WORKER:
        d = _unship(data)
        _WORKER[key] = d if isinstance(d, Dataset) else load_dataset(d, _source(model))  # type: ignore[index]
    return _WORKER[key]  # type: ignore[index]


def _calibration(model: str | Shipped, calib: str | Shipped | None = None) -> Dataset | None:
    key = ("calib", _key(model), _key(calib))
    if key not in _WORKER:
        src = _source(model)
        _WORKER[key] = _calibration_for(src, Recipe(()), _unship(calib), False, True)  # type: ignore[index]
    return _WORKER[key]  # type: ignore[index]


def build_chain(src: Model, recipe: Recipe, device: str, calibration: Dataset | None,
                cache: BuildCache) -> tuple[Model, list[BuildResult]]:
    """Build ``recipe`` one pass at a time, each stage through the cache (shared prefixes are
    built once across trials). Returns the final model and every stage's result."""
    model, stages = src, []
    for spec in recipe.passes:
        r = optimize(model, Recipe((spec,)), device=device, calibration=calibration, cache=cache)
        stages.append(r)
        model = r.model
    return model, stages


def _predictions(model: Model, ds: Dataset, n: int, device: str, threads: int) -> np.ndarray:
    preds = []
    with make_runner(model, device, threads=threads) as runner:
        for feeds, _ in ds.batches(250, n):
            preds.append(np.asarray(next(iter(runner.infer(feeds).values()))).argmax(-1))
    return np.concatenate(preds)


def _outputs(model: Model, ds: Dataset, n: int, device: str, threads: int) -> dict[str, np.ndarray]:
    """Every output over the first ``n`` samples, joined along the sample axis (the metric's input)."""
    every: dict[str, list[np.ndarray]] = {}
    with make_runner(model, device, threads=threads) as runner:
        for feeds, _ in ds.batches(250, n):
            for k, v in runner.infer(feeds).items():
                every.setdefault(k, []).append(np.asarray(v))
    return {k: np.concatenate(v) if v[0].ndim else np.stack(v) for k, v in every.items()}


def _run_metric(spec: TrialSpec, outputs: dict[str, np.ndarray], labels: np.ndarray | None) -> float:
    return call_metric(spec.metric, spec.metric_name, outputs, labels)


def _baseline(spec: TrialSpec, ds: Dataset, n: int) -> Any:
    """The baseline's score (top-1 or the metric) or, for agreement, its predictions; once per worker."""
    device = spec.baseline_device or spec.device
    key = ("base", _key(spec.model), _key(spec.data), n, device, spec.threads, spec.score,
           spec.metric_name)
    if key not in _WORKER:
        src = _source(spec.model)
        if spec.score == "metric":
            labels = None if ds.labels is None else ds.labels[:n]
            value: Any = _run_metric(spec, _outputs(src, ds, n, device, spec.threads), labels)
        else:
            p = _predictions(src, ds, n, device, spec.threads)
            value = p if spec.score == "agreement" else float(np.mean(p == ds.labels[:n]))  # type: ignore[index]
        _WORKER[key] = value  # type: ignore[index]
    return _WORKER[key]  # type: ignore[index]


def run_trial(spec: TrialSpec) -> TrialOutcome:
    """Build ``spec.recipe`` through the cache and score it on ``spec.samples`` samples: top-1 on
    labeled data, the user's metric, or top-1 agreement with the baseline (``spec.score``)."""
    recipe = Recipe.from_dict(spec.recipe)
    out = TrialOutcome(spec.number, recipe.label(), kind=spec.score)
    try:
        src = _source(spec.model)
        cache = BuildCache(Path(spec.cache_dir)) if spec.cache_dir else BuildCache()
        t0 = time.perf_counter()
        model, stages = build_chain(src, recipe, spec.device, _calibration(spec.model, spec.calib), cache)
        out.build_s = time.perf_counter() - t0
        out.cache_hits = sum(s.cache_hit for s in stages)
        out.reports = [r.to_dict() for s in stages for r in s.reports]
        ds = _dataset(spec.model, spec.data)
        if spec.score == "top1" and ds.labels is None:
            raise ValueError(f"{ds.source} has no labels")
        n = min(spec.samples, len(ds))
        out.samples = n
        if spec.score == "metric":
            out.baseline_score = _baseline(spec, ds, n)
            labels = None if ds.labels is None else ds.labels[:n]
            out.score = _run_metric(spec, _outputs(model, ds, n, spec.device, spec.threads), labels)
        elif spec.score == "agreement":
            out.baseline_score = 1.0
            base = _baseline(spec, ds, n)
            out.score = float(np.mean(_predictions(model, ds, n, spec.device, spec.threads) == base))
        else:
            out.baseline_top1 = out.baseline_score = _baseline(spec, ds, n)
            p = _predictions(model, ds, n, spec.device, spec.threads)
            out.top1 = out.score = float(np.mean(p == ds.labels[:n]))  # type: ignore[index]
        out.size_bytes, out.baseline_size_bytes = model.size_bytes, src.size_bytes
        out.fingerprint = model.fingerprint
    except Exception as e:  # noqa: BLE001  (a failed trial is a result: the search goes on)
        out.error = f"{type(e).__name__}: {e}"
    return out


@dataclass(frozen=True)
class LatencySpec:
    number: int
    model: str | Shipped
    recipe: dict[str, Any]
    device: str
    batch: int = 1
    threads: int | None = None
    budget_s: float = 2.0
    cache_dir: str | None = None
    calib: str | Shipped | None = None
    baseline_device: str | None = None  # None: ``device``


def measure_latency(spec: LatencySpec) -> dict[str, Any]:
    """p50 latency of the build and of the baseline, measured interleaved (alternating chunks in
    one run, so load on a shared machine hits both alike); the ratio is what the search uses."""
    recipe = Recipe.from_dict(spec.recipe)
    src = _source(spec.model)
    cache = BuildCache(Path(spec.cache_dir)) if spec.cache_dir else BuildCache()
    model, _ = build_chain(src, recipe, spec.device, _calibration(spec.model, spec.calib), cache)
    ins, _ = tensor_specs(src.proto.graph)
    feeds = random_feeds(resolve_inputs(ins, batch=spec.batch))
    opts = {"threads": spec.threads} if spec.threads else {}
    runners = [make_runner(model, spec.device, **opts),
               make_runner(src, spec.baseline_device or spec.device, **opts)]
    samples: list[list[float]] = [[], []]
    chunks = 6
    for r in runners:
        r.activate()
    try:
        fns = [r.prepare(feeds) for r in runners]
        for c in range(chunks):
            order = (0, 1) if c % 2 == 0 else (1, 0)
            for j in order:
                res = time_callable(fns[j], batch=spec.batch, warmup=3 if c < 2 else 1, iterations=None,
                                    min_iterations=5, time_budget_s=spec.budget_s / chunks / 2)
                samples[j].extend(res.samples_ms)
    finally:
        for r in runners:
            r.deactivate()
    p50 = [float(np.median(s)) for s in samples]
    return {"number": spec.number, "p50_ms": p50[0], "baseline_p50_ms": p50[1], "ratio": p50[0] / p50[1],
            "throughput": spec.batch * 1000 / p50[0], "baseline_throughput": spec.batch * 1000 / p50[1],
            "batch": spec.batch, "threads": spec.threads, "iterations": [len(s) for s in samples]}


@dataclass(frozen=True)
class GroupLatencySpec:
    """Several builds of one model, measured together with the baseline (the finalists)."""

    numbers: tuple[int, ...]
    model: str | Shipped
    recipes: tuple[dict[str, Any], ...]
    device: str
    batch: int = 1
    threads: int | None = None
    rounds: int = 8
    budget_s: float = 0.3  # per build per round
    cache_dir: str | None = None
    calib: str | Shipped | None = None
    devices: tuple[str, ...] = ()  # per recipe (empty: ``device`` for every one)
    baseline_device: str | None = None  # None: ``device``


def measure_latency_together(spec: GroupLatencySpec) -> dict[int, dict[str, Any]]:
    """Every build and the baseline in one process, ``rounds`` rounds in a new shuffled order each;
    per build, the median over rounds of its p50 ratio to the baseline's p50 in the same round.
    Pairs measured seconds apart: the way to rank builds whose single measurements are noisier
    than their differences."""
    src = _source(spec.model)
    cache = BuildCache(Path(spec.cache_dir)) if spec.cache_dir else BuildCache()
    calib = _calibration(spec.model, spec.calib)
    devices = spec.devices or (spec.device,) * len(spec.recipes)
    models = [build_chain(src, Recipe.from_dict(r), d, calib, cache)[0] for r, d in zip(spec.recipes, devices)]
    ins, _ = tensor_specs(src.proto.graph)
    feeds = random_feeds(resolve_inputs(ins, batch=spec.batch))
    opts = {"threads": spec.threads} if spec.threads else {}
    runners = [make_runner(m, d, **opts)
               for m, d in zip([src, *models], [spec.baseline_device or spec.device, *devices])]
    rng = np.random.default_rng(0)
    p50s: list[list[float]] = [[] for _ in runners]
    for r in runners:
        r.activate()
    try:
        fns = [r.prepare(feeds) for r in runners]
        for f in fns:  # warm every session once before the first round
            time_callable(f, batch=spec.batch, warmup=3, iterations=3)
        for _ in range(spec.rounds):
            for j in rng.permutation(len(fns)):
                res = time_callable(fns[j], batch=spec.batch, warmup=1, iterations=None, min_iterations=5,
                                    time_budget_s=spec.budget_s)
                p50s[j].append(float(np.median(res.samples_ms)))
    finally:
        for r in runners:
            r.deactivate()
    out = {}
    for k, number in enumerate(spec.numbers, start=1):
        ratios = [b / a for a, b in zip(p50s[0], p50s[k])]
        out[number] = {"ratio": float(np.median(ratios)), "ratio_range": [min(ratios), max(ratios)],
                       "p50_ms": float(np.median(p50s[k])), "baseline_p50_ms": float(np.median(p50s[0])),
                       "throughput": spec.batch * 1000 / float(np.median(p50s[k])),
                       "baseline_throughput": spec.batch * 1000 / float(np.median(p50s[0])),
                       "rounds": spec.rounds, "batch": spec.batch}
    return out
