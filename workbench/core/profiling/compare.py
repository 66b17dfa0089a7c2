"""A build's per-layer profile beside its baseline's: by op type and by node, on one scale.

The two runtimes' graphs differ (a quantized Conv runs as ``QLinearConv`` with its Q/DQ absorbed,
a pass adds Casts or removes channels), so nodes are matched through the model node names they
cover: runtime nodes of either profile that share a model node name form one unit, timed on both
sides. Units only the build has are what the passes added (Q/DQ at the graph edge, Casts); nodes the
runtime inserted (layout reorders, device copies) are grouped by what they do. The latencies the
two profiles are checked against are measured interleaved, in rounds, like every other ratio here.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from ...errors import UsageError
from ..evaluation.latency import time_callable
from ..evaluation.run import Progress, _with_values_shapes, make_runner
from ..model import ModelSource, load_model
from ..shapes import random_feeds, resolve_inputs, tensor_specs
from .layers import DisjointSets, LayerProfile, NodeTime
from .run import named_copy, profile

__all__ = ["NodeDelta", "OpTypeDelta", "ProfileComparison", "align_nodes", "compare_profiles", "profile_pair"]


@dataclass(frozen=True)
class NodeDelta:
    """One unit of work timed in both profiles (or in one: ``kind`` added / removed / inserted)."""

    label: str
    baseline_ms: float
    build_ms: float
    kind: str  # matched, added (by the passes), removed, inserted (by the runtime)
    baseline_ops: str = ""
    build_ops: str = ""
    baseline_nodes: tuple[str, ...] = ()
    build_nodes: tuple[str, ...] = ()
    covers: tuple[str, ...] = ()  # model node names, both sides

    @property
    def delta_ms(self) -> float:
        return self.build_ms - self.baseline_ms

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "kind": self.kind, "baseline_ms": self.baseline_ms,
                "build_ms": self.build_ms, "delta_ms": self.delta_ms, "baseline_ops": self.baseline_ops,
                "build_ops": self.build_ops, "baseline_nodes": list(self.baseline_nodes),
                "build_nodes": list(self.build_nodes), "covers": list(self.covers)}


@dataclass(frozen=True)
class OpTypeDelta:
    op_type: str
    baseline_ms: float
    build_ms: float
    baseline_count: int
    build_count: int

    @property
    def delta_ms(self) -> float:
        return self.build_ms - self.baseline_ms


@dataclass(frozen=True)
class ProfileComparison:
    baseline: LayerProfile
    build: LayerProfile
    by_op_type: list[OpTypeDelta]
    by_node: list[NodeDelta]
    speedup: float = float("nan")  # median over interleaved rounds of baseline p50 / build p50
    speedup_range: tuple[float, float] = (float("nan"), float("nan"))
    rounds: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def faster(self, n: int = 5) -> list[NodeDelta]:
        return sorted((d for d in self.by_node if d.delta_ms < 0), key=lambda d: d.delta_ms)[:n]

    def slower(self, n: int = 5) -> list[NodeDelta]:
        return sorted((d for d in self.by_node if d.delta_ms > 0), key=lambda d: -d.delta_ms)[:n]

    def to_dict(self) -> dict[str, Any]:
        return {"baseline": self.baseline.to_dict(), "build": self.build.to_dict(),
                "speedup": self.speedup, "speedup_range": list(self.speedup_range), "rounds": self.rounds,
                "by_op_type": [{"op_type": d.op_type, "baseline_ms": d.baseline_ms, "build_ms": d.build_ms,
                                "delta_ms": d.delta_ms, "baseline_count": d.baseline_count,
                                "build_count": d.build_count} for d in self.by_op_type],
                "by_node": [d.to_dict() for d in self.by_node], "notes": list(self.notes)}


def _ops(nodes: list[NodeTime]) -> str:
    return "+".join(dict.fromkeys(n.op_type for n in nodes))


# Compute nodes a pass may rename (onnxslim's folding renames every node it rewrites).
ANCHOR_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "ConvInteger", "MatMulInteger", "QLinearConv",
              "QLinearMatMul", "LSTM", "GRU", "RNN", "Attention")


def align_nodes(base: onnx.ModelProto, build: onnx.ModelProto) -> dict[str, str]:
    """Build node name -> baseline node name for compute nodes whose names differ: the k-th node of
    each op type in :data:`ANCHOR_OPS` (graph order), where both models have as many of that op type
    and the two agree on the kernel's shape attribute (pruning may change channels, not kernels)."""
    known = {n.name for n in base.graph.node}
    out: dict[str, str] = {}
    for op in ANCHOR_OPS:
        a = [n for n in base.graph.node if n.op_type == op]
        b = [n for n in build.graph.node if n.op_type == op]
        if len(a) != len(b):
            continue
        for x, y in zip(a, b):
            kx = [list(t.ints) for t in x.attribute if t.name == "kernel_shape"]
            ky = [list(t.ints) for t in y.attribute if t.name == "kernel_shape"]
            if y.name != x.name and y.name not in known and kx == ky:
                out[y.name] = x.name
    return out


def _units(base: LayerProfile, build: LayerProfile, aliases: dict[str, str] | None = None) -> list[NodeDelta]:
    """Runtime nodes joined into units through shared model node names (union-find); ``aliases``
    maps build node names a pass renamed to the baseline's."""
    aliases = aliases or {}
    items = [("a", n) for n in base.nodes if n.covers] + [("b", n) for n in build.nodes if n.covers]
    sets = DisjointSets(len(items))
    first: dict[str, int] = {}
    for i, (side, n) in enumerate(items):
        for c in n.covers:
            c = aliases.get(c, c) if side == "b" else c
            if c in first:
                sets.union(i, first[c])
            else:
                first[c] = i
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(items)):
        groups[sets.find(i)].append(i)
    out = []
    for members in sorted(groups.values()):
        a = [items[i][1] for i in members if items[i][0] == "a"]
        b = [items[i][1] for i in members if items[i][0] == "b"]
        covers = tuple(dict.fromkeys(c for i in members for c in items[i][1].covers))
        label = next((c for n in a for c in n.covers), "") or next(
            (c for n in b for c in n.covers if not c.endswith(("QuantizeLinear", "DequantizeLinear"))),
            next((c for n in b for c in n.covers), b[0].name if b else ""))
        kind = "matched" if a and b else "removed" if a else "added"
        out.append(NodeDelta(label, sum(n.median_ms for n in a), sum(n.median_ms for n in b), kind,
                             _ops(a), _ops(b), tuple(n.name for n in a), tuple(n.name for n in b), covers))
    def kind(n: NodeTime) -> str:  # inserted nodes by what they do, unmapped ones by op type
        return n.note if n.origin == "inserted" and n.note else f"{n.op_type} (no model node)"

    for what in sorted({kind(n) for p in (base, build) for n in p.nodes if not n.covers}):
        a = [n for n in base.nodes if not n.covers and kind(n) == what]
        b = [n for n in build.nodes if not n.covers and kind(n) == what]
        out.append(NodeDelta(f"{what} ({len(a)} -> {len(b)} nodes)", sum(n.median_ms for n in a),
                             sum(n.median_ms for n in b), "inserted", _ops(a), _ops(b),
                             tuple(n.name for n in a), tuple(n.name for n in b)))
    return out


def compare_profiles(baseline: LayerProfile, build: LayerProfile, *, speedup: float = float("nan"),
                     speedup_range: tuple[float, float] = (float("nan"), float("nan")),
                     rounds: int = 0, aliases: dict[str, str] | None = None) -> ProfileComparison:
    """The two profiles side by side (no new measurement): per op type and per matched unit
    (``aliases``: build node name -> baseline node name, see :func:`align_nodes`)."""
    if baseline.batch != build.batch:
        raise UsageError(f"the profiles ran at batch {baseline.batch} and {build.batch}",
                         "profile both at the same batch")
    a = {o.op_type: o for o in baseline.by_op_type()}
    b = {o.op_type: o for o in build.by_op_type()}
    ops = sorted(set(a) | set(b), key=lambda k: -max(a[k].ms if k in a else 0, b[k].ms if k in b else 0))
    by_op = [OpTypeDelta(k, a[k].ms if k in a else 0.0, b[k].ms if k in b else 0.0,
                         a[k].count if k in a else 0, b[k].count if k in b else 0) for k in ops]
    notes = []
    if baseline.engine != build.engine:
        notes.append(f"baseline on {baseline.engine}, build on {build.engine}")
    if aliases:
        notes.append(f"{len(aliases)} compute nodes the passes renamed are matched by order and kernel shape")
    return ProfileComparison(baseline, build, by_op, _units(baseline, build, aliases), speedup, speedup_range,
                             rounds, tuple(notes))


def _interleaved_speedup(base: ModelSource, build: ModelSource, device: str, opts: dict[str, Any],
                         bopts: dict[str, Any], baseline_device: str, batch: int | None, shapes: Any, values: Any, seed: int,
                         rounds: int, budget_s: float) -> tuple[float, tuple[float, float]]:
    ratios = []
    models = [named_copy(load_model(x))[0] for x in (base, build)]
    ins, _ = tensor_specs(models[0].proto.graph)
    feeds = random_feeds(resolve_inputs(ins, _with_values_shapes(shapes, values), batch), seed=seed,
                         values=values)
    runners = [make_runner(models[0], baseline_device, **bopts), make_runner(models[1], device, **opts)]
    with runners[0], runners[1]:
        fns = [r.prepare(feeds) for r in runners]
        rng = np.random.default_rng(seed)
        for _ in range(rounds):
            p50 = [0.0, 0.0]
            for j in rng.permutation(2):
                p50[j] = time_callable(fns[j], warmup=1, iterations=None, time_budget_s=budget_s,
                                       min_iterations=3).p50_ms
            ratios.append(p50[0] / p50[1])
    return float(np.median(ratios)), (float(min(ratios)), float(max(ratios)))


def profile_pair(baseline: ModelSource, build: ModelSource, device: str = "cpu", *,
                 baseline_device: str | None = None, batch: int | None = 1, runs: int = 20, warmup: int = 5,
                 threads: int | None = None, rounds: int = 3, budget_s: float = 0.4,
                 shapes: dict[str, tuple[int, ...]] | None = None, values: dict[str, Any] | None = None,
                 seed: int = 0, progress: Progress | None = None, **options: Any) -> ProfileComparison:
    """Profile ``baseline`` and ``build`` and compare them; the speed-up is measured interleaved in
    ``rounds`` rounds (unprofiled), the node times come from separate profiled runs."""
    opts = {**({"threads": threads} if threads else {}), **options}
    bdev = baseline_device or device
    bopts = opts if bdev == device else ({"threads": threads} if threads else {})  # engine options: the build's
    common = {"batch": batch, "runs": runs, "warmup": warmup, "shapes": shapes, "values": values, "seed": seed}
    a = profile(baseline, bdev, progress=progress, **common, **bopts)
    b = profile(build, device, progress=progress, **common, **opts)
    s, rng = _interleaved_speedup(baseline, build, device, opts, bopts, bdev, batch, shapes, values, seed,
                                  rounds, budget_s)
    aliases = align_nodes(named_copy(load_model(baseline))[0].proto, named_copy(load_model(build))[0].proto)
    return compare_profiles(a, b, speedup=s, speedup_range=rng, rounds=rounds, aliases=aliases)
