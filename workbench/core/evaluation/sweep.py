"""Throughput curves: batch size x concurrency, per-request latency at each point, and the knee.

A point (batch B, concurrency C) runs C Python threads, each with its own prepared callable
(ONNX Runtime's ``session.run`` and OpenVINO's ``infer`` release the GIL), started together on a
barrier after a few untimed warm-up calls; each loops for ``duration_s`` recording one
``perf_counter_ns`` stamp per request. Throughput = B x requests / wall. Points are measured in
``rounds`` rounds in a new shuffled order each round (as :func:`compare_runtimes` does); with a
``baseline`` every point is measured for the build and the baseline in the same round, A B B A with
half the duration each, and the speed-up is the median over rounds of build / baseline throughput
of that round.

The knee is MLPerf's server reading: the highest throughput whose p99 stays within a latency bound.

Modes (how C concurrent requests reach the runtime):

- ``shared``: one session with every thread, called from C threads.
- ``per-request``: C sessions, each with ``max(1, threads // C)`` intra-op threads.
- ``streams`` (OpenVINO): one compiled model per concurrency with ``streams=C`` (OpenVINO caps it
  at its threads; the point's ``config`` has both) and one infer request per thread.

``mode="auto"`` picks ``per-request`` on ONNX Runtime CPU, from a measurement: on
``sample:resnet-fashion`` on 2 cores, interleaved against ``shared`` (``benchmarks/throughput.py``,
two runs on a loaded machine), per-request gave a median 1.18x and 1.28x shared's items/s at C = 2,
1.09x and 1.05x at C = 4, against a noise floor of 0.97-0.99x at C = 1, where both are one and the
same session. ``streams`` on OpenVINO; ``per-request`` on GPU engines, whose prepared callables
share one IO binding per input shape and so cannot run from two threads at once.
On GPU engines each round's threads make ``GPU_ROUND_WARMUP`` warm-up calls one thread at a time
(ONNX Runtime captures CUDA graphs per thread, and a capture must not overlap other threads' CUDA
calls), so no capture falls into the timed loop.

A batch the model cannot run (a fixed batch dimension, or a given shape that fixes it) is declined
with a note in ``SweepResult.declined``; when no batch can run the sweep raises a UsageError that
names the input.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ...errors import EngineRunError, InputSpecError, UsageError
from ..engines.registry import engine_for_device
from ..machine import default_threads, machine_info
from ..model import Model, ModelSource, load_model
from ..shapes import random_feeds, resolve_inputs, tensor_specs
from .run import Progress, _with_values_shapes, make_runner

__all__ = ["SweepPoint", "SweepResult", "ConcurrentRun", "knee", "run_concurrent", "sweep", "MODES"]

MODES = ("auto", "shared", "per-request", "streams")
ROUND_WARMUP = 1  # untimed calls per thread before each round's barrier
REWARM_BELOW_NS = 50_000_000  # points with slower requests are not warmed up again each round
# GPU engines: untimed calls per thread before each round's barrier, one thread at a time. ONNX
# Runtime's CUDA provider keeps its captured CUDA graphs per thread, so each round's new threads run
# once regularly and capture on their second call; the capture is global (cudaStreamCaptureModeGlobal),
# and another thread's cudaStreamSynchronize meanwhile fails with CUDA error 900 ("operation not
# permitted when stream is capturing", seen on an H200 with ResNet-50 at concurrency 2) and breaks the
# capture. Three serial calls: the regular run, the capture, one replay.
GPU_ROUND_WARMUP = 3


@dataclass(frozen=True)
class ConcurrentRun:
    """One timed run of C threads: every request's latency, per thread, and the common wall."""

    latencies_ns: list[list[int]]  # per thread
    wall_s: float
    thread_ids: list[int]

    @property
    def requests(self) -> int:
        return sum(len(x) for x in self.latencies_ns)


def run_concurrent(fns: Sequence[Callable[[], Any]], duration_s: float,
                   warmup: int = ROUND_WARMUP, serial_warmup: bool = False) -> ConcurrentRun:
    """Call each ``fns[i]`` in a thread of its own for ``duration_s`` after ``warmup`` untimed calls.

    All threads start on one barrier; the wall runs from the first thread's start to the last
    thread's last stamp. A failure in any thread stops the others and is raised here.
    ``serial_warmup``: the threads make their warm-up calls one thread at a time (GPU engines: a
    CUDA graph capture in one thread must not overlap another thread's CUDA calls).
    """
    n = len(fns)
    barrier = threading.Barrier(n)
    warm_lock = threading.Lock() if serial_warmup else contextlib.nullcontext()
    lat: list[list[int]] = [[] for _ in fns]
    spans: list[tuple[int, int]] = [(0, 0)] * n
    idents = [0] * n
    errors: list[BaseException] = []
    budget = int(duration_s * 1e9)

    def work(i: int) -> None:
        fn, out, clock = fns[i], lat[i], time.perf_counter_ns
        idents[i] = threading.get_ident()
        try:
            with warm_lock:
                for _ in range(warmup):
                    fn()
            barrier.wait()
            start = prev = clock()
            deadline = start + budget
            while True:
                fn()
                t = clock()
                out.append(t - prev)
                prev = t
                if t >= deadline or errors:
                    break
            spans[i] = (start, prev)
        except threading.BrokenBarrierError:
            pass
        except BaseException as e:  # noqa: BLE001  (re-raised in the caller's thread)
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        if isinstance(errors[0], EngineRunError):
            raise errors[0]
        raise EngineRunError(f"a request failed in a sweep thread: {errors[0]}") from errors[0]
    wall = (max(s[1] for s in spans) - min(s[0] for s in spans)) / 1e9
    return ConcurrentRun(lat, wall, idents)


@dataclass(frozen=True)
class SweepPoint:
    """One (batch, concurrency) point: items/s and per-request latency percentiles (ms)."""

    batch: int
    concurrency: int
    throughput: float  # items/s: median over rounds of batch * requests / wall of the round
    p50_ms: float  # per-request latency, every request of every round pooled
    p90_ms: float
    p99_ms: float
    requests: int  # over all rounds
    wall_s: float  # over all rounds
    round_throughputs: list[float]
    speedup: float | None = None  # median over rounds of build / baseline throughput, same round
    speedup_range: tuple[float, float] | None = None
    round_requests: list[int] = field(default_factory=list)
    round_wall_s: list[float] = field(default_factory=list)
    thread_requests: list[int] = field(default_factory=list)  # per thread, over all rounds
    config: dict[str, Any] = field(default_factory=dict)  # sessions, threads per session, streams

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["speedup_range"] = list(self.speedup_range) if self.speedup_range else None
        return d


def knee(points: Sequence[SweepPoint], bound_ms: float) -> SweepPoint | None:
    """The highest-throughput point whose p99 is within ``bound_ms`` (MLPerf's server reading);
    None when no point fits. Ties go to the lower p99, then to fewer items in flight."""
    fit = [p for p in points if p.p99_ms <= bound_ms]
    if not fit:
        return None
    return max(fit, key=lambda p: (p.throughput, -p.p99_ms, -p.batch * p.concurrency, -p.batch))


@dataclass(frozen=True)
class SweepResult:
    """A throughput sweep of one model on one engine, with its baseline where one was given."""

    model: str
    baseline: str | None
    device: str
    engine: str
    mode: str
    settings: dict[str, Any]
    points: list[SweepPoint]
    baseline_points: list[SweepPoint] | None
    rounds: int
    duration_s: float
    latency_bound_ms: float | None
    inputs: dict[str, dict[str, Any]]
    batches: list[int] = field(default_factory=list)
    concurrency: list[int] = field(default_factory=list)
    threads: int | None = None
    seed: int = 0
    declined: list[str] = field(default_factory=list)  # batches the model cannot run, and why
    setup_s: float = 0.0  # building runners and warming every point up
    elapsed_s: float = 0.0  # the whole sweep, setup included
    baseline_mode: str | None = None
    machine: dict[str, Any] = field(default_factory=machine_info)

    def __bool__(self) -> bool:
        return bool(self.points)

    @property
    def method(self) -> str:
        pair = ("build and baseline A B B A per point (half the duration each, A drawn each round), "
                if self.baseline else "")
        how = self.mode if self.baseline_mode in (None, self.mode) else f"{self.mode}; baseline {self.baseline_mode}"
        return (f"batches {self.batches} x concurrency {self.concurrency}, {self.threads} threads "
                f"({how}), {self.rounds} rounds of {self.duration_s:g} s per point, {pair}points in "
                f"a new shuffled order each round (seed {self.seed}); warm-up calls excluded; items/s = "
                "median over rounds of batch x requests / wall; p50/p90/p99 pool every request"
                + ("; speed-up = median over rounds of build / baseline items/s in the same round"
                   if self.baseline else ""))

    @property
    def peak(self) -> SweepPoint | None:
        return max(self.points, key=lambda p: p.throughput) if self.points else None

    def knee(self, bound_ms: float | None = None) -> SweepPoint | None:
        """:func:`knee` of the build's points under ``bound_ms`` (default: the sweep's bound)."""
        bound = self.latency_bound_ms if bound_ms is None else bound_ms
        return None if bound is None else knee(self.points, bound)

    def to_dict(self) -> dict[str, Any]:
        k, peak = self.knee(), self.peak
        d = asdict(self)
        d["points"] = [p.to_dict() for p in self.points]
        d["baseline_points"] = None if self.baseline_points is None else [p.to_dict() for p in self.baseline_points]
        return {**d, "method": self.method, "knee": k.to_dict() if k else None,
                "peak": peak.to_dict() if peak else None}


def _thread_safe(engine: str) -> bool:
    """Whether one runner's prepared callables can run from several threads at once (ONNX Runtime
    CPU: ``session.run`` is; OpenVINO: each ``prepare()`` has its own infer request)."""
    return engine == "ort-cpu" or engine.startswith("openvino")


def _check_args(batches: Sequence[int], concurrency: Sequence[int], duration_s: float, rounds: int,
                latency_bound_ms: float | None, mode: str) -> None:
    if not batches or not concurrency:
        raise UsageError("a sweep needs at least one batch size and one concurrency",
                         "e.g. batches=(1, 8, 32), concurrency=(1, 2, 4)")
    for what, vals in (("batch", batches), ("concurrency", concurrency)):
        bad = [v for v in vals if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1]
        if bad:
            raise UsageError(f"{what} must be integers >= 1, got {bad[0]!r}")
        if len(set(vals)) != len(vals):
            raise UsageError(f"{what} {list(vals)} lists a value twice", "list each once")
    if not duration_s > 0:
        raise UsageError(f"the duration per point must be > 0 s, got {duration_s}")
    if rounds < 1:
        raise UsageError(f"rounds must be >= 1, got {rounds}")
    if latency_bound_ms is not None and not latency_bound_ms > 0:
        raise UsageError(f"the latency bound must be > 0 ms, got {latency_bound_ms}")
    if mode not in MODES:
        raise UsageError(f"unknown sweep mode {mode!r}", f"use one of {', '.join(MODES)}")


def _resolve_mode(engine: str, mode: str, options: dict[str, Any]) -> str:
    ov = engine.startswith("openvino")
    if mode == "auto":
        return "streams" if ov else "per-request"  # measured on ORT CPU; the only safe one on GPUs
    if mode == "streams" and not ov:
        raise UsageError(f"mode 'streams' is OpenVINO's ({engine} has no streams)",
                         "use shared or per-request")
    if mode == "streams" and options.get("streams") is not None:
        raise UsageError("mode 'streams' sets streams = concurrency itself",
                         "leave the streams option out, or use mode 'shared' to keep your streams")
    if mode == "shared" and not _thread_safe(engine):
        raise UsageError(f"{engine}'s prepared runs share one IO binding per input shape, so one session "
                         "cannot serve several threads", "use mode 'per-request' (one session per thread)")
    return mode


def _config(engine: str, mode: str, c: int, threads: int, user_threads: int | None) -> tuple[dict, int]:
    """(engine options, number of runners) that serve ``c`` concurrent requests in ``mode``."""
    total = threads if _thread_safe(engine) else user_threads
    if mode == "per-request":
        return {"threads": max(1, total // c) if total else None}, c
    if mode == "streams":
        return {"threads": total, "streams": c}, 1
    return {"threads": total}, 1


def _feeds_for(m: Model, batch: int, shapes: dict | None, values: dict | None,
               seed: int) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
    """Inputs at ``batch``; InputSpecError when the model (or a given shape) fixes another batch."""
    ins, _ = tensor_specs(m.proto.graph)
    resolved = resolve_inputs(ins, _with_values_shapes(shapes, values), batch)
    batched = [r for r in resolved if len(r.shape) > 1]
    if not batched and batch != 1:
        raise InputSpecError(f"no input of {m.name} has a batch dimension; batch {batch} cannot run",
                             "sweep batch 1 only")
    for r in batched:
        if r.shape[0] != batch:
            raise InputSpecError(f"input {r.spec.name!r} is fixed at batch {r.shape[0]} by the given shape "
                                 f"or value; batch {batch} cannot run", "leave the batch out of --shape")
    feeds = random_feeds(resolved, seed=seed, values=values)
    shape = {r.spec.name: ["batch", *r.shape[1:]] if len(r.shape) > 1 else list(r.shape) for r in resolved}
    return feeds, {r.spec.name: {"shape": shape[r.spec.name], "dtype": r.spec.dtype} for r in resolved}


class _Side:
    """One model in one mode: its runners (built once per sweep, reused across rounds), one prepared
    callable per thread per point, and the point's runs."""

    def __init__(self, model: Model, device: str, options: dict[str, Any], engine: str, mode: str) -> None:
        self.model, self.device, self.options, self.engine, self.mode = model, device, options, engine, mode
        self.pools: dict[tuple, list[Any]] = {}
        self.fns: dict[tuple[int, int], list[Callable[[], Any]]] = {}
        self.configs: dict[tuple[int, int], dict[str, Any]] = {}
        self.runs: dict[tuple[int, int], list[ConcurrentRun]] = {}

    def setup(self, batch: int, c: int, feeds: dict[str, np.ndarray], threads: int,
              user_threads: int | None) -> None:
        opts, n = _config(self.engine, self.mode, c, threads, user_threads)
        # A session serves every batch (the batch dimension is dynamic), and per-request's C=2 uses
        # the first two of C=4's sessions: runners are built once per configuration.
        key = tuple(sorted((k, v) for k, v in opts.items() if v is not None))
        pool = self.pools.setdefault(key, [])
        while len(pool) < n:
            r = make_runner(self.model, self.device, **{**self.options, **opts})
            r.activate()
            pool.append(r)
        # One prepared callable (OpenVINO: one infer request) per thread; prepare() runs it once, and
        # the first round warms every thread up again.
        fns = [pool[i % n].prepare(feeds) for i in range(c)]
        s = pool[0].settings
        self.fns[(batch, c)] = fns
        cfg = {"sessions": n, "threads": s.get("threads")}
        if "streams" in s:  # what OpenVINO runs (it caps streams at its threads), and what was asked
            cfg.update(streams=s.get("streams"), streams_asked=opts.get("streams"))
        self.configs[(batch, c)] = cfg
        self.runs[(batch, c)] = []

    def measure(self, key: tuple[int, int], duration_s: float) -> ConcurrentRun:
        if not _thread_safe(self.engine):  # GPU engines: new threads capture their CUDA graphs again
            return run_concurrent(self.fns[key], duration_s, warmup=GPU_ROUND_WARMUP, serial_warmup=True)
        runs = self.runs[key]
        # Points whose requests take long are warm from their first round (benchmarks/common.py).
        warm = ROUND_WARMUP if not runs or np.median(runs[-1].latencies_ns[0]) < REWARM_BELOW_NS else 0
        return run_concurrent(self.fns[key], duration_s, warmup=warm)

    @property
    def settings(self) -> dict[str, Any]:
        return dict(next(iter(self.pools.values()))[0].settings)

    def close(self) -> None:
        for pool in self.pools.values():
            for r in pool:
                r.deactivate()


def _point(batch: int, c: int, runs: list[ConcurrentRun], config: dict[str, Any],
           ref: list[ConcurrentRun] | None = None) -> SweepPoint:
    ms = np.concatenate([np.asarray(x, np.float64) for r in runs for x in r.latencies_ns]) / 1e6
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    tps = [batch * r.requests / r.wall_s for r in runs]
    speed = rng_ = None
    if ref is not None:
        ratios = [a / (batch * r.requests / r.wall_s) for a, r in zip(tps, ref)]
        speed, rng_ = float(np.median(ratios)), (float(min(ratios)), float(max(ratios)))
    per_thread = [sum(len(r.latencies_ns[i]) for r in runs) for i in range(c)]
    return SweepPoint(batch, c, float(np.median(tps)), float(p50), float(p90), float(p99),
                      sum(r.requests for r in runs), float(sum(r.wall_s for r in runs)),
                      [float(t) for t in tps], speed, rng_, [r.requests for r in runs],
                      [float(r.wall_s) for r in runs], per_thread, dict(config))


def _all_feeds(models: list[Model], batches: Sequence[int], shapes: dict | None, values: dict | None,
               seed: int) -> tuple[dict[int, dict[str, np.ndarray]], dict[str, dict[str, Any]], list[str]]:
    """Inputs per batch that every model can run, the inputs' description, and the declined batches."""
    feeds_of: dict[int, dict[str, np.ndarray]] = {}
    inputs: dict[str, dict[str, Any]] = {}
    declined: list[str] = []
    for b in map(int, batches):
        try:
            for k, m in enumerate(models):
                feeds, desc = _feeds_for(m, b, shapes, values, seed)
                if k == 0:
                    feeds_of[b], inputs = feeds, desc
        except InputSpecError as e:
            feeds_of.pop(b, None)
            declined.append(f"batch {b}: {e}")
    if not feeds_of:
        raise UsageError(f"no batch of {list(batches)} can run: {'; '.join(declined)}")
    return feeds_of, inputs, declined


def sweep(model: ModelSource, device: str = "cpu", *, baseline: ModelSource | None = None,
          batches: Sequence[int] = (1, 8, 32), concurrency: Sequence[int] = (1, 2, 4),
          duration_s: float = 0.5, rounds: int = 3, threads: int | None = None,
          latency_bound_ms: float | None = None, mode: str = "auto", baseline_mode: str | None = None,
          shapes: dict[str, tuple[int, ...]] | None = None, values: dict[str, np.ndarray] | None = None,
          seed: int = 0, progress: Progress | None = None, **options: Any) -> SweepResult:
    """Throughput and per-request latency of ``model`` at every (batch, concurrency) point.

    ``baseline``: another model (or the same one in ``baseline_mode``, default ``mode``) measured
    at every point in the same rounds; each point's ``speedup`` is build / baseline throughput.
    ``threads``: intra-op threads in all (default: physical cores). ``options``: engine options.

    Example:
        >>> r = sweep("sample:resnet-fashion", batches=(1, 8), concurrency=(1, 2), latency_bound_ms=10)
        >>> r.knee()  # doctest: +SKIP
        SweepPoint(batch=8, concurrency=1, throughput=152.3, ...)
    """
    t_start = time.perf_counter()
    _check_args(batches, concurrency, duration_s, rounds, latency_bound_ms, mode)
    if baseline_mode is not None and baseline is None:
        raise UsageError("baseline_mode needs a baseline", "give baseline=MODEL (it can be the same model)")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise UsageError(f"threads must be an integer >= 1, got {threads!r}")
    engine = engine_for_device(device).name  # raises with the reason where it cannot run here
    mode = _resolve_mode(engine, mode, options)
    m = load_model(model)
    sides = [_Side(m, device, options, engine, mode)]
    if baseline is not None:
        _check_args(batches, concurrency, duration_s, rounds, None, baseline_mode or "auto")
        ref_mode = mode if baseline_mode is None else _resolve_mode(engine, baseline_mode, options)
        sides.append(_Side(load_model(baseline), device, options, engine, ref_mode))
    total_threads = threads or default_threads()
    feeds_of, inputs, declined = _all_feeds([s.model for s in sides], batches, shapes, values, seed)
    keys = [(b, int(c)) for b in feeds_of for c in concurrency]
    try:
        for i, (b, c) in enumerate(keys):
            for s in sides:
                s.setup(b, c, feeds_of[b], total_threads, threads)
            if progress:
                progress("setup", i + 1, len(keys))
        setup_s = time.perf_counter() - t_start
        _rounds(sides, keys, rounds, duration_s, seed, progress)
        settings = sides[0].settings
    finally:
        for s in sides:
            s.close()
    build, base = sides[0], (sides[1] if len(sides) > 1 else None)
    points = [_point(b, c, build.runs[(b, c)], build.configs[(b, c)], base.runs[(b, c)] if base else None)
              for b, c in keys]
    base_points = [_point(b, c, base.runs[(b, c)], base.configs[(b, c)]) for b, c in keys] if base else None
    return SweepResult(m.name, base.model.name if base else None, device, engine, mode, settings, points,
                       base_points, rounds, duration_s, latency_bound_ms, inputs, [int(b) for b in batches],
                       [int(c) for c in concurrency], total_threads if _thread_safe(engine) else threads,
                       seed, declined, setup_s, time.perf_counter() - t_start,
                       baseline_mode=base.mode if base else None)


def _merge(a: ConcurrentRun, b: ConcurrentRun) -> ConcurrentRun:
    return ConcurrentRun([x + y for x, y in zip(a.latencies_ns, b.latencies_ns)], a.wall_s + b.wall_s,
                         a.thread_ids)


def _rounds(sides: list[_Side], keys: list[tuple[int, int]], rounds: int, duration_s: float, seed: int,
            progress: Progress | None) -> None:
    """Every point in a new shuffled order each round. With a baseline, each point runs A B B A
    (which of the two is A drawn each round), each part half the duration, so that load drifting
    over the point's second falls on both alike."""
    rng = np.random.default_rng(seed)
    done, total = 0, rounds * len(keys)
    for _ in range(rounds):
        for j in rng.permutation(len(keys)):
            key = keys[j]
            if len(sides) == 1:
                sides[0].runs[key].append(sides[0].measure(key, duration_s))
            else:
                a, b = (sides[k] for k in rng.permutation(2))
                a1, b1 = a.measure(key, duration_s / 2), b.measure(key, duration_s / 2)
                b2, a2 = b.measure(key, duration_s / 2), a.measure(key, duration_s / 2)
                a.runs[key].append(_merge(a1, a2))
                b.runs[key].append(_merge(b1, b2))
            done += 1
            if progress:
                progress("sweep", done, total)
