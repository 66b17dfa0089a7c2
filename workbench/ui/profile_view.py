"""Pure figures and tables for per-layer profiles: time by op type (baseline beside build), the units
that got faster or slower, and the graph's time heat on one scale for both."""

from __future__ import annotations

import html
from typing import Any

import plotly.graph_objects as go

from ..core.profiling.compare import ProfileComparison
from ..core.profiling.layers import LayerProfile
from .figures import BAD, GOOD, NEUTRAL

__all__ = ["optype_figure", "profile_html", "heat_range"]

BUILD = "#1565c0"  # one colour for the build's bars: a new op type (QLinearConv) replaces an old one


def optype_figure(c: ProfileComparison | LayerProfile, top: int = 12) -> go.Figure:
    """Milliseconds per runtime op type: one bar per op type, baseline and build side by side."""
    fig = go.Figure()
    if isinstance(c, LayerProfile):
        ops = c.by_op_type()[:top]
        fig.add_trace(go.Bar(y=[o.op_type for o in ops], x=[o.ms for o in ops], orientation="h",
                             name=c.model, marker_color=NEUTRAL, text=[f"{o.share:.0%}" for o in ops],
                             hovertemplate="%{y}: %{x:.3f} ms<extra></extra>"))
        title = f"Where the time goes: {c.total_ms:.2f} ms of node time per run"
    else:
        ops = c.by_op_type[:top]
        names = [o.op_type for o in ops]
        fig.add_trace(go.Bar(y=names, x=[o.baseline_ms for o in ops], orientation="h", name="baseline",
                             marker_color=NEUTRAL, hovertemplate="%{y}: %{x:.3f} ms (baseline)<extra></extra>"))
        fig.add_trace(go.Bar(y=names, x=[o.build_ms for o in ops], orientation="h", name="build",
                             marker_color=BUILD, customdata=[o.delta_ms for o in ops],
                             hovertemplate="%{y}: %{x:.3f} ms (build, %{customdata:+.3f} ms)<extra></extra>"))
        title = f"Time per op type: baseline {c.baseline.total_ms:.2f} ms -> build {c.build.total_ms:.2f} ms"
    fig.update_layout(title=title, barmode="group", height=max(260, 26 * len(ops) + 90),
                      margin=dict(l=140, r=20, t=40, b=40), xaxis_title="median time per run (ms)",
                      yaxis=dict(autorange="reversed"), legend=dict(orientation="h", y=-0.2))
    return fig


def heat_range(*profiles: LayerProfile) -> tuple[float, float]:
    """One color scale for the graphs of several profiles (ms per model node)."""
    values = [v for p in profiles for v in p.per_model_node().values()]
    return (0.0, max(values, default=1.0) or 1.0)


def _pct(x: float) -> str:
    return "n/a" if x != x else f"{x:.0%}"


def _rows(deltas: list[Any]) -> str:
    out = []
    for d in deltas:
        color = GOOD if d.delta_ms < 0 else BAD
        ops = f"{d.baseline_ops or '-'} &rarr; {d.build_ops or '-'}"
        out.append(f"<tr><td title='{html.escape(', '.join(d.covers))}'>{html.escape(d.label[:48])}</td>"
                   f"<td>{html.escape(d.kind)}</td><td>{ops}</td><td>{d.baseline_ms:.3f}</td><td>{d.build_ms:.3f}</td>"
                   f"<td style='color:{color}'>{d.delta_ms:+.3f}</td></tr>")
    return "".join(out)


def _summary(p: LayerProfile, who: str) -> str:
    over = (f"; a profiled run took {p.profiled_run_ms:.3f} ms (the profiler's own cost is in the node times)"
            if p.profiled_run_ms == p.profiled_run_ms else "")
    return (f"{who}: p50 {p.measured_ms:.3f} ms measured unprofiled; the node medians add up to "
            f"{p.total_ms:.3f} ms: the profile explains {_pct(p.explained)} of it{over}")


def profile_html(c: ProfileComparison | LayerProfile, top: int = 8) -> str:
    """The headline, how it was measured, and the units that moved most (or the top nodes)."""
    if isinstance(c, LayerProfile):
        rows = "".join(f"<tr><td>{html.escape(n.name[:48])}</td><td>{html.escape(n.op_type)}</td>"
                       f"<td>{html.escape(n.kernel)}</td><td>{n.median_ms:.3f}</td>"
                       f"<td>{n.median_ms / (c.total_ms or 1):.1%}</td></tr>" for n in c.top(top))
        return (f"<div class='wb-profile'><b>{html.escape(_summary(c, c.model))}</b>"
                "<table style='font-size:90%'><tr><th>node</th><th>op</th><th>kernel</th><th>ms</th>"
                f"<th>share</th></tr>{rows}</table>{_method(c)}</div>")
    lo, hi = c.speedup_range
    head = (f"<b>build {c.speedup:.2f}x faster</b> [{lo:.2f}-{hi:.2f}] (p50, {c.rounds} interleaved rounds, "
            "unprofiled)" if c.speedup == c.speedup else "")
    table = ("<table style='font-size:90%'><tr><th>unit (model nodes)</th><th>kind</th><th>runtime ops</th>"
             "<th>baseline ms</th><th>build ms</th><th>change</th></tr>"
             f"{_rows(c.faster(top // 2) + c.slower(top - top // 2))}</table>")
    return (f"<div class='wb-profile'>{head}<div>{html.escape(_summary(c.baseline, 'baseline'))}</div>"
            f"<div>{html.escape(_summary(c.build, 'build'))}</div>{table}{_method(c.build)}</div>")


def _method(p: LayerProfile) -> str:
    isa = ", ".join(p.machine.get("isa") or []) or "?"
    notes = "".join(f"<div>note: {html.escape(n)}</div>" for n in p.notes)
    return (f"<div style='font-size:85%;color:#616161'>{html.escape(p.engine)} on {html.escape(p.device)}: "
            f"{html.escape(p.method)}; {html.escape(str(p.machine.get('cpu')))} ({html.escape(isa)}){notes}</div>")
