"""Engine bundles: a built model, its engine artifact and a manifest, in one plain-data folder.

A bundle is what leaves the workbench: a deployment loads it, a colleague reproduces it.

```
DIR/model.onnx       the optimized model (the recipe's output)
DIR/engine.onnx      ONNX Runtime engines: the graph ONNX Runtime optimized (optimized_model_filepath)
DIR/engine.plan      native TensorRT: the serialized engine; DIR/timing.cache its timing cache
DIR/engine.xml       OpenVINO: the model converted to OpenVINO IR, DIR/engine.bin its weights (as built)
DIR/manifest.json    source fingerprint, resolved recipe, pass reports, engine and session options,
                     device, library versions, calibration hash, measured metrics and conditions,
                     and the size and sha256 of every file above
DIR/README.md        how to run it
```

:mod:`workbench.core.bundle` opens and verifies bundles (plain data only). A bundle is written
into a hidden temporary sibling folder and renamed into place, so an interrupted export leaves no
folder at the target (a hard kill can leave the hidden ``.NAME.*.partial`` folder beside it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BundleError, DataError, UsageError, WorkbenchError
from .build import BuildResult, optimize
from .bundle import (
    BUNDLE_FORMAT,
    BUNDLE_VERSION,
    MANIFEST,
    MODEL_FILE,
    SAFE_OPTIONS,
    Bundle,
    BundleWarning,
    is_bundle,
    load_bundle,
    open_bundle,
    sha256_file,
)
from .cache import BuildCache
from .engines.registry import engine_for_device
from .evaluation.data import Dataset, load_dataset, random_dataset
from .evaluation.metrics import FidelityAccumulator, topk_correct
from .evaluation.run import bench, make_runner
from .machine import cpu_isa, machine_info
from .model import TWO_GB, Model, ModelSource, load_model
from .passes.base import Progress
from .passes.recipe import Recipe
from .shapes import random_feeds, resolve_inputs, tensor_specs

__all__ = ["MeasureSpec", "Reproduction", "export", "export_bundle", "graph_fingerprint", "reproduce",
           "Bundle", "BundleWarning", "load_bundle", "is_bundle"]


@dataclass(frozen=True)
class MeasureSpec:
    """What export measures, quickly: latency on random inputs, accuracy/fidelity on ``samples``.

    ``data`` is labeled data (``.npz``, folder, ``sample:NAME``) or a Dataset; None uses the
    sample's test set for builds of a sample, else ``samples`` random inputs (fidelity only).
    """

    batch: int = 1
    threads: int | None = None
    warmup: int = 5
    iterations: int = 50
    samples: int = 500
    eval_batch: int = 100
    data: str | Dataset | None = None


# ---------------------------------------------------------------------------------------------
# writing


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _replaceable(out: Path) -> bool:
    """An empty folder, or one holding a workbench build or bundle (never any other folder)."""
    entries = list(out.iterdir())
    if not entries:
        return True
    try:
        m = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(m, dict) and ("recipe" in m or m.get("format") == BUNDLE_FORMAT)


def _check_target(out: Path, force: bool) -> None:
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UsageError(f"--out {out} exists and is not a folder", "give a new folder")
    if out.exists():
        if not force:
            raise UsageError(f"{out} already exists", "give another --out, or --force to replace it")
        if not _replaceable(out):
            raise UsageError(f"{out} is not a workbench bundle; --force replaces only bundles",
                             "give a new or empty folder")


def _options_dict(opts: dict[str, Any]) -> dict[str, Any]:
    """Engine options as JSON (tuples become lists, bytes are never recorded)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in opts.items()
            if not isinstance(v, (bytes, bytearray, memoryview))}


def _feeds(model: Model, batch: int) -> dict[str, np.ndarray]:
    ins, _ = tensor_specs(model.proto.graph)
    return random_feeds(resolve_inputs(ins, None, batch), seed=0)


def _compare(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, Any]:
    same = list(a) == list(b) and all(np.array_equal(a[k], b[k]) for k in a)
    diff = max((float(np.max(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64))))
                for k in a if k in b and a[k].shape == b[k].shape and a[k].size), default=0.0)
    return {"identical": bool(same), "max_abs": diff}


_TOKEN = re.compile(r"token_\d+")


def graph_fingerprint(model: Model) -> str:
    """Fingerprint of ONNX Runtime's optimized graph without node names, generated names canonical.

    ONNX Runtime names the nodes it inserts (``ReorderOutput``, ``ReorderOutput_token_36``)
    differently from one session to the next, so the same optimization saves different bytes
    (seen with its NCHWc layout pass on the sample). Node names carry no meaning in ONNX; the
    nodes, their order, the tensors and the weights are compared as they are.
    """
    import onnx  # noqa: PLC0415

    from .model import fingerprint_of  # noqa: PLC0415

    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    seen: dict[str, str] = {}

    def canon(name: str) -> str:
        return _TOKEN.sub(lambda t: seen.setdefault(t.group(0), f"token_{len(seen)}"), name)

    g = proto.graph
    for n in g.node:
        n.ClearField("name")
        n.input[:] = [canon(x) for x in n.input]
        n.output[:] = [canon(x) for x in n.output]
    for t in g.initializer:
        t.name = canon(t.name)
    for v in [*g.input, *g.output, *g.value_info]:
        v.name = canon(v.name)
    return fingerprint_of(proto)


def _engine_section(build: BuildResult, engine: str, device: str, tmp: Path,
                    options: dict[str, Any], batch: int) -> dict[str, Any]:
    """Produce the engine artifact in ``tmp`` and describe how to run it."""
    model, feeds = build.model, _feeds(build.model, batch)
    sec: dict[str, Any] = {"name": engine, "device": device, "options": _options_dict(options),
                           "artifact": None, "notes": []}
    if engine in ("ort-cpu", "ort-cuda"):
        path = tmp / "engine.onnx"
        writer = make_runner(model, device, **options, optimized_model_path=str(path))
        with writer:
            expected = writer.infer(feeds)
        sec["session"] = _options_dict(writer.settings)
        sec["session"].pop("optimized_model_path", None)
        if not path.is_file():
            sec["notes"].append("ONNX Runtime wrote no optimized model; the bundle runs model.onnx")
            return sec
        level = options.get("optimization_level", "all")
        run_opts = {**options, "optimization_level": "disabled"}  # the graph is optimized already
        try:
            art = load_model(path, check=False)
            with make_runner(art, device, **run_opts) as r:
                check = _compare(expected, r.infer(feeds))
        except WorkbenchError as e:
            path.unlink()
            sec["notes"].append(f"ONNX Runtime's optimized model does not load back ({e}); the "
                                "bundle runs model.onnx")
            return sec
        sec.update(artifact="engine.onnx", artifact_kind="onnxruntime optimized model",
                   run_options=_options_dict(run_opts), verified=check,
                   artifact_fingerprint=graph_fingerprint(art))
        if level in ("all", "extended") and engine == "ort-cpu":
            sec["notes"].append(f"optimized at level {level!r}: the graph may hold kernels for this "
                                "CPU's instruction sets (NCHWc); other CPUs run model.onnx")
        if not check["identical"]:
            sec["notes"].append(f"the optimized model's outputs differ from the build's by up to "
                                f"{check['max_abs']:.3g} on batch {batch} random inputs")
    elif engine == "tensorrt":
        from .engines.tensorrt import TensorRTOptions, build_engine  # noqa: PLC0415
        from .gpu import scan_gpus  # noqa: PLC0415

        o = dict(options)
        o.pop("threads", None)
        opts = TensorRTOptions(**o)
        built = build_engine(model, opts, {k: tuple(v.shape) for k, v in feeds.items()})
        _write(tmp / "engine.plan", built.plan)
        info = dict(built.info)
        timing = info.pop("timing_cache", None)
        if timing and Path(timing).is_file():
            shutil.copyfile(timing, tmp / "timing.cache")
            sec["timing_cache"] = "timing.cache"
        gpus = scan_gpus().gpus
        g = gpus[opts.device_id] if opts.device_id < len(gpus) else None
        sec.update(artifact="engine.plan", artifact_kind="tensorrt serialized engine", build=info,
                   gpu={"name": g.name if g else None,
                        "compute_capability": g.compute_capability if g else None},
                   run_options=_options_dict(o))
        sec["notes"].append("a TensorRT plan runs only with the same TensorRT version on the same GPU "
                            "model; elsewhere the bundle rebuilds the engine from model.onnx")
    elif engine.startswith("openvino"):
        _openvino_section(model, device, tmp, options, feeds, sec)
    else:  # ort-tensorrt: ONNX Runtime cannot serialize a graph with compiled TensorRT nodes
        sec["notes"].append("no engine artifact: ONNX Runtime cannot save a graph with TensorRT-compiled "
                            "nodes; the engine is built from model.onnx on first run (cached)")
    return sec


def _openvino_section(model: Model, device: str, tmp: Path, options: dict[str, Any],
                      feeds: dict[str, np.ndarray], sec: dict[str, Any]) -> None:
    """``engine.xml`` + ``engine.bin``: the model in OpenVINO IR, checked against ONNX Runtime."""
    from .engines.openvino import OpenVinoIR, ir_fingerprint, openvino_version, save_ir  # noqa: PLC0415

    xml = tmp / "engine.xml"
    save_ir(model, xml)
    ir = OpenVinoIR.read(xml, model.fingerprint)
    with make_runner(model, device, **options, ir=ir) as r:
        got = r.infer(feeds)
        compiled = r.settings
    with make_runner(model, "cpu") as ref:  # model.onnx on ONNX Runtime, the build's own reference
        check = _compare(ref.infer(feeds), got)
    compiled.pop("cache_dir", None)
    sec.update(artifact="engine.xml", artifact_kind="openvino ir", weights="engine.bin",
               openvino=openvino_version(), openvino_device=compiled["device"],
               device_name=compiled.get("device_name"), compiled=_options_dict(compiled),
               run_options=_options_dict(options),
               verified={**check, "reference": "model.onnx on ONNX Runtime (CPU)"},
               artifact_fingerprint=ir_fingerprint(ir.xml, ir.weights))
    sec["notes"].append(f"OpenVINO {compiled.get('openvino')} compiled the IR for {compiled['device']} in "
                        f"{compiled.get('precision')} (read back from the compiled model); another "
                        "OpenVINO version runs model.onnx instead")
    if not check["identical"]:
        sec["notes"].append(f"the IR's outputs on OpenVINO differ from ONNX Runtime's on model.onnx by up "
                            f"to {check['max_abs']:.3g} on batch {len(next(iter(feeds.values())))} random "
                            "inputs")


def _measure(bundle: Bundle, source: Model, spec: MeasureSpec,
             progress: Progress | None) -> dict[str, Any]:
    """Latency of the bundle as it loads, and top-1 / fidelity to the source model."""
    model, device, opts = bundle.target()
    if spec.threads is not None:
        opts["threads"] = spec.threads
    r = bench(model, device=device, batch=spec.batch, warmup=spec.warmup, iterations=spec.iterations,
              progress=progress, **opts)
    lat = r.latency
    out: dict[str, Any] = {"latency": {
        "p50_ms": lat.p50_ms, "p90_ms": lat.p90_ms, "p99_ms": lat.p99_ms, "mean_ms": lat.mean_ms,
        "throughput": lat.throughput,
        "conditions": {"data": "random inputs (seed 0)", "inputs": r.inputs, "batch": lat.batch,
                       "threads": r.settings.get("threads"), "warmup": lat.warmup,
                       "iterations": lat.iterations, "timing": r.timing, "engine": r.engine,
                       "device": r.device, "cpu": r.machine.get("cpu")}}}
    if r.latency_e2e is not None:
        out["latency"]["end_to_end_p50_ms"] = r.latency_e2e.p50_ms
    ds: Dataset
    if isinstance(spec.data, Dataset):
        ds = spec.data
    else:
        try:
            ds = load_dataset(spec.data, model)
        except DataError:
            if spec.data is not None:
                raise
            ds = random_dataset(source, spec.samples)
    n = min(spec.samples, len(ds))
    correct, done, fid = 0, 0, None
    with make_runner(model, device, **opts) as run, make_runner(source, device) as ref:
        for feeds, labels in ds.batches(spec.eval_batch, n):
            got, want = run.infer(feeds), ref.infer(feeds)
            first = next(iter(got))
            if labels is not None:
                correct += topk_correct(got[first], labels, 1)
            fid = fid or FidelityAccumulator(first)
            fid.update(want[next(iter(want))], got[first])
            done += len(next(iter(feeds.values()))) if ds.groups is None else 1
            if progress:
                progress("accuracy", min(done, n), n)
    f = fid.result() if fid else None
    out["quality"] = {
        "top1": correct / n if ds.labels is not None else None,
        "top1_agreement_with_source": f.top1_agreement if f else None,
        "cosine_to_source": f.cosine if f else None, "max_abs_to_source": f.max_abs if f else None,
        "conditions": {"data": ds.source, "data_hash": ds.content_hash(), "samples": n,
                       "labeled": ds.labels is not None, "batch": spec.eval_batch,
                       "reference": f"{source.name} ({source.fingerprint[:19]}) on {device}, default options"},
    }
    return out


def _readme(m: dict[str, Any]) -> str:
    eng = m["engine"]
    ins = (m.get("metrics") or {}).get("latency", {}).get("conditions", {}).get("inputs") or {
        k: {"shape": v["shape"], "dtype": v["dtype"]} for k, v in m["inputs"].items()}
    feeds = ", ".join(f'"{k}": np.zeros({v["shape"]}, np.{v["dtype"]})' for k, v in ins.items())
    lines = [
        f"# {m['source']['name']} + {m['recipe_label']} for {eng['device']} ({eng['name']})", "",
        f"Exported by workbench {m['workbench']} on {m['exported_at']}. `manifest.json` holds the",
        "recipe, every pass report, the engine and session options, the library versions, the",
        "measured metrics with their conditions, and the sha256 of every file.", "",
        "```python", "import numpy as np", "import workbench as wb", "",
        'bundle = wb.load_bundle(".")  # checks every checksum and the runtime versions',
        "with bundle.runner() as r:", f"    outputs = r.infer({{{feeds}}})", "```", "",
        "```bash", "workbench bench .            # latency, as exported",
        "workbench eval .             # accuracy / fidelity",
        "workbench build --manifest manifest.json   # rebuild from the source and compare", "```",
    ]
    if eng.get("artifact") == "engine.onnx":
        lines += ["", "Without the workbench, with ONNX Runtime alone (the graph is already optimized):", "",
                  "```python", "import onnxruntime as ort", "so = ort.SessionOptions()",
                  "so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL",
                  f"so.intra_op_num_threads = {eng.get('session', {}).get('threads') or 1}",
                  f'sess = ort.InferenceSession("engine.onnx", so, providers={eng.get("session", {}).get("providers") or ["CPUExecutionProvider"]!r})',
                  "```"]
    if eng.get("artifact") == "engine.xml":
        from .engines.openvino import OpenVinoOptions, compile_config  # noqa: PLC0415

        opts = {k: v for k, v in (eng.get("run_options") or {}).items() if k != "device"}
        config = compile_config(OpenVinoOptions(**opts))
        lines += ["", f"Without the workbench, with OpenVINO {eng.get('openvino')} alone (weights as built):", "",
                  "```python", "import numpy as np", "import openvino as ov", "",
                  f'compiled = ov.Core().compile_model("engine.xml", "{eng.get("openvino_device", "CPU")}", '
                  f"{json.dumps(config)})",
                  f"outputs = compiled.create_infer_request().infer({{{feeds}}})", "```"]
    if eng.get("notes"):
        lines += ["", *[f"- {n}" for n in eng["notes"]]]
    if (m.get("calibration") or {}).get("random"):
        lines += ["", f"**Warning: {m['calibration']['warning']}.**"]
    return "\n".join(lines) + "\n"


def export_bundle(build: BuildResult, out_dir: str | Path, *, force: bool = False,
                  engine_options: dict[str, Any] | None = None,
                  measure: MeasureSpec | None = MeasureSpec(), extra: dict[str, Any] | None = None,
                  progress: Progress | None = None) -> Path:
    """Write ``build`` as a bundle folder for its device; returns the folder.

    The bundle is assembled in a temporary sibling folder and renamed into place. An existing
    ``out_dir`` is replaced only with ``force``, and only if it holds a workbench build or bundle.
    """
    from .. import __version__  # noqa: PLC0415

    out = Path(out_dir).expanduser().absolute()
    _check_target(out, force)
    if build.model.proto.ByteSize() > TWO_GB:
        raise UsageError("models over 2 GB cannot be exported as bundles yet",
                         "use `workbench optimize`, which keeps the model as one file")
    entry = engine_for_device(build.device)
    options = dict(engine_options or {})
    bad = sorted(set(options) - SAFE_OPTIONS.get(entry.name, set()))
    if bad:
        raise UsageError(f"the {entry.name} option {bad[0]!r} cannot go into a bundle",
                         f"bundles carry these options only: {', '.join(sorted(SAFE_OPTIONS[entry.name]))}")
    if entry.name in ("ort-cpu", "openvino") and options.get("threads") is None:
        from .engines.ort_cpu import default_threads  # noqa: PLC0415

        options["threads"] = measure.threads if measure and measure.threads else default_threads()
    batch = measure.batch if measure else 1
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        _write(tmp / MODEL_FILE, build.model.proto.SerializeToString())
        engine = _engine_section(build, entry.name, build.device, tmp, options, batch)
        ins, outs = tensor_specs(build.model.proto.graph)
        manifest: dict[str, Any] = {
            "format": BUNDLE_FORMAT, "version": BUNDLE_VERSION, "workbench": __version__,
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **build.manifest(),
            "model_file": MODEL_FILE,
            "inputs": {s.name: {"shape": list(s.shape) if s.shape is not None else None, "dtype": s.dtype}
                       for s in ins},
            "outputs": [s.name for s in outs],
            "engine": engine,
            "runtime": {**machine_info()["libraries"], "isa": list(cpu_isa())},
            "build_wall_s": build.wall_s, "cache_hit": build.cache_hit,
        }
        manifest["source"]["path"] = str(build.source.path.resolve()) if build.source.path else None
        cal = manifest.get("calibration")
        if cal and not str(cal.get("source", "")).startswith("sample:") and Path(cal["source"]).exists():
            cal["source"] = str(Path(cal["source"]).resolve())  # reproducible from another folder
        if extra:
            manifest.update(extra)
        manifest["metrics"] = None
        if measure is not None:
            bundle = open_bundle(tmp, dict(manifest, files=_file_table(tmp)), verify=False)
            manifest["metrics"] = _measure(bundle, build.source, measure, progress)
        _write(tmp / "README.md", _readme(manifest).encode())
        manifest["files"] = _file_table(tmp)
        _write(tmp / MANIFEST, json.dumps(_finite(manifest), indent=2, default=str, allow_nan=False).encode())
        _commit(tmp, out, force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _finite(x: Any) -> Any:
    """Strict JSON: NaN and infinities become null."""
    if isinstance(x, float) and not np.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def _file_table(folder: Path) -> dict[str, dict[str, Any]]:
    return {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
            for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST}


def _commit(tmp: Path, out: Path, force: bool) -> None:
    """Rename the finished bundle into place (replacing an old bundle only with ``force``)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; a bundle is an ordinary folder
    old = None
    if out.exists():
        _check_target(out, force)
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        os.replace(out, old / "bundle")
    try:
        os.rename(tmp, out)
    except OSError as e:
        if old is not None:
            os.replace(old / "bundle", out)
        raise UsageError(f"cannot put the bundle at {out}: {e.strerror}",
                         "another process wrote there meanwhile? give another --out") from e
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def export(model: ModelSource, recipe: Recipe | str, out_dir: str | Path, *, device: str = "cpu",
           calibration: str | Dataset | None = None, force: bool = False,
           engine_options: dict[str, Any] | None = None, measure: MeasureSpec | None = MeasureSpec(),
           cache: BuildCache | None = None, progress: Progress | None = None) -> Bundle:
    """Build ``recipe`` on ``model`` for ``device`` and export it; returns the loaded bundle.

    Example:
        >>> b = export("sample:resnet-fashion", "fuse", "out/fuse-cpu")
        >>> b.manifest["metrics"]["latency"]["p50_ms"] > 0
        True
    """
    _check_target(Path(out_dir).expanduser().absolute(), force)  # fail before the build
    build = optimize(model, recipe, device=device, calibration=calibration, cache=cache, progress=progress)
    path = export_bundle(build, out_dir, force=force, engine_options=engine_options, measure=measure,
                         progress=progress)
    return load_bundle(path, warn=False)


# ---------------------------------------------------------------------------------------------
# reproducing


@dataclass(frozen=True)
class Reproduction:
    """The result of rebuilding a bundle: truthy when every artifact's fingerprint matches."""

    identical: bool
    compared: dict[str, dict[str, Any]]  # artefact or field -> {"bundle", "rebuilt", "same"}
    differences: list[str]
    notes: list[str]
    out: Path | None

    def __bool__(self) -> bool:
        return self.identical

    def to_dict(self) -> dict[str, Any]:
        return {"identical": self.identical, "compared": self.compared, "differences": self.differences,
                "notes": self.notes, "out": str(self.out) if self.out else None}


_SECONDS = re.compile(r"\d+(?:\.\d+)? ?s\b")


def _without_timings(x: Any) -> Any:
    """Pass reports with wall-clock times taken out (``wall_s``, ``seconds``, "in 1.2 s")."""
    if isinstance(x, dict):
        return {k: _without_timings(v) for k, v in x.items()
                if not (k in ("wall_s", "seconds") or k.endswith("_s"))}
    if isinstance(x, list):
        return [_without_timings(v) for v in x]
    if isinstance(x, str):
        return _SECONDS.sub("<time> s", x)
    return x


def reproduce(manifest_path: str | Path, *, out: str | Path | None = None, source: ModelSource | None = None,
              force: bool = False, measure: MeasureSpec | None = None,
              progress: Progress | None = None) -> Reproduction:
    """Rebuild a bundle from its source model (no build cache) and compare it with the bundle.

    ``source`` overrides where the source model is (the manifest records the sample name or the
    absolute path it was exported from). The rebuilt bundle goes to ``out``, or to a temporary
    folder that is removed afterwards.
    """
    bundle = load_bundle(manifest_path, warn=False)
    m = bundle.manifest
    src_rec = m["source"]
    where = source or (src_rec.get("source") if str(src_rec.get("source", "")).startswith("sample:")
                       else src_rec.get("path") or src_rec.get("source"))
    if not where:
        raise BundleError("the manifest does not say where its source model is", "give --source MODEL")
    try:
        src = load_model(where)
    except WorkbenchError as e:
        raise BundleError(f"cannot load the bundle's source model: {e.message}",
                          "give its current location with --source MODEL") from e
    recipe = Recipe.from_dict(m["recipe"], "the manifest's recipe")
    calib = "random" if (m.get("calibration") or {}).get("random") else (m.get("calibration") or {}).get("source")
    rebuilt = optimize(src, recipe, device=m["device"], calibration=calib,
                       cache=BuildCache(enabled=False), progress=progress)
    tmp_root = None
    if out is None:
        tmp_root = Path(tempfile.mkdtemp(prefix="workbench-reproduce-"))
        target = tmp_root / "bundle"
    else:
        target = Path(out)
    try:
        path = export_bundle(rebuilt, target, force=force, engine_options=m["engine"].get("options"),
                             measure=measure)
        new = json.loads((path / MANIFEST).read_text())
    finally:
        if tmp_root is not None:
            shutil.rmtree(tmp_root, ignore_errors=True)
    compared: dict[str, dict[str, Any]] = {}

    def cmp(name: str, a: Any, b: Any) -> None:
        compared[name] = {"bundle": a, "rebuilt": b, "same": a == b}

    cmp("source fingerprint", src_rec.get("fingerprint"), new["source"]["fingerprint"])
    cmp("calibration hash", (m.get("calibration") or {}).get("hash"), (new.get("calibration") or {}).get("hash"))
    cmp("recipe", m["recipe"], new["recipe"])
    art_old, art_new = m["engine"].get("artifact"), new["engine"].get("artifact")
    for name in sorted(set(m["files"]) | set(new["files"])):
        if name == "README.md":
            continue
        if name == art_old == art_new and m["engine"].get("artifact_fingerprint"):
            cmp(f"{name} graph", m["engine"]["artifact_fingerprint"],
                new["engine"].get("artifact_fingerprint"))
            cmp(f"{name} bytes", m["files"][name]["sha256"], new["files"][name]["sha256"])
            continue
        cmp(name, (m["files"].get(name) or {}).get("sha256"), (new["files"].get(name) or {}).get("sha256"))
    cmp("model fingerprint", m["output"].get("fingerprint"), new["output"]["fingerprint"])
    cmp("pass reports (timings left out)", _without_timings(m.get("reports") or []),
        _without_timings(new.get("reports") or []))
    cmp("engine options", m["engine"].get("options"), new["engine"].get("options"))
    cmp("library versions", {k: v for k, v in (m.get("runtime") or {}).items()},
        {k: v for k, v in (new.get("runtime") or {}).items()})
    artefacts = [k for k in compared if k in m["files"] or k in new["files"] or k == "model fingerprint"
                 or k == f"{art_old} graph"]
    identical = all(compared[k]["same"] for k in artefacts)
    differences = [k for k, v in compared.items() if not v["same"]]
    notes = []
    if not compared["library versions"]["same"]:
        notes.append("library versions differ: a different ONNX, ONNX Runtime or onnxscript can change the "
                     "passes' output")
    if art_old and not compared.get(f"{art_old} bytes", {"same": True})["same"] \
            and compared.get(f"{art_old} graph", {}).get("same"):
        runtime = "OpenVINO" if str(m["engine"].get("name")).startswith("openvino") else "ONNX Runtime"
        notes.append(f"{art_old}: the bytes differ only in the node names {runtime} generates; the "
                     "graph and weights are the same (graph fingerprint)")
    if m["engine"].get("name") == "tensorrt":
        notes.append("TensorRT picks kernels by timing them, so a rebuilt plan can differ byte for byte "
                     "even on the same GPU")
    return Reproduction(identical, compared, differences, notes, None if out is None else path)

