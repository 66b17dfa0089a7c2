"""What a per-layer profile is, whichever runtime produced it.

A runtime runs its own graph, not the model's: ONNX Runtime fuses Conv+BatchNorm+Relu into one
``FusedConv`` and inserts NCHWc reorders, OpenVINO merges layers and renames them, TensorRT fuses
whole blocks. A :class:`NodeTime` is one node of the runtime's graph with its median time over the
profiled runs and the model's own node names it computes (``covers``); ``origin`` says how it maps.
A :class:`LayerProfile` is every node of one profiled model plus the separately measured latency
that the sum of the node times is checked against (profiled runs are never the timed runs).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import onnx

__all__ = ["NodeTime", "LayerProfile", "OpTypeTime", "Collected", "ORIGINS", "model_node_names", "node_stats",
           "name_covers",
           "run_schedule", "DisjointSets"]

BLOCKS = 4  # profiled runs come in this many blocks, an unprofiled timing slice after each

# model: one runtime node per model node; fused: it computes several model nodes; inserted: the
# runtime added it (a layout reorder, a device copy); unmapped: no model node could be named.
ORIGINS = ("model", "fused", "inserted", "unmapped")


@dataclass(frozen=True)
class NodeTime:
    """One node of the runtime's graph: its median time per run and the model nodes it covers.

    Attributes:
        name: the runtime's name for it (ORT's node name, OpenVINO's layer name, TensorRT's layer).
        op_type: the runtime's op or layer type (``FusedConv``, ``Convolution``, ``CaskConvolution``).
        kernel: the kernel the runtime says it chose (``brgconv_avx2_f32``, ``com.microsoft.nchwc.Conv
            (Relu)``); empty where it does not say.
        median_ms: median over the profiled runs (warm-up runs excluded).
        p90_ms: 90th percentile over the same runs.
        covers: the profiled model's node names this node computes, in graph order.
        origin: one of :data:`ORIGINS`.
        precision: the precision it ran at where the runtime says (``f32``, ``u8``).
        note: a short line for the user (``layout reorder NCHW -> NCHWc before node_conv2d``).
    """

    name: str
    op_type: str
    median_ms: float
    p90_ms: float
    covers: tuple[str, ...] = ()
    origin: str = "model"
    kernel: str = ""
    precision: str = ""
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["covers"] = list(self.covers)
        return d


@dataclass
class Collected:
    """What an engine's profiler returns to :func:`workbench.core.profiling.profile`.

    ``profiled_run_ms`` is the runtime's own whole-run time in the profiled runs (median; ``nan``
    where it reports none); ``node_sum_ms`` the median over runs of each run's sum of node times
    (robust where load hits a few nodes of each run: the sum of per-node medians then reads low);
    ``settings`` what the profiled session ran with; ``notes`` lines for the user (what the runtime
    could not say, e.g. GPU launch times)."""

    nodes: list[NodeTime]
    profiled_run_ms: float = float("nan")
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    node_sum_ms: float = float("nan")


@dataclass(frozen=True)
class OpTypeTime:
    op_type: str
    ms: float
    share: float  # of the profile's total
    count: int


@dataclass(frozen=True)
class LayerProfile:
    """Every node the runtime ran for one model, with the latency the profile is checked against.

    ``measured`` is the p50 of a separate, unprofiled timing run (the profiler's own overhead is not
    in it); ``explained`` is the share of it the node times add up to.
    """

    model: str
    fingerprint: str
    engine: str
    device: str
    batch: int
    runs: int
    warmup: int
    nodes: list[NodeTime]
    measured_ms: float
    measured_p90_ms: float
    profiled_run_ms: float  # the runtime's own per-run total in the profiled runs (median); nan if none
    node_sum_ms: float = float("nan")  # median over profiled runs of each run's node-time sum
    folded: tuple[str, ...] = ()  # model nodes no runtime node covers (folded or removed at load)
    settings: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    machine: dict[str, Any] = field(default_factory=dict)

    @property
    def total_ms(self) -> float:
        return float(sum(n.median_ms for n in self.nodes))

    @property
    def explained(self) -> float:
        """Sum of the node medians over the measured p50 (1.0: the profile explains all of it)."""
        return self.total_ms / self.measured_ms if self.measured_ms > 0 else float("nan")

    @property
    def explained_per_run(self) -> float:
        """Median over profiled runs of each run's node-time sum, over the measured p50."""
        return self.node_sum_ms / self.measured_ms if self.measured_ms > 0 else float("nan")

    @property
    def method(self) -> str:
        return (f"batch {self.batch}, {self.settings.get('threads') or 'default'} threads; "
                f"{self.runs} profiled runs after {self.warmup} warm-up runs, median per node; "
                f"latency p50 from separate unprofiled runs")

    def top(self, n: int = 10) -> list[NodeTime]:
        return sorted(self.nodes, key=lambda x: -x.median_ms)[:n]

    def by_op_type(self) -> list[OpTypeTime]:
        """Time per runtime op type, largest first."""
        ms: dict[str, float] = defaultdict(float)
        count: dict[str, int] = defaultdict(int)
        for x in self.nodes:
            ms[x.op_type] += x.median_ms
            count[x.op_type] += 1
        total = self.total_ms or 1.0
        return [OpTypeTime(k, v, v / total, count[k]) for k, v in sorted(ms.items(), key=lambda kv: -kv[1])]

    def per_model_node(self) -> dict[str, float]:
        """Milliseconds per model node: a runtime node's time split evenly over the nodes it covers
        (the heat overlay on the graph). Inserted and unmapped nodes are not in it."""
        out: dict[str, float] = defaultdict(float)
        for x in self.nodes:
            for c in x.covers:
                out[c] += x.median_ms / len(x.covers)
        return dict(out)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "fingerprint": self.fingerprint, "engine": self.engine,
                "device": self.device, "batch": self.batch, "runs": self.runs, "warmup": self.warmup,
                "method": self.method, "measured_p50_ms": self.measured_ms,
                "measured_p90_ms": self.measured_p90_ms, "profiled_run_ms": self.profiled_run_ms,
                "total_ms": self.total_ms, "explained": self.explained, "node_sum_ms": self.node_sum_ms,
                "explained_per_run": self.explained_per_run,
                "by_op_type": [asdict(o) for o in self.by_op_type()],
                "nodes": [n.to_dict() for n in self.nodes], "folded": list(self.folded),
                "settings": self.settings, "inputs": self.inputs, "notes": list(self.notes),
                "machine": self.machine}


def model_node_names(proto: onnx.ModelProto) -> list[str]:
    """Every node name of the model, subgraphs (If/Loop/Scan bodies) included, in graph order."""
    out: list[str] = []

    def walk(g: onnx.GraphProto) -> None:
        for n in g.node:
            out.append(n.name)
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    for sg in a.graphs:
                        walk(sg)

    walk(proto.graph)
    return out


def node_stats(per_run_ms: Sequence[float] | Iterable[float]) -> tuple[float, float]:
    """(median, p90) of one node's times over the profiled runs."""
    a = np.asarray(list(per_run_ms), dtype=np.float64)
    if a.size == 0:
        return 0.0, 0.0
    return float(np.median(a)), float(np.percentile(a, 90))


def name_covers(runtime_names: Iterable[str], proto: onnx.ModelProto) -> tuple[str, ...]:
    """The model's node names among the names a runtime gives for one of its nodes.

    Runtimes that rename (OpenVINO's ``node_conv2d/WithoutBiases``, TensorRT's ``node_a + node_b``)
    are resolved by the caller into candidate names; this keeps those that are model node names, or
    model node output names (mapped to the node that produces them), in first-seen order.
    """
    nodes = model_node_names(proto)
    known = set(nodes)
    producer = {o: n.name for n in proto.graph.node for o in n.output if o}
    out: list[str] = []
    for raw in runtime_names:
        name = raw if raw in known else producer.get(raw)
        head = raw
        while name is None and "/" in head:  # OpenVINO's "<node>/<suffix>" (names may hold "/" too)
            head = head.rsplit("/", 1)[0]
            name = head if head in known else producer.get(head)
        if name and name not in out:
            out.append(name)
    return tuple(out)


def run_schedule(run: Callable[[], Any], *, runs: int, warmup: int, between: Callable[[], None] | None = None,
                 after: Callable[[bool], None] | None = None, blocks: int = BLOCKS) -> list[bool]:
    """Call ``run`` ``warmup`` times, then until ``runs`` runs were kept, in ``blocks`` blocks with
    ``between`` (the caller's unprofiled timing slice) after each. After a slice, the first run of a
    block is not kept: it runs with the other runner's data in the caches, and keeping it would bias
    the profile against a measurement made of warm consecutive runs. ``after(kept)`` follows every
    run (OpenVINO and TensorRT read their counters there). Returns each run's kept flag, in order."""
    flags: list[bool] = []

    def one(kept: bool) -> None:
        run()
        flags.append(kept)
        if after is not None:
            after(kept)

    for _ in range(warmup):
        one(False)
    per_block = max(1, -(-runs // max(1, blocks))) if between is not None else runs
    kept = 0
    while kept < runs:
        if between is not None and kept:
            one(False)  # re-warm after the slice
        for _ in range(min(per_block, runs - kept)):
            one(True)
            kept += 1
        if between is not None:
            between()
    return flags


class DisjointSets:
    """Union-find over ``0 .. n-1`` (path halving): the units of a profile comparison, the pieces
    of an OpenVINO graph."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        """Join ``a``'s set into ``b``'s."""
        self.parent[self.find(a)] = self.find(b)
