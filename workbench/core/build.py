"""Apply a recipe to a model for a target device, through the build cache.

``optimize`` is what the CLI's ``optimize`` verb and the panel's build button call: it resolves
the recipe (every option spelled out), finds calibration data when a pass needs it, serves a
previous identical build from the cache, and otherwise runs the passes in order, collecting
their reports.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError, UsageError
from .cache import BuildCache, cache_key
from .evaluation.data import Dataset, load_dataset, random_dataset
from .machine import machine_info
from .model import Model, ModelSource, load_model, proto_size
from .passes.base import PassContext, PassReport, Progress
from .passes.recipe import Recipe
from .paths import atomic_write

__all__ = ["BuildResult", "optimize", "write_build", "RANDOM_CALIB_WARNING"]

RANDOM_CALIB_SAMPLES = 64
RANDOM_CALIB_WARNING = ("calibrated on random inputs (asked for with calib='random'): the build's "
                        "latency and size are real, its accuracy says nothing")


@dataclass
class BuildResult:
    """An optimized model and everything about how it was made."""

    model: Model
    source: Model
    recipe: Recipe  # resolved: every option spelled out
    device: str
    reports: list[PassReport]
    key: str
    cache_hit: bool
    wall_s: float
    calibration: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def manifest(self) -> dict[str, Any]:
        return {
            "source": {"name": self.source.name, "source": self.source.source,
                       "fingerprint": self.source.fingerprint},
            "output": {"fingerprint": self.model.fingerprint, "size_bytes": self.model.size_bytes},
            "recipe": self.recipe.to_dict(),
            "recipe_label": self.recipe.label(),
            "device": self.device,
            "calibration": self.calibration,
            "conversion": self.source.conversion,  # how the source came from PyTorch, or None
            "reports": [r.to_dict() for r in self.reports],
            "cache_key": self.key,
            "machine": machine_info(),
        }


def _calibration_for(model: Model, recipe: Recipe, calib: str | Dataset | None,
                     needs: bool, uses: bool) -> Dataset | None:
    """The given calibration data; else a sample's own set when a pass needs or can use it."""
    if isinstance(calib, Dataset):
        return calib
    if calib == "random":  # asked for explicitly: a latency-only look, its accuracy says nothing
        return random_dataset(model, RANDOM_CALIB_SAMPLES)
    if calib is not None:
        return load_dataset(calib, model)
    if not (needs or uses):
        return None
    from .samples import sample_origin  # noqa: PLC0415

    origin = sample_origin(model.source)  # a sample, or a build made from one
    if origin is not None and origin.calib_data:
        return load_dataset(f"sample:{origin.name}:calib", model)
    if not needs:
        return None
    raise DataError(f"{', '.join(s.name for s in recipe.passes)} needs calibration data",
                    "give --calib DATA (a .npz, an image folder or sample:NAME:calib), or "
                    "calib=\"random\" / --calib random for a latency-only look (its accuracy says nothing)")


def is_cached(model: ModelSource, recipe: Recipe | str, *, device: str = "cpu",
              calibration: str | Dataset | None = None, cache: BuildCache | None = None) -> bool:
    """Whether ``optimize`` with these arguments would come from the cache."""
    src = load_model(model)
    recipe = Recipe.parse(recipe) if isinstance(recipe, str) else recipe
    passes = recipe.instantiate()
    calib = _calibration_for(src, recipe, calibration, any(p.needs_calibration for p in passes),
                             any(p.uses_calibration for p in passes))
    cache = cache if cache is not None else BuildCache()
    key = cache_key(src.fingerprint, recipe.resolved().to_dict(), device,
                    None if calib is None else calib.content_hash())
    return cache.contains(key)


def optimize(
    model: ModelSource,
    recipe: Recipe | str,
    *,
    device: str = "cpu",
    calibration: str | Dataset | None = None,
    cache: BuildCache | None = None,
    progress: Progress | None = None,
) -> BuildResult:
    """Run ``recipe`` on ``model`` for ``device``; identical builds come from the cache.

    Example:
        >>> r = optimize("sample:resnet-fashion", "fuse")
        >>> r.reports[0].fused["Conv+BatchNormalization"]
        20
    """
    t0 = time.perf_counter()
    src = load_model(model)
    recipe = Recipe.parse(recipe) if isinstance(recipe, str) else recipe
    passes = recipe.instantiate()
    resolved = recipe.resolved()
    calib = _calibration_for(src, recipe, calibration, any(p.needs_calibration for p in passes),
                             any(p.uses_calibration for p in passes))
    calib_hash = None if calib is None else calib.content_hash()
    calib_info = None if calib is None else {"source": calib.source, "samples": len(calib), "hash": calib_hash}
    notes = []
    if calib is not None and calib.random and calib_info is not None:
        calib_info.update(random=True, warning=RANDOM_CALIB_WARNING)
        notes.append(RANDOM_CALIB_WARNING)
    cache = cache if cache is not None else BuildCache()
    key = cache_key(src.fingerprint, resolved.to_dict(), device, calib_hash)
    hit = cache.get(key)
    label = f"{src.name}+{resolved.label()}"
    if hit is not None:
        built = load_model(hit.model_path, check=False)
        built = Model(built.proto, label, None, built.fingerprint, built.size_bytes)
        reports = [PassReport(**r) for r in hit.manifest.get("reports", [])]
        return BuildResult(built, src, resolved, device, reports, key, True,
                           time.perf_counter() - t0, calib_info, list(notes))
    ctx = PassContext(device=device, calibration=calib, progress=progress)
    proto = src.proto
    reports = []
    for i, p in enumerate(passes):
        if progress:
            progress("build", i, len(passes))
        result = p(proto, ctx)
        proto = result.model
        reports.append(result.report)
    if progress:
        progress("build", len(passes), len(passes))
    if src.metadata and not proto.metadata_props:
        proto.metadata_props.extend(src.proto.metadata_props)
    built = load_model(proto)
    built = Model(built.proto, label, None, built.fingerprint, proto_size(built.proto))
    result = BuildResult(built, src, resolved, device, reports, key, False,
                         time.perf_counter() - t0, calib_info, notes)
    cache.put(key, built.proto.SerializeToString(), result.manifest())
    return result


def write_build(result: BuildResult, out_dir: str | Path, force: bool = False) -> Path:
    """Write ``model.onnx`` and ``manifest.json`` into ``out_dir``; returns the model's path.

    Each file is written to a temporary name and renamed, so an interrupted write leaves the
    previous files (or none), never half a file. Existing files are replaced only with ``force``.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file", "give a folder")
    targets = [out / "model.onnx", out / "manifest.json"]
    if not force and any(t.exists() for t in targets):
        raise UsageError(f"{out} already holds a build", "give another --out, or --force to replace it")
    out.mkdir(parents=True, exist_ok=True)
    manifest = {**result.manifest(), "model_file": "model.onnx"}
    payloads = [result.model.proto.SerializeToString(),
                json.dumps(manifest, indent=2, default=str).encode()]
    for target, data in zip(targets, payloads):
        atomic_write(target, data)
    return targets[0]

