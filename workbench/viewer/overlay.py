"""Model Explorer node-data overlays: what each pass did to a node, and numeric heat maps
(sensitivity, per-layer time).

The JSON is Model Explorer's ``ModelNodeData`` form, a dict keyed by graph id (here the view
file's basename, see :mod:`workbench.viewer.explorer`)::

    {"build.onnx": {"results": {"conv1": {"value": 5, "bgColor": "#ffa726"}},
                    "thresholds": [...], "gradient": [...]}}

Plain data only; Model Explorer is not imported.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.graph_diff import STATUSES

__all__ = ["Overlay", "status_overlay", "heat_overlay", "STATUS_COLORS", "STATUS_CODES",
           "status_legend"]

STATUS_COLORS: dict[str, str] = {
    "unchanged": "#b0bec5", "changed": "#42a5f5", "added": "#ab47bc", "fused": "#26a69a",
    "quantized": "#ffa726", "fp16": "#ec407a", "pruned": "#8d6e63", "excluded": "#e53935",
}
STATUS_CODES: dict[str, int] = {s: i for i, s in enumerate(STATUSES)}


def _text_color(bg: str) -> str:
    """Black or white, whichever reads better on ``bg`` (#rrggbb)."""
    r, g, b = (int(bg[i:i + 2], 16) for i in (1, 3, 5))
    return "#000000" if 0.299 * r + 0.587 * g + 0.114 * b > 150 else "#ffffff"


def status_legend() -> str:
    """``0 unchanged #b0bec5, 1 changed #42a5f5, ...``: what the status codes mean."""
    return ", ".join(f"{STATUS_CODES[s]} {s} {STATUS_COLORS[s]}" for s in STATUSES)


@dataclass
class Overlay:
    """One node-data overlay for one graph: a column in Model Explorer's side panel."""

    name: str  # the overlay's file stem, shown as the column name
    results: dict[str, dict[str, Any]]  # node id (or output tensor name) -> {"value", "bgColor"?}
    gradient: list[dict[str, Any]] = field(default_factory=list)
    thresholds: list[dict[str, Any]] = field(default_factory=list)
    legend: str = ""

    def to_json(self, graph_id: str) -> dict[str, Any]:
        """The ``ModelNodeData`` dict, keyed by ``graph_id``."""
        data: dict[str, Any] = {"results": self.results}
        if self.gradient:
            data["gradient"] = self.gradient
        if self.thresholds:
            data["thresholds"] = self.thresholds
        return {graph_id: data}

    def write(self, path: str | Path, graph_id: str) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_json(graph_id)), encoding="utf-8")
        return path


def status_overlay(status: Mapping[str, str], name: str = "pass_status") -> Overlay:
    """Node name -> status (:func:`workbench.core.graph_diff.node_status`) as a numeric code
    (:data:`STATUS_CODES`) coloured by :data:`STATUS_COLORS`."""
    bad = sorted(set(status.values()) - set(STATUS_CODES))
    if bad:
        raise ValueError(f"unknown node status {bad}; known: {', '.join(STATUSES)}")
    results = {n: {"value": STATUS_CODES[s], "bgColor": STATUS_COLORS[s],
                   "textColor": _text_color(STATUS_COLORS[s])} for n, s in status.items()}
    thresholds = [{"value": STATUS_CODES[s], "bgColor": STATUS_COLORS[s]} for s in STATUSES]
    return Overlay(name, results, thresholds=thresholds, legend=status_legend())


def heat_overlay(values: Mapping[str, float], name: str, low: str = "#ffffff",
                 high: str = "#d93025") -> Overlay:
    """Any node name -> number (sensitivity, per-layer time ms) as a ``low``..``high`` gradient
    from the smallest to the largest value; NaN and infinite values are left out."""
    results = {n: {"value": float(v)} for n, v in values.items()
               if v is not None and math.isfinite(float(v))}
    vals = [r["value"] for r in results.values()]
    legend = f"{name}: {min(vals):.4g} ({low}) .. {max(vals):.4g} ({high})" if vals else name
    return Overlay(name, results, gradient=[{"stop": 0, "bgColor": low}, {"stop": 1, "bgColor": high}],
                   legend=legend)
