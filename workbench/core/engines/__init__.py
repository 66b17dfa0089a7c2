"""Engines: one module per backend, each importing its runtime lazily, and a registry."""

from .base import Availability, Runner
from .registry import ENGINES, EngineStatus, engine_for_device, list_engines

__all__ = ["Availability", "Runner", "ENGINES", "EngineStatus", "engine_for_device", "list_engines"]
