"""The runtime toggle's companion: the current build on every CPU runtime, measured side by side."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import ipywidgets as W

from ..core.evaluation.compare import RuntimeComparison

__all__ = ["RuntimesBox", "runtimes_html"]


def runtimes_html(c: RuntimeComparison, title: str | None = None) -> str:
    """A table: one row per runtime, the fastest in bold, with how it was measured (``title``
    names the build; default: the model's name)."""
    fastest = c.fastest
    rows = []
    for r in c.rows:
        lat = r.latency
        lo, hi = r.speedup_range
        prec = r.settings.get("precision") or "-"
        style = "font-weight:bold;background:#e8f5e9" if r is fastest else ""
        rows.append(f"<tr style='{style}'><td>{html.escape(r.label)}</td><td>{lat.p50_ms:.3f}</td>"
                    f"<td>{lat.p99_ms:.3f}</td><td>{lat.throughput:.0f}</td>"
                    f"<td>{r.speedup:.2f}x [{lo:.2f}-{hi:.2f}]</td><td>{html.escape(str(prec))}</td>"
                    f"<td>{r.max_abs:.2g}</td></tr>")
    head = ("<tr><th>runtime</th><th>p50 ms</th><th>p99 ms</th><th>items/s</th>"
            f"<th>speed-up vs {html.escape(c.rows[0].label)}</th><th>precision hint</th>"
            "<th>max |output diff| vs first</th></tr>")
    isa = ", ".join(c.machine.get("isa") or []) or "?"
    return (f"<div class='wb-runtimes'><b>fastest: {html.escape(fastest.label)}</b> "
            f"({fastest.speedup:.2f}x)<table style='font-size:90%'>{head}{''.join(rows)}</table>"
            f"<div style='font-size:85%;color:#616161'>{html.escape(title or c.model)}: {html.escape(c.method)}; "
            f"{html.escape(str(c.machine.get('cpu')))} ({html.escape(isa)})</div></div>")


class RuntimesBox:
    """A button that measures the current build on ONNX Runtime and OpenVINO, and the table."""

    def __init__(self, compare: Callable[[], Any], guard: Callable[[Callable[[], Any]], Any]) -> None:
        self.w_button = W.Button(description="Compare runtimes", icon="balance-scale",
                                 tooltip="the current build on every CPU runtime here, interleaved in one run",
                                 layout=W.Layout(width="auto"))
        self.w_out = W.HTML("<i style='font-size:90%'>Which CPU runtime runs the current build fastest: "
                            "ONNX Runtime and OpenVINO (f32, and bf16 where the CPU has it), measured "
                            "side by side.</i>")
        self.w_button.on_click(lambda _: guard(compare))
        self.widget = W.VBox([self.w_button, self.w_out])

    def show(self, c: RuntimeComparison, title: str | None = None) -> None:
        self.w_out.value = runtimes_html(c, title)
