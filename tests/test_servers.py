"""Listeners bind 127.0.0.1 only and stop when the panel or the process goes away (issue 9)."""

from __future__ import annotations

import gc
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

psutil = pytest.importorskip("psutil")
pytest.importorskip("netron")

from workbench.ui.netron_view import NetronServer  # noqa: E402

MODEL = __import__("conftest").tiny_cnn().SerializeToString()


def _listening(pid: int) -> list[tuple[str, int]]:
    return [(c.laddr.ip, c.laddr.port) for c in psutil.Process(pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN]


def _refused(port: int, timeout: float = 5.0) -> bool:
    """True once nothing accepts connections on 127.0.0.1:port (waits for a server thread to end)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                pass
        except OSError:
            return True
        time.sleep(0.1)
    return False


def test_netron_listens_on_loopback_only_and_stops() -> None:
    before = set(_listening(os.getpid()))
    server = NetronServer()
    url = server.show(MODEL)
    host, port = server.address
    assert url == f"http://127.0.0.1:{port}/"
    new = set(_listening(os.getpid())) - before
    assert new == {("127.0.0.1", port)}, new  # one listener, loopback only (no 0.0.0.0, no ::)
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    server.stop()
    assert _refused(port)
    assert set(_listening(os.getpid())) == before


def test_a_garbage_collected_server_stops() -> None:
    server = NetronServer()
    server.show(MODEL)
    port = server.address[1]
    del server
    gc.collect()
    assert _refused(port)


def test_panel_close_stops_netron(tmp_path, monkeypatch) -> None:
    pytest.importorskip("ipywidgets")
    from workbench.ui.panel import Workbench

    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.onnx").write_bytes(MODEL)
    w = Workbench(str(tmp_path / "m.onnx"), threads=1, refine=False, measure_baseline=False)
    port = int(w.show_netron().rsplit(":", 1)[1].strip("/"))
    assert ("127.0.0.1", port) in _listening(os.getpid())
    w.close()
    assert _refused(port)


CHILD = """
import sys, time
from workbench.ui.netron_view import NetronServer
s = NetronServer()
s.show(open(sys.argv[1], "rb").read())
print(s.address[1], flush=True)
if sys.argv[2] == "exit":
    sys.exit(0)
time.sleep(600)
"""


@pytest.mark.parametrize("how", ["exit", "sigkill", "sigterm"])
def test_server_ends_with_its_kernel(tmp_path, how: str) -> None:
    """A kernel that exits, is killed or is terminated leaves no listener behind."""
    (tmp_path / "m.onnx").write_bytes(MODEL)
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "m.onnx"), how],
                         stdout=subprocess.PIPE, text=True)
    port = int(p.stdout.readline())
    if how != "exit":
        p.send_signal(signal.SIGKILL if how == "sigkill" else signal.SIGTERM)
    p.wait(timeout=30)
    assert _refused(port)


def test_jupyter_lab_binds_loopback() -> None:
    from workbench.lab import lab_command

    cmd = lab_command(port=8899, open_browser=False)
    assert "--ServerApp.ip=127.0.0.1" in cmd
    assert not any(a.startswith(("--ip", "--ServerApp.ip=0", "--ServerApp.ip=*")) for a in cmd)
