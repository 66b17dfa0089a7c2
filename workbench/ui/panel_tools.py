"""The panel's analyses beyond one build: runtimes side by side, per-layer profiles, throughput
curves, sensitivity and search. A mixin of :class:`workbench.ui.panel.Workbench`, kept apart so
each file stays small; every method is a button's twin.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.engines.registry import engine_for_device
from ..core.passes.recipe import Recipe
from ..errors import WorkbenchError
from .graph import graph_figure

if TYPE_CHECKING:
    import ipywidgets as W

    from ..core.session import BuildRecord, Session
    from .graph_tab import GraphTab
    from .profile_tab import ProfileTab
    from .runtimes_box import RuntimesBox
    from .search_tab import SearchTab

__all__ = ["PanelTools"]


class PanelTools:
    """Runtimes, profile, sweep, sensitivity and search for the panel's current build."""

    session: Session | None
    current: BuildRecord | None
    heat: dict[str, float] | None
    w_stage: W.Label
    runtimes_box: RuntimesBox
    profile_tab: ProfileTab
    search_tab: SearchTab
    graph_tab: GraphTab
    tabs: W.Tab
    TAB_GRAPH: int
    _data: Any
    _calib: Any
    _metric: dict[str, Any]
    model_ref: Any
    search_result: Any
    _building: bool
    w_passes: dict[str, Any]
    _progress: Any
    device: str
    recipe: Recipe

    def _render(self) -> None: ...
    def _label_budget(self, metric_name: str | None = None) -> None: ...
    def build(self) -> BuildRecord: ...
    def enable(self, name: str, **options: Any) -> None: ...
    def disable(self, name: str) -> None: ...
    def select_device(self, engine: str) -> None: ...

    def compare_runtimes(self, rounds: int = 4, budget_s: float = 0.25) -> Any:
        """The current build (or the baseline) on every CPU runtime here, side by side."""
        from ..core.evaluation.compare import compare_runtimes, cpu_targets  # noqa: PLC0415

        if self.session is None:
            raise WorkbenchError("no model loaded", "load a model first")
        rec = self.current or self.session.baseline
        self.w_stage.value = "comparing runtimes"
        c = compare_runtimes(rec.model, cpu_targets(), batch=self.session.batch, threads=self.session.threads,
                             rounds=rounds, budget_s=budget_s, progress=self._progress)
        self.runtimes_box.show(c, "baseline" if rec is self.session.baseline else f"build #{rec.index}")
        self.w_stage.value = f"fastest runtime: {c.fastest.label}"
        return c

    def profile(self, runs: int | None = None) -> Any:
        """Per-layer profile of the current build beside the baseline's (the baseline alone before a
        build) on the build's runtime; fills the Profile tab and both graphs' time heat, one scale."""
        from ..core.profiling.compare import profile_pair  # noqa: PLC0415
        from ..core.profiling.run import profile  # noqa: PLC0415
        from .profile_view import heat_range  # noqa: PLC0415

        if self.session is None:
            raise WorkbenchError("no model loaded", "load a model first")
        s, rec = self.session, self.current
        opts = {"batch": s.batch, "threads": s.threads, "runs": runs or self.profile_tab.w_runs.value,
                "progress": self._progress}
        self.w_stage.value = "profiling"
        heat = {"heat_label": "time (ms)", "heat_unit": " ms"}
        if rec is None:
            p = profile(s.baseline.model, s.baseline.device, **opts)
            self.profile_tab.show_profile(p, graph_figure(
                s.baseline.model, heat=p.per_model_node(), heat_range=heat_range(p), title="time per node",
                **heat), None)
            return p
        c = profile_pair(s.baseline.model, rec.model, rec.device, baseline_device=s.baseline.device, **opts)
        rng = heat_range(c.baseline, c.build)
        self.profile_tab.show_profile(
            c, graph_figure(s.baseline.model, heat=c.baseline.per_model_node(), heat_range=rng,
                            title="baseline: time per node", **heat),
            graph_figure(rec.model, rec.build.reports if rec.build else [], s.baseline.model,
                         heat=c.build.per_model_node(), heat_range=rng,
                         title=f"build #{rec.index} {rec.name}: time per node",
                         **heat))
        self.w_stage.value = f"profiled: build {c.speedup:.2f}x the baseline"
        return c

    def sweep(self, **options: Any) -> Any:
        """Throughput against latency of the current build (interleaved with the baseline's) for
        the tab's batch sizes and concurrencies; ``options`` override ``core.evaluation.sweep.sweep``'s."""
        from ..core.evaluation.sweep import sweep  # noqa: PLC0415

        if self.session is None:
            raise WorkbenchError("no model loaded", "load a model first")
        s = self.session
        rec = self.current or s.baseline
        args = {**self.profile_tab.sweep_args(), "threads": s.threads, "progress": self._progress, **options}
        if rec is not s.baseline:
            args.setdefault("baseline", s.baseline.model)
        self.w_stage.value = "measuring the throughput curve"
        r = sweep(rec.model, rec.device, **args)
        who = "baseline" if rec is s.baseline else f"build #{rec.index} {rec.name} (dashed: the baseline)"
        self.profile_tab.show_sweep(r, f"Throughput against p99 latency: {who}, on {r.engine}")
        return r

    def show_sensitivity(self, **options: Any) -> Any:
        """Leave-one-out sensitivity of the current recipe's int8/fp16 layers, as the graph's heat."""
        from ..core.sensitivity import analyze  # noqa: PLC0415

        assert self.session is not None
        r = analyze(self.session.source, self.recipe, device=self.device, cache=self.session.cache,
                    progress=self._progress, **options)
        self.heat = r.heat()
        self.search_tab.show_ranking(self.heat)
        self.tabs.selected_index = self.TAB_GRAPH  # the heat is drawn there
        self._render()
        return r

    def search(self, **options: Any) -> Any:
        """Search for the best build within an accuracy budget on the selected device
        (``core.search.search``'s options: budget_points, objective, trials, seed, workers, ...);
        the Search tab shows the trials, the Pareto frontier and the best build.

        The search gets the session's model, data, calibration and metric: the budget is on the
        metric (its own units) when one is set, else top-1 points (labeled data), else points of
        top-1 agreement. Paths travel as paths; data given as objects goes as the session's
        resolved arrays. With ``workers`` >= 1 the metric must be importable (a module's top level)."""
        from ..core.search import search  # noqa: PLC0415

        assert self.session is not None
        s = self.session
        as_given = self._metric["preprocessing"] is None  # else only the session's arrays match it
        if "data" not in options:
            options["data"] = self._data if as_given and isinstance(self._data, (str, Path, type(None))) \
                else s.data
        if "calib" not in options:
            options["calib"] = self._calib if as_given and isinstance(self._calib, (str, Path, type(None))) \
                else s.calib
        options.setdefault("metric", s.metric)
        options.setdefault("metric_name", s.metric_name)
        self._label_budget(options["metric_name"] if options["metric"] is not None else None)
        model = self.model_ref if self.model_ref is not None else s.source  # a torch module: its ONNX
        res = search(model, device=self.device, cache_dir=str(s.cache.root),
                     progress=self.search_tab.progress, **options)
        self.search_result = res
        self.search_tab.show(res)
        return res

    def use_search_best(self) -> BuildRecord:
        """Set the toggles to the last search's best recipe and build it."""
        best = self.search_result.best_trial if self.search_result is not None else None
        if best is None:
            raise WorkbenchError("no search result with a build within its budget", "run a search first")
        recipe = Recipe.parse(best.recipe)
        self._building = True  # no auto-build of the intermediate toggle states
        try:
            for name in self.w_passes:
                self.disable(name)
            for spec, p in zip(recipe.passes, recipe.instantiate()):
                self.enable(spec.name, **{k: p.opts[k] for k in spec.options})  # typed values
            if best.device:  # the runtime the search picked (an engine dimension on the CPU)
                self.select_device(engine_for_device(best.device).name)
        finally:
            self._building = False
        return self.build()

    def exclude_node(self, name: str) -> BuildRecord:
        """Keep ``name`` in float: add it to the recipe's int8/fp16 exclusion list and rebuild."""
        from ..core.sensitivity import quant_pass_index, with_exclusions  # noqa: PLC0415

        new = with_exclusions(self.recipe, [name])
        spec = new.passes[quant_pass_index(new)]
        self.enable(spec.name, exclude=spec.options["exclude"])
        return self.build()

