"""workbench.viewer: Model Explorer overlays, URLs, the Q/DQ-folding adapter and the offline server."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from workbench.core.graph_diff import STATUSES
from workbench.errors import UsageError, WorkbenchError
from workbench.viewer import (
    STATUS_COLORS,
    ExplorerServer,
    ViewModel,
    available,
    heat_overlay,
    status_overlay,
    url_for,
)
from workbench.viewer import explorer as explorer_mod

HINT = "pip install 'onnx-inference-workbench[viewer]' (or pip install -e '.[viewer]' from a clone)"
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(port: int, path: str) -> bytes:
    with OPENER.open(f"http://127.0.0.1:{port}{path}", timeout=30) as r:
        return r.read()


def url_data(url: str) -> dict:
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    return json.loads(q["data"][0])


# --- pure parts ----------------------------------------------------------------------------------


def test_status_overlay_json_codes_colors_and_legend(tmp_path):
    ov = status_overlay({"conv": "quantized", "relu": "unchanged", "dq": "added", "fc": "excluded"})
    data = ov.to_json("build.onnx")
    assert list(data) == ["build.onnx"]
    res = data["build.onnx"]["results"]
    assert res["conv"]["value"] == STATUSES.index("quantized") and res["conv"]["bgColor"] == "#ffa726"
    assert res["relu"]["bgColor"] == "#b0bec5" and res["dq"]["bgColor"] == "#ab47bc"
    assert res["fc"]["bgColor"] == "#e53935" and res["fc"]["textColor"] == "#ffffff"
    assert res["relu"]["textColor"] == "#000000"
    assert STATUS_COLORS == {"unchanged": "#b0bec5", "changed": "#42a5f5", "added": "#ab47bc",
                             "fused": "#26a69a", "quantized": "#ffa726", "fp16": "#ec407a",
                             "pruned": "#8d6e63", "excluded": "#e53935"}
    thresholds = data["build.onnx"]["thresholds"]
    assert [t["value"] for t in thresholds] == list(range(len(STATUSES)))
    assert all(s in ov.legend and STATUS_COLORS[s] in ov.legend for s in STATUSES)
    assert json.loads(ov.write(tmp_path / "s.json", "build.onnx").read_text()) == data
    with pytest.raises(ValueError, match="unknown node status"):
        status_overlay({"conv": "int8"})


def test_heat_overlay_gradient_skips_non_finite():
    ov = heat_overlay({"a": 0.5, "b": 2.0, "c": float("nan"), "d": float("inf")}, "time_ms")
    g = ov.to_json("m.onnx")["m.onnx"]
    assert g["results"] == {"a": {"value": 0.5}, "b": {"value": 2.0}}
    assert [s["stop"] for s in g["gradient"]] == [0, 1] and "thresholds" not in g
    assert "0.5" in ov.legend and "2" in ov.legend


def test_url_for_single_pane():
    data = url_data(url_for(5000, ["/v/build.onnx"], [("/v/nd/status.json", "build.onnx")]))
    assert data["models"] == [{"url": "/v/build.onnx", "adapterId": "workbench_onnx"}]
    assert data["nodeData"] == ["/v/nd/status.json"] and data["nodeDataTargets"] == ["build.onnx"]
    (pane,) = data["uiState"]["paneStates"]
    assert pane["selectedGraphId"] == "build.onnx" and pane["widthFraction"] == 1
    assert "sync" not in data
    assert url_for(5000, ["/v/a.onnx"]).startswith("http://127.0.0.1:5000/?data=")


def test_url_for_side_by_side_and_compare_off():
    data = url_data(url_for(5000, ["/v/baseline.onnx", "/v/int8.onnx"]))
    assert data["sync"] == {"mode": "match_node_id"}
    left, right = data["uiState"]["paneStates"]
    assert (left["selectedGraphId"], right["selectedGraphId"]) == ("baseline.onnx", "int8.onnx")
    assert left["widthFraction"] == right["widthFraction"] == 0.5 and left["selected"] and not right["selected"]
    one = url_data(url_for(5000, ["/v/baseline.onnx", "/v/int8.onnx"], compare=False))
    assert len(one["uiState"]["paneStates"]) == 1 and "sync" not in one and len(one["models"]) == 2
    opened = url_data(url_for(5000, ["/v/a.onnx", "/v/b.onnx"], expanded=["layer1/0"], selected_node="conv"))
    assert all(p["deepestExpandedGroupNodeIds"] == ["layer1/0___group___"] and p["selectedNodeId"] == "conv"
               for p in opened["uiState"]["paneStates"])
    with pytest.raises(UsageError):
        url_for(5000, [])


def test_available_names_the_install_hint(monkeypatch):
    import workbench.viewer as viewer  # noqa: PLC0415

    monkeypatch.setattr(viewer, "find_spec", lambda name: None if name == "model_explorer" else object())
    reason = viewer.available()
    assert reason is not None and "ai-edge-model-explorer" in reason and reason.endswith(HINT)
    with pytest.raises(WorkbenchError) as e:
        ExplorerServer().show([ViewModel("m", "x.onnx")])
    assert str(e.value) == reason


def test_start_failure_shows_the_server_output(tmp_path, monkeypatch):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'ImportError: boom in model_explorer' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(explorer_mod.sys, "executable", str(fake))
    srv = ExplorerServer(start_timeout=20)
    with pytest.raises(WorkbenchError, match="boom in model_explorer") as e:
        srv.start()
    assert "did not start" in str(e.value) and not srv.alive


# --- the server, on a real int8 build ------------------------------------------------------------


class _Listener:
    """A TCP port that counts connections: the server's proxy, so any outside request shows."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.hits = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.hits += 1
            conn.close()


@pytest.fixture(scope="module")
def served():
    if (reason := available()) is not None:
        pytest.skip(reason)
    from workbench import load_model  # noqa: PLC0415
    from workbench.core.build import optimize  # noqa: PLC0415
    from workbench.core.graph_diff import diff_graphs, node_notes, node_status  # noqa: PLC0415

    base = load_model("sample:resnet-fashion")
    q = optimize(base, "int8:samples=16")
    diff = diff_graphs(base.proto, q.model.proto)
    status = node_status(q.model.proto, q.reports, diff)
    notes = {n: node_notes(n, q.reports, diff) for n in status}
    proxy = _Listener()
    srv = ExplorerServer()
    with pytest.MonkeyPatch.context() as mp:  # anything not for 127.0.0.1 goes to the listener
        for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
            mp.setenv(var, f"http://127.0.0.1:{proxy.port}")
        url = srv.show([ViewModel("baseline", base), ViewModel("build 1 int8", q.model, notes)],
                       overlays={"build 1 int8": [status_overlay(status)],
                                 0: [heat_overlay({"node_conv2d": 1.5}, "time_ms")]})
    yield srv, url, q, status, proxy
    srv.close()
    proxy.sock.close()


def convert(port: int, path: str, adapter: str = "workbench_onnx") -> dict:
    cmd = {"extensionId": adapter, "cmdId": "convert", "modelPath": path, "settings": {},
           "deleteAfterConversion": False}
    out = json.loads(get(port, "/api/v1/send_command?json=" + urllib.parse.quote(json.dumps(cmd))))
    assert "error" not in out, out.get("error")
    return out["graphs"][0]


def visible_top(graph: dict, top: str) -> int:
    """Nodes shown when the graph opens: top-level ops (no Initializers) plus top-level layers."""
    shown = [n for n in graph["nodes"] if n["label"] != "Initializer"]
    layers = {n["namespace"][len(top):].lstrip("/").split("/")[0] for n in shown
              if n["namespace"] != top} - {""}
    return sum(1 for n in shown if n["namespace"] == top) + len(layers)


def test_health_url_and_view_files(served):
    srv, url, _, _, _ = served
    assert get(srv.port, "/check_health") == b"model_explorer_ok"
    data = url_data(url)
    paths = [m["url"] for m in data["models"]]
    assert [Path(p).name for p in paths] == ["baseline.onnx", "build_1_int8.onnx"]
    assert all(Path(p).exists() and Path(p + ".wbnotes.json").exists() for p in paths)
    assert data["sync"] == {"mode": "match_node_id"}
    assert data["nodeDataTargets"] == ["build_1_int8.onnx", "baseline.onnx"]
    # the page reads the overlays through the server; they are keyed by the graph id
    nd = json.loads(get(srv.port, "/api/v1/read_text_file?path=" + urllib.parse.quote(data["nodeData"][0])))
    assert list(json.loads(nd["content"])) == ["build_1_int8.onnx"]
    assert srv.show([ViewModel("again", paths[0])]).split("/?")[0] == url.split("/?")[0]  # same server


def test_adapter_folds_qdq_into_groups_and_carries_notes(served):
    srv, url, q, status, _ = served
    build = [m["url"] for m in url_data(url)["models"]][1]
    ours = convert(srv.port, build)
    stock = convert(srv.port, build, "onnx_adapter")
    assert ours["id"] == "build_1_int8.onnx" and stock["id"] == q.model.proto.graph.name
    assert ours["nodeLabelsToHide"] == ["Initializer"]
    before, after = visible_top(stock, stock["id"]), visible_top(ours, "")
    assert before > 130 and after < before / 5, (before, after)
    nodes = {n["id"]: n for n in ours["nodes"]}
    groups = {ns: a for ns, a in ours["groupNodeAttributes"].items() if "[workbench] op" in a}
    assert len(groups) >= 20
    conv = [ns for ns, a in groups.items() if a["[workbench] op"] == "node_conv2d_3"][0]
    assert conv == "layer1/1/conv1"  # the baseline's torch scope, shared onto the build
    inside = Counter(n["label"] for n in ours["nodes"] if n["namespace"] == conv)
    assert inside["Conv"] == 1 and inside["DequantizeLinear"] >= 2 and inside["Initializer"] >= 4
    assert not any(n["namespace"] == "" and n["label"] == "DequantizeLinear"
                   and "weight" in n["id"] for n in ours["nodes"])
    quantized = next(n for n, s in status.items() if s == "quantized")
    attrs = {a["key"]: a["value"] for a in nodes[quantized]["attrs"]}
    assert "quantized" in attrs["[workbench] int8"]
    base = convert(srv.port, [m["url"] for m in url_data(url)["models"]][0])
    assert "node_conv2d_3" in {n["id"] for n in base["nodes"]} and base["id"] == "baseline.onnx"


def test_server_is_offline(served):
    srv, _, _, _, proxy = served
    assert json.loads(get(srv.port, "/api/v1/check_new_version")) == {
        "version": "", "runningVersion": "", "releaseUrl": "", "desktopAppUrl": ""}
    index = get(srv.port, "/").decode()
    assert "fonts.gstatic.com" not in index and "fonts.googleapis.com" not in index
    assert "sync_navigation_match_node_id_highlight_diffs" in index and "main-" in index
    assert b"fonts.gstatic.com" not in get(srv.port, "/" + next(
        p for p in index.split('"') if p.startswith("styles-") and p.endswith(".css")))
    ids = {e["id"] for e in json.loads(get(srv.port, "/api/v1/get_extensions"))}
    assert {"workbench_onnx", "onnx_adapter"} <= ids
    assert proxy.hits == 0  # no update check (PyPI, GitHub) went out


def test_overlay_for_an_unknown_model_is_refused(served):
    srv, _, q, status, _ = served
    with pytest.raises(UsageError, match="unknown model 'nope'"):
        srv.show([ViewModel("b", q.model)], overlays={"nope": [status_overlay(status)]})


def test_stop_frees_the_port(served):
    srv = served[0]
    port = srv.port
    assert port is not None
    srv.stop()
    assert not srv.alive and srv.port is None and srv.url == ""
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


def test_importing_the_viewer_does_not_import_model_explorer():
    code = "import sys, workbench, workbench.viewer; print('model_explorer' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
