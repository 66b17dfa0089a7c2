"""Screenshots of the panel on any model, as a user sees it in JupyterLab (headless Chromium).

    .venv/bin/python scripts/panel_shots.py sample:resnet50 --calib random --recipe int8:samples=32 --out /tmp/wb-shots/resnet50

Writes a one-cell notebook that opens the panel on MODEL and builds RECIPE, serves it with
`workbench lab` on 127.0.0.1, runs it, and saves: the loop (model, device, passes, deltas), the
Graph tab side by side, a clicked node's details, and Model Explorer (when installed). Every
request off 127.0.0.1 is blocked and listed. The browser test (tests/test_browser.py) checks the
same views on the sample; this is for looking at other models.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_browser import CHROMIUM, CHROMIUM_ARGS, KNOWN_NOISE, _stop, loopback_only  # noqa: E402

TOKEN = "wb-shots"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _notebook(model: str, recipe: str, quick: int, data: str | None, calib: str | None) -> nbformat.NotebookNode:
    opts = ", ".join(f"{k}={v!r}" for k, v in (dict(p.split("=", 1) for p in recipe.split(":")[1:])).items())
    code = (f"import plotly.io as pio\nfrom workbench.ui import Workbench\npio.renderers.default = 'plotly_mimetype'\n"
            f"wb = Workbench({model!r}, data={data!r}, calib={calib!r}, refine=False, quick_samples={quick})\n"
            f"wb.enable({recipe.split(':')[0]!r}{', ' if opts else ''}{opts})\nwb.build()\nwb")
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)], metadata={  # no kernel dialog
        "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--recipe", default="int8:samples=32", help="one pass and its options, as the CLI spells it")
    ap.add_argument("--quick", type=int, default=200, help="samples for the quick accuracy")
    ap.add_argument("--data", help="evaluation data (a path), as the panel takes it")
    ap.add_argument("--calib", help="calibration data, or 'random' (a latency-only look: synthetic samples)")
    ap.add_argument("--out", default="/tmp/wb-shots/panel")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import expect, sync_playwright  # noqa: PLC0415

    expect.set_options(timeout=600_000)  # a big model builds for minutes on 2 cores

    with tempfile.TemporaryDirectory(prefix="wb-shots-") as tmp:
        root = Path(tmp) / "root"
        (root / "notebooks").mkdir(parents=True)  # `workbench lab` opens notebooks/01_...: this one instead
        nbformat.write(_notebook(a.model, a.recipe, a.quick, a.data, a.calib), root / "notebooks" / "01_optimize_resnet.ipynb")
        settings = Path(tmp) / "settings"
        for rel, body in {"@jupyterlab/apputils-extension/notification.jupyterlab-settings":
                          {"fetchNews": "false", "checkForUpdates": False},
                          "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"}}.items():
            (settings / rel).parent.mkdir(parents=True, exist_ok=True)
            (settings / rel).write_text(json.dumps(body))
        port = _port()
        env = dict(os.environ, JUPYTER_CONFIG_DIR=f"{tmp}/cfg", JUPYTER_RUNTIME_DIR=f"{tmp}/rt",
                   IPYTHONDIR=f"{tmp}/ipy", JUPYTER_TOKEN=TOKEN, JUPYTER_PLATFORM_DIRS="1")
        log = open(Path(tmp) / "lab.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "workbench", "lab", "--no-browser", "--port", str(port),
                                 "--root", str(root), "--", f"--LabApp.user_settings_dir={settings}",
                                 f"--LabApp.workspaces_dir={tmp}/ws"], env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        blocked: list[str] = []
        try:
            for _ in range(240):
                assert proc.poll() is None, (Path(tmp) / "lab.log").read_text()[-2000:]
                try:
                    if requests.get(f"http://127.0.0.1:{port}/api/status", params={"token": TOKEN}, timeout=2).ok:
                        break
                except requests.ConnectionError:
                    time.sleep(0.5)
            with sync_playwright() as p:
                b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
                ctx = b.new_context(viewport={"width": 1500, "height": 1100})
                ctx.set_default_timeout(600_000)

                ctx.route("**/*", loopback_only(blocked))
                page = ctx.new_page()
                page.goto(f"http://127.0.0.1:{port}/lab/tree/notebooks/01_optimize_resnet.ipynb?token={TOKEN}")
                expect(page.locator('.jp-DebuggerBugButton[aria-disabled="false"]')).to_have_count(1)
                page.get_by_role("menuitem", name="Run", exact=True).click()
                page.locator('#jp-mainmenu-run li[data-command="runmenu:run-all"]').click()
                t0 = time.monotonic()
                expect(page.locator(".wb-results, .jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']")
                       .first).to_be_visible()
                assert page.locator(".wb-results").count(), page.locator(".jp-OutputArea").first.inner_text()
                expect(page.locator(".jp-InputArea-prompt", has_text="[1]")).to_have_count(1)
                print(f"built and measured in {time.monotonic() - t0:.0f} s")
                page.locator(".wb-header").first.evaluate("e => e.scrollIntoView({block: 'start'})")
                page.wait_for_timeout(500)
                page.screenshot(path=str(out / "1_loop.png"))
                page.get_by_role("tab", name="Graph", exact=True).click()
                graph = page.locator(".js-plotly-plot", has=page.locator("text.gtitle", has_text="build #"))
                expect(graph.first).to_be_visible()
                page.locator(".wb-header").first.evaluate("e => e.scrollIntoView({block: 'start'})")
                graph.first.scroll_into_view_if_needed()
                page.wait_for_timeout(500)
                page.screenshot(path=str(out / "2_graph.png"))
                point = graph.first.locator(".scatterlayer .trace", has=page.locator("path.point")).first \
                    .locator("path.point").first
                point.scroll_into_view_if_needed()  # the half scrolls: a point below it takes no click
                pt = point.bounding_box()
                page.mouse.click(pt["x"] + pt["width"] / 2, pt["y"] + pt["height"] / 2)
                expect(page.locator(".wb-node-details").first).to_contain_text("passes:")
                page.locator(".wb-node-details").first.scroll_into_view_if_needed()
                page.screenshot(path=str(out / "3_node_details.png"))
                button = page.locator("button.widget-button", has_text="Open in Model Explorer")
                page.get_by_role("tab", name="Model Explorer").click()
                if button.is_enabled():
                    button.click()
                    frame = page.locator("iframe[title='Model Explorer']")
                    expect(frame).to_have_count(1)
                    frame.scroll_into_view_if_needed()
                    expect(page.frame_locator("iframe[title='Model Explorer']").get_by_text("pass_status").first) \
                        .to_be_visible()
                    page.wait_for_timeout(4000)
                    page.screenshot(path=str(out / "4_model_explorer.png"))
                b.close()
        finally:
            _stop(proc)
            log.close()
    hosts = {u.split("/")[2] for u in blocked} - KNOWN_NOISE
    print("screenshots in", out, "; off-box requests blocked:", sorted(hosts) or "none")


if __name__ == "__main__":
    main()
