"""The runner contract every engine implements (after Polygraphy's backend runners).

A runner is a context manager: ``activate`` builds the session, ``infer`` runs it, ``deactivate``
frees it. The public methods check state; the ``*_impl`` methods do the work.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import EngineRunError

__all__ = ["Availability", "Runner"]


@dataclass(frozen=True)
class Availability:
    """Whether an engine can run here; false ones say exactly why and what to do."""

    available: bool
    reason: str

    def __bool__(self) -> bool:
        return self.available


class Runner(ABC):
    """Runs one model on one engine. Use as ``with runner: runner.infer(feeds)``."""

    engine: str = "?"
    device: str = "?"

    def __init__(self) -> None:
        self.is_active = False

    def __enter__(self) -> Runner:
        self.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    def activate(self) -> None:
        if not self.is_active:
            self.activate_impl()
            self.is_active = True

    def deactivate(self) -> None:
        if self.is_active:
            self.deactivate_impl()
            self.is_active = False

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once; return the outputs by name."""
        self._need_active()
        return self.infer_impl(feeds)

    def prepare(self, feeds: dict[str, np.ndarray]) -> Callable[[], Any]:
        """A zero-argument callable that runs the model once on ``feeds``, for timing loops.

        Engines bind everything they can ahead of time (inputs, output buffers) so that the
        callable is as close to a bare runtime call as possible.
        """
        self._need_active()
        return self.prepare_impl(feeds)

    def _need_active(self) -> None:
        if not self.is_active:
            raise EngineRunError(f"{self.engine} runner is not active", "use it inside `with runner:`")

    @property
    def settings(self) -> dict[str, Any]:
        """What the engine was configured with, for reports (threads, levels, providers)."""
        return {}

    @abstractmethod
    def activate_impl(self) -> None: ...

    @abstractmethod
    def deactivate_impl(self) -> None: ...

    @abstractmethod
    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def prepare_impl(self, feeds: dict[str, np.ndarray]) -> Callable[[], Any]: ...
