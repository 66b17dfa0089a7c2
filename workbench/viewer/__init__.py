"""Google's Model Explorer as the workbench's graph viewer: a baseline and a build side by side,
Q/DQ folded into the op they feed, pass status / sensitivity / per-layer time as overlays.

Optional (the ``[viewer]`` extra); ``model_explorer`` is only imported by the server subprocess.

    from workbench.viewer import ExplorerServer, ViewModel, status_overlay
    srv = ExplorerServer()
    url = srv.show([ViewModel("baseline", base.proto), ViewModel("build int8", q.model.proto)],
                   overlays={1: [status_overlay(status)]})
"""

from __future__ import annotations

from importlib.util import find_spec

from ..errors import install_hint
from .explorer import ADAPTER_ID, ExplorerServer, ViewModel, url_for
from .overlay import STATUS_CODES, STATUS_COLORS, Overlay, heat_overlay, status_legend, status_overlay

__all__ = ["available", "ExplorerServer", "ViewModel", "url_for", "ADAPTER_ID", "Overlay",
           "status_overlay", "heat_overlay", "status_legend", "STATUS_COLORS", "STATUS_CODES"]

# what the server process imports: Model Explorer, its ONNX adapter and the light dependencies
# it needs (the 481 MB ai-edge-model-explorer-adapter is not one: it only holds TF/TFLite)
_NEEDS = {"model_explorer": "ai-edge-model-explorer", "model_explorer_onnx": "model-explorer-onnx",
          "flask": "flask", "portpicker": "portpicker", "termcolor": "termcolor", "dacite": "dacite",
          "watchdog": "watchdog", "requests": "requests", "packaging": "packaging", "onnx_ir": "onnx-ir"}


def _problem() -> str | None:
    missing = []
    for module, dist in _NEEDS.items():
        try:
            if find_spec(module) is None:
                missing.append(dist)
        except (ImportError, ValueError):
            missing.append(dist)
    return f"Model Explorer is not installed (missing {', '.join(missing)})" if missing else None


def available() -> str | None:
    """None if the Model Explorer view can be used, else why not and how to install it."""
    problem = _problem()
    return None if problem is None else f"{problem}; {install_hint('viewer')}"
