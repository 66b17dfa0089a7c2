"""What a build did to a graph, node by node: the diff against the baseline, each node's status,
the pass notes about it, and the Q/DQ folding that makes a quantized graph readable.

Shared by the panel's own graph view and the Model Explorer overlay (``workbench.viewer``); no UI
imports here.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import onnx
from onnx import numpy_helper

from .passes.base import PassReport

__all__ = ["GraphDiff", "diff_graphs", "node_status", "node_notes", "node_names", "fold_qdq",
           "STATUSES", "FOLDABLE_OPS"]

# most specific last: a node's status is the last one that applies
STATUSES = ("unchanged", "changed", "fused", "added", "fp16", "quantized", "pruned", "excluded")
FOLDABLE_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "Constant"})
_SHAPE_OPS = frozenset({"Shape", "Size"})


@dataclass
class GraphDiff:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed_ops: dict[str, int] = field(default_factory=dict)
    added_ops: dict[str, int] = field(default_factory=dict)
    matched: dict[str, str] = field(default_factory=dict)  # current name -> baseline name

    def summary(self) -> str:
        def ops(d: dict[str, int]) -> str:
            return ", ".join(f"{k} x{v}" for k, v in sorted(d.items(), key=lambda kv: -kv[1])) or "-"
        return (f"removed {len(self.removed)} ({ops(self.removed_ops)}); added {len(self.added)} "
                f"({ops(self.added_ops)}); changed {len(self.changed)}")

    def short(self, abbrev: dict[str, str] | None = None) -> str:
        """``-20 BatchNormalization, +73 DequantizeLinear, 20 changed``: for a title (op names
        shortened by ``abbrev``)."""
        a = abbrev or {}
        parts = [f"-{v} {a.get(k, k)}" for k, v in sorted(self.removed_ops.items(), key=lambda kv: -kv[1])[:2]]
        parts += [f"+{v} {a.get(k, k)}" for k, v in sorted(self.added_ops.items(), key=lambda kv: -kv[1])[:2]]
        if self.changed:
            parts.append(f"{len(self.changed)} changed")
        return ", ".join(parts) or "no change"


def node_names(g: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    """Each node by name (an unnamed node as ``<op>_<index>``)."""
    return {n.name or f"{n.op_type}_{i}": n for i, n in enumerate(g.node)}


def _weight_sig(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> tuple:
    sig = []
    for i in node.input:
        t = inits.get(i)
        if t is not None:
            sig.append((tuple(t.dims), t.data_type, hash(numpy_helper.to_array(t).tobytes())
                        if len(t.dims) and t.ByteSize() < 1 << 16 else t.ByteSize()))
    return tuple(sig)


def diff_graphs(base: onnx.ModelProto, cur: onnx.ModelProto) -> GraphDiff:
    """Nodes added, removed and changed (other op, inputs or weights) between two models.

    Rewriters often rename what they touch, so nodes are matched by name first, then by op type
    and data input (a Conv that absorbed a BatchNorm), then by output tensor (a node replaced by
    another op that writes the same tensor).
    """
    b, c = node_names(base.graph), node_names(cur.graph)
    bi = {t.name: t for t in base.graph.initializer}
    ci = {t.name: t for t in cur.graph.initializer}
    match = {n: n for n in c if n in b}
    free = [n for n in b if n not in match.values()]
    for keyf in (lambda n: (n.op_type, n.input[0] if n.input else ""),
                 lambda n: ("out", n.output[0] if n.output else "")):
        index: dict[tuple, list[str]] = defaultdict(list)
        for n in free:
            index[keyf(b[n])].append(n)
        for name in c:
            if name not in match and index.get(keyf(c[name])):
                match[name] = index[keyf(c[name])].pop(0)
        free = [n for n in b if n not in match.values()]
    d = GraphDiff(added=[n for n in c if n not in match], removed=free, matched=match)
    for name, old in match.items():
        x, y = b[old], c[name]
        if x.op_type != y.op_type or list(x.input) != list(y.input) or _weight_sig(x, bi) != _weight_sig(y, ci):
            d.changed.append(name)
    d.removed_ops = dict(Counter(b[n].op_type for n in d.removed))
    d.added_ops = dict(Counter(c[n].op_type for n in d.added))
    return d


def node_status(cur: onnx.ModelProto, reports: list[PassReport], diff: GraphDiff | None) -> dict[str, str]:
    """What happened to each node of the current model; the most specific status wins."""
    status = {n: "unchanged" for n in node_names(cur.graph)}
    if diff:
        fused = any(r.name == "fuse" and r.fused for r in reports)
        for n in diff.changed:
            status[n] = "fused" if fused else "changed"
        for n in diff.added:
            status[n] = "added"
    for r in reports:
        for n in r.converted:
            if n in status:
                status[n] = "fp16"
        for n in r.quantized:
            if n in status:
                status[n] = "quantized"
        for n in r.pruned:
            if n in status:
                status[n] = "pruned"
        for e in r.excluded:
            if e.get("node") in status:
                status[e["node"]] = "excluded"
    return status


def node_notes(name: str, reports: list[PassReport], diff: GraphDiff | None = None) -> list[str]:
    """What the passes said about one node, one line each (``int8: quantized``, ``excluded: ...``)."""
    out = []
    if diff is not None:
        if name in diff.added:
            out.append("added by the build")
        elif name in diff.changed:
            old = diff.matched.get(name, name)
            out.append("changed (inputs or weights)" + (f"; was {old}" if old != name else ""))
    for r in reports:
        if name in r.quantized:
            out.append(f"{r.name}: quantized")
        if name in r.converted:
            out.append(f"{r.name}: converted")
        if name in r.pruned:
            out.append(f"{r.name}: " + ", ".join(f"{k}={v}" for k, v in list(r.pruned[name].items())[:4]))
        out += [f"{r.name}: kept in float: {e.get('reason', '')}" for e in r.excluded if e.get("node") == name]
    return out


def fold_qdq(g: onnx.GraphProto) -> dict[str, str]:
    """Quantize/Dequantize and Constant nodes -> the node they are folded into for display.

    Each such node folds into the first non-foldable node that consumes what it writes (following
    chains such as weight -> DequantizeLinear -> Conv and Relu -> Q -> DQ -> Conv); one feeding
    only a graph output folds into the op that produces its input. Without this, every weight DequantizeLinear (no graph inputs)
    lands in the top row of a layered layout.
    """
    names = node_names(g)
    consumers: dict[str, list[str]] = defaultdict(list)
    for name, n in names.items():
        for x in n.input:
            consumers[x].append(name)
    into: dict[str, str] = {}

    def target(name: str, seen: frozenset[str] = frozenset()) -> str | None:
        if name in into:
            return into[name]
        for out in names[name].output:  # a shape query last: fold into the op that computes
            for c in sorted(consumers.get(out, []), key=lambda c: names[c].op_type in _SHAPE_OPS):
                if c in seen:
                    continue
                if names[c].op_type not in FOLDABLE_OPS:
                    return c
                t = target(c, seen | {name})
                if t is not None:
                    return t
        return None

    producer = {o: name for name, n in names.items() for o in n.output}

    def upstream(name: str) -> str | None:  # a Q/DQ pair in front of a graph output: its producer's
        for x in names[name].input:
            p = producer.get(x)
            if p is not None:
                return p if names[p].op_type not in FOLDABLE_OPS else upstream(p)
        return None

    for name, n in names.items():
        if n.op_type in FOLDABLE_OPS:
            t = target(name) or upstream(name)
            if t is not None:
                into[name] = t
    return into
