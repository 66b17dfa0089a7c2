"""Evaluation and calibration data: the samples' labeled sets, ``.npz`` arrays, image folders.

A :class:`Dataset` holds model-ready arrays (preprocessed, keyed by input name) and optional
integer labels, and hands them out in batches. Preprocessing is declared alongside the model
(``workbench.preprocessing`` in its metadata: scale, per-channel mean and std) and applied to
uint8 images; float arrays are taken as already preprocessed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError, install_hint
from ..model import Model
from ..shapes import TensorSpec, random_feeds, resolve_inputs, tensor_specs

__all__ = ["Preprocessing", "Dataset", "load_dataset", "random_dataset", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
# Used for image folders when the model declares no preprocessing: ImageNet statistics for RGB,
# (x - 0.5) / 0.5 for grayscale.
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """uint8 images -> float32: ``(x * scale - mean[c]) / std[c]``, in the model's layout.

    ``size`` is ``(H, W)`` (None: the model's input size), ``layout`` ``"NCHW"`` or ``"NHWC"``
    (None: read from the model's input shape), ``channels`` ``"RGB"`` or ``"BGR"`` (the order the
    model expects; mean and std are given in that order). Override any field with a dict:
    ``load_dataset(path, model, preprocessing={"layout": "NHWC", "channels": "BGR"})``.
    """

    scale: float = 1 / 255
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    size: tuple[int, int] | None = None
    layout: str | None = None
    channels: str = "RGB"

    def __post_init__(self) -> None:
        if self.layout not in (None, "NCHW", "NHWC"):
            raise DataError(f"preprocessing layout {self.layout!r}", "use NCHW or NHWC")
        if self.channels not in ("RGB", "BGR"):
            raise DataError(f"preprocessing channels {self.channels!r}", "use RGB or BGR")
        if self.size is not None and (len(self.size) != 2 or min(self.size) < 1):
            raise DataError(f"preprocessing size {self.size!r}", "give (height, width), e.g. 224x224")
        if any(s == 0 for s in self.std):
            raise DataError("preprocessing std holds a zero", "give positive std values")

    @classmethod
    def from_model(cls, model: Model) -> Preprocessing | None:
        d = model.metadata_json("workbench.preprocessing")
        if not isinstance(d, dict):
            return None
        try:
            return cls(float(d.get("scale", 1 / 255)), tuple(map(float, d.get("mean", [0.0]))),
                       tuple(map(float, d.get("std", [1.0]))))
        except (TypeError, ValueError, DataError):
            return None

    @staticmethod
    def parse(text: str) -> dict[str, Any]:
        """``size=224x224,mean=0.485+0.456+0.406,std=...,scale=...,layout=NHWC,channels=BGR``."""
        out: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, eq, value = part.partition("=")
            key = key.strip().lower()
            if not eq or not value:
                raise DataError(f"--preprocess: {part!r} is not KEY=VALUE",
                                "e.g. size=224x224,mean=0.485+0.456+0.406,layout=NHWC")
            try:
                if key == "size":
                    h, _, w = value.lower().partition("x")
                    out["size"] = (int(h), int(w or h))
                elif key in ("mean", "std"):
                    out[key] = tuple(float(v) for v in value.split("+"))
                elif key == "scale":
                    out["scale"] = float(value.split("/")[0]) / float(value.split("/")[1]) \
                        if "/" in value else float(value)
                elif key in ("layout", "channels"):
                    out[key] = value.strip().upper()
                else:
                    raise DataError(f"--preprocess: unknown key {key!r}",
                                    "keys are size, mean, std, scale, layout, channels")
            except ValueError as e:
                raise DataError(f"--preprocess: bad value in {part!r}", "numbers joined with +, "
                                "size as HxW") from e
        return out

    @classmethod
    def resolve(cls, override: Preprocessing | dict | str | None,
                base: Preprocessing | None) -> Preprocessing | None:
        """``override`` as given (a Preprocessing), or its fields laid over ``base``."""
        if override is None or isinstance(override, Preprocessing):
            return override if override is not None else base
        d = cls.parse(override) if isinstance(override, str) else dict(override)
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise DataError(f"unknown preprocessing field {sorted(unknown)[0]!r}",
                            "fields are scale, mean, std, size, layout, channels")
        for k in ("mean", "std"):
            if k in d:
                d[k] = tuple(np.atleast_1d(np.asarray(d[k], float)).tolist())
        if d.get("size") is not None:
            d["size"] = tuple(int(v) for v in d["size"])
        return replace(base or cls(), **d)

    def channel_axis(self, ndim: int) -> int | None:
        if ndim != 4:
            return None
        return 3 if self.layout == "NHWC" else 1

    def apply(self, images: np.ndarray) -> np.ndarray:
        axis = self.channel_axis(images.ndim)
        c = images.shape[axis] if axis is not None else 1
        mean = np.asarray(self.mean, np.float32)
        std = np.asarray(self.std, np.float32)
        if mean.size not in (1, c) or std.size not in (1, c):
            raise DataError(f"preprocessing has {mean.size} means for {c} channels",
                            "declare one mean and std per channel")
        shape = [1] * images.ndim if images.ndim else [1]
        if axis is not None:
            shape[axis] = -1
        x = images.astype(np.float32) * np.float32(self.scale)
        return (x - mean.reshape(shape)) / std.reshape(shape)

    def describe(self) -> str:
        size = "model's size" if self.size is None else f"{self.size[0]}x{self.size[1]}"
        fmt = lambda v: "+".join(f"{x:g}" for x in v)  # noqa: E731
        return (f"resize to {size} (bilinear), {self.channels}, {self.layout or 'NCHW'}, "
                f"x*{self.scale:.6g} - mean {fmt(self.mean)}, / std {fmt(self.std)}")

    def to_dict(self) -> dict:
        return {"scale": self.scale, "mean": list(self.mean), "std": list(self.std),
                "size": list(self.size) if self.size else None, "layout": self.layout,
                "channels": self.channels}


@dataclass
class Dataset:
    """Model-ready inputs (first axis = samples) and optional labels."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None
    source: str
    preprocessing: Preprocessing | None = None
    notes: list[str] = field(default_factory=list)
    groups: list[dict[str, np.ndarray]] | None = None  # fixed feeds, for models with no batch axis
    random: bool = False  # generated inputs: calibrating on them makes accuracy meaningless

    def __len__(self) -> int:
        if self.groups is not None:
            return len(self.groups)
        return len(next(iter(self.inputs.values())))

    def batches(self, batch_size: int, limit: int | None = None
                ) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray | None]]:
        n = len(self) if limit is None else min(limit, len(self))
        if self.groups is not None:
            yield from ((g, None) for g in self.groups[:n])
            return
        for i in range(0, n, batch_size):
            j = min(i + batch_size, n)
            yield ({k: v[i:j] for k, v in self.inputs.items()},
                   None if self.labels is None else self.labels[i:j])

    def content_hash(self) -> str:
        """sha256 over the arrays and labels (for caches and manifests)."""
        h = hashlib.sha256()
        for feeds in self.groups if self.groups is not None else [self.inputs]:
            for k in sorted(feeds):
                a = np.ascontiguousarray(feeds[k])
                h.update(f"{k}:{a.dtype}:{a.shape}".encode())
                h.update(a.tobytes())
        if self.labels is not None:
            h.update(np.ascontiguousarray(self.labels).tobytes())
        return "sha256:" + h.hexdigest()


def _check_labels(labels: np.ndarray, n: int, source: str) -> np.ndarray:
    if labels.ndim != 1 or len(labels) != n:
        raise DataError(f"{source}: labels have shape {list(labels.shape)}, expected [{n}]",
                        "store one integer label per sample")
    if labels.dtype.kind not in "iu":
        if labels.dtype.kind == "f" and np.all(np.isfinite(labels)) and np.all(labels == np.round(labels)):
            labels = labels.astype(np.int64)
        else:
            raise DataError(f"{source}: labels are {labels.dtype}, not integer class indices",
                            "store labels as integers 0..classes-1")
    if len(labels) and labels.min() < 0:
        raise DataError(f"{source}: a label is negative ({labels.min()})", "labels are 0..classes-1")
    return labels.astype(np.int64)


def _fit(array: np.ndarray, spec: TensorSpec, pre: Preprocessing | None, source: str,
         notes: list[str]) -> np.ndarray:
    """Check one input array against the model's input and preprocess uint8 images."""
    if array.dtype == np.uint8 and spec.dtype.startswith("float"):
        if pre is None:
            pre = Preprocessing()
            notes.append(f"{spec.name}: uint8 scaled to [0, 1] (the model declares no preprocessing)")
        if pre.layout is None and spec.shape is not None and len(spec.shape) == 4:
            pre = replace(pre, layout=_model_layout(spec))
        if array.ndim == 3 and spec.shape is not None and len(spec.shape) == 4:
            array = array[..., None] if pre.layout == "NHWC" else array[:, None]  # N,H,W -> 1 channel
        array = pre.apply(array).astype(spec.dtype)
        notes.append(f"{spec.name}: preprocessing {pre.describe()}")
    if spec.shape is not None:
        if array.ndim != len(spec.shape):
            raise DataError(
                f"{source}: input {spec.name!r} has shape {list(array.shape)} per set, the model "
                f"expects rank {len(spec.shape)} {list(spec.shape)} (first axis = samples)",
                "reshape the data to the model's input layout",
            )
        for i, (a, d) in enumerate(zip(array.shape[1:], spec.shape[1:]), start=1):
            if isinstance(d, int) and d > 0 and a != d:
                raise DataError(
                    f"{source}: input {spec.name!r} dimension {i} is {a}, the model expects {d} "
                    f"(model input {list(spec.shape)}, data {list(array.shape)})",
                    "resize or re-layout the data (NCHW?)",
                )
    if array.dtype.kind not in "biuf" and spec.dtype != array.dtype.name:
        # strings, complex numbers, dates, records: no cast would keep their meaning
        raise DataError(f"{source}: input {spec.name!r} is {array.dtype}, the model wants {spec.dtype}",
                        "store plain numeric arrays of the model's input type")
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            raise DataError(f"{source}: input {spec.name!r} holds {int(bad.sum())} NaN or Inf values",
                            "clean the data; the metrics would be meaningless")
        if spec.dtype.startswith(("int", "uint")) and not np.all(array == np.round(array)):
            raise DataError(f"{source}: input {spec.name!r} holds fractional values, the model wants "
                            f"{spec.dtype} (token ids, indices?)", f"store the data as {spec.dtype}")
    if spec.dtype != array.dtype.name:
        try:
            array = array.astype(spec.dtype)
        except (TypeError, ValueError) as e:
            raise DataError(f"{source}: input {spec.name!r} is {array.dtype}, the model wants "
                            f"{spec.dtype}", "convert the data") from e
    return array


def _from_npz(path: Path, model: Model, pre: Preprocessing | None) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # BadZipFile, ValueError (pickled objects), OSError
        raise DataError(f"cannot read {path} as a .npz of arrays: {e}",
                        "save it with numpy.savez (no pickled objects)") from e
    ins, _ = tensor_specs(model.proto.graph)
    labels = next((arrays[k] for k in ("labels", "label", "y") if k in arrays), None)
    inputs = {}
    for spec in ins:
        key = spec.name if spec.name in arrays else None
        if key is None and len(ins) == 1:
            key = next((k for k in ("images", "image", "x", "inputs", "input") if k in arrays), None)
        if key is None:
            raise DataError(
                f"{path} has no array for input {spec.name!r} (it has: {', '.join(arrays) or 'nothing'})",
                f"name the array {spec.name!r}" + (" or 'images'" if len(ins) == 1 else ""),
            )
        inputs[spec.name] = arrays[key]
    return _finish(inputs, labels, str(path), model, ins, pre)


def _model_layout(spec: TensorSpec) -> str:
    """NCHW or NHWC from a rank-4 input shape: the axis of size 1 or 3 (NCHW when unsure)."""
    dims = list(spec.shape or ())[1:]
    if len(dims) == 3 and dims[2] in (1, 3) and dims[0] not in (1, 3):
        return "NHWC"
    return "NCHW"


def _from_folder(path: Path, model: Model, pre: Preprocessing | dict | None) -> Dataset:
    try:
        from PIL import Image  # noqa: PLC0415
    except ImportError as e:  # pillow is a core dependency; a broken install is worth naming
        raise DataError("reading image folders needs Pillow, which did not import",
                        install_hint()) from e
    ins, _ = tensor_specs(model.proto.graph)
    if len(ins) != 1 or ins[0].shape is None or len(ins[0].shape) != 4:
        raise DataError("an image folder can feed a model with one NCHW or NHWC input; this model has "
                        f"{[s.to_dict() for s in ins]}", "give a .npz with one array per input")
    spec = ins[0]
    declared = pre if isinstance(pre, Preprocessing) else Preprocessing.resolve(pre, None)
    layout = (declared.layout if declared and declared.layout else _model_layout(spec))
    dims = list(spec.shape or (0, 0, 0, 0))[1:]
    c, h, w = (dims[2], dims[0], dims[1]) if layout == "NHWC" else tuple(dims)
    if declared is not None and declared.size is not None:
        h, w = declared.size
    if not (isinstance(c, int) and isinstance(h, int) and isinstance(w, int)) or c not in (1, 3) \
            or h <= 0 or w <= 0:
        raise DataError(f"input {spec.name!r} {spec.shape} ({layout}): cannot tell the image size and "
                        "channels (1 or 3) from the model",
                        "state the size (preprocessing size=HxW, --preprocess size=224x224) or give "
                        "a .npz of preprocessed arrays")
    if isinstance(pre, Preprocessing):
        final = pre
    else:
        default = (Preprocessing(1 / 255, _IMAGENET_MEAN, _IMAGENET_STD) if c == 3
                   else Preprocessing(1 / 255, (0.5,), (0.5,)))
        final = Preprocessing.resolve(pre, Preprocessing.from_model(model) or default)
    assert final is not None
    final = replace(final, layout=layout, size=(h, w))
    classes = sorted(d.name for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"{path} has no class folders",
                        "use the ImageNet layout: DIR/<class name>/<image files>")
    images, labels = [], []
    for label, cls in enumerate(classes):
        for f in sorted((path / cls).iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(f) as im:
                    rgb = im.convert("L" if c == 1 else "RGB").resize((w, h), Image.Resampling.BILINEAR)
                    arr = np.asarray(rgb, dtype=np.uint8)
            except Exception as e:  # PIL.UnidentifiedImageError, OSError on truncated files
                raise DataError(f"cannot read image {f}: {e}", "remove or replace the file") from e
            arr = arr[..., None] if c == 1 else (arr[..., ::-1] if final.channels == "BGR" else arr)
            images.append(arr if layout == "NHWC" else arr.transpose(2, 0, 1))
            labels.append(label)
    if not images:
        raise DataError(f"{path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})",
                        "put images in DIR/<class name>/")
    ds = _finish({spec.name: np.stack(images)}, np.asarray(labels), str(path), model, ins, final)
    ds.notes.append(f"classes (label order): {', '.join(classes)}")
    return ds


def _finish(inputs: dict[str, np.ndarray], labels: np.ndarray | None, source: str, model: Model,
            ins: list[TensorSpec], pre: Preprocessing | None) -> Dataset:
    notes: list[str] = []
    lengths = {k: len(v) if v.ndim else 0 for k, v in inputs.items()}
    if not lengths or min(lengths.values()) == 0:
        raise DataError(f"{source} holds no samples", "give at least one sample")
    if len(set(lengths.values())) > 1:
        raise DataError(f"{source}: inputs have different sample counts {lengths}",
                        "every input needs the same number of samples")
    by_name = {s.name: s for s in ins}
    fitted = {k: _fit(v, by_name[k], pre, source, notes) for k, v in inputs.items()}
    n = next(iter(lengths.values()))
    if labels is not None:
        labels = _check_labels(np.asarray(labels), n, source)
    return Dataset(fitted, labels, source, pre, notes)


def load_dataset(data: str | Path | None, model: Model,
                 preprocessing: Preprocessing | dict | str | None = None) -> Dataset:
    """Load evaluation data for ``model``.

    ``data`` is a ``.npz`` (arrays named after the inputs, or ``images``; labels in ``labels``),
    a folder in the ImageNet layout (``DIR/<class>/<image>``), ``sample:NAME`` (a sample's test
    set, ``sample:NAME:calib`` its calibration set), or None for the model's own sample test set.
    ``preprocessing`` (a :class:`Preprocessing`, or a dict / ``--preprocess`` text of fields laid
    over the model's declared one) applies to uint8 images; the dataset's notes say what ran.
    """
    from ..samples import get_sample, sample_origin  # noqa: PLC0415

    pre = Preprocessing.from_model(model)
    if data is None:
        origin = sample_origin(model.source)  # a sample, or a build made from one
        if origin is None or origin.test_data is None:
            raise DataError(f"no evaluation data given for {model.name}",
                            "give --data FILE.npz or DIR (or --reference MODEL for fidelity)")
        data = f"sample:{origin.name}"
    text = str(data)
    if text.startswith("sample:"):
        name, _, part = text.partition(":")[2].partition(":")
        s = get_sample(name)
        path = s.calib_data_path if part == "calib" else s.test_data_path
        if path is None:
            raise DataError(f"sample:{name} has no {'calibration' if part == 'calib' else 'test'} data",
                            "give --data FILE.npz or DIR")
        if pre is None and s.file:
            from ..model import load_model  # noqa: PLC0415

            pre = Preprocessing.from_model(load_model(f"sample:{name}"))
        return _from_npz(path, model, Preprocessing.resolve(preprocessing, pre))
    path = Path(text).expanduser()
    if not path.exists():
        raise DataError(f"no such data file or folder: {text}", "give a .npz file or an image folder")
    if path.is_dir():
        return _from_folder(path, model, preprocessing)
    if path.suffix != ".npz":
        raise DataError(f"{text} is not a .npz file or a folder",
                        "save arrays with numpy.savez, or give a folder of images")
    return _from_npz(path, model, Preprocessing.resolve(preprocessing, pre))


def random_dataset(model: Model, samples: int, shapes: dict[str, tuple[int, ...]] | None = None,
                   values: dict[str, np.ndarray] | None = None, seed: int = 0) -> Dataset:
    """Unlabeled random inputs from the model's input spec (for fidelity without data).

    Models whose inputs all have a dynamic batch axis get ``samples`` rows in one array each;
    others (fixed batch, scalars) get ``samples`` separate feeds at their resolved shapes.
    """
    ins, _ = tensor_specs(model.proto.graph)
    batchable = not shapes and not values and all(
        s.shape is not None and len(s.shape) > 1 and not (isinstance(s.shape[0], int) and s.shape[0] > 0)
        for s in ins)
    if batchable:
        resolved = resolve_inputs(ins, None, batch=samples)
        return Dataset(random_feeds(resolved, seed=seed), None, f"random inputs (seed {seed})", None,
                       [f"{r.spec.name}: {n}" for r in resolved for n in r.defaults], random=True)
    resolved = resolve_inputs(ins, shapes, batch=None)
    groups = [random_feeds(resolved, seed=seed + i, values=values) for i in range(samples)]
    return Dataset({}, None, f"random inputs (seed {seed})", None,
                   [f"{r.spec.name}: {n}" for r in resolved for n in r.defaults], groups, random=True)
