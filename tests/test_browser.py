"""The workbench in a real browser: `workbench lab` (the README's launch command) serves
notebooks/01_optimize_resnet.ipynb; headless Chromium (Playwright) runs it, toggles a pass, builds,
and checks that the deltas, the Pareto chart and both graph views update. Screenshots go to
WB_SHOTS_DIR (default /tmp/wb-shots).

Chromium comes from Debian (`apt-get install chromium`; `scripts/test` installs it when it can).
In CI this test must run: without Chromium it fails, unless WORKBENCH_ALLOW_NO_BROWSER=1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(1500)]

CHROMIUM = os.environ.get("WB_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(os.environ.get("WB_SHOTS_DIR", "/tmp/wb-shots"))
TOKEN = "wb-browser-test"
# Hosts Netron's page is known to call (telemetry, a consent geo-lookup): blocked, tolerated.
KNOWN_NOISE = {"analytics.google.com", "www.google-analytics.com", "ipinfo.io"}
# WebGL on SwiftShader (no GPU): Model Explorer draws its graphs with WebGL
CHROMIUM_ARGS = ["--no-sandbox", "--enable-unsafe-swiftshader", "--use-angle=swiftshader",
                 "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                 "--disable-dev-shm-usage",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"]


def loopback_only(blocked: list[str]):
    """A Playwright route handler: 127.0.0.1, localhost, data: and blob: pass; every other request
    is aborted and its URL appended to ``blocked``."""
    def router(route):
        url = route.request.url
        host = url.split("/")[2].rsplit(":", 1)[0] if "://" in url else ""
        if url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            blocked.append(url)
            route.abort()
    return router


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's session, then kill whatever is left (kernels included)."""
    try:
        kids = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        kids = []
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)
    for k in kids:
        try:
            k.kill()
        except psutil.NoSuchProcess:
            pass


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("WORKBENCH_ALLOW_NO_BROWSER") == "1":
            pytest.skip(f"{CHROMIUM} missing and WORKBENCH_ALLOW_NO_BROWSER=1")
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (scripts/test does this as root)")
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture()
def lab(tmp_path):
    """`workbench lab` on a free loopback port, isolated config, no news, every cell in the DOM."""
    port = _free_port()
    settings = tmp_path / "settings"
    for rel, body in {
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
            {"fetchNews": "false", "checkForUpdates": False},
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    }.items():
        (settings / rel).parent.mkdir(parents=True, exist_ok=True)
        (settings / rel).write_text(json.dumps(body))
    # Serve a copy of the notebooks: JupyterLab autosaves outputs into the files it runs.
    root = tmp_path / "root"
    shutil.copytree(Path(__file__).resolve().parents[1] / "notebooks", root / "notebooks",
                    ignore=shutil.ignore_patterns("exported_build", "exported_own_model", "uploaded_models"))
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"), JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"),
               IPYTHONDIR=str(tmp_path / "ipy"), JUPYTER_TOKEN=TOKEN, JUPYTER_PLATFORM_DIRS="1")
    log = open(tmp_path / "lab.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench", "lab", "--no-browser", "--port", str(port), "--root", str(root), "--",
         f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={tmp_path / 'ws'}",
         "--LabApp.extension_manager=readonly"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            assert proc.poll() is None, (tmp_path / "lab.log").read_text()[-3000:]
            try:
                if requests.get(f"http://127.0.0.1:{port}/api/status", params={"token": TOKEN}, timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.3)
        yield port, tmp_path / "lab.log"
    finally:
        _stop(proc)
        log.close()


def test_workbench_in_jupyterlab(browser, lab):
    from playwright.sync_api import expect

    port, log = lab
    blocked: list[str] = []
    ctx = browser.new_context(viewport={"width": 1500, "height": 1100})
    ctx.set_default_timeout(60_000)

    ctx.route("**/*", loopback_only(blocked))
    page = ctx.new_page()
    t0 = time.monotonic()
    timings = {}
    try:
        page.goto(f"http://127.0.0.1:{port}/lab/tree/notebooks/01_optimize_resnet.ipynb?token={TOKEN}",
                  timeout=90_000)
        cells = page.locator(".jp-Notebook .jp-CodeCell")
        expect(cells.first).to_be_visible(timeout=90_000)
        # Count the code cells in the file: the DOM may not hold every cell yet at this point
        # (an earlier version counted the DOM and waited forever for a cell count never reached).
        nb = json.loads((Path(__file__).resolve().parents[1] / "notebooks" / "01_optimize_resnet.ipynb").read_text())
        n_cells = sum(c["cell_type"] == "code" for c in nb["cells"])
        expect(page.locator('.jp-DebuggerBugButton[aria-disabled="false"]')).to_have_count(1, timeout=120_000)
        page.screenshot(path=str(SHOTS / "00_kernel_ready.png"))
        for _attempt in range(3):  # Run > Run All Cells; retry only if nothing was scheduled
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.locator('#jp-mainmenu-run li[data-command="runmenu:run-all"]').click()
            try:
                page.wait_for_function(
                    """() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputArea-prompt')]
                             .some(p => /\\[(\\*|\\d+)\\]/.test(p.textContent))""", timeout=15_000)
                break
            except Exception:  # noqa: BLE001
                continue
        else:
            raise AssertionError("Run All Cells never started")
        # Poll from Python (a page-side wait_for_function polls on animation frames, which a
        # headless page can starve), printing progress so a slow CI run shows where it is.
        deadline, last = time.monotonic() + 1_200, None
        while True:
            prompts = page.evaluate(
                """() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputArea-prompt')]
                         .map(p => p.textContent.trim())""")
            if prompts != last:
                print(f"[{time.monotonic() - t0:6.1f} s] prompts: {prompts}", flush=True)
                last = prompts
            if len(prompts) == n_cells and all(re.fullmatch(r"\[\d+\]:?", p) for p in prompts):
                break
            assert time.monotonic() < deadline, f"notebook did not finish: prompts {prompts}"
            time.sleep(2)
        timings["notebook_ran"] = time.monotonic() - t0
        print(f"[{time.monotonic() - t0:6.1f} s] notebook ran; reading its text", flush=True)
        page.screenshot(path=str(SHOTS / "01a_notebook_ran.png"))
        text = page.locator(".jp-Notebook").inner_text(timeout=120_000)
        print(f"[{time.monotonic() - t0:6.1f} s] read {len(text)} characters", flush=True)
        assert "Traceback" not in text and "internal error" not in text
        # What tests/test_notebook.py checks of the other notebooks' runs (this test is the one
        # that executes notebook 01 in CI): the whole story ran to the end.
        assert "best within 1 point:" in text and "(10000 images)" in text, text[-2000:]
        # The sample's accuracy target, on the full test set: the baseline row after refinement.
        base = re.search(r"#0 top-1 (0\.\d+) \(10000 images\)", text)
        assert base and float(base.group(1)) >= 0.93, text[-2000:]
        assert "exported" in text
        panel = page.locator(".jp-OutputArea-output .widget-vbox").first
        expect(page.locator(".wb-summary").first).to_contain_text("sample:resnet-fashion")
        page.screenshot(path=str(SHOTS / "01_after_run_all.png"), full_page=False)

        # The history already holds the notebook's scripted builds; a click adds one more.
        history = page.locator("table.wb-history tr")
        before = history.count()
        fold = page.locator("button.widget-toggle-button", has_text=re.compile(r"^fold$"))
        fold.scroll_into_view_if_needed()
        fold.click()
        expect(fold).to_have_class(re.compile(r"\bmod-active\b"))
        page.locator("button.widget-button", has_text="Build & measure").click()
        expect(history).to_have_count(before + 1, timeout=180_000)
        timings["click_build"] = time.monotonic() - t0
        results = page.locator(".wb-results").first
        expect(results).to_contain_text("fold")
        expect(page.locator(".wb-delta[data-metric='p50_ms']").first).to_be_visible()
        page.locator(".jp-OutputArea .lm-TabBar").first.scroll_into_view_if_needed()  # the Charts tab
        pareto_pts = page.locator(".js-plotly-plot .scatterlayer .trace").filter(
            has=page.locator("path.point"))
        # plotly draws after the history row: on a loaded CI machine (the other test worker busy)
        # it took longer than 30 s once
        expect(pareto_pts.first).to_be_attached(timeout=120_000)
        # The Pareto chart has one marker per measured build (baseline included).
        n_builds = before + 1 - 1  # header row excluded
        pareto = page.locator(".js-plotly-plot", has=page.locator("text.gtitle", has_text="Accuracy against latency"))
        expect(pareto.locator(".scatterlayer path.point")).to_have_count(n_builds, timeout=120_000)
        # The loop on one screen (issue 20): model, device, passes, build and deltas above the tabs.
        page.locator(".wb-header").first.evaluate("e => e.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(300)
        build_btn = page.locator("button.widget-button", has_text="Build & measure")
        for loc in (page.locator(".wb-summary").first, build_btn, results, page.locator(".jp-OutputArea .lm-TabBar").first):
            box = loc.bounding_box()
            assert box and box["y"] >= 0 and box["y"] + min(box["height"], 40) <= 1100, (loc, box)
        page.screenshot(path=str(SHOTS / "02_after_click_build.png"))
        pareto.first.scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "02b_charts_tab.png"))

        # The Graph tab: baseline and build side by side, Q/DQ folded, the passes' statuses as the
        # colors; a click on a node shows its attributes, shapes and what the passes did to it.
        page.get_by_role("tab", name="Graph", exact=True).click()
        graph = page.locator(".js-plotly-plot", has=page.locator("text.gtitle", has_text="build #"))
        expect(graph.first).to_be_visible(timeout=60_000)
        base_graph = page.locator(".js-plotly-plot", has=page.locator("text.gtitle", has_text="removed by the build"))
        expect(base_graph.first).to_be_visible()
        points = graph.first.locator(".scatterlayer path.point")
        assert points.count() > 10
        expect(graph.first.locator(".legendtext", has_text="quantized")).to_have_count(1)
        point = graph.first.locator(".scatterlayer .trace", has=page.locator("path.point")).first \
            .locator("path.point").first
        point.scroll_into_view_if_needed()  # the half scrolls: a point below it takes no click
        pt = point.bounding_box()
        page.mouse.click(pt["x"] + pt["width"] / 2, pt["y"] + pt["height"] / 2)
        details = page.locator(".wb-node-details").first
        expect(details).to_contain_text("passes:", timeout=30_000)
        expect(details).to_contain_text("outputs:")
        page.locator(".wb-node-details").first.scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "03_graph_view.png"))
        page.get_by_role("tab", name="Charts", exact=True).click()

        # The same build on every CPU runtime, side by side (issue 18).
        page.locator("button.widget-button", has_text="Compare runtimes").click()
        runtimes = page.locator(".wb-runtimes").first
        expect(runtimes).to_contain_text("fastest:", timeout=120_000)
        expect(runtimes).to_contain_text("OpenVINO CPU (f32)")
        expect(runtimes).to_contain_text("ONNX Runtime CPU")
        runtimes.scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "03b_runtimes.png"))

        # Where the time goes (issue 19): the build's per-layer profile beside the baseline's.
        page.get_by_role("tab", name="Profile", exact=True).click()
        page.locator("button.widget-button", has_text="Profile build vs baseline").click()
        prof = page.locator(".wb-profile").first
        expect(prof).to_contain_text("faster", timeout=120_000)
        expect(prof).to_contain_text("the profile explains")
        ops = page.locator(".js-plotly-plot", has=page.locator("text.gtitle", has_text="Time per op type"))
        expect(ops.first).to_be_visible()
        assert ops.first.locator(".barlayer .point").count() >= 2
        heat = page.locator(".js-plotly-plot", has=page.locator("text.gtitle", has_text="time per node"))
        expect(heat).to_have_count(2)
        assert heat.nth(1).locator(".scatterlayer path.point").count() > 10
        ops.first.scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "03c_profile.png"))
        heat.first.scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "03d_profile_heat.png"))
        page.get_by_role("tab", name="Throughput").click()
        for label, value in (("batches", "1,8"), ("concurrency", "1,2"), ("s/point", "0.1")):
            field = page.locator(".widget-text, .widget-inline-hbox", has_text=label).locator("input").first
            field.fill(value)
            field.press("Enter")
        page.locator("button.widget-button", has_text="Measure throughput curve").click()
        sweep = page.locator(".wb-sweep").first
        expect(sweep).to_contain_text("items/s", timeout=120_000)
        curve = page.locator(".js-plotly-plot", has=page.locator(".xtitle", has_text="items/s"))
        expect(curve.first).to_be_visible()
        curve.first.scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "03e_throughput.png"))

        page.get_by_role("tab", name="Graph", exact=True).click()
        page.get_by_role("tab", name="Netron").click()
        page.locator("button.widget-button", has_text="Show in Netron").click()
        frame_sel = "iframe[title='Netron']"
        expect(page.locator(frame_sel)).to_have_count(1)
        src = page.locator(frame_sel).get_attribute("src")
        ctx.add_cookies([{"name": "consent", "value": str(int(time.time() * 1000)), "url": src}])
        page.locator(frame_sel).evaluate("f => { f.src = f.src; }")  # reload with the consent cookie
        frame = page.frame_locator(frame_sel)
        expect(frame.locator("#canvas .node").first).to_be_visible(timeout=60_000)
        assert "Conv" in frame.locator("#canvas").text_content()
        page.locator(frame_sel).scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "04_netron.png"))

        # Model Explorer (issue 20): baseline and build side by side, Q/DQ folded into their
        # layers, the passes' statuses as an overlay; every request stays on 127.0.0.1.
        page.get_by_role("tab", name="Model Explorer").click()
        page.locator("button.widget-button", has_text="Open in Model Explorer").click()
        me_sel = "iframe[title='Model Explorer']"
        expect(page.locator(me_sel)).to_have_count(1, timeout=90_000)
        page.locator(me_sel).scroll_into_view_if_needed()
        me = page.frame_locator(me_sel)
        expect(me.locator("canvas").first).to_be_visible(timeout=90_000)
        expect(me.get_by_text("pass_status").first).to_be_visible(timeout=90_000)  # the overlay loaded
        expect(me.get_by_text(re.compile(r"op node count")).first).to_be_visible()
        page.screenshot(path=str(SHOTS / "04b_model_explorer.png"))

        # Keep the best and export it: the History & export tab.
        page.get_by_role("tab", name="History & export").click()
        page.locator("button.widget-button", has_text="Export current build").click()
        expect(page.locator("text=exported the bundle").first).to_be_visible(timeout=60_000)

        # The user's own data through the panel's Data row (issue 17): a .npz path, then Load data.
        data_file = Path(__file__).resolve().parents[1] / "sample_models" / "fashion_mnist_test.npz"
        box = page.locator(".widget-text", has_text="eval data").locator("input")
        box.scroll_into_view_if_needed()
        box.fill(str(data_file))
        box.press("Enter")
        page.locator("button.widget-button", has_text="Load data").click()
        expect(page.locator(".wb-data").first).to_contain_text("fashion_mnist_test.npz", timeout=180_000)
        expect(page.locator(".wb-data").first).to_contain_text("10000 samples, labeled")
        page.locator(".wb-data").first.scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "05_own_data.png"))

        # A bad model path: one error line in the panel, and the panel keeps the model it had.
        model_box = page.locator("input[placeholder='sample:NAME or a path to .onnx']").first
        model_box.scroll_into_view_if_needed()
        model_box.fill("/nonexistent/model.onnx")
        page.locator("button.widget-button", has_text="Load").first.click()
        err = page.locator(".wb-error").first
        expect(err).to_contain_text("error:", timeout=60_000)
        expect(err).to_contain_text("model.onnx")
        expect(page.locator(".wb-summary").first).to_contain_text("sample:resnet-fashion")
        err.scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "06_bad_model_path.png"))
        timings["done"] = time.monotonic() - t0
        assert panel.count() >= 1
    except Exception:
        page.screenshot(path=str(SHOTS / "FAILED.png"))
        print(log.read_text()[-4000:])
        raise
    finally:
        ctx.close()
        print("browser timings (s):", {k: round(v, 1) for k, v in timings.items()})
    hosts = {u.split("/")[2] for u in blocked}
    assert hosts <= KNOWN_NOISE, f"unexpected off-box requests: {sorted(hosts - KNOWN_NOISE)}"
