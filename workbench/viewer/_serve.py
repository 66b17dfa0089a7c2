"""Subprocess entry: ``python -m workbench.viewer._serve PORT``; serves Model Explorer offline
on 127.0.0.1:PORT until SIGTERM.

Offline means: no update check (``server._check_new_version`` would call PyPI and GitHub at
start and on every page load) and a patched copy of the web app without the fonts.gstatic.com
preconnect and ``@font-face`` rules. The copy also turns on "highlight diffs" for the
match-node-id sync mode unless the user turned it off. It is made once, under ``$WB_EXPLORER_CACHE``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

EXTENSION = "workbench.viewer.wb_explorer"  # Model Explorer imports <EXTENSION>.main
HIGHLIGHT_KEY = "sync_navigation_match_node_id_highlight_diffs"
_SCRIPT = (f'<script>try{{if(localStorage.getItem("{HIGHLIGHT_KEY}")===null)'
           f'localStorage.setItem("{HIGHLIGHT_KEY}","true")}}catch(e){{}}</script>')
_EXTERNAL = re.compile(r"<link[^>]*fonts\.(?:gstatic|googleapis)\.com[^>]*>"
                       r"|@font-face\{[^}]*fonts\.(?:gstatic|googleapis)\.com[^}]*\}")


def patch_index(html: str) -> str:
    """index.html without requests to Google's font servers, with the highlight-diffs default."""
    out = _EXTERNAL.sub("", html)
    if "fonts.gstatic.com" in out or "fonts.googleapis.com" in out or "<head>" not in out:
        raise RuntimeError("Model Explorer's index.html changed: cannot make it offline "
                           "(pin ai-edge-model-explorer==0.1.34)")
    return out.replace("<head>", "<head>" + _SCRIPT, 1)


def offline_web_app(src: Path, cache: Path) -> Path:
    """A patched copy of ``src`` (the installed web app) under ``cache``, made once."""
    index = (src / "index.html").read_text(encoding="utf-8")
    key = hashlib.sha256((index + _SCRIPT).encode()).hexdigest()[:12]
    dst = cache / f"web_app-{key}"
    if (dst / "index.html").exists():
        return dst
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".web_app-", dir=cache))
    shutil.copytree(src, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns("index.html"))
    (tmp / "index.html").write_text(patch_index(index), encoding="utf-8")
    try:
        tmp.rename(dst)
    except OSError:  # another server made it first
        shutil.rmtree(tmp, ignore_errors=True)
    return dst


def _no_version_check(print_msg: bool = True) -> dict[str, str]:  # noqa: ARG001
    return {"version": "", "runningVersion": "", "releaseUrl": "", "desktopAppUrl": ""}


def main(argv: list[str]) -> None:
    port = int(argv[0])
    # model_explorer imports torch when it can (only for its PyTorch adapter): slow, not needed
    sys.modules.setdefault("torch", None)  # type: ignore[arg-type]
    # without the 481 MB TFLite/TF adapter, model_explorer falls back to its built-ins (checked in
    # ExtensionManager.__init__: it catches the ImportError); nothing to do here
    import model_explorer  # noqa: PLC0415
    from model_explorer import server  # noqa: PLC0415

    for name in ("_check_new_version", "OSS_WEB_APP_DIR"):
        if not hasattr(server, name):
            raise RuntimeError(f"model_explorer.server.{name} is gone: pin ai-edge-model-explorer==0.1.34")
    server._check_new_version = _no_version_check  # noqa: SLF001
    cache = Path(os.environ.get("WB_EXPLORER_CACHE") or tempfile.gettempdir())
    server.OSS_WEB_APP_DIR = str(offline_web_app(Path(server.OSS_WEB_APP_DIR), cache))
    model_explorer.visualize_from_config(model_explorer.config(), host="127.0.0.1", port=port,
                                         extensions=[EXTENSION], no_open_in_browser=True)


if __name__ == "__main__":
    main(sys.argv[1:])
