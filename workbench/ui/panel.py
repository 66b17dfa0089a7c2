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

from ..core.engines.registry import list_engines
from ..core.model import load_model
from ..core.passes.recipe import Recipe
from ..core.samples import SAMPLES
from ..core.session import BuildRecord, Session
from ..core.summary import summarize
from ..errors import WorkbenchError
from .data_box import DataBox, build_warnings_html, conversion_html
from .figures import BAD, delta_bars, latency_distribution, pareto, replace_figure
from .graph_tab import GraphTab
from .panel_tools import PanelTools
from .pass_rows import PassRows
from .profile_tab import ProfileTab
from .results_html import deltas_html, history_html
from .runtimes_box import RuntimesBox
from .search_tab import SearchTab

__all__ = ["Workbench"]

_DEVICE_OF = {"ort-cpu": "cpu", "ort-cuda": "cuda", "ort-tensorrt": "ort-tensorrt", "tensorrt": "tensorrt"}


class Workbench(PanelTools):
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
        self.explorer: Any = None  # workbench.viewer.ExplorerServer, once started
        self._building = False
        self._stage_of: tuple[str, float, int] = ("", 0.0, 0)  # the progress stage, its start, its count then
        self.first_deltas_at: float | None = None  # perf_counter(): the last build's first deltas
        self.final_deltas_at: float | None = None  # ... and its own latency (after any first look)
        self.heat: dict[str, float] | None = None  # per-node sensitivity shown on the graph
        self.model_ref = model  # what search workers load (a sample name or a path)
        self.search_result: Any = None  # the last SearchResult
        self._build_ui(model, auto_build, refine)
        self.load(model, measure=measure_baseline)

    # -- layout ---------------------------------------------------------------------------------
    TAB_CHARTS, TAB_HISTORY, TAB_GRAPH = 0, 1, 2  # then Profile, Throughput, Sensitivity, Search

    def _build_ui(self, model: str, auto_build: bool, refine: bool) -> None:
        samples = [f"sample:{n}" for n in SAMPLES]
        self.w_model = W.Combobox(value=model if isinstance(model, str) else "", options=samples, description="Model",
                                  placeholder="sample:NAME or a path to .onnx", layout=W.Layout(width="380px"))
        self.w_upload = W.FileUpload(accept=".onnx", multiple=False, description="Upload .onnx")
        self.w_load = W.Button(description="Load", icon="folder-open", layout=W.Layout(width="auto"))
        self.w_summary = W.HTML(layout=W.Layout(flex="1"))
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

        self.pass_rows = PassRows(self._changed)
        self.w_passes = self.pass_rows.widgets
        self.w_build = W.Button(description="Build & measure", button_style="primary", icon="play",
                                layout=W.Layout(width="auto", min_width="180px", flex="0 0 auto"))
        self.w_build.on_click(lambda _: self._guard(self.build))
        self.w_auto = W.Checkbox(value=auto_build, description="build on every change", indent=False,
                                 layout=W.Layout(width="auto"))
        self.w_refine = W.Checkbox(value=refine, description="refine accuracy on the full set",
                                   indent=False, layout=W.Layout(width="auto"))
        self.w_progress = W.IntProgress(min=0, max=1, value=0, layout=W.Layout(width="220px"))
        self.w_stage = W.Label("")
        self.w_error = W.HTML()
        self.w_trace = W.Output()

        self.w_deltas = W.HTML("<i>toggle passes and build: the deltas against the baseline show here</i>")
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

        self.graph_tab = GraphTab(self._guard, self.exclude_node, self.show_explorer, self.show_netron)
        self.netron = self.graph_tab.netron
        from ..viewer import available as explorer_unavailable  # noqa: PLC0415  (no model_explorer import)

        reason = explorer_unavailable()
        if reason:
            self.graph_tab.disable_explorer(reason)
        self.runtimes_box = RuntimesBox(self.compare_runtimes, self._guard)
        self.search_tab = SearchTab(self.search, self.use_search_best, self.show_sensitivity, self._guard)
        self.profile_tab = ProfileTab(self.profile, self.sweep, self._guard)
        # the loop on one screen: model, device, passes and build on the left, the deltas beside them;
        # everything else in tabs below
        loop = W.HBox([
            W.VBox([W.HTML("<b>Passes</b> (applied top to bottom)"), *self.pass_rows.rows,
                    W.HBox([self.w_build, self.w_auto, self.w_refine], layout=W.Layout(align_items="center")),
                    W.HBox([self.w_progress, self.w_stage]), self.w_error, self.w_trace],
                   layout=W.Layout(width="58%")),
            W.VBox([W.HTML("<b>Against the baseline</b>"), self.w_deltas],
                   layout=W.Layout(width="42%", padding="0 0 0 12px"))])
        charts = W.VBox([W.HBox([self.fig_deltas, self.fig_latency]), self.fig_pareto, self.runtimes_box.widget])
        history = W.VBox([self.w_history, W.HBox([self.w_hist_path, self.w_hist_csv, self.w_hist_json]),
                          W.HBox([self.w_export_dir, self.w_export]), self.w_export_msg])
        self.tabs = W.Tab([charts, history, self.graph_tab.widget, self.profile_tab.profile_box,
                           self.profile_tab.sweep_box, self.search_tab.sensitivity_box, self.search_tab.search_box])
        for i, t in enumerate(("Charts", "History & export", "Graph", "Profile", "Throughput",
                               "Sensitivity", "Search")):
            self.tabs.set_title(i, t)
        self.tabs.observe(lambda ch: self._guard(self._render_graph) if ch["new"] == self.TAB_GRAPH else None,
                          names="selected_index")
        line = W.Layout(align_items="center", flex_flow="row wrap")
        self.widget = W.VBox([
            W.HBox([W.HTML("<b class='wb-header' style='font-size:15px;margin-right:8px'>Inference workbench</b>"),
                    self.w_model, self.w_load, self.w_upload], layout=line),
            self.w_summary, self.data_box.widget,
            W.HBox([W.HTML("<b style='margin-right:6px'>Device</b>"), *self.w_devices.values(),
                    self.w_device_notes], layout=line),
            loop, self.tabs,
        ], layout=W.Layout(max_width="1480px"))

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
        self.pass_rows.enable(name, **options)

    def disable(self, name: str) -> None:
        self.pass_rows.disable(name)

    @property
    def recipe(self) -> Recipe:
        return self.pass_rows.recipe

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

    def export(self, folder: str, force: bool = False) -> Path:
        assert self.session is not None
        if self.current is None:
            raise WorkbenchError("nothing built yet", "build a recipe first")
        p = self.session.export(self.current, folder, force=force)
        self.w_export_msg.value = (f"exported the bundle <code>{html.escape(str(p.parent))}</code> "
                                   "(model, engine, manifest.json, README.md)")
        return p

    def show_netron(self) -> str:
        rec = self.current or (self.session.baseline if self.session else None)
        if rec is None:
            return ""
        self.netron.show(rec.model.proto.SerializeToString(), f"build{rec.index}.onnx")
        self.graph_tab.w_netron.value = self.netron.iframe()
        return self.netron.url

    @property
    def w_netron(self) -> W.HTML:
        return self.graph_tab.w_netron

    def show_explorer(self) -> str:
        """Baseline and the current build side by side in Model Explorer (the ``[viewer]`` extra),
        the passes' changes as an overlay; returns its URL on 127.0.0.1."""
        from .explorer_view import show_in_explorer  # noqa: PLC0415

        return show_in_explorer(self)

    def close(self) -> None:
        self.graph_tab.close()
        if self.explorer is not None:
            self.explorer.stop()
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
                replace_figure(self.fig_deltas, delta_bars(d))
        series = {"baseline": (rec.baseline_latency if rec else s.baseline.latency)}
        if rec is not None:
            series["first look" if rec.preview else f"#{rec.index}"] = rec.latency
        replace_figure(self.fig_latency, latency_distribution(
            {k: v.samples_ms for k, v in series.items() if v is not None}))
        replace_figure(self.fig_pareto, pareto(s.rows(), current=rec.index if rec else None,
                                               accuracy_key=s.score_key,
                                               y_title=s.metric_name if s.metric is not None else None))
        self.w_history.value = history_html(s.rows(), rec.index if rec else None, s.metric_name)
        if self.tabs.selected_index == self.TAB_GRAPH:
            self._render_graph()

    def _render_graph(self) -> None:
        """The Graph tab (drawn when it is shown: laying out a big graph is not free)."""
        s, rec = self.session, self.current
        if s is None:
            return
        if rec is None:
            self.graph_tab.show(s.baseline.model, [], None, "baseline", heat=self.heat)
        else:
            self.graph_tab.show(rec.model, rec.build.reports if rec.build else [], s.baseline.model,
                                f"build #{rec.index} {rec.name}", heat=self.heat)
