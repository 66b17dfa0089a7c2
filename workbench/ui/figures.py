"""Pure figure builders: results in, ``plotly.graph_objects.Figure`` out, nothing shown."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

__all__ = ["delta_bars", "latency_distribution", "pareto", "METRIC_NAMES"]

GOOD, BAD, NEUTRAL, CURRENT = "#2e7d32", "#c62828", "#9e9e9e", "#ff6f00"
METRIC_NAMES = _LABELS = {"p50_ms": "p50 latency", "p99_ms": "p99 latency", "throughput": "throughput",
           "top1": "top-1", "top1_agreement": "top-1 agreement", "size_bytes": "size",
           "peak_memory_bytes": "peak memory"}


def delta_bars(deltas: dict[str, dict[str, Any]], title: str = "Change against the baseline") -> go.Figure:
    """Relative change per metric (%); green where the change is an improvement."""
    names, values, colors, texts = [], [], [], []
    for key, d in deltas.items():
        if d.get("ratio") is None:
            continue
        if key in ("top1", "top1_agreement"):
            v = 100 * d["delta"]  # points, not percent of percent
            text = f"{v:+.2f} pt"
        else:
            v = 100 * (d["ratio"] - 1)
            text = f"{v:+.1f}%"
        names.append(_LABELS.get(key, key))
        values.append(v)
        texts.append(text)
        colors.append(NEUTRAL if d["same"] else GOOD if d["better"] else BAD)
    fig = go.Figure(go.Bar(x=values, y=names, orientation="h", marker_color=colors, text=texts,
                           textposition="auto", hovertemplate="%{y}: %{text}<extra></extra>"))
    fig.update_layout(title=title, height=300, margin=dict(l=130, r=20, t=40, b=30),
                      xaxis_title="change (% ; top-1 in points)", yaxis=dict(autorange="reversed"))
    fig.add_vline(x=0, line_color="#555")
    return fig


def latency_distribution(series: dict[str, list[float]], title: str = "Latency distribution") -> go.Figure:
    """Overlaid histograms of per-run latencies (ms), one per build."""
    fig = go.Figure()
    for name, samples in series.items():
        fig.add_trace(go.Histogram(x=samples, name=name, opacity=0.6, nbinsx=40))
    fig.update_layout(barmode="overlay", title=title, xaxis_title="ms per run", yaxis_title="runs",
                      height=300, margin=dict(l=50, r=20, t=40, b=40), legend=dict(orientation="h"))
    return fig


def pareto(rows: list[dict[str, Any]], current: int | None = None,
           accuracy_key: str = "top1", title: str = "Accuracy against latency",
           y_title: str | None = None) -> go.Figure:
    """Every build of the session: accuracy (``accuracy_key``: top1, top1_agreement or the user's
    metric) vs p50 latency, marker size by model size."""
    pts = [r for r in rows if r.get("p50_ms") is not None and r.get(accuracy_key) is not None]
    fig = go.Figure()
    if pts:
        max_size = max(r["size_bytes"] for r in pts) or 1
        front = _frontier(pts, accuracy_key)
        fig.add_trace(go.Scatter(
            x=[r["p50_ms"] for r in front], y=[r[accuracy_key] for r in front], mode="lines",
            line=dict(color="#90a4ae", dash="dot"), name="Pareto frontier", hoverinfo="skip"))
        fig.add_trace(go.Scatter(
            x=[r["p50_ms"] for r in pts], y=[r[accuracy_key] for r in pts], mode="markers",
            marker=dict(size=[10 + 30 * r["size_bytes"] / max_size for r in pts],
                        color=[CURRENT if r["index"] == current else "#1e88e5" for r in pts],
                        line=dict(width=[3 if r["index"] == current else 0 for r in pts], color="black")),
            text=[f"#{r['index']} {r.get('name') or r['label']}<br>{r['size_bytes'] / 1e6:.2f} MB" for r in pts],
            hovertemplate="%{text}<br>p50 %{x:.2f} ms<br>" + METRIC_NAMES.get(accuracy_key, accuracy_key)
            + " %{y:.4f}<extra></extra>", name="builds"))
    yaxis: dict[str, Any] = {}
    if pts:  # scaled to the data (plotly's default pads a 0.96-0.96 range out to 0-1.5)
        ys = [r[accuracy_key] for r in pts]
        lo, hi = min(ys), max(ys)
        pad = max((hi - lo) * 0.15, abs(hi) * 0.002, 1e-4)
        yaxis = {"range": [lo - pad, hi + pad]}
    fig.update_layout(title=title, xaxis_title="p50 latency (ms)",
                      yaxis_title=y_title or METRIC_NAMES.get(accuracy_key, accuracy_key), height=320,
                      margin=dict(l=60, r=20, t=40, b=40), showlegend=False, yaxis=yaxis)
    return fig


def _frontier(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Builds not beaten on both latency (lower) and accuracy (higher), by latency."""
    out, best = [], -float("inf")
    for r in sorted(rows, key=lambda r: (r["p50_ms"], -r[key])):
        if r[key] > best:
            out.append(r)
            best = r[key]
    return out


def replace_figure(fw: go.FigureWidget, fig: go.Figure) -> None:
    """Show ``fig`` in the widget ``fw`` (its traces, and its layout where it differs)."""
    # Assigning a layout makes plotly validate it again, property by property (most of a
    # re-render's time, measured): skip it when the new layout is the same as the shown one.
    same_layout = fw.layout.to_plotly_json() == fig.layout.to_plotly_json()
    with fw.batch_update():
        fw.data = []
        fw.add_traces(list(fig.data))
        if not same_layout:
            fw.layout = fig.layout
