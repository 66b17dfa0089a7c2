"""The Profile and Throughput tabs: where the time goes (the build beside its baseline, by op type,
by node and as heat on both graphs on one scale) and what throughput it sustains at what latency."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ipywidgets as W
import plotly.graph_objects as go

from ..errors import UsageError
from .profile_view import optype_figure, profile_html

__all__ = ["ProfileTab", "parse_list"]


def parse_list(text: str, what: str) -> tuple[int, ...]:
    """``"1,8,32"`` -> (1, 8, 32); a clear error for anything else."""
    try:
        values = tuple(int(x) for x in text.replace(" ", "").split(",") if x)
    except ValueError as e:
        raise UsageError(f"{what}: {text!r} is not a comma-separated list of integers", "e.g. 1,8,32") from e
    if not values or min(values) < 1:
        raise UsageError(f"{what}: give integers >= 1, e.g. 1,8,32")
    return values


class ProfileTab:
    """Buttons that profile the current build and sweep its throughput; the views they fill."""

    def __init__(self, profile: Callable[[], Any], sweep: Callable[[], Any],
                 guard: Callable[[Callable[[], Any]], Any]) -> None:
        self.w_runs = W.BoundedIntText(value=20, min=1, max=1000, description="runs",
                                       layout=W.Layout(width="140px"))
        self.w_profile = W.Button(description="Profile build vs baseline", icon="clock-o",
                                  tooltip="per-layer times of the current build and the baseline (ONNX Runtime's "
                                          "profiler or OpenVINO's counters); latency measured apart",
                                  layout=W.Layout(width="auto"))
        self.w_profile.on_click(lambda _: guard(profile))
        self.w_summary = W.HTML("<i style='font-size:90%'>Profile the current build to see where its time "
                                "goes, op type by op type and node by node, beside the baseline.</i>")
        self.fig_ops = go.FigureWidget()
        self.fig_heat_base = go.FigureWidget()
        self.fig_heat_build = go.FigureWidget()
        self.profile_box = W.VBox([W.HBox([self.w_profile, self.w_runs]), self.w_summary, self.fig_ops,
                                   self.fig_heat_base, self.fig_heat_build])

        self.w_batches = W.Text(value="1,8,32", description="batches", layout=W.Layout(width="200px"))
        self.w_conc = W.Text(value="1,2,4", description="concurrency", layout=W.Layout(width="200px"))
        self.w_bound = W.FloatText(value=0.0, description="p99 bound ms", style={"description_width": "initial"},
                                   layout=W.Layout(width="170px"), tooltip="0: no bound (the peak is shown)")
        self.w_duration = W.FloatText(value=0.5, description="s/point", layout=W.Layout(width="140px"))
        self.w_sweep = W.Button(description="Measure throughput curve", icon="line-chart",
                                tooltip="batch x concurrency, interleaved with the baseline; the knee under the bound",
                                layout=W.Layout(width="auto"))
        self.w_sweep.on_click(lambda _: guard(sweep))
        self.w_sweep_out = W.HTML("<i style='font-size:90%'>Throughput against p99 latency for each batch size "
                                  "and number of concurrent requests; the knee is the highest throughput whose "
                                  "p99 stays under the bound.</i>")
        self.fig_sweep = go.FigureWidget()
        self.sweep_box = W.VBox([W.HBox([self.w_batches, self.w_conc, self.w_bound, self.w_duration]),
                                 self.w_sweep, self.fig_sweep, self.w_sweep_out])
        self.widget = W.Tab([self.profile_box, self.sweep_box])
        self.widget.set_title(0, "Profile")
        self.widget.set_title(1, "Throughput")

    def sweep_args(self) -> dict[str, Any]:
        bound = float(self.w_bound.value or 0)
        if self.w_duration.value <= 0:
            raise UsageError("seconds per point must be > 0")
        return {"batches": parse_list(self.w_batches.value, "batches"),
                "concurrency": parse_list(self.w_conc.value, "concurrency"),
                "latency_bound_ms": bound if bound > 0 else None, "duration_s": float(self.w_duration.value)}

    @staticmethod
    def _set(fw: go.FigureWidget, fig: go.Figure) -> None:
        with fw.batch_update():
            fw.data = []
            fw.add_traces(list(fig.data))
            fw.layout = fig.layout

    def show_profile(self, c: Any, heat_base: go.Figure | None, heat_build: go.Figure | None) -> None:
        self.w_summary.value = profile_html(c)
        self._set(self.fig_ops, optype_figure(c))
        for fw, fig in ((self.fig_heat_base, heat_base), (self.fig_heat_build, heat_build)):
            self._set(fw, fig if fig is not None else go.Figure())

    def show_sweep(self, result: Any, title: str | None = None) -> None:
        from .sweep_view import sweep_figure, sweep_table_html  # noqa: PLC0415

        self._set(self.fig_sweep, sweep_figure(result, title=title))
        self.w_sweep_out.value = f"<div class='wb-sweep'>{sweep_table_html(result)}</div>"
