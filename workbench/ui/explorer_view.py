"""The panel's Model Explorer view: baseline and current build side by side, each node's pass
notes as attributes, the passes' statuses (and sensitivity or per-layer time, when computed) as
overlays. Model Explorer itself is the optional ``[viewer]`` extra (``workbench.viewer``)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from ..core.graph_diff import diff_graphs, node_names, node_notes, node_status
from ..errors import WorkbenchError

if TYPE_CHECKING:
    from .panel import Workbench

__all__ = ["show_in_explorer", "explorer_legend"]


def explorer_legend() -> str:
    """The overlay's colors, as the panel's own graph view draws them."""
    from ..viewer import STATUS_COLORS  # noqa: PLC0415

    return " ".join(f"<span style='background:{c};padding:0 4px;border-radius:3px'>{html.escape(s)}</span>"
                    for s, c in STATUS_COLORS.items())


def show_in_explorer(panel: Workbench) -> str:
    """Serve the baseline (and the current build beside it) in Model Explorer; returns the URL."""
    from ..viewer import ExplorerServer, ViewModel, heat_overlay, status_overlay  # noqa: PLC0415

    s, rec = panel.session, panel.current
    if s is None:
        raise WorkbenchError("no model loaded", "load a model first")
    if panel.explorer is None:
        panel.explorer = ExplorerServer()
    base = s.baseline.model
    models = [ViewModel("baseline", base.proto)]
    overlays: dict[int, list] = {}
    heat = [heat_overlay(panel.heat, "sensitivity")] if panel.heat else []
    if rec is None:
        overlays[0] = heat
    else:
        reports = rec.build.reports if rec.build else []
        diff = diff_graphs(base.proto, rec.model.proto)
        names = node_names(rec.model.proto.graph)
        notes = {n: t for n in names if (t := node_notes(n, reports, diff))}
        models.append(ViewModel(f"build{rec.index} {rec.name}", rec.model.proto, notes))
        overlays[1] = [status_overlay(node_status(rec.model.proto, reports, diff)), *heat]
    panel.graph_tab.w_explorer_msg.value = "starting Model Explorer (a few seconds the first time)"
    url = panel.explorer.show(models, overlays={k: v for k, v in overlays.items() if v}, compare=rec is not None)
    what = "baseline (left) and build (right), synced by node name; borders: red = only in the baseline, " \
        "green = only in the build" if rec is not None else "the baseline"
    panel.graph_tab.w_explorer_msg.value = (
        f"<div class='wb-explorer-msg'>Model Explorer on 127.0.0.1: {what}. Q/DQ are folded into "
        "their layer's group (expand it to see them); click a node for its attributes, shapes and the "
        f"passes' notes. Overlay <code>pass_status</code>: {explorer_legend()}. "
        f"<a href='{html.escape(url, quote=True)}' target='_blank' rel='noopener'>Open it in its own "
        "browser tab</a> for more room.</div>")
    panel.graph_tab.w_explorer.value = panel.explorer.iframe(height=780)
    return url
