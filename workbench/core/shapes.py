"""Input specs: what a model's inputs look like, how dynamic dimensions get values, and inputs.

Dynamic dimensions are resolved like trtexec's ``--shapes`` and Polygraphy's ``--input-shapes``:
a shape the user gave wins; otherwise the first dimension is the batch (``batch``, default 1) and
any other dynamic dimension gets :data:`DEFAULT_DIM`. Every defaulted dimension is recorded so that
the CLI and the panel can show it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper

from ..errors import InputSpecError

__all__ = [
    "TensorSpec",
    "ResolvedInput",
    "DEFAULT_DIM",
    "tensor_specs",
    "parse_shape_arg",
    "parse_input_arg",
    "resolve_inputs",
    "random_feeds",
    "parse_profiles",
]

MAX_INPUT_BYTES = 2**32  # one generated input larger than 4 GiB is a mistake, not a benchmark
DEFAULT_DIM = 32  # for dynamic dimensions other than the batch (sequence lengths, image sides)


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output: name, NumPy dtype name and shape (ints, names or None)."""

    name: str
    dtype: str
    shape: tuple[int | str | None, ...] | None  # None: rank unknown

    def to_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype,
                "shape": None if self.shape is None else list(self.shape)}


@dataclass(frozen=True)
class ResolvedInput:
    """An input with every dimension fixed, and which dimensions were defaulted and why."""

    spec: TensorSpec
    shape: tuple[int, ...]
    defaults: tuple[str, ...]  # e.g. "dim 0 'batch' = 1 (--batch)"


def _dtype_name(elem_type: int) -> str:
    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).name
    except Exception:  # noqa: BLE001  (types NumPy lacks: bfloat16, float8, int4 ...)
        return onnx.TensorProto.DataType.Name(elem_type).lower()


def _spec(vi: onnx.ValueInfoProto) -> TensorSpec:
    t = vi.type.tensor_type
    if not vi.type.HasField("tensor_type"):
        return TensorSpec(vi.name, vi.type.WhichOneof("value") or "unknown", None)
    shape = None
    if t.HasField("shape"):
        shape = tuple(
            d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim
        )
    return TensorSpec(vi.name, _dtype_name(t.elem_type), shape)


def tensor_specs(graph: onnx.GraphProto) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The graph's real inputs (initializers excluded) and its outputs."""
    inits = {i.name for i in graph.initializer}
    ins = [_spec(v) for v in graph.input if v.name not in inits]
    return ins, [_spec(v) for v in graph.output]


_SHAPE_RE = re.compile(r"^(?P<name>.+?)[=:](?P<dims>\[?[0-9x,\s]*\]?)$")


def parse_shape_arg(text: str) -> tuple[str, tuple[int, ...]]:
    """Parse ``NAME=1x3x224x224`` (also ``NAME:[1,3,224,224]``) into a name and a shape."""
    m = _SHAPE_RE.match(text.strip())
    if not m:
        raise InputSpecError(f"cannot read shape {text!r}", "write it as NAME=1x3x224x224")
    dims = m.group("dims").strip("[] ")
    try:
        shape = tuple(int(d) for d in re.split(r"[x,]\s*", dims)) if dims else ()
    except ValueError as e:
        raise InputSpecError(f"cannot read shape {text!r}", "write it as NAME=1x3x224x224") from e
    if any(d < 0 for d in shape):
        raise InputSpecError(f"shape {text!r} has a negative dimension", "use sizes >= 0")
    return m.group("name"), shape


def parse_input_arg(text: str) -> tuple[str, np.ndarray]:
    """Parse ``NAME=VALUE`` (a JSON number or list) or ``NAME=FILE.npy`` into a name and array."""
    if "=" not in text:
        raise InputSpecError(f"cannot read input {text!r}", "write it as NAME=VALUE or NAME=FILE.npy")
    name, value = text.split("=", 1)
    if value.endswith(".npy"):
        path = Path(value).expanduser()
        if not path.is_file():
            raise InputSpecError(f"input {name!r}: no such file {value}", "give an existing .npy file")
        try:
            return name, np.load(path, allow_pickle=False)
        except Exception as e:  # ValueError for pickled or corrupt files
            raise InputSpecError(f"input {name!r}: {value} is not a readable .npy array ({e})",
                                 "save it with numpy.save (no pickled objects)") from e
    try:
        return name, np.asarray(json.loads(value))
    except (json.JSONDecodeError, ValueError) as e:
        raise InputSpecError(f"input {name!r}: cannot read value {value!r}",
                             "give a number, a JSON list, or a .npy file") from e


def resolve_inputs(
    specs: list[TensorSpec],
    shapes: dict[str, tuple[int, ...]] | None = None,
    batch: int | None = None,
) -> list[ResolvedInput]:
    """Fix every input dimension: given shapes first, then the batch, then defaults."""
    shapes = dict(shapes or {})
    unknown = set(shapes) - {s.name for s in specs}
    if unknown:
        raise InputSpecError(
            f"the model has no input named {sorted(unknown)[0]!r}",
            f"its inputs are: {', '.join(s.name for s in specs)}",
        )
    out = []
    for spec in specs:
        if spec.name in shapes:
            given = shapes[spec.name]
            if spec.shape is not None:
                if len(given) != len(spec.shape):
                    raise InputSpecError(
                        f"input {spec.name!r} has rank {len(spec.shape)} {list(spec.shape)}, "
                        f"the given shape {list(given)} has rank {len(given)}",
                        f"give {len(spec.shape)} dimensions",
                    )
                for i, (g, d) in enumerate(zip(given, spec.shape)):
                    if isinstance(d, int) and d > 0 and g != d:
                        raise InputSpecError(
                            f"input {spec.name!r} dimension {i} is fixed at {d}, got {g}",
                            f"the model needs {list(spec.shape)}",
                        )
            out.append(ResolvedInput(spec, tuple(given), ()))
            continue
        if spec.shape is None:
            raise InputSpecError(
                f"input {spec.name!r} has no shape in the model",
                f"set one with --shape {spec.name}=DIMS",
            )
        dims, notes = [], []
        for i, d in enumerate(spec.shape):
            if isinstance(d, int) and d > 0:
                if i == 0 and batch is not None and batch != d and len(spec.shape) > 1:
                    raise InputSpecError(
                        f"input {spec.name!r} has a fixed batch of {d}; batch {batch} cannot run",
                        f"use --batch {d}, or re-export the model with a dynamic batch dimension",
                    )
                dims.append(d)
                continue
            label = f"'{d}'" if isinstance(d, str) else "?"
            if i == 0 and len(spec.shape) > 1:
                value = batch if batch is not None else 1
                notes.append(f"dim 0 {label} = {value} (batch)")
            else:
                value = DEFAULT_DIM
                notes.append(f"dim {i} {label} = {value} (default; set with --shape {spec.name}=...)")
            dims.append(value)
        out.append(ResolvedInput(spec, tuple(dims), tuple(notes)))
    return out


def random_feeds(inputs: list[ResolvedInput], seed: int = 0,
                 values: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Inputs for a run: user values where given, else random data of the right dtype and shape.

    Floats are standard normal; integers are 0 or 1 (valid token ids, masks and segment ids for
    most text models); bools are random. A scalar value given by the user is broadcast.
    """
    rng = np.random.default_rng(seed)
    values = values or {}
    feeds = {}
    for r in inputs:
        try:
            dtype = np.dtype(r.spec.dtype)
        except TypeError as e:
            raise InputSpecError(
                f"input {r.spec.name!r} has type {r.spec.dtype}, which cannot be generated",
                f"give a value with --input {r.spec.name}=FILE.npy",
            ) from e
        n_bytes = math.prod(r.shape) * dtype.itemsize  # Python ints: no overflow on absurd dims
        if n_bytes > MAX_INPUT_BYTES:
            raise InputSpecError(
                f"input {r.spec.name!r} of shape {list(r.shape)} would take {n_bytes / 2**30:.3g} GiB",
                f"give a smaller shape with --shape {r.spec.name}=DIMS (at most "
                f"{MAX_INPUT_BYTES // 2**30} GiB per input)",
            )
        if r.spec.name in values:
            v = np.asarray(values[r.spec.name]).astype(dtype)
            if v.ndim == 0 and r.shape:
                v = np.full(r.shape, v, dtype=dtype)
            feeds[r.spec.name] = v
        elif dtype.kind == "f":
            feeds[r.spec.name] = rng.standard_normal(r.shape).astype(dtype)
        elif dtype.kind in "iu":
            feeds[r.spec.name] = rng.integers(0, 2, size=r.shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[r.spec.name] = rng.integers(0, 2, size=r.shape).astype(bool)
        else:
            raise InputSpecError(
                f"input {r.spec.name!r} has type {dtype}, which cannot be generated",
                f"give a value with --input {r.spec.name}=FILE.npy",
            )
    unknown = set(values) - {r.spec.name for r in inputs}
    if unknown:
        raise InputSpecError(f"the model has no input named {sorted(unknown)[0]!r}",
                             f"its inputs are: {', '.join(r.spec.name for r in inputs)}")
    return feeds


Profile = tuple[str, tuple[int, ...], tuple[int, ...], tuple[int, ...]]


def parse_profiles(value: Any) -> tuple[Profile, ...]:
    """Dynamic-shape profiles ``{name: (min, opt, max)}`` or ``[(name, min, opt, max), ...]``,
    checked (min <= opt <= max in every dimension); used by the TensorRT engines."""
    from ..errors import UsageError  # noqa: PLC0415

    items = value.items() if isinstance(value, dict) else [(v[0], v[1:]) for v in value]
    out = []
    for name, shapes in items:
        try:
            lo, opt, hi = (tuple(int(d) for d in s) for s in shapes)
        except (TypeError, ValueError) as e:
            raise UsageError(f"profile for {name!r} must be (min, opt, max) shapes, got {shapes!r}") from e
        if not (len(lo) == len(opt) == len(hi)) or any(not a <= b <= c for a, b, c in zip(lo, opt, hi)):
            raise UsageError(f"profile for {name!r} needs min <= opt <= max in every dimension, "
                             f"got {list(lo)}, {list(opt)}, {list(hi)}")
        out.append((str(name), lo, opt, hi))
    return tuple(out)
