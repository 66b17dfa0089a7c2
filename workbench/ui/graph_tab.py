"""The Graph tab: baseline and build side by side (the workbench's own view), a clicked node's
details, Model Explorer (optional ``[viewer]`` extra) and Netron, each served on 127.0.0.1."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import ipywidgets as W
import plotly.graph_objects as go

from ..core.model import Model
from ..core.passes.base import PassReport
from .figures import replace_figure
from .graph import graph_figure, node_details
from .netron_view import NetronServer

__all__ = ["GraphTab"]

FIG_WIDTH = 440  # px: two graphs side by side in a notebook beside JupyterLab's file browser
_HINT = "<i style='color:#757575'>click a node for its attributes, shapes and what the passes did to it</i>"


class GraphTab:
    """Two linked figures (baseline left, build right) and the details of the node last clicked."""

    def __init__(self, guard: Callable[[Callable[[], Any]], Any], on_exclude: Callable[[str], Any],
                 on_explorer: Callable[[], Any], on_netron: Callable[[], Any]) -> None:
        self._guard, self._on_exclude = guard, on_exclude
        # made on the first show, while the tab is visible: a plotly widget first drawn in a hidden
        # tab takes a default 700 px width and keeps it (seen in the browser test)
        self.fig_base: go.FigureWidget | None = None
        self.fig_build: go.FigureWidget | None = None
        self.renders = 0  # how often the graphs were drawn (the tab draws only when shown)
        self.w_details = W.HTML(_HINT)
        self.w_exclude = W.Button(description="keep this node in float and rebuild", icon="undo",
                                  layout=W.Layout(width="auto", display="none", flex="0 0 auto"))
        self.w_exclude.on_click(lambda _: self._guard(lambda: self._on_exclude(self.selected)))
        self.selected = ""
        self._shown: tuple[Model, list[PassReport], Model | None] | None = None
        self._base: Model | None = None
        self._memo: dict[tuple[Any, ...], tuple[Any, Any, go.Figure]] = {}

        self.w_explorer_msg = W.HTML("<i>Model Explorer: baseline and build side by side, Q/DQ folded "
                                     "into their layers, the passes' changes as an overlay (served on "
                                     "127.0.0.1).</i>")
        self.w_explorer = W.HTML()
        self.w_explorer_btn = W.Button(description="Open in Model Explorer", icon="sitemap",
                                       layout=W.Layout(width="auto", flex="0 0 auto"))
        self.w_explorer_btn.on_click(lambda _: self._guard(on_explorer))
        self.w_netron = W.HTML("<i>Click 'Show in Netron' to open the current model in Netron "
                               "(served on 127.0.0.1).</i>")
        self.w_netron_btn = W.Button(description="Show in Netron")
        self.w_netron_btn.on_click(lambda _: self._guard(on_netron))
        self.netron = NetronServer()
        # fixed-width halves (a plotly widget in a flex box does not take the box's width: it drew
        # 700 px wide in a 440 px half), wrapping under each other on a narrow screen
        self._halves = tuple(W.Box(layout=W.Layout(width=f"{FIG_WIDTH + 20}px", overflow_y="auto",
                                                   overflow_x="hidden", max_height="700px"))
                             for _ in range(2))
        own = W.VBox([W.HBox([self.w_details, self.w_exclude], layout=W.Layout(align_items="center")),
                      W.HBox(list(self._halves), layout=W.Layout(flex_flow="row wrap"))])
        self.widget = W.Tab([own, W.VBox([W.HBox([self.w_explorer_btn, self.w_explorer_msg]), self.w_explorer]),
                             W.VBox([self.w_netron_btn, self.w_netron])])
        for i, t in enumerate(("Side by side", "Model Explorer", "Netron")):
            self.widget.set_title(i, t)

    def disable_explorer(self, reason: str) -> None:
        self.w_explorer_btn.disabled, self.w_explorer_btn.tooltip = True, reason
        self.w_explorer_msg.value = f"<div style='color:#757575'>Model Explorer is not available: {html.escape(reason)}</div>"

    def show(self, model: Model, reports: list[PassReport], base: Model | None, label: str,
             heat: dict[str, float] | None = None) -> None:
        """Draw ``model`` (a build of ``base``; ``base`` None: the baseline alone) and its baseline."""
        if base is None:
            left = self._figure(model, [], None, None, heat, None, "baseline")
            right = go.Figure(layout=dict(title=dict(text="build: none yet (toggle passes and build)",
                                                     font=dict(size=13)), height=200, width=FIG_WIDTH,
                                          xaxis=dict(visible=False), yaxis=dict(visible=False)))
        else:
            left = self._figure(base, [], None, model, heat, "baseline (black: removed by the build)", None)
            right = self._figure(model, reports, base, None, heat, None, label)
        if self.fig_base is None or self.fig_build is None:
            self.fig_base, self.fig_build = go.FigureWidget(left), go.FigureWidget(right)
            self._halves[0].children, self._halves[1].children = (self.fig_base,), (self.fig_build,)
        else:
            replace_figure(self.fig_base, left)
            replace_figure(self.fig_build, right)
        self.renders += 1
        self._shown, self._base = (model, reports, base), (base if base is not None else model)
        for fw, side in ((self.fig_base, "base"), (self.fig_build, "build")):
            for trace in fw.data[1:]:
                trace.on_click(lambda tr, pts, _s, side=side: self._clicked(tr, pts, side))

    def _figure(self, model: Model, reports: list[PassReport], base: Model | None, removed_of: Model | None,
                heat: dict[str, float] | None, title: str | None, label: str | None) -> go.Figure:
        """Laid out once per model, diff and heat: a configuration toggled again comes back at once."""
        key = (id(model), id(base), id(removed_of), tuple(sorted(heat.items())) if heat else None, title, label)
        hit = self._memo.get(key)
        if hit is not None and hit[0] is model and hit[1] is (base or removed_of):
            return hit[2]
        fig = graph_figure(model, reports, base, heat=heat, removed_of=removed_of, title=title, label=label)
        fig.update_layout(width=FIG_WIDTH)
        self._memo[key] = (model, base or removed_of, fig)  # the models keep their ids valid
        while len(self._memo) > 12:
            self._memo.pop(next(iter(self._memo)))
        return fig

    def _clicked(self, trace: Any, points: Any, side: str) -> None:
        if points.point_inds:
            self._guard(lambda: self.select(trace.customdata[points.point_inds[0]], side))

    def select(self, name: str, side: str = "build") -> str:
        """Show one node's details (``side``: the build's graph or the baseline's); returns the HTML."""
        if self._shown is None:
            return ""
        model, reports, base = self._shown
        if side == "base" or base is None:
            model, reports, base = self._base, [], None
        self.selected = name
        self.w_details.value = node_details(model, name, reports, base)
        quantized = any(name in r.quantized or name in r.converted for r in reports)
        self.w_exclude.layout.display = "" if quantized else "none"
        return self.w_details.value

    def close(self) -> None:
        self.netron.stop()
