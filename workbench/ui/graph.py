"""The workbench's own graph view: a layered DAG drawn with plotly, no Netron needed.

Nodes are colored by what the current build did to them (from the pass reports and a diff
against the baseline); Quantize/Dequantize and Constant nodes are folded into the node they feed,
so a quantized graph keeps the float graph's shape. Hovering shows op, MACs, parameters and the
pass notes; ``node_details`` renders a clicked node in full. Works on remote kernels too: it is
only a plotly figure.
"""

from __future__ import annotations

import html
from collections import Counter, defaultdict
from typing import Any

import onnx
import plotly.graph_objects as go

from ..core.graph_diff import GraphDiff, diff_graphs, fold_qdq, node_names, node_notes, node_status
from ..core.model import Model
from ..core.passes.base import PassReport
from ..core.summary import summarize

__all__ = ["GraphDiff", "diff_graphs", "node_status", "graph_figure", "node_details", "STATUS_COLORS"]

STATUS_COLORS = {
    "unchanged": "#b0bec5", "changed": "#42a5f5", "added": "#ab47bc", "fused": "#26a69a",
    "quantized": "#ffa726", "fp16": "#ec407a", "pruned": "#8d6e63", "excluded": "#e53935",
    "removed": "#212121",
}


_SHORT_OPS = {"DequantizeLinear": "DQ", "QuantizeLinear": "Q", "BatchNormalization": "BatchNorm"}


def _visible_edges(g: onnx.GraphProto, folded: dict[str, str]) -> dict[str, list[str]]:
    """Each shown node's shown producers, looking through the folded nodes between them."""
    names = node_names(g)
    producer = {o: name for name, n in names.items() for o in n.output}

    def sources(x: str, seen: set[str]) -> list[str]:
        p = producer.get(x)
        if p is None or p in seen:
            return []
        if p not in folded:
            return [p]
        seen.add(p)
        return [s for i in names[p].input for s in sources(i, seen)]

    return {name: list(dict.fromkeys(s for x in n.input for s in sources(x, set())))
            for name, n in names.items() if name not in folded}


def _layers(order: list[str], edges: dict[str, list[str]]) -> dict[str, int]:
    """Longest-path depth of each shown node (ONNX graphs are topologically sorted)."""
    depth: dict[str, int] = {}
    for name in order:
        depth[name] = 1 + max((depth.get(p, 0) for p in edges[name]), default=-1)
    return depth


def graph_figure(model: Model, reports: list[PassReport] | None = None, base: Model | None = None,
                 heat: dict[str, float] | None = None, title: str | None = None,
                 heat_label: str = "sensitivity", heat_range: tuple[float, float] | None = None,
                 heat_unit: str = "", removed_of: Model | None = None, fold: bool = True,
                 label: str | None = None) -> go.Figure:
    """The model as a layered DAG; colors from the build's reports and its diff against ``base``.

    With ``removed_of`` (a build of this model), this is the baseline's side of a side-by-side
    view: the nodes the build removed are drawn as ``removed``. With ``heat`` (node name ->
    score, e.g. ``SensitivityResult.heat()``), nodes are colored by their score on one shared
    scale instead (unscored nodes at its pale low end); ``heat_range`` fixes that scale. Each
    marker's ``customdata`` is its node name, for click handlers. The title is ``title``, else
    ``label`` (default: the model's name) and a short summary of the diff.
    """
    g = model.proto.graph
    reports = reports or []
    diff = diff_graphs(base.proto, model.proto) if base is not None else None
    status = node_status(model.proto, reports, diff)
    if removed_of is not None:
        for n in diff_graphs(model.proto, removed_of.proto).removed:
            status[n] = "removed"
    nodes = node_names(g)
    folded = fold_qdq(g) if fold else {}
    into: dict[str, Counter] = defaultdict(Counter)
    for n, t in folded.items():
        into[t][nodes[n].op_type] += 1
    edges = _visible_edges(g, folded)
    order = list(edges)
    depth = _layers(order, edges)
    costs = {n.name: n for n in summarize(model).per_node}
    rows: dict[int, list[str]] = defaultdict(list)
    for name in order:
        rows[depth[name]].append(name)
    pos = {}
    for d, names in rows.items():
        for i, name in enumerate(names):
            pos[name] = (i - (len(names) - 1) / 2, -d)
    ex, ey = [], []
    for name, srcs in edges.items():
        for p in srcs:
            (x0, y0), (x1, y1) = pos[p], pos[name]
            ex += [x0, x1, None]
            ey += [y0, y1, None]
    fig = go.Figure(go.Scatter(x=ex, y=ey, mode="lines", line=dict(color="#cfd8dc", width=1),
                               hoverinfo="skip", showlegend=False))
    by_status: dict[str, list[str]] = defaultdict(list)
    for name in order:
        by_status[status[name]].append(name)
    colorbar_shown = False
    for st in sorted(by_status, key=lambda s: list(STATUS_COLORS).index(s) if s in STATUS_COLORS else 99):
        names = by_status[st]
        hover = []
        for name in names:
            c = costs.get(name)
            extra = "".join(f"<br>{html.escape(t)}" for t in node_notes(name, reports, diff)[:4])
            if into.get(name):
                extra += "<br>folded in: " + ", ".join(f"{k} x{v}" for k, v in into[name].items())
            if heat and name in heat:
                extra += f"<br>{heat_label}: {heat[name]:.4g}{heat_unit}"
            hover.append(f"<b>{html.escape(name)}</b><br>{nodes[name].op_type} ({st})"
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
        if into and not heat:  # a node with folded Q/DQ: a diamond, so the folding can be seen
            marker["symbol"] = ["diamond" if into.get(n) else "square" for n in names]
        marker["color"] = color
        fig.add_trace(go.Scatter(
            x=[pos[n][0] for n in names], y=[pos[n][1] for n in names], mode="markers+text",
            marker=marker, customdata=names,
            text=[nodes[n].op_type[:9] for n in names], textposition="middle right",
            textfont=dict(size=9), hovertext=hover, hoverinfo="text", name=st))
    hidden = f"; {len(folded)} Q/DQ folded (diamonds)" if folded else ""
    summary = (diff.short(_SHORT_OPS) if diff else f"{len(nodes)} nodes") + hidden
    fig.update_layout(  # two lines: the name, then what changed in smaller type
        title=dict(text=title or f"{html.escape(label or model.name)}<br><sup>{html.escape(summary)}</sup>",
                   font=dict(size=13), x=0.01, xanchor="left", y=0.995, yanchor="top"),
        height=max(400, 22 * (max(depth.values(), default=0) + 2)), showlegend=True,
        xaxis=dict(visible=False), yaxis=dict(visible=False), margin=dict(l=10, r=10, t=80, b=10),
        legend=dict(orientation="h", y=1.0, yanchor="bottom", x=0), plot_bgcolor="white")
    return fig


_SHAPES: dict[int, tuple[onnx.ModelProto, dict[str, str]]] = {}


def _shapes(proto: onnx.ModelProto) -> dict[str, str]:
    """Each tensor's dtype and shape (shape inference, once per model shown)."""
    hit = _SHAPES.get(id(proto))
    if hit is not None and hit[0] is proto:
        return hit[1]
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=False)
    except Exception:  # noqa: BLE001  (a model shape inference cannot read: show what it declares)
        inferred = proto
    g = inferred.graph
    out = {}
    for vi in [*g.input, *g.value_info, *g.output]:
        t = vi.type.tensor_type
        dims = [d.dim_param or (str(d.dim_value) if d.HasField("dim_value") else "?") for d in t.shape.dim]
        out[vi.name] = f"{onnx.TensorProto.DataType.Name(t.elem_type).lower()}[{','.join(dims)}]"
    for init in g.initializer:
        out[init.name] = f"{onnx.TensorProto.DataType.Name(init.data_type).lower()}{list(init.dims)} (weight)"
    _SHAPES[id(proto)] = (proto, out)
    while len(_SHAPES) > 8:
        _SHAPES.pop(next(iter(_SHAPES)))
    return out


def _attr(a: onnx.AttributeProto) -> str:
    v = onnx.helper.get_attribute_value(a)
    if isinstance(v, bytes):
        v = v.decode(errors="replace")
    text = str(v.dims if isinstance(v, onnx.TensorProto) else v)
    return text if len(text) < 80 else text[:77] + "..."


def node_details(model: Model, name: str, reports: list[PassReport] | None = None,
                 base: Model | None = None) -> str:
    """HTML for one node: op, attributes, inputs and outputs with shapes, folded nodes, pass notes."""
    nodes = node_names(model.proto.graph)
    n = nodes.get(name)
    if n is None:
        return f"<i>{html.escape(name)} is not a node of {html.escape(model.name)}</i>"
    shapes = _shapes(model.proto)
    diff = diff_graphs(base.proto, model.proto) if base is not None else None
    notes = node_notes(name, reports or [], diff)
    folded = [f for f, t in fold_qdq(model.proto.graph).items() if t == name]
    e = html.escape
    rows = [f"<b>{e(name)}</b> <code>{e(n.op_type)}</code>" + (f" ({e(n.domain)})" if n.domain else "")]
    if n.attribute:
        rows.append("attributes: " + "; ".join(f"{e(a.name)}={e(_attr(a))}" for a in n.attribute))
    rows.append("inputs: " + ", ".join(f"<code>{e(i)}</code> {e(shapes.get(i, '?'))}" for i in n.input if i))
    rows.append("outputs: " + ", ".join(f"<code>{e(o)}</code> {e(shapes.get(o, '?'))}" for o in n.output))
    if folded:
        rows.append("folded in: " + ", ".join(f"{e(f)} ({e(nodes[f].op_type)})" for f in folded[:8])
                    + (f" and {len(folded) - 8} more" if len(folded) > 8 else ""))
    rows.append("passes: " + ("; ".join(e(t) for t in notes) if notes else "no pass changed it"))
    return "<div class='wb-node-details' style='font-size:90%'>" + "<br>".join(rows) + "</div>"
