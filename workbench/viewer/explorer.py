"""Google's Model Explorer, served offline on 127.0.0.1 by a subprocess and embedded as an iframe.

Model Explorer's server blocks forever and has no stop API, so it runs as
``python -m workbench.viewer._serve PORT`` in its own session and is stopped with SIGTERM
(``stop``, or at interpreter exit). The page is driven by its URL (:func:`url_for`): which model
files to open, in one pane or two synced by node id, and which overlay files to load; one server
shows any number of views.

Anything that can reach the port can read any file the user can (``/api/v1/read_text_file``):
the server binds loopback only, as Netron does.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import onnx

from ..errors import UsageError, WorkbenchError, install_hint
from .overlay import Overlay

__all__ = ["ExplorerServer", "ViewModel", "url_for", "ADAPTER_ID"]

ADAPTER_ID = "workbench_onnx"  # wb_explorer/main.py
HOST = "127.0.0.1"
_HERE = Path(__file__).resolve().parent  # holds wb_explorer/, the extension
_KEEP_VIEWS = 4  # view folders kept for iframes that may reload


@dataclass
class ViewModel:
    """One model to show: ``label`` names its file (e.g. ``baseline``, ``build 3 int8``)."""

    label: str
    model: Any  # onnx.ModelProto, a path, or a workbench Model (anything with ``.proto``)
    notes: dict[str, list[str]] = field(default_factory=dict)  # node name -> pass notes


def url_for(port: int, models: Sequence[str | Path], node_data: Sequence[tuple[str | Path, str]] = (),
            *, compare: bool = True, selected_node: str = "", expanded: Sequence[str] = (),
            adapter_id: str = ADAPTER_ID, host: str = HOST, open_in_new_tab: bool = False) -> str:
    """The page URL for ``models`` (files the server can read): one pane, or the first two side
    by side synced by node id when ``compare`` (Model Explorer has at most two panes; the other
    models are in its graph list). ``node_data`` is (overlay JSON file, target model file name);
    ``expanded`` names layers (namespaces such as ``layer1/0``) to open, ``selected_node`` a node id."""
    if not models:
        raise UsageError("no model to show", "give at least one model")
    paths = [os.path.abspath(p) for p in models]
    panes = paths[:2] if compare and len(paths) > 1 else paths[:1]
    data: dict[str, Any] = {"models": [{"url": p, "adapterId": adapter_id} for p in paths]}
    if node_data:
        data["nodeData"] = [os.path.abspath(p) for p, _ in node_data]
        data["nodeDataTargets"] = [os.path.basename(t) for _, t in node_data]
    data["uiState"] = {"paneStates": [
        {"deepestExpandedGroupNodeIds": [f"{ns}___group___" for ns in expanded],
         "selectedNodeId": selected_node,
         "selectedGraphId": os.path.basename(p), "selectedCollectionLabel": os.path.basename(p),
         "widthFraction": 1 / len(panes), "flattenLayers": False, "selected": i == 0}
        for i, p in enumerate(panes)]}
    if len(panes) == 2:
        data["sync"] = {"mode": "match_node_id"}
    extra = "&show_open_in_new_tab=1" if open_in_new_tab else ""
    return f"http://{host}:{port}/?data={quote(json.dumps(data, separators=(',', ':')))}{extra}"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"


def _proto(model: Any) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    if hasattr(model, "proto"):
        return model.proto
    return onnx.load(str(model), load_external_data=False)


def _namespaces(proto: onnx.ModelProto) -> dict[str, str]:
    return {n.name: p.value for n in proto.graph.node for p in n.metadata_props if p.key == "namespace"}


def _write_view(proto: onnx.ModelProto, path: Path, notes: Mapping[str, Any], shared: Mapping[str, str]) -> None:
    """The view copy (unnamed nodes named ``<op>_<i>`` as graph_diff does) and its sidecar."""
    if any(not n.name for n in proto.graph.node):
        proto = onnx.ModelProto.FromString(proto.SerializeToString())
        for i, n in enumerate(proto.graph.node):
            n.name = n.name or f"{n.op_type}_{i}"
    try:
        onnx.save(proto, str(path))
    except ValueError:  # over 2 GB: the weights go to a side file (not shown anyway)
        onnx.save(proto, str(path), save_as_external_data=True, location=path.name + ".data")
    names = {n.name for n in proto.graph.node}
    side = {"notes": {k: list(v) for k, v in notes.items()},
            "namespaces": {k: v for k, v in shared.items() if k in names}}
    Path(str(path) + ".wbnotes.json").write_text(json.dumps(side), encoding="utf-8")


def _free_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        if port != 8080:  # Model Explorer treats 8080 as "scan for a free one"
            return port


class ExplorerServer:
    """One Model Explorer server (started on first ``show``, reused while alive)."""

    def __init__(self, *, start_timeout: float = 60.0, cache_dir: str | Path | None = None) -> None:
        self._state: dict[str, Any] = {"proc": None, "port": None}
        self._tmp = tempfile.TemporaryDirectory(prefix="wb-explorer-")
        self.view_dir = Path(self._tmp.name)
        self.cache_dir = Path(cache_dir) if cache_dir else self.view_dir
        self.start_timeout = start_timeout
        self.url = ""
        self._views = 0
        # stops the server at interpreter exit or when this object is garbage-collected
        self._finalizer = weakref.finalize(self, _stop, self._state)

    @property
    def port(self) -> int | None:
        return self._state["port"] if self.alive else None

    @property
    def alive(self) -> bool:
        proc = self._state["proc"]
        return proc is not None and proc.poll() is None

    def show(self, models: Sequence[ViewModel], overlays: Mapping[int | str, Sequence[Overlay]] | None = None,
             compare: bool = True, **options: Any) -> str:
        """Write ``models`` (and ``overlays``, keyed by model index or label) to a new view
        folder, start the server if needed; returns the page URL (``options``: :func:`url_for`'s
        ``selected_node``, ``expanded``, ``open_in_new_tab``)."""
        from . import _problem  # noqa: PLC0415

        if (problem := _problem()) is not None:
            raise WorkbenchError(problem, install_hint("viewer"))
        if not models:
            raise UsageError("no model to show", "give at least one ViewModel")
        self._views += 1
        view = self.view_dir / f"view{self._views}"
        view.mkdir()
        for old in sorted(self.view_dir.glob("view*"), key=lambda p: int(p.name[4:]))[:-_KEEP_VIEWS]:
            shutil.rmtree(old, ignore_errors=True)
        protos = [_proto(m.model) for m in models]
        shared = _namespaces(protos[0]) if compare and len(models) > 1 else {}
        paths: list[Path] = []
        for i, (m, proto) in enumerate(zip(models, protos)):
            stem, k = _safe(m.label), 1
            while any(p.stem == stem for p in paths):
                k += 1
                stem = f"{_safe(m.label)}_{k}"
            paths.append(view / f"{stem}.onnx")
            _write_view(proto, paths[-1], m.notes, shared if i else {})
        node_data: list[tuple[Path, str]] = []
        for key, items in (overlays or {}).items():
            idx = key if isinstance(key, int) else next((i for i, m in enumerate(models) if m.label == key), None)
            if idx is None or not 0 <= idx < len(paths):
                raise UsageError(f"overlay for unknown model {key!r}",
                                 "key overlays by model index or label")
            folder = view / "nodedata" / paths[idx].stem
            folder.mkdir(parents=True, exist_ok=True)
            node_data += [(o.write(folder / f"{_safe(o.name)}.json", paths[idx].name), paths[idx].name)
                          for o in items]
        self.url = url_for(self.start(), paths, node_data, compare=compare, **options)
        return self.url

    def iframe(self, height: int = 600) -> str:
        return (f'<iframe src="{html.escape(self.url)}" style="width:100%;height:{height}px;border:1px solid #ddd" '
                'title="Model Explorer"></iframe>') if self.url and self.alive else "<i>Model Explorer not started</i>"

    def start(self) -> int:
        """Start the server (once); returns its port."""
        if self.alive:
            return self._state["port"]
        _stop(self._state)
        for attempt in range(2):  # the free port can be taken before the server binds it
            port = _free_port()
            log = self.view_dir / "server.log"
            env = dict(os.environ, NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
                       PYTHONUNBUFFERED="1", WB_EXPLORER_CACHE=str(self.cache_dir),
                       PYTHONPATH=os.pathsep.join(p for p in (str(_HERE.parents[1]),
                                                              os.environ.get("PYTHONPATH", "")) if p))
            with open(log, "wb") as out:
                proc = subprocess.Popen([sys.executable, "-m", "workbench.viewer._serve", str(port)],
                                        stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                        env=env, start_new_session=True)
            self._state.update(proc=proc, port=port)
            if self._wait(proc, port, log) or attempt:
                break
        if not self.alive:
            raise WorkbenchError(f"Model Explorer's server did not start:\n{_tail(self.view_dir / 'server.log')}",
                                 "check that ai-edge-model-explorer==0.1.34 and model-explorer-onnx==0.4.2 "
                                 "are installed: " + install_hint("viewer"))
        return port

    def _wait(self, proc: subprocess.Popen, port: int, log: Path) -> bool:
        """Poll ``/check_health``; False if the server exited (port taken), raises on timeout."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            try:
                with opener.open(f"http://{HOST}:{port}/check_health", timeout=2) as r:
                    if r.read() == b"model_explorer_ok":
                        return True
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise WorkbenchError(f"Model Explorer's server did not answer within {self.start_timeout:.0f} s:\n"
                             f"{_tail(log)}", "the machine may be busy: try again, or raise start_timeout")

    def stop(self) -> None:
        _stop(self._state)
        self.url = ""

    def close(self) -> None:
        """Stop the server and delete the view folder."""
        self.stop()
        self._tmp.cleanup()


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


def _stop(state: dict[str, Any]) -> None:
    proc, state["proc"], state["port"] = state["proc"], None, None
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()  # SIGTERM: the server has no handler, so it exits at once
    try:
        proc.wait(3)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(3)
