"""The panel, driven in-process as a user would: toggles, options, build, results, export."""

from __future__ import annotations

import json
import time
import urllib.request
from html import escape as html_escape

import pytest

from workbench.core.session import Session, wilson_interval
from workbench.ui import Workbench
from workbench.ui.figures import delta_bars, pareto
from workbench.ui.graph import diff_graphs, graph_figure


@pytest.fixture(scope="module")
def panel(tmp_path_factory):
    w = Workbench("sample:resnet-fashion", threads=2, quick_samples=300, refine=False)
    yield w
    w.close()


def test_baseline_is_measured_on_load(panel):
    rows = panel.rows()
    assert rows[0]["label"] == "baseline" and rows[0]["p50_ms"] > 0
    assert rows[0]["top1"] > 0.9 and rows[0]["top1_samples"] == 300
    assert "sample:resnet-fashion" in panel.w_summary.value and "M MACs" in panel.w_summary.value


def test_toggle_build_and_deltas(panel):
    panel.enable("fuse")
    assert panel.recipe.passes[0].name == "fuse"
    rec = panel.build()
    assert panel.current is rec and rec.index == len(panel.rows()) - 1
    assert "wb-delta" in panel.w_deltas.value and "p50_ms" in panel.w_deltas.value
    assert "subset of 300" in panel.w_deltas.value
    assert rec.accuracy.top1_agreement == 1.0  # fusion keeps the predictions
    # Figures were redrawn from the results.
    assert {t.name for t in panel.fig_pareto.data} >= {"builds"}
    assert len(panel.fig_pareto.data[-1].x) == 2  # baseline and the build
    assert panel.fig_deltas.data[0].y  # one bar per metric
    g = panel.graph_tab
    panel.tabs.selected_index = panel.TAB_CHARTS
    n = g.renders
    panel._render()
    assert g.renders == n  # the graph is laid out only when its tab is shown
    panel.tabs.selected_index = panel.TAB_GRAPH
    assert g.renders == n + 1
    assert any(t.name == "fused" for t in g.fig_build.data)
    assert "-20 BatchNorm" in g.fig_build.layout.title.text  # folded away
    assert any(t.name == "removed" for t in g.fig_base.data)  # ... and marked on the baseline's side
    panel.tabs.selected_index = panel.TAB_CHARTS
    panel.disable("fuse")


def test_latency_deltas_show_before_accuracy(panel, monkeypatch):
    """First deltas (latency, size, memory) render as soon as latency is measured; the accuracy
    on the quick subset follows in the same build."""
    seen = {}
    real = panel._first_deltas

    def spy(rec):
        real(rec)
        seen["html"], seen["accuracy"] = panel.w_deltas.value, rec.accuracy

    monkeypatch.setattr(panel, "_first_deltas", spy)
    panel.enable("fold")
    rec = panel.build()
    panel.disable("fold")
    assert seen["accuracy"] is None and "being measured" in seen["html"]
    assert "data-metric='p50_ms'" in seen["html"] and "data-metric='top1'" not in seen["html"]
    assert rec.accuracy is not None and "data-metric='top1'" in panel.w_deltas.value
    assert panel.first_deltas_at is not None


def test_pruning_shows_a_first_look_then_the_real_builds_own_numbers(panel, monkeypatch):
    """A pass with a faster way to the same structure (channels cut before reconstruction) gives
    a first look at latency and size; the real build is measured again and replaces it."""
    seen = []
    real = panel._first_deltas

    def spy(rec):
        real(rec)
        seen.append((rec, panel.w_deltas.value, len(panel.rows()), panel.w_stage.value))

    monkeypatch.setattr(panel, "_first_deltas", spy)
    rows_before = len(panel.rows())
    panel.enable("prune-channels", ratio=0.4, samples=64)
    rec = panel.build()
    panel.disable("prune-channels")
    assert [r.preview is not None for r, *_ in seen] == [True, False]
    first, html_first, rows_at_first, stage = seen[0]
    assert "reconstruct=False" in first.preview and "first look" in html_first
    assert "data-metric='p50_ms'" in html_first and "data-metric='top1'" not in html_first
    assert "reconstruction" in stage and rows_at_first == rows_before  # not in the history
    assert seen[1][0] is rec and rec.latency is not first.latency and rec.accuracy is not None
    assert len(panel.rows()) == rows_before + 1 and panel.first_deltas_at < panel.final_deltas_at

    def structure(m):
        inits = {i.name: tuple(i.dims) for i in m.proto.graph.initializer}
        return [(n.op_type, inits.get(n.input[1]) if n.op_type == "Conv" else None) for n in m.proto.graph.node]

    assert structure(first.model) == structure(rec.model)  # same ops and weight shapes
    assert first.model.fingerprint != rec.model.fingerprint  # the weights were refit
    # Built before: straight from the session, no first look.
    seen.clear()
    panel.enable("prune-channels", ratio=0.4, samples=64)
    assert panel.build() is rec and [r.preview for r, *_ in seen] == []
    panel.disable("prune-channels")


def test_no_first_look_for_a_cached_build(tmp_path):
    from workbench.core.build import is_cached, optimize
    from workbench.core.cache import BuildCache

    cache = BuildCache(tmp_path)
    recipe = "prune-channels:ratio=0.2:samples=32"
    assert not is_cached("sample:resnet-fashion", recipe, cache=cache)
    optimize("sample:resnet-fashion", recipe, cache=cache)
    assert is_cached("sample:resnet-fashion", recipe, cache=cache)
    assert not is_cached("sample:resnet-fashion", recipe, cache=BuildCache(tmp_path, enabled=False))
    s = Session("sample:resnet-fashion", cache=cache, quick_samples=100, latency_budget_s=0.2)
    looks = []
    s.build(recipe, on_latency=looks.append)
    assert [r.preview for r in looks] == [None]
    # int8 after the pruning would calibrate in the preview too: no first look either
    looks.clear()
    s.build(recipe + ",int8:samples=16", on_latency=looks.append)
    assert [r.preview for r in looks] == [None]


def test_search_tab_shows_a_search_and_builds_its_best(panel):
    from workbench.core.passes.recipe import Recipe
    from workbench.core.search import SearchSpace

    with pytest.raises(Exception, match="run a search first"):
        panel.use_search_best()
    tab = panel.search_tab
    assert tab.options() == {"budget_points": 0.5, "objective": "latency", "trials": 12, "seed": 0, "workers": 2}
    small = SearchSpace(precisions=("fp32", "int8"), calibrations=("minmax",), prune_ratios=(0.0,), fuse=True)
    res = panel.search(budget_points=0.5, objective="size", trials=3, seed=1, workers=0, space=small,
                       max_exclude=0, screen_samples=200, final_samples=300, finalists=1, round_size=3)
    best = res.best_trial
    assert best is not None and best.recipe.startswith("int8")  # 4x smaller within budget
    assert "wb-search-table" in tab.w_table.value and html_escape(best.recipe) in tab.w_table.value
    assert {t.name for t in tab.fig.data} >= {"trials", "Pareto frontier", "best"}
    assert not tab.w_use.disabled and tab.w_stage.value == "done"
    rows = len(panel.rows())
    rec = panel.use_search_best()
    assert rec.recipe.label() == Recipe.parse(best.recipe).resolved().label()
    assert len(panel.rows()) == rows + 1 and [s.name for s in panel.recipe.passes] == ["int8"]
    panel.disable("int8")


def test_errors_show_in_the_panel_not_as_exceptions(panel):
    panel.enable("fuse")
    panel.w_passes["fuse"][1]["ort_fusions"].value = True
    panel.w_devices["ort-cpu"].value = True
    # An unknown sample: a user error, shown as a message.
    panel._guard(lambda: panel.load("sample:nope"))
    assert "no sample named" in panel.w_error.value
    panel.w_passes["fuse"][1]["ort_fusions"].value = False
    panel.disable("fuse")
    with pytest.raises(Exception, match="unknown pass"):
        panel.enable("nope")


def test_unavailable_devices_are_greyed_with_a_reason(panel):
    for name, b in panel.w_devices.items():
        if name != "ort-cpu" and b.disabled:
            assert b.tooltip  # the registry's reason
            assert name in panel.w_device_notes.value
    assert not panel.w_devices["ort-cpu"].disabled


def test_history_export_and_build_export(panel, tmp_path):
    panel.enable("fold")
    rec = panel.build()
    panel.disable("fold")
    csv_path = panel.export_history(str(tmp_path / "h.csv"), "csv")
    lines = csv_path.read_text().splitlines()
    assert lines[0].startswith("index,label") and len(lines) == len(panel.rows()) + 1
    j = json.loads(panel.session.export_history(fmt="json"))
    assert j[rec.index]["label"].startswith("fold") and j[rec.index]["index"] == rec.index
    model = panel.export(str(tmp_path / "out"))
    manifest = json.loads((model.parent / "manifest.json").read_text())
    assert manifest["recipe"]["passes"][0]["pass"] == "fold"


def test_auto_build_on_toggle_and_instant_reuse(panel):
    n = len(panel.rows())
    panel.w_auto.value = True
    try:
        panel.enable("fold", slim=True)  # the toggle itself triggers a build
        assert len(panel.rows()) == n + 1 and panel.current.index == n
        panel.disable("fold")  # an empty recipe builds nothing
        t0 = time.perf_counter()
        panel.enable("fold")  # built before in this session: its results come back at once
        assert time.perf_counter() - t0 < 0.5
        assert len(panel.rows()) == n + 1 and panel.current.index == n
    finally:
        panel.w_auto.value = False
        panel.disable("fold")


def test_netron_serves_on_loopback(panel):
    url = panel.show_netron()
    assert url.startswith("http://127.0.0.1:")
    assert urllib.request.urlopen(url, timeout=10).status == 200
    assert "<iframe" in panel.w_netron.value
    panel.netron.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=3)


def test_session_refinement_and_best(tmp_path):
    from workbench import load_dataset, load_model

    full = load_dataset(None, load_model("sample:resnet-fashion"))
    subset = type(full)({k: v[:1000] for k, v in full.inputs.items()}, full.labels[:1000], "first 1000")
    s = Session("sample:resnet-fashion", data=subset, threads=1, quick_samples=200, latency_budget_s=0.4)
    s.measure(s.baseline)
    rec = s.build("fuse")
    assert not rec.accuracy.full and rec.accuracy.samples == 200
    t = s.refine_async(rec)
    t.join(300)
    assert rec.accuracy.full and rec.accuracy.samples == 1000
    assert s.deltas(rec)["top1"]["baseline"] == s.baseline.accuracy.top1
    assert s.baseline.accuracy.samples == 1000
    assert s.best(max_top1_drop=0.01) is rec


def test_wilson_interval():
    lo, hi = wilson_interval(950, 1000)
    assert 0.934 < lo < 0.95 < hi < 0.963
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0


def test_figures_are_pure():
    fig = delta_bars({"p50_ms": {"ratio": 0.5, "delta": -1, "better": True, "same": False},
                      "top1": {"ratio": 0.99, "delta": -0.004, "better": False, "same": False}})
    assert list(fig.data[0].y) == ["p50 latency", "top-1"]
    assert fig.data[0].text == ("-50.0%", "-0.40 pt")
    rows = [{"index": 0, "label": "a", "p50_ms": 2.0, "top1": 0.9, "size_bytes": 10},
            {"index": 1, "label": "b", "p50_ms": 1.0, "top1": 0.95, "size_bytes": 5},
            {"index": 2, "label": "c", "p50_ms": 3.0, "top1": 0.8, "size_bytes": 5}]
    fig = pareto(rows, current=1)
    assert list(fig.data[0].x) == [1.0]  # b dominates a and c


def test_graph_diff_and_figure():
    from workbench import load_model
    from workbench.core.build import optimize

    base = load_model("sample:resnet-fashion")
    res = optimize(base, "fuse")
    d = diff_graphs(base.proto, res.model.proto)
    assert d.removed_ops.get("BatchNormalization") == 20 and len(d.changed) >= 20
    fig = graph_figure(res.model, res.reports, base)
    statuses = {t.name for t in fig.data if t.name}
    assert "fused" in statuses


def test_openvino_is_a_device_toggle_and_runtimes_compare_side_by_side(panel, monkeypatch):
    import workbench.core.session as session_mod  # noqa: PLC0415

    assert not panel.w_devices["openvino"].disabled
    panel.select_device("openvino")
    seen, real = [], session_mod.make_runner

    def spy(model, device="cpu", **opts):
        seen.append((model is panel.session.source, device))
        return real(model, device, **opts)

    monkeypatch.setattr(session_mod, "make_runner", spy)
    try:
        assert panel.device == "openvino"
        panel.enable("fold")
        rec = panel.build()
        # the build is timed and scored on OpenVINO, the baseline on ONNX Runtime
        assert {d for src, d in seen if not src} == {"openvino"} and {d for src, d in seen if src} <= {"cpu"}
        assert rec.device == "openvino" and panel.session.baseline.device == "cpu"  # baseline stays ORT FP32
        assert rec.accuracy.top1_agreement > 0.99  # the same FP32 graph on another runtime
        c = panel.compare_runtimes(rounds=1, budget_s=0.05)
        assert [r.engine for r in c.rows][:2] == ["ort-cpu", "openvino"]
        assert "wb-runtimes" in panel.runtimes_box.w_out.value and "fastest:" in panel.runtimes_box.w_out.value
        panel.disable("fold")
    finally:
        panel.select_device("ort-cpu")


def test_profile_and_throughput_tabs(panel):
    """Issue 19: the Profile tab fills from the current build beside the baseline, on one heat scale;
    the Throughput tab from a sweep of the tab's batches and concurrencies; bad lists are errors."""
    panel.enable("fold")
    rec = panel.build()
    c = panel.profile(runs=3)
    assert c.build.fingerprint == rec.model.fingerprint and c.baseline.engine == "ort-cpu"
    tab = panel.profile_tab
    assert "wb-profile" in tab.w_summary.value and "faster" in tab.w_summary.value
    assert {t.name for t in tab.fig_ops.data} == {"baseline", "build"}
    scales = [next(t.marker.cmax for t in fw.data if t.marker and t.marker.cmax is not None)
              for fw in (tab.fig_heat_base, tab.fig_heat_build)]
    assert scales[0] == scales[1] > 0  # baseline and build on the same time scale
    tab.w_batches.value, tab.w_conc.value, tab.w_duration.value = "1,2", "1,2", 0.05
    r = panel.sweep(rounds=1)
    assert {(p.batch, p.concurrency) for p in r.points} == {(1, 1), (1, 2), (2, 1), (2, 2)}
    assert r.baseline_points and "wb-sweep" in tab.w_sweep_out.value
    assert len({t.name for t in tab.fig_sweep.data}) >= 2
    tab.w_batches.value = "1,x"
    panel._guard(panel.sweep)
    assert "not a comma-separated list" in panel.w_error.value
    tab.w_batches.value = "1,8,32"
    panel.disable("fold")


def test_the_build_button_says_what_a_click_will_do(panel, tmp_path):
    from workbench.core.cache import BuildCache  # noqa: PLC0415

    s = panel.session
    kept = s.cache, s._by_config
    s.cache, s._by_config = BuildCache(tmp_path), {}  # as if nothing was built or measured yet
    try:
        _button_follows_the_cache(panel)
    finally:
        s.cache, s._by_config = kept
        panel.disable("fold")


def _button_follows_the_cache(panel) -> None:
    panel.enable("fold", slim=True)
    assert panel.w_build.description == "Build & measure"
    rec = panel.build()
    assert panel.w_build.description == "Build & measure (measured: instant)"
    assert rec.name == "fold (slim on)" and "slim=True" in rec.label
    assert f"title='{rec.label}'" in panel.w_history.value or rec.label in panel.w_history.value
    panel.disable("fold")
    panel.enable("fold", slim=True)  # toggled back on: the same build, shown at once
    assert panel.w_build.description == "Build & measure (measured: instant)"
    panel.session._by_config = {}  # a new session on the same cache: the build comes from the cache
    panel._update_build_button()
    assert panel.w_build.description == "Build & measure (cached)"
    panel.disable("fold")
    assert "not available here" in panel.w_device_notes.value or all(
        not b.disabled for b in panel.w_devices.values())


def test_main_options_beside_the_toggle_the_rest_under_advanced_and_an_estimate(panel):
    import ipywidgets as W  # noqa: PLC0415

    row = panel.pass_rows.rows[list(panel.w_passes).index("int8")]
    toggle, main, button = row.children[0].children
    assert isinstance(toggle, W.ToggleButton) and toggle.description == "int8"
    assert [w.description for w in main.children] == ["calibration", "samples"]
    more = row.children[1]
    assert button.description == "advanced (10)" and len(more.children) == 10
    assert more.layout.display == "none"  # folded
    button.value = True
    assert more.layout.display == ""
    button.value = False
    panel._progress("calibrate", 0, 10)
    time.sleep(0.05)
    panel._progress("calibrate", 5, 10)
    assert panel.w_stage.value.startswith("calibrate: 5/10, ") and "left" in panel.w_stage.value
    panel._progress("calibrate", 10, 10)
    assert panel.w_stage.value == "calibrate: 10/10"


def test_the_graph_tab_folds_qdq_and_explains_a_clicked_node(panel):
    """Issue 20: a quantized build's graph keeps the float graph's shape (weight and activation
    Q/DQ folded into their layer), the baseline beside it; a node shows its attributes, shapes and
    what the passes did, and a quantized one can be kept in float from there."""
    assert [panel.tabs.get_title(i) for i in range(len(panel.tabs.children))] == [
        "Charts", "History & export", "Graph", "Profile", "Throughput", "Sensitivity", "Search"]
    panel.enable("int8", samples=16)
    rec = panel.build()
    panel.tabs.selected_index = panel.TAB_GRAPH
    g = panel.graph_tab
    ops = [n.op_type for n in rec.model.proto.graph.node]
    drawn = [text for t in g.fig_build.data[1:] for text in t.text]
    assert ops.count("DequantizeLinear") > 20 and not any(t.startswith(("Dequan", "Quanti")) for t in drawn)
    assert len(drawn) < len(ops) / 2 and "Q/DQ folded" in g.fig_build.layout.title.text
    name, summary = g.fig_build.layout.title.text.split("<br>")
    assert name == f"build #{rec.index} {rec.name}" and len(name) < 60 and "+73 DQ" in summary
    conv = next(n for t in g.fig_build.data if t.name == "quantized" for n in t.customdata)
    details = g.select(conv)
    assert "int8: quantized" in details and "float[" in details and "folded in:" in details
    assert g.w_exclude.layout.display == ""  # the button to keep it in float
    g.w_exclude.click()
    assert conv in panel.recipe.passes[0].options["exclude"]
    assert any(e["node"] == conv for r in panel.current.build.reports for e in r.excluded)
    base_node = next(n for t in g.fig_base.data[1:] for n in t.customdata)
    assert "no pass changed it" in g.select(base_node, side="base")
    assert g.w_exclude.layout.display == "none"  # nothing to keep in float on the baseline's side
    panel.enable("int8", exclude="")
    panel.disable("int8")
    panel.tabs.selected_index = panel.TAB_CHARTS


def test_model_explorer_from_the_panel(panel):
    """Issue 20: the Graph tab's Model Explorer view: baseline and build in two synced panes, the
    build's pass statuses as an overlay file, the pass notes beside the view copy; on loopback."""
    from urllib.parse import parse_qs, urlparse  # noqa: PLC0415

    from workbench.viewer import available  # noqa: PLC0415

    if available():
        pytest.skip(available())
    panel.enable("fuse")
    rec = panel.build()
    try:
        url = panel.show_explorer()
        assert url.startswith("http://127.0.0.1:") and "<iframe" in panel.graph_tab.w_explorer.value
        data = json.loads(parse_qs(urlparse(url).query)["data"][0])
        assert len(data["models"]) == 2 and data["sync"] == {"mode": "match_node_id"}
        assert [p.endswith("pass_status.json") for p in data["nodeData"]] == [True]
        overlay = json.loads(open(data["nodeData"][0]).read())
        graph_id = data["nodeDataTargets"][0]
        statuses = overlay[graph_id]["results"]
        assert len(statuses) == len(rec.model.proto.graph.node)
        side = json.loads(open(data["models"][1]["url"] + ".wbnotes.json").read())
        assert side["notes"] and all(isinstance(v, list) for v in side["notes"].values())
        assert urllib.request.urlopen(url.split("?")[0] + "check_health", timeout=10).read() == b"model_explorer_ok"
    finally:
        panel.explorer.stop()
        panel.disable("fuse")
