"""The panel's data row: evaluation and calibration data, and a line saying what is loaded.

Pure HTML builders (``data_html``, ``conversion_html``, ``build_warnings_html``) plus a small
widget box; the panel wires its Load-data button to ``Session.set_data``.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import ipywidgets as W

from ..core.model import Model
from ..core.session import BuildRecord, Session
from .figures import BAD

__all__ = ["DataBox", "data_html", "conversion_html", "build_warnings_html"]

_WARN = "#e65100"


def data_html(s: Session) -> str:
    """Source, samples, labels, preprocessing and calibration, stated plainly."""
    d = s.data_summary()
    n = d["samples"]
    if d["source"] is None:
        line = ("<b>Data</b>: none given: accuracy is fidelity to the baseline on random inputs "
                "(give evaluation data for accuracy)")
    else:
        labels = "labeled" if d["labeled"] else "unlabeled"
        line = f"<b>Data</b>: {html.escape(d['source'])}, {n} samples, {labels}"
        if not d["labeled"]:
            line += (f"; <span class='wb-nolabels'>no labels: accuracy is fidelity to the baseline on "
                     f"{min(n, s.quick_samples)} samples</span>")
    if d["metric"]:
        line += f"; metric <code>{html.escape(d['metric'])}</code> (higher is better)"
    if d["preprocessing"]:
        line += f"<br>preprocessing: {html.escape(d['preprocessing'])}"
    cal = d["calibration"] or "none (int8 needs calibration data, or calib='random')"
    color = f" style='color:{_WARN}'" if s.calib == "random" else ""
    line += f"<br><span class='wb-calib'{color}>calibration: {html.escape(cal)}</span>"
    if d["calibration_note"]:
        line += f" <i>({html.escape(d['calibration_note'])})</i>"
    return f"<div class='wb-data'>{line}</div>"


def conversion_html(m: Model) -> str:
    """For a model converted from PyTorch: exporter and fidelity of the conversion."""
    c = m.metadata_json("workbench.conversion")
    if not isinstance(c, dict):
        return ""
    fid = c.get("fidelity") if isinstance(c.get("fidelity"), dict) else c
    parts = [f"converted from PyTorch by {html.escape(str(c.get('exporter', '?')))}"]
    if c.get("opset") is not None:
        parts.append(f"opset {html.escape(str(c['opset']))}")
    if fid.get("max_abs") is not None:
        parts.append(f"max abs error {float(fid['max_abs']):.3g}")
    if fid.get("cosine") is not None:
        parts.append(f"cosine {float(fid['cosine']):.6f}")
    return f"<br><span class='wb-conversion'>{', '.join(parts)}</span>"


def build_warnings_html(rec: BuildRecord) -> str:
    """Warnings a build carries (random calibration: its accuracy says nothing)."""
    b = rec.build
    if b is None:
        return ""
    out = []
    if (b.calibration or {}).get("random"):
        out.append(f"<div class='wb-warning' style='color:{_WARN};font-weight:bold'>warning: "
                   f"{html.escape(b.calibration['warning'])}</div>")  # type: ignore[index]
    out += [f"<div class='wb-note' style='color:#616161'>{html.escape(n)}</div>"
            for n in b.notes if "random inputs" not in n]
    return "".join(out)


class DataBox:
    """Two path boxes (evaluation data; calibration data or ``random``) and a Load-data button."""

    def __init__(self, on_load: Callable[[str, str], None], guard: Callable[[Any], Any]) -> None:
        self.w_data = W.Text(description="eval data", placeholder=".npz, image folder or sample:NAME",
                             layout=W.Layout(width="360px"))
        self.w_calib = W.Text(description="calib data", placeholder="(default) or random or a path",
                              layout=W.Layout(width="320px"))
        self.w_load = W.Button(description="Load data", icon="database")
        self.w_info = W.HTML()
        self.w_load.on_click(lambda _: guard(lambda: on_load(self.w_data.value, self.w_calib.value)))
        self.widget = W.VBox([W.HBox([self.w_data, self.w_calib, self.w_load]), self.w_info])

    def show(self, s: Session) -> None:
        self.w_info.value = data_html(s)

    def error(self, text: str) -> None:
        self.w_info.value = f"<div style='color:{BAD}'>{html.escape(text)}</div>"
