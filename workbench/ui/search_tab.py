"""The panel's "Sensitivity" and "Search" tabs: thin widgets over ``core.sensitivity`` and
``core.search``. The panel owns the session; these tabs read its model, device and cache.

Every control has a method twin (``Workbench.search``, ``Workbench.use_search_best``,
``Workbench.show_sensitivity``), so tests and notebooks drive the same code as the buttons.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as W
import plotly.graph_objects as go

from .figures import BAD, GOOD

if TYPE_CHECKING:  # the panel imports this module; no cycle at run time
    from ..core.search import SearchResult

__all__ = ["SearchTab", "search_figure", "search_table_html"]


def search_figure(res: SearchResult) -> go.Figure:
    """Every trial as accuracy drop against cost, the Pareto frontier joined, the best starred."""
    ok = [t for t in res.trials if t.error is None and t.cost is not None and t.duplicate_of is None]
    front = [t for t in ok if t.number in res.pareto]
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=[t.drop_points for t in ok], y=[t.cost for t in ok], mode="markers", name="trials",
        marker={"color": [GOOD if t.feasible else BAD for t in ok], "size": 9},
        text=[f"#{t.number} {t.label}" for t in ok], hoverinfo="text+x+y"))
    fig.add_trace(go.Scatter(x=[t.drop_points for t in front], y=[t.cost for t in front],
                             mode="lines", name="Pareto frontier", line={"dash": "dot", "color": "#616161"}))
    best = res.best_trial
    if best is not None:
        fig.add_trace(go.Scatter(x=[best.drop_points], y=[best.cost], mode="markers", name="best",
                                 marker={"symbol": "star", "size": 18, "color": "#ffb300"},
                                 text=[best.label], hoverinfo="text"))
    fig.add_vline(x=res.budget_points, line_dash="dash", line_color=BAD)
    fig.update_layout(title=f"Search: {res.drop_label} (screening subset) vs {res.objective} cost "
                            "(ratio to the baseline, lower is better)",
                      xaxis_title=res.drop_label, yaxis_title=f"{res.objective} / baseline",
                      height=360, margin={"t": 50, "l": 50, "r": 10, "b": 40})
    return fig


def search_table_html(res: SearchResult) -> str:
    def f(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    fmt = "+.4g" if res.score == "metric" else "+.2f"
    rows = []
    for t in res.trials:
        style = "background:#fff3e0" if t.number == res.best else ""
        final = t.final or {}
        status = (t.error or "")[:80] or ("same as #" + str(t.duplicate_of) if t.duplicate_of is not None else
                                          "within budget" if t.feasible else "over budget")
        rows.append(
            f"<tr style='{style}'><td>{t.number}</td><td title='{html.escape(t.label, quote=True)}'>"
            f"{html.escape(t.label[:70])}</td><td>{f(t.drop_points, fmt)}</td>"
            f"<td>{f(final.get('drop_points'), fmt)}</td><td>{f(t.cost, '.3f')}</td>"
            f"<td>{'*' if t.number in res.pareto else ''}</td><td>{html.escape(status)}</td></tr>")
    best = res.best_trial
    unit = html.escape(res.drop_label)
    head = (f"<b>best within {res.budget_points:g} ({unit}):</b> <code>{html.escape(best.label)}</code> "
            f"({res.objective} x{best.final.get('cost', best.cost):.3f} of the baseline; "
            f"{html.escape(res.score_name)} drop {format(best.final['drop_points'], fmt)} on "
            f"{best.final['samples']:,} samples)"
            if best is not None and best.final else "<b>no build stayed within the budget</b>")
    what = (f"baseline {html.escape(res.score_name)} minus the build's, in its own units" if res.score == "metric"
            else "points of top-1 agreement with the baseline lost" if res.score == "agreement"
            else "points of top-1 lost against the baseline")
    return (f"<div class='wb-search'>{head}; {len(res.trials)} trials in {res.wall_s:.0f} s. "
            f"Drops ({unit}) are {what} (positive = worse).<table class='wb-search-table'>"
            "<tr><th>#</th><th>recipe</th><th>drop (subset)</th><th>drop (full set)</th><th>cost</th>"
            f"<th>Pareto</th><th>status</th></tr>{''.join(rows)}</table></div>")


class SearchTab:
    """Controls and results of a search, plus the sensitivity heat toggle."""

    def __init__(self, run_search: Callable[..., Any], use_best: Callable[[], Any],
                 show_sensitivity: Callable[[], Any], guard: Callable[[Callable[[], Any]], Any]) -> None:
        style = {"description_width": "initial"}
        self.w_budget = W.FloatText(value=0.5, description="budget (top-1 points)", style=style,
                                    layout=W.Layout(width="200px"))
        self.w_objective = W.Dropdown(options=["latency", "throughput", "size"], value="latency",
                                      description="objective", style=style, layout=W.Layout(width="200px"))
        self.w_trials = W.IntText(value=12, description="trials", style=style, layout=W.Layout(width="130px"))
        self.w_seed = W.IntText(value=0, description="seed", style=style, layout=W.Layout(width="120px"))
        self.w_workers = W.IntText(value=2, description="workers", style=style, layout=W.Layout(width="130px"))
        self.w_run = W.Button(description="Run search", button_style="primary", icon="search")
        self.w_use = W.Button(description="Use the best build", disabled=True, icon="check")
        self.w_progress = W.IntProgress(value=0, min=0, max=1, layout=W.Layout(width="300px"))
        self.w_stage = W.HTML("")
        self.w_table = W.HTML("")
        self.fig = go.FigureWidget(layout={"height": 360, "title": "Search: no run yet"})
        self.w_heat = W.Button(description="Show int8 sensitivity on the graph", icon="fire")
        self.w_heat_msg = W.HTML(
            "Leave-one-out ranking of the current recipe's int8/fp16 layers, drawn as heat on the "
            "Graph tab; click a node there for its details and to keep it in float.")
        self.w_ranking = W.HTML("")
        self.w_run.on_click(lambda _: self._in_background(guard, run_search))
        self.w_use.on_click(lambda _: guard(use_best))
        self.w_heat.on_click(lambda _: guard(show_sensitivity))
        search_box = W.VBox([
            W.HTML("Optuna explores int8 calibration and exclusions, channel-pruning ratios, fp16 (GPUs) "
                   "and fusion; each trial is built through the cache, screened on a subset, its latency "
                   "measured interleaved with the baseline; finalists are re-scored on the full set."),
            W.HBox([self.w_budget, self.w_objective, self.w_trials, self.w_seed, self.w_workers]),
            W.HBox([self.w_run, self.w_use, self.w_progress, self.w_stage]), self.w_table, self.fig])
        self.sensitivity_box = W.VBox([self.w_heat, self.w_heat_msg, self.w_ranking])
        self.search_box = search_box
        self.widget = W.Tab([self.sensitivity_box, search_box])
        self.widget.set_title(0, "Sensitivity")
        self.widget.set_title(1, "Search")
        self.thread: threading.Thread | None = None

    def show_ranking(self, heat: dict[str, float], top: int = 8) -> None:
        """The most sensitive layers first (their score: the accuracy lost by quantizing only it)."""
        rows = sorted(heat.items(), key=lambda kv: -kv[1])[:top]
        self.w_ranking.value = ("<table class='wb-ranking'><tr><th>layer</th><th>score</th></tr>"
                                + "".join(f"<tr><td><code>{html.escape(n)}</code></td><td>{v:.4g}</td></tr>"
                                          for n, v in rows)
                                + f"</table><i>{len(heat)} layers ranked; the Graph tab shows them all</i>")

    def label_budget(self, unit: str) -> None:
        """Name the budget's units: top-1 points, agreement points, or the metric's name."""
        self.w_budget.description = f"budget ({unit})"

    def options(self) -> dict[str, Any]:
        return {"budget_points": self.w_budget.value, "objective": self.w_objective.value,
                "trials": self.w_trials.value, "seed": self.w_seed.value, "workers": self.w_workers.value}

    def progress(self, stage: str, done: int, total: int) -> None:
        self.w_progress.max, self.w_progress.value = max(total, 1), min(done, max(total, 1))
        self.w_stage.value = f"{html.escape(stage)} {done}/{total}"

    def show(self, res: SearchResult) -> None:
        self.label_budget(res.score_name if res.score == "metric" else
                          "top-1 points" if res.score == "top1" else "agreement points")
        self.w_table.value = search_table_html(res)
        fig = search_figure(res)
        with self.fig.batch_update():
            self.fig.data = []
            self.fig.add_traces(list(fig.data))
            self.fig.layout = fig.layout
        self.w_use.disabled = res.best is None
        self.w_stage.value = "done"

    def _in_background(self, guard: Callable[[Callable[[], Any]], Any], fn: Callable[..., Any]) -> None:
        """Searches take minutes: run off the kernel's main thread so the panel stays live."""
        if self.thread is not None and self.thread.is_alive():
            self.w_stage.value = "a search is already running"
            return
        self.w_run.disabled = True

        def work() -> None:
            try:
                guard(lambda: fn(**self.options()))
            finally:
                self.w_run.disabled = False

        self.thread = threading.Thread(target=work, daemon=True, name="workbench-search")
        self.thread.start()
