"""One model on several runtimes, measured side by side: which runtime runs this build fastest.

Every target (a device string plus engine options, e.g. ``cpu``, ``openvino`` with ``precision=f32``,
``openvino`` with ``precision=bf16``) gets its own runner; all are activated in one process and
timed in ``rounds`` rounds, in a new shuffled order each round. A target's speed-up is the median
over rounds of the reference's p50 over its p50 in the same round (the reference is the first
target), which cancels most load swings on a shared machine. Each target's outputs on the timing
inputs are compared with the reference's (max abs error, cosine), so a faster runtime that
computes something else (bf16, a different kernel) shows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import EngineUnavailableError, UsageError
from ..engines.registry import engine_for_device, list_engines
from ..machine import machine_info
from ..model import ModelSource, load_model
from ..shapes import random_feeds, resolve_inputs, tensor_specs
from .latency import LatencyResult, time_callable
from .run import Progress, _with_values_shapes, make_runner

__all__ = ["RuntimeTarget", "RuntimeRow", "RuntimeComparison", "compare_runtimes", "cpu_targets",
           "parse_targets"]


@dataclass(frozen=True)
class RuntimeTarget:
    """A runtime to measure on: a workbench device string and the engine options for it."""

    device: str
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def label(self) -> str:
        opts = dict(self.options)
        engine = engine_for_device(self.device).name if self.device else "?"
        name = {"ort-cpu": "ONNX Runtime CPU"}.get(engine, engine)
        if engine.startswith("openvino"):
            name = f"OpenVINO {self.device.partition(':')[2] or 'CPU'}"
        extra = ", ".join(f"{v}" if k == "precision" else f"{k} {v}" for k, v in opts.items())
        return f"{name} ({extra})" if extra else name


def _precisions_here() -> list[str]:
    """OpenVINO CPU precisions this CPU has: f32 always, bf16 where OpenVINO lists BF16."""
    from ..engines.openvino import device_precisions  # noqa: PLC0415

    return [p for p in ("f32", "bf16") if p in device_precisions("CPU")]


def cpu_targets(precisions: Sequence[str] | None = None, hint: str | None = None) -> list[RuntimeTarget]:
    """Every CPU runtime available here: ONNX Runtime, then OpenVINO at each precision (``f32``, and
    ``bf16`` where the CPU has it, unless ``precisions`` narrows them) with the performance ``hint``."""
    ready = {e.name for e in list_engines() if e.available}
    return parse_targets(["cpu", "openvino"] if "openvino" in ready else ["cpu"], precisions, hint)


def parse_targets(devices: str | Sequence[str], precisions: Sequence[str] | None = None,
                  hint: str | None = None) -> list[RuntimeTarget]:
    """``cpu,openvino`` (or a list) -> targets. OpenVINO targets get one row per precision
    (``precisions``, default: f32 and, where the CPU has it, bf16) and the performance ``hint``."""
    names = [d.strip() for d in (devices.split(",") if isinstance(devices, str) else devices) if d.strip()]
    if not names:
        raise UsageError("no device to compare", "give e.g. --device cpu,openvino")
    out: list[RuntimeTarget] = []
    for d in names:
        engine = engine_for_device(d).name  # raises with the reason where it cannot run here
        if engine.startswith("openvino"):
            precs = list(precisions) if precisions else (_precisions_here() if engine == "openvino" else [""])
            for p in precs:
                opts = tuple((k, v) for k, v in (("precision", p or None), ("performance_hint", hint))
                             if v)
                out.append(RuntimeTarget(d, opts))
        else:
            out.append(RuntimeTarget(d))
    if len(set(out)) != len(out):
        raise UsageError("a runtime is listed twice", "list each device once")
    return out


@dataclass(frozen=True)
class RuntimeRow:
    label: str
    device: str
    engine: str
    settings: dict[str, Any]
    latency: LatencyResult  # every timed run of every round, pooled
    speedup: float  # median over rounds of reference p50 / this p50 (1.0 for the reference)
    speedup_range: tuple[float, float]
    max_abs: float  # of the first output against the reference's, on the timing inputs
    cosine: float

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "device": self.device, "engine": self.engine, "settings": self.settings,
                "latency": self.latency.to_dict(), "speedup": self.speedup,
                "speedup_range": list(self.speedup_range), "max_abs_vs_reference": self.max_abs,
                "cosine_vs_reference": self.cosine}


@dataclass(frozen=True)
class RuntimeComparison:
    model: str
    fingerprint: str
    batch: int
    threads: int | None
    rounds: int
    budget_s: float
    inputs: dict[str, dict[str, Any]]
    rows: list[RuntimeRow]
    machine: dict[str, Any] = field(default_factory=machine_info)

    @property
    def fastest(self) -> RuntimeRow:
        return max(self.rows, key=lambda r: r.speedup)

    @property
    def method(self) -> str:
        return (f"batch {self.batch}, {self.threads or 'default'} threads, {self.rounds} rounds of "
                f"~{self.budget_s:g} s per runtime in a new shuffled order each round (warm-up runs "
                "excluded); speed-up = median over rounds of the reference's p50 over the runtime's")

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "fingerprint": self.fingerprint, "batch": self.batch,
                "threads": self.threads, "rounds": self.rounds, "budget_s": self.budget_s,
                "inputs": self.inputs, "method": self.method, "reference": self.rows[0].label,
                "fastest": self.fastest.label, "rows": [r.to_dict() for r in self.rows],
                "machine": self.machine}


def _fidelity(ref: np.ndarray, got: np.ndarray) -> tuple[float, float]:
    a, b = np.asarray(ref, np.float64).ravel(), np.asarray(got, np.float64).ravel()
    if a.shape != b.shape:
        return float("nan"), float("nan")
    den = float(np.linalg.norm(a) * np.linalg.norm(b))
    cos = float(a @ b / den) if den > 0 else (1.0 if np.array_equal(a, b) else 0.0)
    return float(np.max(np.abs(a - b))) if a.size else 0.0, cos


def compare_runtimes(model: ModelSource, targets: Sequence[RuntimeTarget | str] | str | None = None, *,
                     batch: int | None = 1, threads: int | None = None, rounds: int = 5,
                     budget_s: float = 0.3, warmup: int = 3,
                     shapes: dict[str, tuple[int, ...]] | None = None,
                     values: dict[str, np.ndarray] | None = None, seed: int = 0,
                     progress: Progress | None = None) -> RuntimeComparison:
    """Measure ``model`` on every target side by side (default: every CPU runtime here).

    Example:
        >>> c = compare_runtimes("sample:resnet-fashion", "cpu,openvino", threads=2)
        >>> c.fastest.label  # doctest: +SKIP
        'OpenVINO CPU (f32)'
    """
    if rounds < 1 or budget_s <= 0:
        raise UsageError("rounds must be >= 1 and the budget > 0 s")
    if targets is None:
        tl = cpu_targets()
    elif isinstance(targets, str):
        tl = parse_targets(targets)
    else:
        tl = [RuntimeTarget(t) if isinstance(t, str) else t for t in targets]
    if len(tl) < 1:
        raise EngineUnavailableError("no runtime to compare here", "see `workbench devices`")
    m = load_model(model)
    ins, _ = tensor_specs(m.proto.graph)
    resolved = resolve_inputs(ins, _with_values_shapes(shapes, values), batch)
    feeds = random_feeds(resolved, seed=seed, values=values)
    actual_batch = batch or next((r.shape[0] for r in resolved if len(r.shape) > 1), 1)
    common = {"threads": threads} if threads else {}
    runners = [make_runner(m, t.device, **{**common, **dict(t.options)}) for t in tl]
    rng = np.random.default_rng(seed)
    p50s: list[list[float]] = [[] for _ in runners]
    pooled: list[list[float]] = [[] for _ in runners]
    outputs: list[np.ndarray] = []
    active = []
    try:
        for r in runners:
            r.activate()
            active.append(r)
        fns = [r.prepare(feeds) for r in runners]
        outputs = [next(iter(r.infer(feeds).values())) for r in runners]
        for f in fns:  # every runtime warm before the first round
            time_callable(f, batch=actual_batch, warmup=warmup, iterations=1)
        for k in range(rounds):
            for j in rng.permutation(len(fns)):
                res = time_callable(fns[j], batch=actual_batch, warmup=1, iterations=None, min_iterations=3,
                                    time_budget_s=budget_s)
                p50s[j].append(float(np.median(res.samples_ms)))
                pooled[j].extend(res.samples_ms)
            if progress:
                progress("runtimes", k + 1, rounds)
        settings = [dict(r.settings) for r in runners]
    finally:
        for r in active:
            r.deactivate()
    rows = []
    for j, (t, r) in enumerate(zip(tl, runners)):
        ratios = [a / b for a, b in zip(p50s[0], p50s[j])]
        mx, cos = _fidelity(outputs[0], outputs[j])
        lat = LatencyResult.from_samples(np.asarray(pooled[j]) * 1e6, actual_batch, warmup, 0.0)
        rows.append(RuntimeRow(t.label, t.device, r.engine, settings[j], lat, float(np.median(ratios)),
                               (float(min(ratios)), float(max(ratios))), mx, cos))
    return RuntimeComparison(m.name, m.fingerprint, actual_batch, threads or settings[0].get("threads"),
                             rounds, budget_s,
                             {x.spec.name: {"shape": list(x.shape), "dtype": x.spec.dtype} for x in resolved},
                             rows)
