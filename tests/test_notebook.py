"""The main job: the notebook executes headless, and `workbench lab` serves it on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import requests
from nbclient import NotebookClient

from conftest import REPO

NOTEBOOK = REPO / "notebooks" / "01_optimize_resnet.ipynb"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _jupyter_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    for var, sub in (("JUPYTER_CONFIG_DIR", "cfg"), ("JUPYTER_RUNTIME_DIR", "rt"),
                     ("IPYTHONDIR", "ipy"), ("JUPYTER_DATA_DIR", "data")):
        env[var] = str(tmp_path / sub)
    return env


# Notebook 01 (the main job) is executed in JupyterLab by tests/test_browser.py, which checks the
# same things in the browser; executing it here too would double its minutes in CI. Run it here
# as well with WORKBENCH_NBCLIENT_ALL=1 (e.g. where Chromium cannot be installed).
NOTEBOOKS = [p for p in sorted((REPO / "notebooks").glob("*.ipynb"))
             if p != NOTEBOOK or os.environ.get("WORKBENCH_NBCLIENT_ALL") == "1"]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_notebook_executes_without_errors(path, tmp_path, monkeypatch):
    for k, v in _jupyter_env(tmp_path).items():
        monkeypatch.setenv(k, v)
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit it with cleared outputs"
    run_dir = tmp_path / "nb"
    run_dir.mkdir()
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(run_dir)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "internal error" not in json_dump(nb) and "Traceback" not in text
    if path != NOTEBOOK:
        assert text.strip(), "the notebook printed nothing"
        return
    assert "best within 1 point:" in text and "(10000 images)" in text
    widgets = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert widgets, "the panel was not displayed"
    assert (run_dir / "exported_build" / "manifest.json").is_file()


def json_dump(nb) -> str:
    return nbformat.writes(nb)


@pytest.mark.slow
def test_lab_command_serves_the_notebook(tmp_path):
    port = _free_port()
    env = _jupyter_env(tmp_path)
    env["JUPYTER_TOKEN"] = "wbtest"
    proc = subprocess.Popen([sys.executable, "-m", "workbench", "lab", "--no-browser", "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 90
        status = None
        while time.time() < deadline and proc.poll() is None:
            try:
                status = requests.get(f"{base}/api/status", params={"token": "wbtest"}, timeout=2)
                if status.ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
        assert status is not None and status.ok, proc.stdout.read().decode() if proc.poll() is not None else "timeout"
        r = requests.get(f"{base}/api/contents/notebooks/01_optimize_resnet.ipynb",
                         params={"token": "wbtest"}, timeout=10)
        assert r.ok and r.json()["type"] == "notebook"
        lab = requests.get(f"{base}/lab/tree/notebooks/01_optimize_resnet.ipynb",
                           params={"token": "wbtest"}, timeout=10)
        assert lab.ok and "JupyterLab" in lab.text
        # Bound to loopback only: the port is not open on another local address.
        with socket.socket() as s:
            s.settimeout(1)
            other = socket.gethostbyname(socket.gethostname())
            if not other.startswith("127."):
                assert s.connect_ex((other, port)) != 0
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
