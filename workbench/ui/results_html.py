"""HTML of the panel's results: the deltas table of one build and the history of all builds."""

from __future__ import annotations

import html
from typing import Any

from ..core.session import BuildRecord
from .figures import BAD, GOOD, METRIC_NAMES

__all__ = ["deltas_html", "history_html"]


def _short(label: str, width: int = 70) -> str:
    """A history-table label cut to ``width`` characters (the full recipe is its tooltip)."""
    return label if len(label) <= width else label[: width - 1] + "\u2026"


def _times(ratio: float, up: str, down: str) -> str:
    """``9.6x faster`` for a ratio of 0.104 (lower is ``up``), ``1.2x slower`` for 1.2."""
    if ratio <= 0 or ratio != ratio:
        return "n/a"
    return f"{1 / ratio:.1f}x {up}" if ratio < 1 else f"{ratio:.2f}x {down}" if ratio < 1.995 else \
        f"{ratio:.1f}x {down}"


def _delta_cells(key: str, v: dict[str, Any]) -> tuple[str, str, str]:
    """(metric name, current value with its unit, change against the baseline) as people read them."""
    name = METRIC_NAMES.get(key, key)
    cur, r = v["current"], v["ratio"]
    if key in ("top1", "top1_agreement"):
        return name, f"{100 * cur:.2f}%", f"{100 * v['delta']:+.2f} pt {name}"
    if key.endswith("bytes"):
        return name, f"{cur / 1e6:.2f} MB", f"{100 * (r - 1):+.0f}% {name}" if r is not None else "n/a"
    if key in ("p50_ms", "p99_ms"):
        return name, f"{cur:.3f} ms", _times(r, "faster", "slower") if r is not None else "n/a"
    if key == "throughput":
        return name, f"{cur:.1f} items/s", (_times(1 / r, "higher", "lower") if r else "n/a")
    return name, f"{cur:.4g}", f"{v['delta']:+.4g}"  # the user's metric, in its own units


def deltas_html(rec: BuildRecord, d: dict[str, dict[str, Any]]) -> str:
    a = rec.accuracy
    which = (("full labeled set" if a.full else f"subset of {a.samples}") if a else
             "quick subset: being measured" if not rec.error else "n/a")
    if rec.preview:
        which = "being measured on the real build"
    ci = f" (95% CI {a.top1_ci[0]:.4f}-{a.top1_ci[1]:.4f})" if a and a.top1_ci else ""
    cells = []
    for key, v in d.items():
        color = "#616161" if v["same"] else GOOD if v["better"] else BAD
        name, cur, change = _delta_cells(key, v)
        cells.append(f"<tr><td title='{html.escape(key)}'>{html.escape(name)}</td><td>{cur}</td>"
                     f"<td class='wb-delta' data-metric='{html.escape(key)}' "
                     f"style='color:{color};font-weight:bold'>{change}</td></tr>")
    err = f"<div style='color:{BAD}'>{html.escape(rec.error)}</div>" if rec.error else ""
    head = (f"<div class='wb-preview' style='color:#8d6e63'>{html.escape(rec.preview)}</div>"
            if rec.preview else "")
    return (f"<div class='wb-results'>{head}<b>{'#' + str(rec.index) if not rec.preview else 'first look:'} "
            f"<span title='{html.escape(rec.label, quote=True)}'>{html.escape(rec.name)}</span></b> on {rec.device}; "
            f"accuracy on the {which}{ci}; latency interleaved with the baseline in the same run."
            f"<table><tr><th>metric</th><th>now</th><th>against the baseline</th></tr>{''.join(cells)}</table>{err}</div>")


def history_html(rows: list[dict[str, Any]], current: int | None, metric: str | None = None) -> str:
    def f(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)
    mcol = (lambda r: f"<td>{f(r['metric'], '.4g')}</td>") if metric else (lambda r: "")
    body = "".join(
        f"<tr style='{'background:#fff3e0' if r['index'] == current else ''}'><td>{r['index']}</td>"
        f"<td title='{html.escape(r['label'], quote=True)}'>{html.escape(_short(r.get('name') or r['label']))}</td>"
        f"<td>{f(r['top1'], '.4f')}"
        f"{'' if r['top1_full'] else ' *'}</td>{mcol(r)}<td>{f(r['p50_ms'], '.3f')}</td><td>{f(r['speedup_p50'], '.2f')}</td>"
        f"<td>{r['size_bytes'] / 1e6:.2f}</td></tr>" for r in rows)
    mhead = f"<th>{html.escape(metric)}</th>" if metric else ""
    return ("<table class='wb-history'><tr><th>#</th><th>recipe</th><th>top-1</th>" + mhead + "<th>p50 ms</th>"
            f"<th>speed-up</th><th>MB</th></tr>{body}</table><small>* on the quick subset</small>")
