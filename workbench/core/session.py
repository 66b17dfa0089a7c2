"""An optimization session: one baseline, many builds, each measured against the baseline.

This is the engine room of the notebook panel, with no UI in it, so the CLI, tests and notebooks
drive the same object. Measurements are honest on a shared machine: a build's latency is measured
interleaved with the baseline's (alternating chunks), and deltas are ratios from that same run.
Accuracy is first measured on a subset, with a 95% Wilson interval, and can be refined to the
full labeled set in the background; each record says which it holds.
"""

from __future__ import annotations

import csv
import inspect
import io
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from .build import BuildResult, is_cached, optimize
from .cache import BuildCache
from .evaluation.data import Dataset, Preprocessing, load_dataset, random_dataset
from .evaluation.latency import LatencyResult, time_callable
from .evaluation.memory import track_peak_memory
from .evaluation.metrics import FidelityAccumulator, call_metric, topk_correct
from .evaluation.run import make_runner
from .evaluation.sources import as_dataset, describe
from .model import Model, ModelSource, load_model
from .passes.base import Progress
from .passes.recipe import Recipe
from .shapes import random_feeds, resolve_inputs, tensor_specs

__all__ = ["Session", "BuildRecord", "Accuracy", "wilson_interval"]


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a proportion (sound near 0 and 1, unlike the normal one)."""
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass
class Accuracy:
    """Top-1 on labeled data (if any), the user's metric (if any) and fidelity to the baseline
    (top-1 agreement, cosine, max abs error, SQNR), on ``samples`` inputs."""

    samples: int
    full: bool  # True once measured on the whole data set
    top1: float | None = None
    top1_ci: tuple[float, float] | None = None
    top1_agreement: float | None = None
    cosine: float | None = None
    max_abs: float | None = None
    sqnr_db: float | None = None
    metric: float | None = None  # the session's ``metric`` (higher is better)


@dataclass
class BuildRecord:
    """One build and its measurements."""

    index: int
    label: str
    recipe: Recipe
    device: str
    model: Model
    build: BuildResult | None  # None for the baseline
    latency: LatencyResult | None = None
    baseline_latency: LatencyResult | None = None  # measured interleaved with this one
    accuracy: Accuracy | None = None
    peak_memory_bytes: int | None = None
    measured_at: float = field(default_factory=time.time)
    error: str | None = None
    preview: str | None = None  # set on a first look: what it is, while the real build runs

    @property
    def size_bytes(self) -> int:
        return self.model.size_bytes

    @property
    def name(self) -> str:
        """The short label people read (``int8 (entropy)``); ``label`` is the recipe as given."""
        if not self.recipe.passes:
            return self.label
        try:
            return self.recipe.short_label()
        except Exception:  # noqa: BLE001 - a recipe from an older version: its label, as it was
            return self.label

    def row(self) -> dict[str, Any]:
        a, lat = self.accuracy, self.latency
        return {
            "index": self.index, "label": self.label, "name": self.name, "device": self.device,
            "top1": a.top1 if a else None, "top1_samples": a.samples if a else None,
            "top1_full": a.full if a else None, "top1_agreement": a.top1_agreement if a else None,
            "cosine": a.cosine if a else None, "sqnr_db": a.sqnr_db if a else None,
            "metric": a.metric if a else None,
            "p50_ms": lat.p50_ms if lat else None, "p99_ms": lat.p99_ms if lat else None,
            "throughput": lat.throughput if lat else None,
            "speedup_p50": (self.baseline_latency.p50_ms / lat.p50_ms)
            if lat and self.baseline_latency else None,
            "size_bytes": self.size_bytes, "peak_memory_bytes": self.peak_memory_bytes,
            "build_s": self.build.wall_s if self.build else 0.0,
            "cache_hit": self.build.cache_hit if self.build else None,
            "fingerprint": self.model.fingerprint,
        }


class Session:
    """Baseline plus builds of one model on one machine.

    Example:
        >>> s = Session("sample:resnet-fashion")
        >>> rec = s.build("fuse")
        >>> s.deltas(rec)["p50_ms"]["ratio"] > 0
        True

    Args:
        model: a path, ``sample:NAME``, a ``ModelProto``, or a ``torch.nn.Module`` (with
            ``example_inputs``, converted by ``load_model``; ``convert_options`` go to
            ``core.convert.convert_torch``: exporter, opset, dynamic_axes, ...).
        data: evaluation data: a path (``.npz``, image folder), ``sample:NAME``, a Dataset, NumPy
            arrays (one array, a dict by input name, or ``(inputs, labels)``), a torch Dataset or
            DataLoader, or an iterable of ``(inputs, labels)`` / inputs (see
            ``evaluation.sources.as_dataset``). Labels are optional: without them, accuracy is
            fidelity to the baseline (top-1 agreement, cosine, SQNR).
        calib: calibration data, the same kinds; ``"random"`` calibrates on random inputs (a
            latency-only look, flagged on every build). None: the sample's calibration set, else
            the first samples of ``data``.
        metric: ``metric(outputs: dict[str, np.ndarray], labels: np.ndarray | None) -> float``,
            higher is better, over every evaluated sample (``outputs`` maps each model output to
            its array, first axis = samples). It is reported next to top-1 and used by
            ``best`` and the Pareto chart (detection, segmentation, embeddings...).
        metric_name: its name in the deltas (default: the callable's ``__name__``).
        preprocessing: a Preprocessing, or a dict of its fields laid over the model's declared
            one, for image folders and uint8 arrays.
    """

    def __init__(
        self,
        model: ModelSource | Any,
        *,
        device: str = "cpu",
        data: Any = None,
        calib: Any = None,
        metric: Callable[[dict[str, np.ndarray], np.ndarray | None], float] | None = None,
        metric_name: str | None = None,
        preprocessing: Preprocessing | dict | str | None = None,
        example_inputs: Any = None,
        convert_options: dict[str, Any] | None = None,
        batch: int = 1,
        threads: int | None = None,
        latency_budget_s: float = 1.0,
        quick_samples: int = 1000,
        eval_batch: int = 250,
        cache: BuildCache | None = None,
    ) -> None:
        self.source = load_model(model) if example_inputs is None else \
            load_model(model, example_inputs=example_inputs, **(convert_options or {}))
        if metric is not None and not callable(metric):
            raise UsageError(f"metric must be a callable, got {type(metric).__name__}",
                             "give metric(outputs: dict[str, np.ndarray], labels) -> float")
        if metric is not None and len(inspect.signature(metric).parameters) < 2:
            raise UsageError("metric takes (outputs, labels)",
                             "def metric(outputs: dict[str, np.ndarray], labels) -> float")
        self.metric = metric
        self.metric_name = metric_name or (getattr(metric, "__name__", "metric") if metric else None)
        self.preprocessing = preprocessing
        self.device = device
        self.batch = batch
        self.threads = threads
        self.latency_budget_s = latency_budget_s
        self.quick_samples = quick_samples
        self.eval_batch = eval_batch
        self.cache = cache if cache is not None else BuildCache()
        self.calib: Dataset | str | None = None
        self.calib_note: str | None = None
        self.set_data(data, calib, measure=False)
        ins, _ = tensor_specs(self.source.proto.graph)
        self.feeds = random_feeds(resolve_inputs(ins, batch=batch))
        self.records: list[BuildRecord] = []
        self._lock = threading.Lock()  # latency runs hold it; background accuracy waits
        self._baseline_outputs: dict[int, np.ndarray] = {}  # samples -> baseline logits
        self._baseline_acc: dict[int, Accuracy] = {}  # samples -> baseline accuracy
        self._threads: list[threading.Thread] = []
        self._by_config: dict[tuple[str, str], BuildRecord] = {}  # (resolved recipe, device) -> record
        self.baseline = self._record(self.source, Recipe(()), None, device)

    # -- data ------------------------------------------------------------------------------------
    def _data(self, data: Any) -> Dataset | None:
        if data is None:
            try:
                return load_dataset(None, self.source, self.preprocessing)
            except Exception:  # noqa: BLE001  (no data: fidelity-only on random inputs)
                return None
        return as_dataset(data, self.source, preprocessing=self.preprocessing)

    def set_data(self, data: Any = None, calib: Any = None, *, measure: bool = True) -> None:
        """Use new evaluation and calibration data (see the class's ``data`` and ``calib``).

        Accuracy measured on the old data is dropped (the baseline's is measured again when
        ``measure``); builds are made again on the next ``build``, since calibration may differ.
        """
        ds = self._data(data)
        self.calib_note = None
        if isinstance(calib, str) and calib == "random":
            cal: Dataset | str | None = "random"
        elif calib is not None:
            cal = as_dataset(calib, self.source, preprocessing=self.preprocessing)
        elif data is not None and ds is not None and not self._has_sample_calib():
            n = min(len(ds), 512)
            cal = Dataset({k: v[:n] for k, v in ds.inputs.items()}, None,
                          f"{ds.source} (first {n} samples)", ds.preprocessing, list(ds.notes),
                          None if ds.groups is None else ds.groups[:n])
            self.calib_note = (f"no calibration data given: calibrating on the first {n} samples of "
                               "the evaluation data")
        else:
            cal = None
        self.data, self.calib = ds, cal
        self._baseline_outputs, self._baseline_acc = {}, {}
        self._by_config = {}
        for r in getattr(self, "records", []):
            r.accuracy = None
        if measure and getattr(self, "records", None):
            acc = self._accuracy(self.source, self.quick_samples, None)
            if acc is not None:
                acc.top1_agreement, acc.cosine, acc.sqnr_db = 1.0, 1.0, float("inf")
            self.baseline.accuracy = acc

    def _has_sample_calib(self) -> bool:
        from .samples import sample_origin  # noqa: PLC0415

        origin = sample_origin(self.source.source)
        return origin is not None and bool(origin.calib_data)

    def data_summary(self) -> dict[str, Any]:
        """What the session evaluates and calibrates on (the panel's data line)."""
        d = describe(self.data)
        cal = self.calib
        d["calibration"] = ("random inputs (accuracy of calibrated builds says nothing)" if cal == "random"
                            else cal.source if isinstance(cal, Dataset)
                            else "the sample's calibration set" if self._has_sample_calib() else None)
        d["calibration_note"] = self.calib_note
        d["metric"] = self.metric_name
        return d

    def _record(self, model: Model, recipe: Recipe, build: BuildResult | None, device: str) -> BuildRecord:
        rec = BuildRecord(len(self.records), recipe.label() if build else "baseline", recipe, device,
                          model, build)
        self.records.append(rec)
        return rec

    # -- building and measuring -------------------------------------------------------------------
    def build_state(self, recipe: Recipe | str, device: str | None = None) -> str:
        """What :meth:`build` would do now: ``measured`` (this session has its results: instant),
        ``cached`` (the build cache holds it: measuring only) or ``build``."""
        device = device or self.device
        recipe = Recipe.parse(recipe) if isinstance(recipe, str) else recipe
        seen = self._by_config.get((recipe.resolved().label(), device))
        if seen is not None and seen.latency is not None:
            return "measured"
        return "cached" if is_cached(self.source, recipe, device=device, calibration=self.calib,
                                     cache=self.cache) else "build"

    def build(self, recipe: Recipe | str, *, device: str | None = None, progress: Progress | None = None,
              measure: bool = True, refine: bool = False,
              on_refined: Callable[[BuildRecord], None] | None = None,
              on_latency: Callable[[BuildRecord], None] | None = None) -> BuildRecord:
        """Build ``recipe`` for ``device``, then measure it against the baseline.

        ``on_latency`` is called as soon as latency is measured, before the accuracy on the quick
        subset (a panel shows the first deltas there). When the build is not cached and a pass has
        a faster way to the same graph structure (``Pass.preview``: channels cut before their
        reconstruction), that preview is built and its latency and size go to ``on_latency``
        first, as a record with ``preview`` set that stays out of the history; the real build's
        own measurements follow and replace it.
        """
        device = device or self.device
        recipe = Recipe.parse(recipe) if isinstance(recipe, str) else recipe
        if not recipe.passes:
            raise UsageError("the recipe is empty", "toggle at least one pass (the baseline is record 0)")
        config = (recipe.resolved().label(), device)
        seen = self._by_config.get(config)
        if seen is not None and seen.latency is not None:
            return seen  # built and measured before in this session: its results come straight back
        if measure and on_latency is not None:
            self._preview(recipe, device, progress, on_latency)
        result = optimize(self.source, recipe, device=device, calibration=self.calib, cache=self.cache,
                          progress=progress)
        if self.calib_note and result.calibration is not None:
            result.notes.append(self.calib_note)
        rec = self._record(result.model, result.recipe, result, device)
        self._by_config[config] = rec
        if measure:
            self.measure(rec, progress=progress, on_latency=on_latency)
            if refine:
                self.refine_async(rec, on_refined)
        return rec

    def _preview(self, recipe: Recipe, device: str, progress: Progress | None,
                 on_latency: Callable[[BuildRecord], None]) -> None:
        quick = recipe.preview()
        # With a calibrating pass after it (int8), the preview would calibrate too and arrive
        # little before the real build, which it would then delay: no first look.
        if quick is None or any(p.needs_calibration for p in quick.instantiate()) \
                or is_cached(self.source, recipe, device=device, calibration=self.calib, cache=self.cache):
            return
        result = optimize(self.source, quick, device=device, cache=BuildCache(enabled=False),
                          progress=progress)
        rec = BuildRecord(-1, recipe.label(), recipe, device, result.model, result,
                          preview=f"first look: the same graph built as {quick.label()} "
                                  "(structure only); the real build's measurements follow")
        if self.baseline.latency is None:
            self.measure(self.baseline, progress=progress)
        self._measure_latency(rec, progress)
        on_latency(rec)

    def measure(self, rec: BuildRecord, *, progress: Progress | None = None,
                on_latency: Callable[[BuildRecord], None] | None = None) -> BuildRecord:
        """Latency interleaved with the baseline, then accuracy on the quick subset."""
        if self.baseline.latency is None and rec is not self.baseline:
            self.measure(self.baseline, progress=progress)
        self._measure_latency(rec, progress)
        if on_latency is not None:
            on_latency(rec)
        rec.accuracy = self._accuracy(rec.model, self.quick_samples, progress, rec.device)
        if rec is self.baseline and self.baseline.accuracy:
            self.baseline.accuracy.top1_agreement, self.baseline.accuracy.cosine = 1.0, 1.0
            self.baseline.accuracy.sqnr_db = float("inf")
        return rec

    def _measure_latency(self, rec: BuildRecord, progress: Progress | None) -> None:
        opts = {"threads": self.threads} if self.threads else {}
        chunks = 4
        with self._lock, track_peak_memory() as mem:
            runners = [make_runner(rec.model, rec.device, **opts)]
            if rec is not self.baseline:
                runners.append(make_runner(self.baseline.model, self.baseline.device, **opts))
            for r in runners:
                r.activate()
            try:
                fns = [r.prepare(self.feeds) for r in runners]
                samples: list[list[float]] = [[] for _ in runners]
                warm = 0
                for c in range(chunks):  # alternate build / baseline chunks
                    for i, fn in enumerate(fns if c % 2 == 0 else fns[::-1]):
                        j = i if c % 2 == 0 else len(fns) - 1 - i
                        res = time_callable(fn, batch=self.batch, warmup=3 if c == 0 else 1,
                                            iterations=None, min_iterations=5,
                                            time_budget_s=self.latency_budget_s / chunks / len(fns))
                        samples[j].extend(res.samples_ms)
                        warm = res.warmup
                    if progress:
                        progress("latency", c + 1, chunks)
            finally:
                for r in runners:
                    r.deactivate()
        results = [LatencyResult.from_samples(np.asarray(s) * 1e6, self.batch, warm, 0.0) for s in samples]
        rec.latency = results[0]
        rec.baseline_latency = results[1] if len(results) > 1 else results[0]
        rec.peak_memory_bytes = mem.peak_bytes

    def _accuracy(self, model: Model, samples: int | None, progress: Progress | None,
                  device: str | None = None) -> Accuracy | None:
        """Accuracy of ``model`` on ``device`` (a build's own runtime; default: the baseline's for the
        source model, else the session's device)."""
        ds = self.data
        if ds is None:
            ds = random_dataset(self.source, min(samples or 200, 200))
        n = len(ds) if samples is None else min(samples, len(ds))
        opts = {"threads": self.threads} if self.threads else {}
        if device is None:
            device = self.device if model is not self.source else self.baseline.device
        runner = make_runner(model, device, **opts)
        outs, correct = [], 0
        every: dict[str, list[np.ndarray]] = {}
        top1 = ds.labels is not None and (self.metric is None or self._classifier())
        with runner:
            done = 0
            for feeds, labels in ds.batches(self.eval_batch, n):
                with self._lock:
                    result = runner.infer(feeds)
                logits = next(iter(result.values()))
                outs.append(logits)
                if self.metric is not None:
                    for k, v in result.items():
                        every.setdefault(k, []).append(v)
                if labels is not None and top1:
                    correct += topk_correct(logits, labels, 1)
                done += len(next(iter(feeds.values())))
                if progress:
                    progress("accuracy", min(done, n), n)
        got = np.concatenate(outs) if outs[0].ndim else np.stack(outs)
        if model is self.source:
            self._baseline_outputs[n] = got
        acc = Accuracy(samples=n, full=n == len(ds) and self.data is not None)
        if ds.labels is not None and top1:
            acc.top1 = correct / n
            acc.top1_ci = wilson_interval(correct, n)
        if self.metric is not None:
            joined = {k: np.concatenate(v) if v[0].ndim else np.stack(v) for k, v in every.items()}
            acc.metric = self._run_metric(joined, None if ds.labels is None else ds.labels[:n])
        ref = self._baseline_outputs.get(n)
        if ref is None and model is not self.source:
            self._accuracy(self.source, n, None)
            ref = self._baseline_outputs[n]
        if ref is not None and ref.shape == got.shape:
            fid = FidelityAccumulator("logits")
            fid.update(ref, got)
            f = fid.result()
            acc.top1_agreement, acc.cosine, acc.max_abs = f.top1_agreement, f.cosine, f.max_abs
            acc.sqnr_db = f.sqnr_db
        if model is self.source:
            self._baseline_acc[n] = acc
        return acc

    def _classifier(self) -> bool:
        """Whether the first output is [batch, classes] (top-1 means something)."""
        _, outs = tensor_specs(self.source.proto.graph)
        return bool(outs) and outs[0].shape is not None and len(outs[0].shape) == 2

    def _run_metric(self, outputs: dict[str, np.ndarray], labels: np.ndarray | None) -> float:
        return call_metric(self.metric, self.metric_name, outputs, labels)

    @property
    def score_key(self) -> str:
        """The row key that ranks builds: the metric, else top-1 (labeled data), else agreement."""
        if self.metric is not None:
            return "metric"
        return "top1" if self.data is not None and self.data.labels is not None else "top1_agreement"

    @property
    def score_name(self) -> str:
        return self.metric_name if self.metric is not None else self.score_key  # type: ignore[return-value]

    def refine(self, rec: BuildRecord, progress: Progress | None = None) -> BuildRecord:
        """Accuracy on the whole labeled set (blocking); the baseline's too, once."""
        if self.data is not None and len(self.data) not in self._baseline_acc:
            self.baseline.accuracy = self._accuracy(self.source, None, None)
        if rec is not self.baseline:
            rec.accuracy = self._accuracy(rec.model, None, progress, rec.device)
        return rec

    def refine_async(self, rec: BuildRecord,
                     on_done: Callable[[BuildRecord], None] | None = None) -> threading.Thread:
        """Refine in a background thread; latency runs pause it between batches."""
        def work() -> None:
            try:
                self.refine(rec)
            except Exception as e:  # noqa: BLE001  (shown on the record, never swallowed silently)
                rec.error = f"accuracy refinement failed: {e}"
            if on_done:
                on_done(rec)

        t = threading.Thread(target=work, daemon=True, name=f"refine-{rec.index}")
        t.start()
        self._threads.append(t)
        return t

    def wait(self, timeout: float | None = None) -> None:
        for t in self._threads:
            t.join(timeout)

    # -- results ------------------------------------------------------------------------------------
    def deltas(self, rec: BuildRecord) -> dict[str, dict[str, Any]]:
        """Per metric: baseline, current, delta, ratio and whether the change is an improvement."""
        base = self.baseline
        out: dict[str, dict[str, Any]] = {}

        def add(name: str, b: float | None, c: float | None, higher_is_better: bool) -> None:
            if b is None or c is None:
                return
            ratio = (c / b) if b else None
            out[name] = {"baseline": b, "current": c, "delta": c - b, "ratio": ratio,
                         "better": (c > b) if higher_is_better else (c < b), "same": c == b}

        if rec.latency and rec.baseline_latency:
            add("p50_ms", rec.baseline_latency.p50_ms, rec.latency.p50_ms, False)
            add("p99_ms", rec.baseline_latency.p99_ms, rec.latency.p99_ms, False)
            add("throughput", rec.baseline_latency.throughput, rec.latency.throughput, True)
        if rec.accuracy:
            ba = self._baseline_acc.get(rec.accuracy.samples)  # same samples, same images
            add("top1", ba.top1 if ba else None, rec.accuracy.top1, True)
            if self.metric_name:
                add(self.metric_name, ba.metric if ba else None, rec.accuracy.metric, True)
            add("top1_agreement", 1.0, rec.accuracy.top1_agreement, True)
        add("size_bytes", float(base.size_bytes), float(rec.size_bytes), False)
        add("peak_memory_bytes", base.peak_memory_bytes, rec.peak_memory_bytes, False)
        return out

    def rows(self) -> list[dict[str, Any]]:
        return [r.row() for r in self.records]

    def export_history(self, path: str | Path | None = None, fmt: str = "csv") -> str:
        """The history table as CSV or JSON text; also written to ``path`` if given."""
        rows = self.rows()
        if fmt == "json":
            text = json.dumps(rows, indent=2, default=str)
        elif fmt == "csv":
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
            text = buf.getvalue()
        else:
            raise UsageError(f"unknown format {fmt!r}", "use csv or json")
        if path is not None:
            Path(path).write_text(text)
        return text

    def export(self, rec: BuildRecord, out_dir: str | Path, force: bool = False,
               measure: bool = True) -> Path:
        """Export ``rec`` as a bundle (see ``core.export``); returns the bundle's ``model.onnx``.

        The manifest also keeps this session's measurements of the build (``session_row``).
        """
        from .export import MeasureSpec, export_bundle  # noqa: PLC0415

        if rec.build is None:
            raise UsageError("the baseline is the original model", "build a recipe, then export it")
        spec = MeasureSpec(batch=self.batch, threads=self.threads, data=self.data,
                           samples=min(self.quick_samples, 500)) if measure else None
        opts = {"threads": self.threads} if self.threads else {}
        path = export_bundle(rec.build, out_dir, force=force, engine_options=opts, measure=spec,
                             extra={"session_row": rec.row()})
        return path / "model.onnx"

    def best(self, max_top1_drop: float = 0.01, *, max_drop: float | None = None) -> BuildRecord | None:
        """The fastest measured build whose score is within ``max_drop`` of the baseline's.

        The score is the session's ``metric`` when one is given, else top-1 on labeled data, else
        top-1 agreement with the baseline (unlabeled data). ``max_drop`` defaults to
        ``max_top1_drop`` (absolute units of the score: 0.01 is one point of top-1).
        """
        drop = max_top1_drop if max_drop is None else max_drop
        key = self.score_key
        base_row = self.baseline.row()
        base = 1.0 if key == "top1_agreement" else base_row[key]
        ok = [r for r in self.records[1:] if r.latency and r.accuracy and (
            base is None or r.row()[key] is None or r.row()[key] >= base - drop)]
        return min(ok, key=lambda r: r.latency.p50_ms / r.baseline_latency.p50_ms, default=None)  # type: ignore[union-attr]
