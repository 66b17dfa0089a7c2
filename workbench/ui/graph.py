"""The workbench's own graph view: a layered DAG drawn with plotly, no Netron needed.

Nodes are colored by what the current build did to them (from the pass reports and a diff
against the baseline); hovering shows op, MACs and parameters. Works on remote kernels too: it is
only a plotly figure.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import onnx
import plotly.graph_objects as go
from onnx import numpy_helper

from ..core.model import Model
from ..core.passes.base import PassReport
from ..core.summary import summarize

__all__ = ["GraphDiff", "diff_graphs", "node_status", "graph_figure", "STATUS_COLORS"]

STATUS_COLORS = {
    "unchanged": "#b0bec5", "changed": "#42a5f5", "added": "#ab47bc", "fused": "#26a69a",
    "quantized": "#ffa726", "fp16": "#ec407a", "pruned": "#8d6e63", "excluded": "#e53935",
}


@dataclass
class GraphDiff:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed_ops: dict[str, int] = field(default_factory=dict)
    added_ops: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        def ops(d: dict[str, int]) -> str:
            return ", ".join(f"{k} x{v}" for k, v in sorted(d.items(), key=lambda kv: -kv[1])) or "-"
        return (f"removed {len(self.removed)} ({ops(self.removed_ops)}); added {len(self.added)} "
                f"({ops(self.added_ops)}); changed {len(self.changed)}")


def _names(g: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {n.name or f"{n.op_type}_{i}": n for i, n in enumerate(g.node)}


def _weight_sig(g: onnx.GraphProto, node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> tuple:
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
    b, c = _names(base.graph), _names(cur.graph)
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
    d = GraphDiff(added=[n for n in c if n not in match], removed=free)
    for name, old in match.items():
        x, y = b[old], c[name]
        if x.op_type != y.op_type or list(x.input) != list(y.input) or \
                _weight_sig(base.graph, x, bi) != _weight_sig(cur.graph, y, ci):
            d.changed.append(name)
    d.removed_ops = dict(Counter(b[n].op_type for n in d.removed))
    d.added_ops = dict(Counter(c[n].op_type for n in d.added))
    return d


def node_status(cur: onnx.ModelProto, reports: list[PassReport], diff: GraphDiff | None) -> dict[str, str]:
    """What happened to each node of the current model; the most specific status wins."""
    status = {n: "unchanged" for n in _names(cur.graph)}
    if diff:
        for n in diff.changed:
            status[n] = "fused" if any(r.name == "fuse" and r.fused for r in reports) else "changed"
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


def _layers(g: onnx.GraphProto) -> dict[str, int]:
    """Longest-path depth of each node from the graph inputs."""
    producers = {o: (n.name or f"{n.op_type}_{i}") for i, n in enumerate(g.node) for o in n.output}
    depth: dict[str, int] = {}
    for i, n in enumerate(g.node):  # ONNX graphs are topologically sorted
        name = n.name or f"{n.op_type}_{i}"
        depth[name] = 1 + max((depth.get(producers[x], 0) for x in n.input if x in producers), default=-1)
    return depth


def graph_figure(model: Model, reports: list[PassReport] | None = None, base: Model | None = None,
                 heat: dict[str, float] | None = None, title: str | None = None,
                 heat_label: str = "sensitivity", heat_range: tuple[float, float] | None = None,
                 heat_unit: str = "") -> go.Figure:
    """The model as a layered DAG; colors from the build's reports and its diff against ``base``.

    With ``heat`` (node name -> score, e.g. ``SensitivityResult.heat()``), nodes are colored by
    their score on one shared scale instead (unscored nodes at its pale low end); ``heat_range``
    fixes that scale (a baseline and a build on the same one); each marker's ``customdata`` is
    its node name, for click handlers.
    """
    colorbar_shown = False
    g = model.proto.graph
    reports = reports or []
    diff = diff_graphs(base.proto, model.proto) if base is not None else None
    status = node_status(model.proto, reports, diff)
    depth = _layers(g)
    costs = {n.name: n for n in summarize(model).per_node}
    rows: dict[int, list[str]] = defaultdict(list)
    for name, d in depth.items():
        rows[d].append(name)
    pos = {}
    for d, names in rows.items():
        for i, name in enumerate(names):
            pos[name] = (i - (len(names) - 1) / 2, -d)
    nodes = _names(g)
    producers = {o: (n.name or f"{n.op_type}_{i}") for i, n in enumerate(g.node) for o in n.output}
    ex, ey = [], []
    for name, n in nodes.items():
        for x in n.input:
            if x in producers:
                (x0, y0), (x1, y1) = pos[producers[x]], pos[name]
                ex += [x0, x1, None]
                ey += [y0, y1, None]
    fig = go.Figure(go.Scatter(x=ex, y=ey, mode="lines", line=dict(color="#cfd8dc", width=1),
                               hoverinfo="skip", showlegend=False))
    by_status: dict[str, list[str]] = defaultdict(list)
    for name in nodes:
        by_status[status[name]].append(name)
    for st, names in by_status.items():
        hover = []
        for name in names:
            c = costs.get(name)
            extra = ""
            for r in reports:
                if name in r.pruned:
                    extra += "<br>pruned: " + ", ".join(f"{k}={v}" for k, v in list(r.pruned[name].items())[:4])
                for e in r.excluded:
                    if e.get("node") == name:
                        extra += f"<br>excluded: {e.get('reason', '')}"
            if heat and name in heat:
                extra += f"<br>{heat_label}: {heat[name]:.4g}{heat_unit}"
            hover.append(f"<b>{name}</b><br>{nodes[name].op_type} ({st})"
                         + (f"<br>MACs {c.macs:,}<br>params {c.params:,}" if c else "") + extra)
        color: Any = STATUS_COLORS.get(st, "#78909c")
        marker: dict[str, Any] = dict(size=14, line=dict(width=1, color="#37474f"), symbol="square")
        if heat:  # heat mode: one shared color scale; unscored nodes take its pale low end
            lo, hi = heat_range or (min(heat.values()), max(heat.values()))
            color = [heat.get(n, lo) for n in names]
            marker.update(cmin=lo, cmax=hi if hi > lo else lo + 1e-9, colorscale="YlOrRd",
                          showscale=not colorbar_shown,
                          colorbar=dict(title=dict(text=heat_label, side="right"), thickness=12))
            colorbar_shown = True
        marker["color"] = color
        fig.add_trace(go.Scatter(
            x=[pos[n][0] for n in names], y=[pos[n][1] for n in names], mode="markers+text",
            marker=marker, customdata=names,
            text=[nodes[n].op_type[:6] for n in names], textposition="middle right",
            textfont=dict(size=8), hovertext=hover, hoverinfo="text", name=st))
    fig.update_layout(
        title=title or (f"{model.name}: " + (diff.summary() if diff else f"{len(nodes)} nodes")),
        height=max(400, 22 * (max(depth.values(), default=0) + 2)), showlegend=True,
        xaxis=dict(visible=False), yaxis=dict(visible=False), margin=dict(l=10, r=10, t=40, b=10),
        legend=dict(orientation="h", y=1.02), plot_bgcolor="white")
    return fig
