"""Helpers shared by the command-line verbs (``workbench.cli`` and ``workbench.commands.*``)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["add_model_inputs", "calib_data", "clean", "print_json", "progress", "shapes_values"]


def clean(x: Any) -> Any:
    """Strict JSON: non-finite floats become null (e.g. SQNR of identical outputs)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    return x


def print_json(obj: Any) -> None:
    print(json.dumps(clean(obj), indent=2, allow_nan=False))


def progress(args: argparse.Namespace) -> Callable[[str, int, int], None] | None:
    """A tqdm bar on a terminal; nothing with --quiet or when stderr is not a TTY."""
    if getattr(args, "quiet", False) or not sys.stderr.isatty():
        return None
    from tqdm import tqdm  # noqa: PLC0415

    bars: dict[str, Any] = {}

    def update(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=stage, file=sys.stderr, leave=False)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update


def shapes_values(args: argparse.Namespace) -> tuple[dict, dict]:
    from ..core.shapes import parse_input_arg, parse_shape_arg  # noqa: PLC0415

    shapes = dict(parse_shape_arg(s) for s in getattr(args, "shape", None) or [])
    values = dict(parse_input_arg(s) for s in getattr(args, "input", None) or [])
    return shapes, values


def add_model_inputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shape", action="append", metavar="NAME=DIMS",
                   help="fix an input's shape, e.g. input=1x3x224x224 (repeatable)")
    p.add_argument("--input", action="append", metavar="NAME=VALUE|FILE.npy",
                   help="give an input's value: a number, a JSON list or a .npy file (repeatable)")


def calib_data(args: argparse.Namespace, name: str = "calib") -> Any:
    """``--calib``/``--data`` as given, or loaded with ``--preprocess`` (``random`` passes through)."""
    value = getattr(args, name, None)
    pre = getattr(args, "preprocess", None)
    if value is None or pre is None or value == "random":
        if pre is not None:
            from ..core.evaluation.data import Preprocessing  # noqa: PLC0415

            Preprocessing.parse(pre)  # a typo is an error even when nothing is loaded with it
        return value
    from ..core.evaluation.data import load_dataset  # noqa: PLC0415
    from ..core.model import load_model  # noqa: PLC0415

    return load_dataset(value, load_model(args.model), pre)
