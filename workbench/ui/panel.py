"""The workbench panel: ipywidgets over :class:`workbench.core.session.Session`.

Callbacks are thin: read the controls, call one core function, render the result. Everything the
mouse can do is a method too (``enable``, ``disable``, ``build``, ``rows``, ``export``), so
notebooks and tests drive the same object.
"""

from __future__ import annotations

import html
import time
import traceback
from pathlib import Path
from typing import Any

import ipywidgets as W
import plotly.graph_objects as go

from ..core.engines.registry import engine_for_device, list_engines
from ..core.model import load_model
from ..core.passes.base import Option
from ..core.passes.recipe import PassSpec, Recipe
from ..core.passes.registry import all_passes
from ..core.samples import SAMPLES
from ..core.session import BuildRecord, Session
from ..core.summary import summarize
from ..errors import WorkbenchError
from .data_box import DataBox, build_warnings_html, conversion_html
from .figures import BAD, delta_bars, latency_distribution, pareto
from .graph import graph_figure
from .netron_view import NetronServer
from .profile_tab import ProfileTab
from .results_html import deltas_html, history_html
from .runtimes_box import RuntimesBox
from .search_tab import SearchTab

__all__ = ["Workbench"]

_DEVICE_OF = {"ort-cpu": "cpu", "ort-cuda": "cuda", "ort-tensorrt": "ort-tensorrt", "tensorrt": "tensorrt"}


MAIN_OPTIONS = 2  # options shown beside a pass's toggle; the others fold under "advanced"


def _option_widget(o: Option) -> W.Widget:
    style = {"description_width": "initial"}
    layout = W.Layout(width="auto")
    if o.choices:
        return W.Dropdown(options=list(o.choices), value=o.default, description=o.name, style=style,
                          layout=layout, tooltip=o.help)
    if o.type is bool and o.default is None:  # tri-state: None lets the pass decide
        return W.Dropdown(options=[("auto", None), ("true", True), ("false", False)], value=None,
                          description=o.name, style=style, layout=layout, tooltip=o.help)
    if o.type is bool:
        return W.Checkbox(value=bool(o.default), description=o.name, indent=False, tooltip=o.help,
                          layout=layout)
    if o.type is int:
        return W.IntText(value=o.default, description=o.name, style=style, layout=W.Layout(width="150px"))
    if o.type is float:
        return W.FloatText(value=o.default, description=o.name, style=style, layout=W.Layout(width="160px"))
    value = "+".join(o.default) if isinstance(o.default, list) else ("" if o.default is None else str(o.default))
    return W.Text(value=value, description=o.name, placeholder="a+b" if o.type is list else "",
                  style=style, layout=W.Layout(width="260px"))


class Workbench:
    """``Workbench("sample:resnet-fashion")`` in a notebook cell shows the panel.

    ``model`` may be a path, ``sample:NAME`` or a ``torch.nn.Module`` (with ``example_inputs``);
    ``data``, ``calib`` (or ``"random"``), ``metric``, ``metric_name`` and ``preprocessing`` are
    :class:`workbench.core.session.Session`'s: paths, arrays, torch datasets or loaders.
    """

    def __init__(self, model: Any = "sample:resnet-fashion", *, data: Any = None, calib: Any = None,
                 metric: Any = None, metric_name: str | None = None, preprocessing: Any = None,
                 example_inputs: Any = None, convert_options: dict[str, Any] | None = None,
                 threads: int | None = None,
                 batch: int = 1, quick_samples: int = 1000, auto_build: bool = False,
                 refine: bool = True, measure_baseline: bool = True) -> None:
        self.threads, self.batch, self.quick_samples = threads, batch, quick_samples
        self._data, self._calib, self._example_inputs = data, calib, example_inputs
        self._convert_options = convert_options or {}
        self._metric = {"metric": metric, "metric_name": metric_name, "preprocessing": preprocessing}
        self.session: Session | None = None
        self.current: BuildRecord | None = None
        self.netron = NetronServer()
        self._building = False
        self._stage_of: tuple[str, float, int] = ("", 0.0, 0)  # the progress stage, its start, its count then
        self.first_deltas_at: float | None = None  # perf_counter(): the last build's first deltas
        self.final_deltas_at: float | None = None  # ... and its own latency (after any first look)
        self.heat: dict[str, float] | None = None  # per-node sensitivity shown on the graph
        self._graph_memo: dict[tuple[Any, ...], tuple[Any, Any, go.Figure]] = {}
        self.model_ref = model  # what search workers load (a sample name or a path)
        self.search_result: Any = None  # the last SearchResult
        self._build_ui(model, auto_build, refine)
        self.load(model, measure=measure_baseline)

    # -- layout ---------------------------------------------------------------------------------
    def _build_ui(self, model: str, auto_build: bool, refine: bool) -> None:
        samples = [f"sample:{n}" for n in SAMPLES]
        self.w_model = W.Combobox(value=model if isinstance(model, str) else "", options=samples, description="Model",
                                  placeholder="sample:NAME or a path to .onnx", layout=W.Layout(width="420px"))
        self.w_upload = W.FileUpload(accept=".onnx", multiple=False, description="Upload .onnx")
        self.w_load = W.Button(description="Load", icon="folder-open")
        self.w_summary = W.HTML()
        self.data_box = DataBox(self.load_data, self._guard)
        self.w_load.on_click(lambda _: self._guard(lambda: self.load(self.w_model.value)))
        self.w_upload.observe(lambda _: self._guard(self._load_upload), names="value")

        self.w_devices: dict[str, W.ToggleButton] = {}
        notes = []
        for e in list_engines():
            b = W.ToggleButton(description=e.name, value=e.name == "ort-cpu", disabled=not e.available,
                               tooltip=e.reason, layout=W.Layout(width="auto"))
            b.observe(self._device_clicked, names="value")
            self.w_devices[e.name] = b
            if not e.available:  # one short line; each reason on hover (and on its greyed toggle)
                notes.append(f"<span title='{html.escape(e.reason, quote=True)}' style='color:#9e9e9e;"
                             f"text-decoration:underline dotted'>{html.escape(e.name)}</span>")
        self.w_device_notes = W.HTML(
            "<div class='wb-device-notes' style='font-size:90%;color:#757575'>not available here: "
            + ", ".join(notes) + " (hover a name for why)</div>" if notes else "")

        self.w_passes: dict[str, tuple[W.ToggleButton, dict[str, W.Widget]]] = {}
        rows = []
        for name, cls in all_passes().items():
            t = W.ToggleButton(description=name, value=False, tooltip=cls.summary,
                               layout=W.Layout(width="150px"))
            opts = {o.name: _option_widget(o) for o in cls.options}
            t.observe(self._changed, names="value")
            for w in opts.values():
                w.observe(self._changed, names="value")
            self.w_passes[name] = (t, opts)
            main, rest = list(opts.values())[:MAIN_OPTIONS], list(opts.values())[MAIN_OPTIONS:]
            row = [t, W.HBox(main, layout=W.Layout(flex_flow="row wrap"))]
            if rest:  # the rest folded away: a user toggles a pass and perhaps its main options
                more = W.Accordion([W.HBox(rest, layout=W.Layout(flex_flow="row wrap"))],
                                   layout=W.Layout(width="auto", flex="1"))
                more.set_title(0, f"advanced ({len(rest)})")
                more.selected_index = None
                row.append(more)
            rows.append(W.HBox(row, layout=W.Layout(align_items="flex-start")))
        self.w_build = W.Button(description="Build & measure", button_style="primary", icon="play",
                                layout=W.Layout(width="auto", min_width="180px"))
        self.w_build.on_click(lambda _: self._guard(self.build))
        self.w_auto = W.Checkbox(value=auto_build, description="build on every change", indent=False)
        self.w_refine = W.Checkbox(value=refine, description="refine accuracy to the full set in the background",
                                   indent=False, layout=W.Layout(width="auto"))
        self.w_progress = W.IntProgress(min=0, max=1, value=0, layout=W.Layout(width="300px"))
        self.w_stage = W.Label("")
        self.w_error = W.HTML()
        self.w_trace = W.Output()

        self.w_deltas = W.HTML()
        self.fig_deltas = go.FigureWidget(delta_bars({}))
        self.fig_latency = go.FigureWidget(latency_distribution({}))
        self.fig_pareto = go.FigureWidget(pareto([]))
        self.w_history = W.HTML()
        self.w_hist_path = W.Text(value="history.csv", description="history file",
                                  layout=W.Layout(width="320px"))
        self.w_hist_csv = W.Button(description="Export CSV")
        self.w_hist_json = W.Button(description="Export JSON")
        self.w_hist_csv.on_click(lambda _: self._guard(lambda: self.export_history(self.w_hist_path.value, "csv")))
        self.w_hist_json.on_click(lambda _: self._guard(
            lambda: self.export_history(str(Path(self.w_hist_path.value).with_suffix(".json")), "json")))
        self.w_export_dir = W.Text(value="exported_build", description="export folder",
                                   layout=W.Layout(width="320px"))
        self.w_export = W.Button(description="Export current build", icon="download")
        self.w_export.on_click(lambda _: self._guard(lambda: self.export(self.w_export_dir.value, force=True)))
        self.w_export_msg = W.HTML()

        self.fig_graph = go.FigureWidget()
        self.w_netron = W.HTML("<i>Click 'Show in Netron' to open the current model in Netron "
                               "(served on 127.0.0.1).</i>")
        self.w_netron_btn = W.Button(description="Show in Netron")
        self.w_netron_btn.on_click(lambda _: self._guard(self.show_netron))

        self.runtimes_box = RuntimesBox(self.compare_runtimes, self._guard)
        self.search_tab = SearchTab(self.search, self.use_search_best, self.show_sensitivity, self._guard)
        self.profile_tab = ProfileTab(self.profile, self.sweep, self._guard)
        graph_tabs = W.Tab([W.VBox([self.fig_graph]), W.VBox([self.w_netron_btn, self.w_netron])])
        graph_tabs.set_title(0, "Graph (workbench)")
        graph_tabs.set_title(1, "Netron")
        self.widget = W.VBox([
            W.HTML("<h3 style='margin:4px 0'>Inference workbench</h3>"),
            W.HBox([self.w_model, self.w_load, self.w_upload]), self.w_summary,
            W.HTML("<b>Data</b>"), self.data_box.widget,
            W.HTML("<b>Device</b>"), W.HBox(list(self.w_devices.values())), self.w_device_notes,
            W.HTML("<b>Passes</b> (applied top to bottom)"), *rows,
            W.HBox([self.w_build, self.w_auto, self.w_refine]),
            W.HBox([self.w_progress, self.w_stage]), self.w_error, self.w_trace,
            W.HTML("<b>Results against the baseline</b>"), self.w_deltas,
            W.HBox([self.fig_deltas, self.fig_latency]), self.fig_pareto, self.runtimes_box.widget,
            W.HTML("<b>History</b>"), self.w_history, W.HBox([self.w_hist_path, self.w_hist_csv, self.w_hist_json]),
            W.HBox([self.w_export_dir, self.w_export]), self.w_export_msg,
            graph_tabs,
            W.HTML("<b>Where the time goes and what throughput it sustains</b>"), self.profile_tab.widget,
            W.HTML("<b>Sensitivity and search</b>"), self.search_tab.widget,
        ])

    def _ipython_display_(self) -> None:
        from IPython.display import display  # noqa: PLC0415

        display(self.widget)

    # -- errors and progress --------------------------------------------------------------------
    def _guard(self, fn: Any) -> Any:
        """Run a callback; user errors show as a message, bugs as their traceback (never hidden)."""
        self.w_error.value = ""
        self.w_trace.clear_output()
        try:
            return fn()
        except WorkbenchError as e:
            self.w_error.value = f"<div class='wb-error' style='color:{BAD}'>error: {html.escape(str(e))}</div>"
        except Exception:  # noqa: BLE001  (a bug: show it in full)
            self.w_error.value = f"<div class='wb-error' style='color:{BAD}'>internal error (traceback below)</div>"
            with self.w_trace:
                traceback.print_exc()
        return None

    def _progress(self, stage: str, done: int, total: int) -> None:
        """The bar, what it is doing, and an estimate of what is left (from this stage's pace)."""
        now = time.perf_counter()
        if stage != self._stage_of[0] or done == 0 or done < self._stage_of[2]:
            self._stage_of = (stage, now, done)
        self.w_progress.max = max(total, 1)
        self.w_progress.value = min(done, total)
        _, t0, d0 = self._stage_of
        left = ""
        if done > d0 and done < total:
            eta = (now - t0) / (done - d0) * (total - done)
            left = f", about {eta:.0f} s left" if eta >= 1 else ", under a second left"
        self.w_stage.value = f"{stage}: {done}/{total}{left}"

    # -- model and device -----------------------------------------------------------------------
    def load(self, model: Any, measure: bool = True) -> None:
        """Load a model (sample name, path or torch module) and measure its baseline."""
        ex = self._example_inputs
        m = load_model(model) if ex is None or isinstance(model, (str, Path)) else \
            load_model(model, example_inputs=ex, **self._convert_options)
        self.model_ref = model if isinstance(model, (str, Path)) else None
        s = summarize(m)
        note = "<br><b style='color:#c62828'>random weights: latency only, accuracy means nothing</b>" \
            if s.latency_only else ""
        ins = ", ".join(f"{t.name} {t.dtype} {list(t.shape or [])}" for t in s.inputs)
        self.w_summary.value = (
            f"<div class='wb-summary'><b>{html.escape(s.name)}</b>: {html.escape(ins)}; "
            f"{s.nodes} nodes, {s.params / 1e6:.2f} M params, {s.macs / 1e6:.1f} M MACs, "
            f"{s.size_bytes / 1e6:.2f} MB{note}{conversion_html(m)}</div>")
        self.session = Session(m, device=self.device, batch=self.batch, threads=self.threads,
                               quick_samples=self.quick_samples, data=self._data, calib=self._calib,
                               **self._metric)
        self.data_box.show(self.session)
        self._label_budget(self.session.metric_name if self.session.metric is not None else None)
        self.current = None
        if measure:
            self._stage("measuring the baseline")
            self.session.measure(self.session.baseline, progress=self._progress)
        self._render()

    def _label_budget(self, metric_name: str | None = None) -> None:
        """The Search tab's budget in the units it will be scored in (relabeled from a result)."""
        s = self.session
        key = "metric" if metric_name else s.score_key if s else "top1"
        self.search_tab.label_budget(metric_name if key == "metric" and metric_name else
                                     "top-1 points" if key == "top1" else "agreement points")

    def load_data(self, data: Any = "", calib: Any = "") -> None:
        """Evaluation data (a path, or empty: keep the current) and calibration data (a path,
        ``random``, or empty: the default) for the loaded model; the baseline is measured again."""
        assert self.session is not None
        data = data if not (isinstance(data, str) and not data.strip()) else self._data
        calib = calib if not (isinstance(calib, str) and not calib.strip()) else None
        self.session.set_data(data, calib.strip() if isinstance(calib, str) else calib)
        self._data, self._calib = data, calib
        self.current = None
        self.data_box.show(self.session)
        self._label_budget(self.session.metric_name if self.session.metric is not None else None)
        self._render()

    def _load_upload(self) -> None:
        files = self.w_upload.value
        if not files:
            return
        f = files[0]
        path = Path.cwd() / "uploaded_models" / Path(f["name"]).name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(bytes(f["content"]))
        self.w_model.value = str(path)
        self.load(str(path))

    @property
    def device(self) -> str:
        for name, b in getattr(self, "w_devices", {}).items():
            if b.value:
                return _DEVICE_OF.get(name, name)
        return "cpu"

    def _device_clicked(self, change: dict) -> None:
        if change["new"]:
            for b in self.w_devices.values():
                if b is not change["owner"]:
                    b.value = False
            if hasattr(self, "w_build"):
                self._update_build_button()

    def select_device(self, engine: str) -> None:
        b = self.w_devices[engine]
        if b.disabled:
            raise WorkbenchError(f"{engine} is not available here: {b.tooltip}")
        b.value = True

    # -- passes and recipe ----------------------------------------------------------------------
    def enable(self, name: str, **options: Any) -> None:
        """Turn a pass on, with options (as the CLI spells them)."""
        if name not in self.w_passes:
            raise WorkbenchError(f"unknown pass {name!r}", f"passes are: {', '.join(self.w_passes)}")
        toggle, widgets = self.w_passes[name]
        for k, v in options.items():
            if k not in widgets:
                raise WorkbenchError(f"{name}: unknown option {k!r}", f"options are: {', '.join(widgets)}")
            widgets[k].value = "+".join(v) if isinstance(v, list) else v
        toggle.value = True

    def disable(self, name: str) -> None:
        self.w_passes[name][0].value = False

    @property
    def recipe(self) -> Recipe:
        specs = []
        for name, (toggle, widgets) in self.w_passes.items():
            if toggle.value:
                opts = {k: w.value for k, w in widgets.items()
                        if w.value is not None and not (isinstance(w, W.Text) and w.value == "")}
                specs.append(PassSpec(name, opts))
        return Recipe(tuple(specs))

    def _changed(self, _: dict) -> None:
        self._update_build_button()
        if self.w_auto.value and not self._building and self.recipe.passes:
            self._guard(self.build)

    def _update_build_button(self) -> None:
        """Say what a click will do: measure a build the cache holds, or build it first."""
        s = self.session
        desc, tip = "Build & measure", "build the recipe for the selected device, then measure it"
        try:
            recipe = self.recipe
            state = s.build_state(recipe, self.device) if s is not None and recipe.passes else "build"
        except Exception:  # noqa: BLE001 - a half-typed option: the build itself will say what is wrong
            state = "build"
        if state == "measured":
            desc, tip = "Build & measure (measured: instant)", "measured before in this session: a click shows it"
        elif state == "cached":
            desc, tip = "Build & measure (cached)", "this build is in the cache: a click only measures it"
        self.w_build.description, self.w_build.tooltip = desc, tip

    # -- build and results ----------------------------------------------------------------------
    def _stage(self, text: str) -> None:
        self.w_stage.value = text

    def build(self) -> BuildRecord:
        """Build the current recipe for the selected device and measure it."""
        assert self.session is not None
        recipe = self.recipe
        recipe.instantiate()  # option errors before any work
        self._building = True  # option changes made while building do not start another build
        self.first_deltas_at = self.final_deltas_at = None
        try:
            rec = self.session.build(recipe, device=self.device, progress=self._progress, measure=True,
                                     on_latency=self._first_deltas)
        finally:
            self._building = False
        self.current = rec
        self._update_build_button()
        self._render()
        if self.w_refine.value and self.session.data is not None and rec.accuracy and not rec.accuracy.full:
            self._stage("refining accuracy on the full set in the background")
            self.session.refine_async(rec, on_done=lambda r: self._render())
        else:
            self._stage("done")
        return rec

    def _first_deltas(self, rec: BuildRecord) -> None:
        """Latency, size and memory deltas as soon as they are measured; accuracy follows."""
        self.current = rec
        self._update_build_button()
        self._render()
        now = time.perf_counter()
        self.first_deltas_at = self.first_deltas_at or now
        if rec.preview:
            self._stage("first look at the pruned structure's latency and size; building the real "
                        "model (reconstruction), its own measurements follow")
        else:
            self.final_deltas_at = now
            self._stage("measuring accuracy on the quick subset")

    def wait(self) -> None:
        """Block until background accuracy refinement is done."""
        if self.session:
            self.session.wait()
        self._render()

    def rows(self) -> list[dict[str, Any]]:
        return self.session.rows() if self.session else []

    def export_history(self, path: str, fmt: str = "csv") -> Path:
        assert self.session is not None
        self.session.export_history(path, fmt)
        self.w_export_msg.value = f"history written to <code>{html.escape(str(path))}</code>"
        return Path(path)

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

    def export(self, folder: str, force: bool = False) -> Path:
        assert self.session is not None
        if self.current is None:
            raise WorkbenchError("nothing built yet", "build a recipe first")
        p = self.session.export(self.current, folder, force=force)
        self.w_export_msg.value = (f"exported the bundle <code>{html.escape(str(p.parent))}</code> "
                                   "(model, engine, manifest.json, README.md)")
        return p

    def show_sensitivity(self, **options: Any) -> Any:
        """Leave-one-out sensitivity of the current recipe's int8/fp16 layers, as the graph's heat."""
        from ..core.sensitivity import analyze  # noqa: PLC0415

        assert self.session is not None
        r = analyze(self.session.source, self.recipe, device=self.device, cache=self.session.cache,
                    progress=self._progress, **options)
        self.heat = r.heat()
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

    def _node_clicked(self, trace: Any, points: Any, _selector: Any) -> None:
        if points.point_inds and self.heat is not None:
            self._guard(lambda: self.exclude_node(trace.customdata[points.point_inds[0]]))

    def show_netron(self) -> str:
        rec = self.current or (self.session.baseline if self.session else None)
        if rec is None:
            return ""
        self.netron.show(rec.model.proto.SerializeToString(), f"build{rec.index}.onnx")
        self.w_netron.value = self.netron.iframe()
        return self.netron.url

    def close(self) -> None:
        self.netron.stop()
        self.widget.close()

    def _render(self) -> None:
        s = self.session
        if s is None:
            return
        rec = self.current
        if rec is not None:
            d = s.deltas(rec)
            nolabel = ("" if s.data is not None and s.data.labels is not None or not rec.accuracy else
                       "<div class='wb-nolabels'>no labels: accuracy is fidelity to the baseline on "
                       f"{rec.accuracy.samples} samples</div>")
            self.w_deltas.value = build_warnings_html(rec) + nolabel + deltas_html(rec, d)
            with self.fig_deltas.batch_update():
                self._replace(self.fig_deltas, delta_bars(d))
        series = {"baseline": (rec.baseline_latency if rec else s.baseline.latency)}
        if rec is not None:
            series["first look" if rec.preview else f"#{rec.index}"] = rec.latency
        self._replace(self.fig_latency, latency_distribution(
            {k: v.samples_ms for k, v in series.items() if v is not None}))
        self._replace(self.fig_pareto, pareto(s.rows(), current=rec.index if rec else None,
                                              accuracy_key=s.score_key, y_title=s.score_name))
        self.w_history.value = history_html(s.rows(), rec.index if rec else None, s.metric_name)
        self._replace(self.fig_graph, self._graph_of(rec or s.baseline, s.baseline.model if rec else None))
        for trace in self.fig_graph.data[1:]:  # nodes: a click keeps the node in float and rebuilds
            trace.on_click(self._node_clicked)

    def _graph_of(self, target: BuildRecord, base: Any) -> go.Figure:
        """The graph view of ``target`` (diffed against ``base``), laid out once per build and heat
        map: a configuration toggled again comes back without laying its graph out again."""
        heat = tuple(sorted(self.heat.items())) if self.heat else None
        key = (id(target.model), id(base), heat)
        hit = self._graph_memo.get(key)
        if hit is not None and hit[0] is target.model and hit[1] is base:
            return hit[2]
        fig = graph_figure(target.model, target.build.reports if target.build else [], base, heat=self.heat)
        self._graph_memo[key] = (target.model, base, fig)  # the models keep their ids valid
        while len(self._graph_memo) > 8:
            self._graph_memo.pop(next(iter(self._graph_memo)))
        return fig

    @staticmethod
    def _replace(fw: go.FigureWidget, fig: go.Figure) -> None:
        # Assigning a layout makes plotly validate it again, property by property (most of a
        # re-render's time, measured): skip it when the new layout is the same as the shown one.
        same_layout = fw.layout.to_plotly_json() == fig.layout.to_plotly_json()
        with fw.batch_update():
            fw.data = []
            fw.add_traces(list(fig.data))
            if not same_layout:
                fw.layout = fig.layout
