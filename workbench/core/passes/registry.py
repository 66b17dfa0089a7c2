"""Every pass the workbench offers, by name."""

from __future__ import annotations

from ...errors import UsageError
from .base import Pass

__all__ = ["PASSES", "get_pass", "register"]

PASSES: dict[str, type[Pass]] = {}


def register(cls: type[Pass]) -> type[Pass]:
    PASSES[cls.name] = cls
    return cls


_MODULES = ("fusion", "prune", "prune_channels", "quantize", "fp16", "bf16")


def _load_all() -> None:
    """Import the pass modules (each registers its passes) on first use."""
    import importlib  # noqa: PLC0415

    for m in _MODULES:
        importlib.import_module(f"{__package__}.{m}")


def get_pass(name: str) -> type[Pass]:
    _load_all()
    if name not in PASSES:
        raise UsageError(f"unknown pass {name!r}", f"passes are: {', '.join(PASSES)} (see `workbench passes`)")
    return PASSES[name]


def all_passes() -> dict[str, type[Pass]]:
    _load_all()
    return dict(PASSES)
