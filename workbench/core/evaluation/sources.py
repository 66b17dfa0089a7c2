"""Evaluation and calibration data from whatever the user holds: paths, arrays, tensors, loaders.

:func:`as_dataset` is the one entry point. It accepts

- a path (``.npz`` or an image folder) or ``sample:NAME[:calib]`` (see :func:`load_dataset`);
- a :class:`Dataset` (returned as is);
- NumPy arrays: one array for a one-input model, a dict ``{input name: array}``, or a tuple
  ``(inputs, labels)`` of those;
- a ``torch.utils.data.Dataset`` (items ``(x, y)`` or ``x``, one sample each) or ``DataLoader``
  (batches), detected without importing torch: only if the caller has imported it already;
- any other iterable of ``(inputs, labels)`` or inputs-only items, one sample or one batch each
  (told apart by rank against the model's input); tensors are converted with ``.numpy()``.

Everything ends in the same checks as files (shapes name the input, labels are one integer per
sample), so a mistake reads the same whichever way the data came in.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError
from ..model import Model
from ..shapes import TensorSpec, tensor_specs
from .data import Dataset, Preprocessing, _finish, load_dataset

__all__ = ["as_dataset", "describe"]


def _np(x: Any, what: str) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, possibly on a GPU or requiring grad
        x = x.detach().cpu()
    if hasattr(x, "numpy") and not isinstance(x, np.ndarray):
        x = x.numpy()
    try:
        a = np.asarray(x)
    except Exception as e:  # noqa: BLE001  (ragged lists, objects)
        raise DataError(f"{what} cannot be read as an array: {e}", "give NumPy arrays or tensors") from e
    if a.dtype == object:
        raise DataError(f"{what} is not a numeric array (ragged or objects)",
                        "give one array of a fixed shape per input")
    return a


def _torch_kind(obj: Any) -> str | None:
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    tud = getattr(getattr(torch, "utils", None), "data", None)
    if tud is None:
        return None
    if isinstance(obj, tud.DataLoader):
        return "DataLoader"
    if isinstance(obj, tud.Dataset) and hasattr(obj, "__len__") and hasattr(obj, "__getitem__"):
        return "Dataset"
    return None


def _as_inputs(x: Any, ins: list[TensorSpec], what: str) -> dict[str, np.ndarray]:
    """One item's inputs: an array for a one-input model, a dict, or a list/tuple in input order."""
    if isinstance(x, Mapping):
        unknown = [k for k in x if k not in {s.name for s in ins}]
        if unknown:
            raise DataError(f"{what}: {unknown[0]!r} is not an input of the model "
                            f"(inputs: {', '.join(s.name for s in ins)})", "key the arrays by input name")
        missing = [s.name for s in ins if s.name not in x]
        if missing:
            raise DataError(f"{what}: no array for input {missing[0]!r}", "give one array per input")
        return {k: _np(v, f"{what} input {k!r}") for k, v in x.items()}
    if isinstance(x, (list, tuple)) and len(ins) > 1:
        if len(x) != len(ins):
            raise DataError(f"{what}: {len(x)} arrays for {len(ins)} inputs "
                            f"({', '.join(s.name for s in ins)})", "give one array per input, in order")
        return {s.name: _np(v, f"{what} input {s.name!r}") for s, v in zip(ins, x)}
    if len(ins) != 1:
        raise DataError(f"{what}: one array for a model with {len(ins)} inputs "
                        f"({', '.join(s.name for s in ins)})", "give a dict {input name: array}")
    return {ins[0].name: _np(x, f"{what} input {ins[0].name!r}")}


def _is_pair(item: Any, ins: list[TensorSpec]) -> bool:
    """``(inputs, labels)``: a 2-tuple, unless a 2-input model's inputs are meant."""
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        return False
    if len(ins) == 2 and not isinstance(item[0], (Mapping, tuple, list)):
        return False  # (x1, x2) for a two-input model
    return True


def _batched(feeds: dict[str, np.ndarray], ins: list[TensorSpec]) -> tuple[dict[str, np.ndarray], bool]:
    """Add a sample axis where an item holds one sample (its rank is the model's minus one)."""
    by = {s.name: s for s in ins}
    single = all(by[k].shape is not None and v.ndim == len(by[k].shape) - 1 for k, v in feeds.items())
    return ({k: v[None] for k, v in feeds.items()} if single else feeds), single


def _collect(items: Iterable[Any], ins: list[TensorSpec], what: str, limit: int | None
             ) -> tuple[dict[str, np.ndarray], np.ndarray | None, int]:
    parts: dict[str, list[np.ndarray]] = {s.name: [] for s in ins}
    labels: list[np.ndarray] = []
    unlabeled = n = count = 0
    for item in items:
        count += 1
        if isinstance(item, (tuple, list)) and len(item) == 1:
            item = item[0]  # TensorDataset(x), and a DataLoader over it: (x,) with no labels
        x, y = (item[0], item[1]) if _is_pair(item, ins) else (item, None)
        feeds, _ = _batched(_as_inputs(x, ins, f"{what} item {count - 1}"), ins)
        rows = len(next(iter(feeds.values())))
        for k, v in feeds.items():
            if len(v) != rows:
                raise DataError(f"{what} item {count - 1}: inputs hold different sample counts",
                                "every input needs the same number of samples")
            parts[k].append(v)
        if y is None:
            unlabeled += 1
        else:
            lab = np.atleast_1d(_np(y, f"{what} item {count - 1} labels"))
            if lab.ndim != 1 or len(lab) != rows:
                raise DataError(f"{what} item {count - 1}: {lab.size} labels for {rows} samples "
                                f"(labels shape {list(lab.shape)})", "give one integer label per sample")
            labels.append(lab)
        n += rows
        if limit is not None and n >= limit:
            break
    if count == 0:
        raise DataError(f"{what} is empty: it yielded no items", "give at least one sample")
    if labels and unlabeled:
        raise DataError(f"{what}: {unlabeled} of {count} items have no labels",
                        "give labels with every item, or with none")
    try:
        inputs = {k: np.concatenate(v) for k, v in parts.items()}
    except ValueError as e:
        raise DataError(f"{what}: items have different shapes ({e})", "give items of one shape") from e
    lab_arr = np.concatenate(labels) if labels else None
    if limit is not None:
        inputs = {k: v[:limit] for k, v in inputs.items()}
        lab_arr = None if lab_arr is None else lab_arr[:limit]
    return inputs, lab_arr, count


def as_dataset(obj: Any, model: Model, *, preprocessing: Preprocessing | dict | str | None = None,
               limit: int | None = None) -> Dataset:
    """Model-ready :class:`Dataset` from a path, arrays, a torch Dataset/DataLoader or an iterable.

    Example:
        >>> ds = as_dataset((x, y), model)          # NumPy arrays, labels optional
        >>> ds = as_dataset(DataLoader(tds, 32), model)

    ``preprocessing`` applies to uint8 images (image folders, uint8 arrays); float arrays are
    taken as already preprocessed. ``limit`` keeps the first samples only.
    """
    if isinstance(obj, Dataset):
        return obj
    if obj is None or isinstance(obj, (str, Path)):
        ds = load_dataset(obj, model, preprocessing)
        return ds if limit is None or limit >= len(ds) or ds.groups is not None else _head(ds, limit)
    ins, _ = tensor_specs(model.proto.graph)
    pre = Preprocessing.resolve(preprocessing, Preprocessing.from_model(model))
    kind = _torch_kind(obj)
    if kind == "DataLoader":
        inputs, labels, count = _collect(obj, ins, "the DataLoader", limit)
        source = f"torch DataLoader ({count} batches read)"
    elif kind == "Dataset":
        items = (obj[i] for i in range(len(obj)))
        inputs, labels, count = _collect(items, ins, f"the torch {type(obj).__name__}", limit)
        source = f"torch {type(obj).__name__} ({count} items)"
    elif isinstance(obj, (np.ndarray, Mapping)) or hasattr(obj, "__array__") or hasattr(obj, "detach"):
        inputs, labels, source = _as_inputs(obj, ins, "the arrays"), None, "NumPy arrays"
    elif isinstance(obj, tuple) and _is_pair(obj, ins) and not _looks_like_items(obj):
        inputs = _as_inputs(obj[0], ins, "the inputs")
        labels, source = _np(obj[1], "the labels"), "NumPy arrays (inputs, labels)"
    elif isinstance(obj, Iterable):
        inputs, labels, count = _collect(obj, ins, f"the {type(obj).__name__}", limit)
        source = f"Python {type(obj).__name__} ({count} items)"
    else:
        raise DataError(f"cannot read data from a {type(obj).__name__}",
                        "give a path, NumPy arrays, (inputs, labels), a torch Dataset/DataLoader or an "
                        "iterable of (inputs, labels)")
    if labels is not None:
        labels = np.atleast_1d(labels)
        n = len(next(iter(inputs.values()))) if next(iter(inputs.values())).ndim else 0
        if labels.ndim != 1 or len(labels) != n:
            raise DataError(f"{source}: {labels.size} labels for {n} samples (labels shape "
                            f"{list(labels.shape)})", "give one integer label per sample")
    if limit is not None:
        inputs = {k: v[:limit] for k, v in inputs.items()}
        labels = None if labels is None else labels[:limit]
    return _finish(inputs, labels, source, model, ins, pre)


def _looks_like_items(obj: tuple) -> bool:
    """A tuple of two items, each itself an ``(inputs, labels)`` pair."""
    return all(isinstance(o, (tuple, list)) and len(o) == 2 for o in obj)


def _head(ds: Dataset, n: int) -> Dataset:
    return Dataset({k: v[:n] for k, v in ds.inputs.items()}, None if ds.labels is None else ds.labels[:n],
                   ds.source, ds.preprocessing, list(ds.notes), random=ds.random)


def describe(ds: Dataset | None) -> dict[str, Any]:
    """What a dataset is, for the panel and the CLI: source, samples, labels, preprocessing."""
    if ds is None:
        return {"source": None, "samples": 0, "labeled": False, "preprocessing": None, "notes": []}
    return {"source": ds.source, "samples": len(ds), "labeled": ds.labels is not None,
            "random": ds.random,
            "preprocessing": ds.preprocessing.describe() if ds.preprocessing else None,
            "notes": list(ds.notes)}
