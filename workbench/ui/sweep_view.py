"""Throughput sweep figures: p99 latency against throughput, one curve per batch, and the knee."""

from __future__ import annotations

import html
from typing import Any

import plotly.graph_objects as go

from ..core.evaluation.sweep import SweepPoint, SweepResult, knee
from .figures import CURRENT, NEUTRAL

__all__ = ["sweep_figure", "sweep_table_html"]

_COLORS = ("#1565c0", "#2e7d32", "#6a1b9a", "#ef6c00", "#00838f", "#ad1457", "#4e342e", "#37474f")


def _as_dict(result: SweepResult | dict[str, Any]) -> dict[str, Any]:
    return result.to_dict() if isinstance(result, SweepResult) else result


def _point(d: dict[str, Any]) -> SweepPoint:
    known = set(SweepPoint.__dataclass_fields__)
    return SweepPoint(**{k: v for k, v in d.items() if k in known})


def _by_batch(points: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for p in points:
        out.setdefault(p["batch"], []).append(p)
    return {b: sorted(ps, key=lambda p: p["concurrency"]) for b, ps in sorted(out.items())}


def _hover(p: dict[str, Any]) -> str:
    s = (f"batch {p['batch']} x concurrency {p['concurrency']}<br>{p['throughput']:.1f} items/s<br>"
         f"p50 {p['p50_ms']:.2f} / p90 {p['p90_ms']:.2f} / p99 {p['p99_ms']:.2f} ms")
    if p.get("speedup") is not None:
        lo, hi = p.get("speedup_range") or (p["speedup"], p["speedup"])
        s += f"<br>{p['speedup']:.2f}x the baseline [{lo:.2f}-{hi:.2f}]"
    return s


def sweep_figure(result: SweepResult | dict[str, Any], bound_ms: float | None = None,
                 title: str | None = None) -> go.Figure:
    """p99 latency (ms) against throughput (items/s): a line per batch along concurrency ("c=N"),
    the baseline dashed grey, the latency bound (``bound_ms``, default the sweep's) as a horizontal
    line and the knee as a star."""
    d = _as_dict(result)
    bound = d.get("latency_bound_ms") if bound_ms is None else bound_ms
    fig = go.Figure()
    for i, (b, ps) in enumerate(_by_batch(d.get("baseline_points") or []).items()):
        fig.add_trace(go.Scatter(
            x=[p["throughput"] for p in ps], y=[p["p99_ms"] for p in ps], mode="lines+markers",
            name=f"baseline, batch {b}", line=dict(color=NEUTRAL, dash="dash"), legendgroup="baseline",
            showlegend=i == 0, hovertext=[_hover(p) for p in ps], hoverinfo="text"))
    for i, (b, ps) in enumerate(_by_batch(d["points"]).items()):
        fig.add_trace(go.Scatter(
            x=[p["throughput"] for p in ps], y=[p["p99_ms"] for p in ps], mode="lines+markers+text",
            name=f"batch {b}", line=dict(color=_COLORS[i % len(_COLORS)]),
            text=[f"c={p['concurrency']}" for p in ps], textposition="top center",
            hovertext=[_hover(p) for p in ps], hoverinfo="text"))
    if bound is not None:
        fig.add_hline(y=bound, line_dash="dot", line_color="#c62828",
                      annotation_text=f"p99 bound {bound:g} ms", annotation_position="top left")
        k = knee([_point(p) for p in d["points"]], bound)
        if k is not None:
            kd = k.to_dict()
            fig.add_trace(go.Scatter(
                x=[k.throughput], y=[k.p99_ms], mode="markers", name="knee",
                marker=dict(symbol="star", size=18, color=CURRENT, line=dict(color="#333", width=1)),
                hovertext=["knee: " + _hover(kd)], hoverinfo="text"))
    label = d.get("model", "")
    fig.update_layout(
        title=title or f"Throughput against p99 latency: {label} on {d.get('engine', '?')} ({d.get('mode')})",
        xaxis_title="throughput (items/s)", yaxis_title="p99 latency per request (ms)", height=420,
        margin=dict(l=60, r=20, t=50, b=50), legend=dict(orientation="h", y=-0.2))
    return fig


def sweep_table_html(result: SweepResult | dict[str, Any], bound_ms: float | None = None) -> str:
    """A small HTML table of the sweep's points; the knee's row in bold."""
    d = _as_dict(result)
    bound = d.get("latency_bound_ms") if bound_ms is None else bound_ms
    k = knee([_point(p) for p in d["points"]], bound) if bound is not None else None
    base = d.get("baseline") is not None
    head = ["batch", "concurrency", "items/s", "p50 ms", "p90 ms", "p99 ms"] + (["speed-up [range]"] if base else [])
    rows = []
    for p in d["points"]:
        cells = [str(p["batch"]), str(p["concurrency"]), f"{p['throughput']:.1f}", f"{p['p50_ms']:.2f}",
                 f"{p['p90_ms']:.2f}", f"{p['p99_ms']:.2f}"]
        if base:
            lo, hi = p.get("speedup_range") or (None, None)
            cells.append(f"{p['speedup']:.2f}x [{lo:.2f}-{hi:.2f}]" if p.get("speedup") is not None else "-")
        is_knee = k is not None and (p["batch"], p["concurrency"]) == (k.batch, k.concurrency)
        style = " style='font-weight:bold'" if is_knee else ""
        rows.append(f"<tr class='wb-sweep-row'{style}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    caption = (f"knee under p99 &le; {bound:g} ms: batch {k.batch} x concurrency {k.concurrency}, "
               f"{k.throughput:.1f} items/s" if k is not None else
               f"no point has p99 &le; {bound:g} ms" if bound is not None else "no latency bound set")
    return ("<table class='wb-sweep'><caption>" + html.escape(str(d.get("model", ""))) + ": " + caption
            + "</caption><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + "".join(rows) + "</table>")
