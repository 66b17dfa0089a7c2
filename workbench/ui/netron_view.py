"""Netron, served by the ``netron`` package on 127.0.0.1 and embedded as an iframe.

The server binds loopback only and is stopped with the panel (``close``) or at interpreter exit.
"""

from __future__ import annotations

import socket
import tempfile
import weakref
from pathlib import Path

__all__ = ["NetronServer"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NetronServer:
    """One Netron server showing one model file at a time."""

    def __init__(self) -> None:
        self._state: dict[str, tuple[str, int] | None] = {"address": None}
        self._tmp = tempfile.TemporaryDirectory(prefix="wb-netron-")
        # stops the server at interpreter exit, or when this object is garbage-collected (an
        # atexit-registered bound method would keep it, and its port, alive until exit)
        self._finalizer = weakref.finalize(self, _stop, self._state)

    @property
    def address(self) -> tuple[str, int] | None:
        return self._state["address"]

    def show(self, model_bytes: bytes, name: str = "model.onnx") -> str:
        """Serve ``model_bytes``; returns the URL (http://127.0.0.1:PORT/)."""
        import netron  # noqa: PLC0415

        self.stop()
        path = Path(self._tmp.name) / name
        path.write_bytes(model_bytes)
        self._state["address"] = netron.start(str(path), address=("127.0.0.1", _free_port()),
                                              browse=False)
        return self.url

    @property
    def url(self) -> str:
        if self.address is None:
            return ""
        return f"http://{self.address[0]}:{self.address[1]}/"

    def iframe(self, height: int = 500) -> str:
        return (f'<iframe src="{self.url}" style="width:100%;height:{height}px;border:1px solid #ddd" '
                'title="Netron"></iframe>') if self.address else "<i>Netron not started</i>"

    def stop(self) -> None:
        _stop(self._state)


def _stop(state: dict[str, tuple[str, int] | None]) -> None:
    address, state["address"] = state["address"], None
    if address is not None:
        import netron  # noqa: PLC0415

        try:
            netron.stop(address)
        except Exception:  # noqa: BLE001  (already stopped)
            pass
