"""Open and verify engine bundles (see :mod:`workbench.core.export`, which writes them).

Loading is plain data only: JSON, ONNX protobuf, TensorRT plans and OpenVINO IR (XML and its
weights) are read, nothing is imported
or executed from the folder. Every file name in the manifest must be a plain name inside the
folder, every file's size and sha256 must match before anything is parsed, and the engine options
a manifest may set are an allow-list of plain settings (no paths, modules or free-form entries).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BundleError
from .engines.base import Runner
from .engines.openvino import OpenVinoIR
from .engines.registry import engine_for_device
from .evaluation.run import make_runner
from .machine import cpu_isa, machine_info
from .model import Model, load_model
from .paths import sha256_file

__all__ = ["Bundle", "BundleWarning", "load_bundle", "open_bundle", "is_bundle", "sha256_file", "BUNDLE_FORMAT", "BUNDLE_VERSION",
           "MANIFEST", "MODEL_FILE", "SAFE_OPTIONS"]

BUNDLE_FORMAT = "workbench-bundle"
BUNDLE_VERSION = 1
MANIFEST = "manifest.json"
MODEL_FILE = "model.onnx"
_MAX_MANIFEST_BYTES = 32 << 20
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")  # a plain file name: no '/', no '..'


class BundleWarning(UserWarning):
    """A bundle loads, but something about this machine differs from where it was exported."""




@dataclass
class Bundle:
    """A verified bundle: its manifest, its model and how to run its engine here."""

    path: Path
    manifest: dict[str, Any]
    model: Model  # model.onnx
    engine_model: Model | None  # ONNX Runtime's optimized graph, where it can run here
    plan: bytes | None  # TensorRT's serialized engine, where it can run here
    warnings: list[str] = field(default_factory=list)
    ir: OpenVinoIR | None = None  # OpenVINO IR (engine.xml + engine.bin), where it can run here

    @property
    def device(self) -> str:
        return str(self.manifest["engine"]["device"])

    @property
    def engine(self) -> str:
        return str(self.manifest["engine"]["name"])

    def target(self, device: str | None = None) -> tuple[Model, str, dict[str, Any]]:
        """(model, device, engine options) that run this bundle as exported.

        Another ``device`` runs ``model.onnx`` there with that engine's defaults.
        """
        eng = self.manifest["engine"]
        if device is not None and engine_for_device(device).name != eng["name"]:
            return self.model, device, {}
        device = device or self.device
        if self.engine_model is not None:
            return self.engine_model, device, dict(eng["run_options"])
        opts = dict(eng.get("options") or {})
        if self.plan is not None:
            opts = {**eng["run_options"], "plan": self.plan}
        if self.ir is not None:
            opts = {**eng["run_options"], "ir": self.ir}
        return self.model, device, opts

    def runner(self, device: str | None = None, **overrides: Any) -> Runner:
        """A runner for this bundle (``with bundle.runner() as r: r.infer(feeds)``)."""
        model, dev, opts = self.target(device)
        return make_runner(model, dev, **{**opts, **overrides})


def _fail(path: Path, what: str, hint: str = "export the bundle again, or copy it again in full") -> BundleError:
    return BundleError(f"bundle {path}: {what}", hint)


def _read_manifest(folder: Path) -> dict[str, Any]:
    if not folder.exists():
        raise BundleError(f"no such bundle folder: {folder}", "give the folder `workbench export` wrote")
    mpath = folder / MANIFEST
    if not mpath.is_file() or mpath.is_symlink():
        raise _fail(folder, f"no {MANIFEST} in it (a regular file)", "give a folder `workbench export` wrote")
    if mpath.stat().st_size > _MAX_MANIFEST_BYTES:
        raise _fail(folder, f"{MANIFEST} is larger than {_MAX_MANIFEST_BYTES >> 20} MiB")
    try:
        m = json.loads(mpath.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise _fail(folder, f"{MANIFEST} is not valid JSON ({e})") from e
    if not isinstance(m, dict) or m.get("format") != BUNDLE_FORMAT:
        raise _fail(folder, f"{MANIFEST} is not a workbench bundle manifest (no format {BUNDLE_FORMAT!r})")
    if m.get("version") != BUNDLE_VERSION:
        raise _fail(folder, f"bundle version {m.get('version')!r}; this workbench reads {BUNDLE_VERSION}",
                    "load it with the workbench version that exported it")
    for key, kind in (("files", dict), ("engine", dict), ("source", dict), ("recipe", dict),
                      ("output", dict), ("model_file", str)):
        if not isinstance(m.get(key), kind):
            raise _fail(folder, f"{MANIFEST} has no valid {key!r} entry")
    return m


def _safe_file(folder: Path, name: Any, files: dict[str, Any]) -> Path:
    """The file ``name`` inside ``folder``: a plain name, listed, not leaving the folder."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise _fail(folder, f"the manifest names the file {name!r}, which is not a plain name inside the "
                            "bundle (absolute paths, '..' and subfolders are refused)",
                    "bundles hold plain file names only; do not edit manifest.json by hand")
    if name not in files:
        raise _fail(folder, f"the manifest refers to {name!r}, which its file list does not hold")
    p = folder / name
    base = folder.resolve()
    if p.is_symlink() and p.resolve().parent != base:
        raise _fail(folder, f"{name} is a symbolic link to {os.readlink(p)}, outside the bundle",
                    "copy the real file into the bundle")
    return p


def _verify_files(folder: Path, files: dict[str, Any]) -> None:
    for name, info in files.items():
        p = _safe_file(folder, name, files)
        if not isinstance(info, dict) or not isinstance(info.get("sha256"), str) \
                or not isinstance(info.get("bytes"), int):
            raise _fail(folder, f"the manifest's entry for {name} has no size and sha256")
        if not p.exists():
            raise _fail(folder, f"{name} is missing")
        if not p.is_file():
            raise _fail(folder, f"{name} is not a regular file")
        size = p.stat().st_size
        if size != info["bytes"]:
            what = "truncated" if size < info["bytes"] else "longer than exported"
            raise _fail(folder, f"{name} is {size} bytes, the manifest says {info['bytes']} ({what})")
        if sha256_file(p) != info["sha256"]:
            raise _fail(folder, f"{name} does not match its sha256 in the manifest (changed since export)")


def _version_warnings(m: dict[str, Any]) -> tuple[list[str], bool]:
    """Mismatches between the exporting machine and this one; True if the engine artifact is unsafe."""
    eng, rt, here = m["engine"], m.get("runtime") or {}, machine_info()["libraries"]
    out: list[str] = []
    unsafe = False
    name = eng.get("name")
    from .. import __version__  # noqa: PLC0415

    def ort(libs: dict[str, Any]) -> Any:  # one runtime, whichever wheel (CPU or GPU) carries it
        return libs.get("onnxruntime") or libs.get("onnxruntime-gpu")

    if name == "tensorrt":
        runtime, was, now = "tensorrt", rt.get("tensorrt"), here.get("tensorrt")
    elif str(name).startswith("openvino"):
        from .engines import openvino  # noqa: PLC0415

        runtime, was, now = "openvino", eng.get("openvino"), openvino.openvino_version()
    else:
        runtime, was, now = "onnxruntime", ort(rt), ort(here)
    if was != now:
        out.append(f"exported with {runtime} {was}, this machine has {now or 'none'}")
        unsafe = eng.get("artifact") is not None
    for lib, was, now in (("onnx", rt.get("onnx"), here.get("onnx")),
                          ("workbench", m.get("workbench"), __version__)):
        if was and was != now:
            out.append(f"exported with {lib} {was}, this machine has {now}")
    if name == "ort-cpu" and eng.get("artifact") and list(rt.get("isa") or []) != list(cpu_isa()):
        out.append(f"exported on a CPU with {rt.get('isa')}, this one has {list(cpu_isa())}")
        unsafe = True
    if name == "tensorrt":
        from .gpu import scan_gpus  # noqa: PLC0415

        gpus = scan_gpus().gpus
        dev = int((eng.get("run_options") or {}).get("device_id", 0))
        g = gpus[dev] if dev < len(gpus) else None
        want = eng.get("gpu") or {}
        if g is None or (g.name, g.compute_capability) != (want.get("name"), want.get("compute_capability")):
            out.append(f"the TensorRT plan was built on {want.get('name')} (sm {want.get('compute_capability')}), "
                       f"this machine has {g.name if g else 'no GPU'}")
            unsafe = True
    if unsafe and eng.get("artifact"):
        out.append(f"{eng['artifact']} is not used here: the bundle runs model.onnx "
                   + ("and TensorRT builds a new engine" if name == "tensorrt"
                      else "and OpenVINO reads it from ONNX again" if str(name).startswith("openvino")
                      else "and ONNX Runtime optimizes it again"))
    return out, unsafe


# Engine options a manifest may set. Anything that names a file, a folder, a module or free-form
# runtime settings (optimized_model_path, config, provider_options, engine cache paths) is refused:
# loading a bundle must not write outside it or import anything it names.
SAFE_OPTIONS = {
    "ort-cpu": {"threads", "inter_op_threads", "optimization_level", "execution_mode"},
    "ort-cuda": {"device_id", "io_binding", "cuda_graph", "prefer_nhwc", "cudnn_conv_algo_search",
                 "use_tf32", "optimization_level", "threads", "gpu_mem_limit"},
    "ort-tensorrt": {"device_id", "precision", "builder_optimization_level", "workspace_bytes",
                     "profile_shapes", "io_binding", "cuda_graph", "optimization_level", "threads"},
    "tensorrt": {"device_id", "precision", "batch_range", "profile_shapes", "builder_optimization_level",
                 "workspace_bytes", "sparse_weights", "detailed_profile", "module", "threads"},
    **{name: {"device", "threads", "streams", "performance_hint", "precision"}  # no cache_dir (a path)
       for name in ("openvino", "openvino-gpu", "openvino-npu")},
}
_TRT_MODULES = {"tensorrt", "tensorrt_rtx_bindings"}


def _check_options(folder: Path, eng: dict[str, Any]) -> None:
    name = eng.get("name")
    if name not in SAFE_OPTIONS:
        raise _fail(folder, f"unknown engine {name!r} in the manifest")
    for key in ("options", "run_options"):
        opts = eng.get(key)
        if opts is None:
            continue
        if not isinstance(opts, dict):
            raise _fail(folder, f"the manifest's engine {key} are not an object")
        bad = sorted(set(opts) - SAFE_OPTIONS[name])
        if bad:
            raise _fail(folder, f"the manifest sets the {name} option {bad[0]!r}, which a bundle may not set "
                                f"(allowed: {', '.join(sorted(SAFE_OPTIONS[name]))})",
                        "bundles carry plain engine settings only; do not edit manifest.json by hand")
        if opts.get("module", "tensorrt") not in _TRT_MODULES:
            raise _fail(folder, f"the manifest names the TensorRT module {opts['module']!r}",
                        f"use one of {', '.join(sorted(_TRT_MODULES))}")


def open_bundle(folder: Path, m: dict[str, Any], verify: bool) -> Bundle:
    """A Bundle from a parsed manifest; ``verify`` checks sizes, sha256 and runtime versions."""
    files = m["files"]
    _check_options(folder, m["engine"])
    model_path = _safe_file(folder, m["model_file"], files)
    eng = m["engine"]
    art = _safe_file(folder, eng["artifact"], files) if eng.get("artifact") is not None else None
    if eng.get("timing_cache") is not None:
        _safe_file(folder, eng["timing_cache"], files)
    weights = _safe_file(folder, eng["weights"], files) if eng.get("weights") is not None else None
    if verify:
        _verify_files(folder, files)
    source = m["source"].get("source") or ""
    label = f"{source}+{m.get('recipe_label')}" if source.startswith("sample:") else str(model_path)
    model = load_model(model_path)
    if model.fingerprint != m["output"].get("fingerprint"):
        raise _fail(folder, f"{m['model_file']} has fingerprint {model.fingerprint[:19]}..., the manifest "
                            f"says {str(m['output'].get('fingerprint'))[:19]}...")
    model = dataclasses.replace(model, source=label)
    notes, unsafe = _version_warnings(m) if verify else ([], False)
    engine_model = plan = ir = None
    if art is not None and not unsafe:
        if eng.get("artifact_kind") == "tensorrt serialized engine":
            plan = art.read_bytes()
        elif eng.get("artifact_kind") == "openvino ir":
            if weights is None:
                raise _fail(folder, "the manifest names no weights file for its OpenVINO IR")
            ir = OpenVinoIR(art.read_bytes(), weights.read_bytes(), model.fingerprint, art.name)
        else:
            engine_model = dataclasses.replace(load_model(art, check=False), source=label)
    return Bundle(folder, m, model, engine_model, plan, notes, ir)


def load_bundle(path: str | Path, *, warn: bool = True) -> Bundle:
    """Open a bundle folder: check every file's size and sha256, the model's fingerprint and the
    runtime versions, then return a :class:`Bundle` ready to run.

    Mismatched runtime versions (or, for TensorRT, another GPU) are warnings (``BundleWarning``,
    also in ``bundle.warnings``): the bundle then runs ``model.onnx`` rather than the engine
    artifact. Everything else wrong is a :class:`BundleError`.

    Example:
        >>> b = load_bundle("out/fuse-cpu")
        >>> with b.runner() as r:
        ...     outputs = r.infer(feeds)
    """
    folder = Path(path).expanduser()
    if folder.name == MANIFEST and not folder.is_dir():
        folder = folder.parent
    m = _read_manifest(folder)
    bundle = open_bundle(folder, m, verify=True)
    if warn:
        for w in bundle.warnings:
            warnings.warn(w, BundleWarning, stacklevel=2)
    return bundle


def is_bundle(path: str | os.PathLike[str]) -> bool:
    """A folder with a manifest.json: the CLI treats it as a bundle (and verifies it)."""
    p = Path(path)
    return p.is_dir() and (p / MANIFEST).exists()
