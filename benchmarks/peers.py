"""The workbench against the tools users would pick instead, side by side in one run.

For each subject model (the samples and real third-party ONNX models shipped inside PyPI wheels):
every peer builds its model with its own package (``peer_builders.PEERS``, run by ONNX Runtime;
``peer_builders.OV_PEERS``, run by OpenVINO: OpenVINO FP32, OpenVINO's default precision, NNCF's
int8 with and without accuracy control), the workbench builds its best recipe (and the search
result, if ``results/search.json`` exists), all from the same FP32 model and the same calibration
feeds. The workbench's builds also run on OpenVINO (``... on OpenVINO``: the same file) and its
int8 recipes are built for ``--device openvino`` too (``... for openvino``, run by OpenVINO), so
the headline compares the workbench's best build on its best CPU runtime with the best peer on
either runtime. Then, per row:

* accuracy on the labeled test set (the trained sample), or fidelity to ORT FP32 ``all``
  (top-1 agreement, cosine, max error) on fixed random inputs for unlabeled models;
* latency at batch 1 and throughput at batch 8: every row of a model measured interleaved in one
  process, in a new shuffled order each round; speed-up = median over rounds of the per-round
  ratio to ORT FP32 ``all`` (paired, which cancels most load swings on a shared machine);
* size and build time;
* a Polygraphy cross-check: ``polygraphy``'s Comparator (``OnnxrtRunner`` on both models, the
  same inputs: the first ``XCHECK_ROWS`` samples) against the workbench's fidelity numbers on
  those samples.

A row whose build or run fails is kept with its error (robustness is a result too).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common import interleaved, write_json
from peer_builders import OV_PEERS, PEERS, OvBuild, PeerSkipped, missing
from workbench import load_dataset, load_model
from workbench.core.build import optimize
from workbench.core.cache import BuildCache
from workbench.core.engines.base import Runner
from workbench.core.engines.ort_cpu import OrtCpuOptions, OrtCpuRunner
from workbench.core.evaluation.data import Dataset
from workbench.core.evaluation.metrics import FidelityAccumulator, topk_correct
from workbench.core.machine import machine_info
from workbench.core.model import Model
from workbench.core.shapes import random_feeds, resolve_inputs, tensor_specs

HERE = Path(__file__).resolve().parent
LEVELS = ("disabled", "basic", "extended", "all")
BASE = "ORT FP32 all"
XCHECK_ROWS = 8  # Polygraphy cross-checks the fidelity on the first 8 samples only (it runs both models)
Feeds = list[dict[str, np.ndarray]]


@dataclass(frozen=True)
class Subject:
    """A model to compare on. ``shapes`` use -1 for the batch axis; ``wheel`` = (pypi, module, path)."""

    key: str
    recipes: tuple[str, ...]
    source: str | None = None
    wheel: tuple[str, str, str] | None = None
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    values: dict[str, object] = field(default_factory=dict)
    labeled: bool = False
    about: str = ""
    elsewhere: str = ""  # where the report measures it instead, when a run leaves it out (--skip)

    @property
    def where(self) -> str:
        """Where the model comes from, for the report: the sample name or ``package: path``."""
        return self.source or f"{self.wheel[0]}: {self.wheel[2]}"  # type: ignore[index]

    def locate(self) -> str:
        if self.source:
            return self.source
        assert self.wheel is not None
        pkg, module, rel = self.wheel
        # find_spec locates the package without importing it (rapidocr imports OpenCV, which needs
        # libGL; silero_vad imports torch): only the ONNX file inside the wheel is wanted.
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"{pkg} is not installed (pip install -e '.[bench]')")
        path = Path(list(spec.submodule_search_locations)[0]) / rel
        if not path.is_file():
            raise FileNotFoundError(f"{pkg} does not ship {rel}")
        return str(path)


SUBJECTS = [
    Subject("sample:resnet-fashion", ("prune-channels:ratio=0.5:multiple=8,int8:calibration=entropy",),
            source="sample:resnet-fashion", labeled=True,
            about="trained ResNet on Fashion-MNIST (labeled test set)"),
    Subject("sample:resnet50", ("int8", "fuse"), source="sample:resnet50",
            about="ResNet-50 with random weights (synthetic: latency and fidelity only)",
            elsewhere="its int8 against ONNX Runtime's `quantize_static` (defaults and hand-tuned) and "
                      "`quantize_dynamic` is the ResNet-50 table of the quantization section (its own "
                      "rounds and a paired A/B), its FP32 levels the CPU baseline section"),
    Subject("PP-OCRv4 det", ("int8", "fuse"),
            wheel=("rapidocr-onnxruntime", "rapidocr_onnxruntime", "models/ch_PP-OCRv4_det_infer.onnx"),
            shapes={"x": (-1, 3, 320, 320)},
            about="PaddleOCR v4 text detector (DBNet, MobileNetV3-style backbone, FPN with Resize/ConvTranspose)"),
    Subject("PP-OCRv4 rec", ("int8", "fuse"),
            wheel=("rapidocr-onnxruntime", "rapidocr_onnxruntime", "models/ch_PP-OCRv4_rec_infer.onnx"),
            shapes={"x": (-1, 3, 48, 320)},
            about="PaddleOCR v4 text recognizer (SVTR: conv stem + attention blocks, CTC head over 6,625 classes)"),
    Subject("Silero VAD", ("int8", "fuse"),
            wheel=("silero-vad", "silero_vad", "data/silero_vad_16k_op15.onnx"),
            shapes={"input": (-1, 512), "state": (2, -1, 128)}, values={"sr": np.int64(16000)},
            about="Silero voice-activity detector, 16 kHz (STFT conv + LSTM, If subgraphs)"),
]


def _shapes(s: Subject, batch: int) -> dict[str, tuple[int, ...]]:
    return {k: tuple(batch if d == -1 else d for d in v) for k, v in s.shapes.items()}


def subject_feeds(s: Subject, model: Model, batch: int, seed: int) -> dict[str, np.ndarray]:
    ins, _ = tensor_specs(model.proto.graph)
    values = {k: np.asarray(v) for k, v in s.values.items()}
    return random_feeds(resolve_inputs(ins, _shapes(s, batch) or None, batch=batch), seed=seed,
                        values=values)


@dataclass
class Plan:
    """What one subject is measured with (counts chosen so the whole run fits its time budget)."""

    calib: int = 16
    eval_samples: int = 32
    rounds: int = 3
    budget_s: float = 0.25
    min_iterations: int = 3
    validation: int = 500  # labeled samples for NNCF's accuracy control (held out of calibration)


Validation = tuple[Feeds, np.ndarray]


def _data(s: Subject, model: Model, plan: Plan) -> tuple[Dataset, Feeds, np.ndarray | None, Validation | None]:
    """Calibration dataset (same for everyone), evaluation feeds and labels, and for labeled
    subjects the validation data of NNCF's accuracy control: the next ``plan.validation`` labeled
    images of the calibration file (training images: neither calibration nor test set)."""
    if s.labeled:
        full = load_dataset(str(HERE.parent / "sample_models" / "fashion_mnist_calib.npz"), model)
        calib = Dataset({k: v[:plan.calib] for k, v in full.inputs.items()}, None, full.source,
                        full.preprocessing)
        test = load_dataset(None, model)
        n = min(plan.eval_samples, len(test))
        feeds = [f for f, _ in test.batches(250, n)]
        labels = test.labels[:n]
        stop = min(plan.calib + plan.validation, len(full))
        val = ([{k: v[i:i + 1] for k, v in full.inputs.items()} for i in range(plan.calib, stop)],
               np.asarray(full.labels[plan.calib:stop]))
        return calib, feeds, labels, val
    groups = [subject_feeds(s, model, 1, seed=1000 + i) for i in range(plan.calib)]
    calib = Dataset({}, None, f"random inputs ({plan.calib})", None, [], groups)
    feeds = [subject_feeds(s, model, 8, seed=2000 + i) for i in range(max(1, plan.eval_samples // 8))]
    return calib, feeds, None, None


def _passes(recipe: str) -> list[str]:
    return [p.split(":")[0] for p in recipe.split(",")]


def _built(row: dict) -> bool:
    """A row that built and has not failed since: an ONNX model, or an OpenVINO IR to run."""
    return "proto" in row or "ir" in row


def _unbuild(row: dict) -> None:
    for k in ("proto", "ir", "model"):
        row.pop(k, None)


def _ov_row(model: Model, b: OvBuild) -> dict:
    """Row fields of an OpenVINO peer: its IR (converted from ``model``), or ``model`` itself."""
    from workbench.core.engines.openvino import OpenVinoIR  # noqa: PLC0415

    out: dict = {"runtime": "openvino", "precision": b.precision, "model": model, "notes": list(b.notes)}
    if b.xml is None:
        out["proto"] = model.proto
    else:
        out["ir"] = OpenVinoIR(b.xml, b.weights, model.fingerprint)
    return out


def _build_rows(s: Subject, model: Model, calib: Dataset, search: dict | None,
                log: Callable[[str], None], validation: Validation | None = None) -> dict[str, dict]:
    calib_feeds = [f for f, _ in calib.batches(16)]
    rows: dict[str, dict] = {f"ORT FP32 {lv}": {"kind": "ORT FP32", "level": lv, "proto": model.proto,
                                                "build_s": 0.0} for lv in LEVELS}
    for name, (pkg, builder) in PEERS.items():
        why = missing(pkg)
        if why:
            rows[name] = {"kind": "peer", "skipped": why}
            continue
        rows[name] = _timed(lambda b=builder: b(model.proto, calib_feeds), "peer", log, name)
    no_ov = missing("openvino")
    for name, (pkg, builder) in OV_PEERS.items():
        why = no_ov or missing(pkg)
        if why:
            rows[name] = {"kind": "peer", "skipped": why}
            continue
        rows[name] = _timed(lambda b=builder: b(model.proto, calib_feeds, validation), "peer", log, name,
                            lambda b: _ov_row(model, b))
    recipes = list(s.recipes)
    if search and search.get(s.key):
        recipes.append(search[s.key])
    for r in recipes:
        name = f"workbench {r}" + (" (search)" if search and r == search.get(s.key) else "")
        rows[name] = _timed(lambda r=r: optimize(model, r, calibration=calib,
                                                 cache=BuildCache(enabled=False)).model.proto,
                            "workbench", log, name)
        if no_ov:
            continue
        if "proto" in rows[name]:  # the same file, run by OpenVINO
            rows[f"{name} on OpenVINO"] = {"kind": "workbench", "build_s": rows[name]["build_s"],
                                           **_ov_row(load_model(rows[name]["proto"], check=False), OvBuild())}
        if "int8" in _passes(r):  # built for --device openvino (NNCF's conventions), run by OpenVINO
            rows[f"{name} for openvino"] = _timed(
                lambda r=r: optimize(model, r, device="openvino", calibration=calib,
                                     cache=BuildCache(enabled=False)).model.proto, "workbench", log,
                f"{name} for openvino", lambda p: _ov_row(load_model(p, check=False), OvBuild()))
    if not no_ov and not any(_passes(r) == ["int8"] for r in recipes):
        name = "workbench int8 for openvino"
        rows[name] = _timed(lambda: optimize(model, "int8", device="openvino", calibration=calib,
                                             cache=BuildCache(enabled=False)).model.proto, "workbench", log,
                            name, lambda p: _ov_row(load_model(p, check=False), OvBuild()))
    return rows


def _one_line(e: BaseException) -> str:
    return f"{type(e).__name__}: " + " ".join(str(e).split())[:800]


def _short(text: str, n: int = 110) -> str:
    """Head and tail of an error for a table cell (the cause is often at the end)."""
    text = text.replace("|", "/")
    return text if len(text) <= 2 * n else f"{text[:n]} … {text[-n:]}"


def _timed(fn: Callable[[], object], kind: str, log: Callable[[str], None], name: str,
           to_row: Callable[[object], dict] = lambda proto: {"proto": proto}) -> dict:
    """Build a row; ``to_row`` turns what the builder returned into the row's fields (default: an
    ONNX ``ModelProto`` for ONNX Runtime)."""
    t0 = time.perf_counter()
    try:
        built = fn()
        fields = to_row(built)
    except PeerSkipped as e:  # the peer does not apply to this subject
        log(f"  {name}: skipped: {e}")
        return {"kind": kind, "skipped": str(e)}
    except Exception as e:  # a peer that fails on a model is a result, kept with its reason
        log(f"  {name}: build FAILED: {type(e).__name__}: {e}")
        return {"kind": kind, "error": f"build: {_one_line(e)}",
                "trace": traceback.format_exc(limit=3)[-800:]}
    dt = time.perf_counter() - t0
    log(f"  built {name} in {dt:.1f} s")
    return {"kind": kind, **fields, "build_s": dt}


def _runner(row: dict, threads: int) -> Runner:
    """The row's runner, activated: ONNX Runtime CPU at the row's level, or OpenVINO's CPU plugin
    (``runtime`` openvino: the LATENCY hint and the row's precision hint, its IR if it has one)."""
    if row.get("runtime") == "openvino":
        from workbench.core.evaluation.run import make_runner  # noqa: PLC0415

        r = make_runner(row["model"], "openvino", threads=threads, precision=row["precision"],
                        performance_hint="latency", ir=row.get("ir"))
    else:
        r = OrtCpuRunner(load_model(row["proto"], check=False),
                         OrtCpuOptions(threads=threads, optimization_level=row.get("level", "all")))
    r.activate()
    if row.get("runtime") == "openvino":  # what OpenVINO runs it in, read back from the compiled model
        got = r.settings
        row["runtime_settings"] = {k: got.get(k) for k in ("precision", "threads", "performance_hint",
                                                           "openvino", "model_format")}
    return r


def runtime_label(row: dict) -> str:
    """``ORT CPU`` or ``OpenVINO CPU f32`` (the precision OpenVINO reported, else the one asked)."""
    if row.get("runtime") != "openvino":
        return "ORT CPU"
    got = (row.get("runtime_settings") or {}).get("precision") or row.get("precision")
    return f"OpenVINO CPU {got or 'default'}" + (" (default)" if row.get("precision") is None else "")


def xcheck_feeds(feeds: Feeds) -> Feeds:
    """The first ``XCHECK_ROWS`` samples of the first feed (cut only where every input has a
    leading batch axis longer than that), for the Polygraphy cross-check and its workbench twin."""
    first = feeds[0]
    if all(v.ndim > 0 and v.shape[0] > XCHECK_ROWS for v in first.values()) and \
            len({v.shape[0] for v in first.values()}) == 1:
        return [{k: v[:XCHECK_ROWS] for k, v in first.items()}]
    return [first]


def _quality(rows: dict[str, dict], feeds: Feeds, labels: np.ndarray | None, threads: int) -> None:
    """Accuracy (labels) and fidelity to ORT FP32 ``all`` (first output) on the same feeds."""
    ref_r = _runner(rows[BASE], threads)
    refs = [ref_r.infer(f) for f in feeds]
    xfeeds = xcheck_feeds(feeds)
    uncut = xfeeds[0] is feeds[0]  # the cross-check batch is the first batch itself: reuse its outputs
    xrefs = [refs[0]] if uncut else [ref_r.infer(f) for f in xfeeds]
    ref_r.deactivate()
    for row in rows.values():
        if not _built(row):
            continue
        try:
            r = _runner(row, threads)
            row["runner"] = r  # kept for the latency step (one session per row, batch 1 and 8)
            acc = FidelityAccumulator(next(iter(refs[0])))
            xcheck = FidelityAccumulator(next(iter(refs[0])))
            correct, i, outs0 = 0, 0, None
            for f, ref in zip(feeds, refs):
                out = r.infer(f)
                outs0 = out if outs0 is None else outs0
                first = next(iter(out))
                acc.update(ref[next(iter(ref))], out[first])
                if labels is not None:
                    n = len(out[first])
                    correct += topk_correct(out[first], labels[i:i + n], 1)
                    i += n
            for f, ref in zip(xfeeds, xrefs):
                out = outs0 if uncut else r.infer(f)
                xcheck.update(ref[next(iter(ref))], out[next(iter(out))])
        except Exception as e:
            row["error"] = f"run: {_one_line(e)}"
            _unbuild(row)
            if row.get("runner") is not None:
                row.pop("runner").deactivate()
            continue
        row["fidelity"] = acc.result().to_dict()
        row["fidelity_xcheck"] = xcheck.result().to_dict()
        if labels is not None:
            row["top1"] = correct / len(labels)


def _latency(rows: dict[str, dict], s: Subject, model: Model, plan: Plan, threads: int,
             log: Callable[[str], None]) -> None:
    configs, batch_of = {}, {}
    for b in (1, 8):
        feeds = subject_feeds(s, model, b, seed=7)
        for name, row in rows.items():
            if not _built(row):
                continue
            try:
                r = row.get("runner") or _runner(row, threads)
                row["runner"] = r
                configs[f"{name}|b{b}"] = r.prepare(feeds)  # one prepared callable per batch (each
                # OpenVINO prepare has its own infer request since e7dbd66)
            except Exception as e:
                row["error"] = f"run b{b}: {_one_line(e)}"
                continue
            batch_of[f"{name}|b{b}"] = b
    configs = {k: v for k, v in configs.items() if "error" not in rows[k.split("|")[0]]}
    res = interleaved(configs, rounds=plan.rounds, batch_of=batch_of, min_iterations=plan.min_iterations,
                      budget_s=plan.budget_s, log=log)
    for row in rows.values():
        if row.get("runner") is not None:
            row.pop("runner").deactivate()
    for key, c in res.items():
        name, b = key.split("|")
        ref = res[f"{BASE}|{b}"]["round_p50s_ms"]
        ratios = [x / y for x, y in zip(ref, c["round_p50s_ms"])]
        c["speedup"] = statistics.median(ratios)
        c["speedup_range"] = [min(ratios), max(ratios)]
        rows[name][b] = c


def _polygraphy(rows: dict[str, dict], feeds: Feeds, threads: int) -> None:
    """Polygraphy's Comparator on the same inputs; agreement with the workbench's fidelity."""
    from polygraphy import comparator  # noqa: PLC0415
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx  # noqa: PLC0415
    from polygraphy.comparator import Comparator  # noqa: PLC0415
    from polygraphy.logger import G_LOGGER  # noqa: PLC0415

    G_LOGGER.module_severity = G_LOGGER.ERROR

    ref_sess = SessionFromOnnx(rows[BASE]["proto"].SerializeToString(), providers=["CPUExecutionProvider"])()
    out_name = rows[BASE]["proto"].graph.output[0].name
    for name, row in rows.items():
        if ("proto" not in row or "fidelity" not in row or name.startswith("ORT FP32")
                or row.get("runtime") == "openvino"):  # Polygraphy's ONNX Runtime runner: ORT rows only
            continue
        try:
            runners = [OnnxrtRunner(ref_sess, name="ref"),  # one session, reused by every comparison
                       OnnxrtRunner(SessionFromOnnx(row["proto"].SerializeToString(),
                                                    providers=["CPUExecutionProvider"]), name="row")]
            results = Comparator.run(runners, data_loader=xcheck_feeds(feeds))
            # tolerances never fail: only the error statistics are wanted (SimpleCompareFunc from 0.53)
            simple = getattr(comparator, "SimpleCompareFunc", None) or comparator.CompareFunc.simple
            acc = Comparator.compare_accuracy(results, compare_func=simple(atol=1e9, rtol=1e9))
            pair = acc[0]  # AccuracyResults: one AccuracyResult (runner pair -> iterations) per compare func
            iters = pair[next(iter(pair.keys()))]
            stats = [it[out_name] for it in iters]
            poly_max = max(x.max_absdiff for x in stats)
            poly_mean = float(np.mean([x.mean_absdiff for x in stats]))
        except Exception as e:
            row["polygraphy"] = {"error": _one_line(e)}
            continue
        ours = row["fidelity_xcheck"]
        rel = abs(poly_max - ours["max_abs"]) / max(abs(ours["max_abs"]), 1e-12)
        row["polygraphy"] = {"max_absdiff": poly_max, "mean_absdiff": poly_mean,
                             "workbench_max_abs": ours["max_abs"], "workbench_mean_abs": ours["mean_abs"],
                             "max_rel_disagreement": rel, "agree": bool(rel < 1e-2)}


def run_subject(s: Subject, plan: Plan, threads: int, search: dict | None = None,
                polygraphy: bool = True, log: Callable[[str], None] = print) -> dict:
    """Build, check and time every row for one subject; returns a JSON-ready dict."""
    t0 = time.perf_counter()
    phases: dict[str, float] = {}

    def mark(phase: str) -> None:  # wall seconds per phase, so the report says where the time went
        phases[phase] = time.perf_counter() - t0 - sum(phases.values())

    model = load_model(s.locate())
    calib, feeds, labels, validation = _data(s, model, plan)
    log(f"{s.key}: building ({len(calib)} calibration samples)")
    mark("load")
    rows = _build_rows(s, model, calib, search, log, validation)
    mark("build")
    _quality(rows, feeds, labels, threads)
    mark("quality")
    if polygraphy and not missing("polygraphy"):
        _polygraphy(rows, feeds, threads)
    mark("polygraphy")
    log(f"{s.key}: timing {sum(_built(r) for r in rows.values())} rows x batch 1, 8")
    _latency(rows, s, model, plan, threads, log)
    mark("latency")
    log(f"{s.key}: " + ", ".join(f"{k} {v:.0f} s" for k, v in phases.items()))
    out = {}
    for name, row in rows.items():
        if "ir" in row:  # OpenVINO IR: graph XML and weights
            ir = row.pop("ir")
            row["size_bytes"] = len(ir.xml) + len(ir.weights)
        elif "proto" in row:
            row["size_bytes"] = row["proto"].ByteSize()
        _unbuild(row)
        if "runtime" in row:
            row["runtime_label"] = runtime_label(row)
        out[name] = row
    base_size = out[BASE]["size_bytes"]
    for row in out.values():
        if "size_bytes" in row:
            row["size_ratio"] = row["size_bytes"] / base_size
    return {"about": s.about, "source": s.where,
            "labeled": s.labeled, "calibration_samples": len(calib),
            "eval_samples": sum(len(next(iter(f.values()))) for f in feeds) if labels is not None
            else len(feeds) * 8, "plan": plan.__dict__, "polygraphy_skipped": missing("polygraphy"),
            "validation_samples": 0 if validation is None else len(validation[1]),
            "wall_s": time.perf_counter() - t0, "phases_s": phases, "rows": out}


# --- report ---------------------------------------------------------------------------------------

def _fmt_quality(row: dict, base: dict, labeled: bool) -> str:
    if labeled:
        return f"{100 * (row['top1'] - base['top1']):+.2f} pt"
    f = row["fidelity"]
    t1 = "" if f["top1_agreement"] is None else f"top-1 {100 * f['top1_agreement']:.1f}%, "
    return f"{t1}cos {f['cosine']:.4f}, SQNR {f['sqnr_db']:.1f} dB, max {f['max_abs']:.3g}"


def report(res: dict) -> str:
    m = res["machine"]
    lines = ["## Peers: the workbench against what users would pick instead", "",
             f"Machine: {m['cpu']}, {m['physical_cores']} physical cores ({m['logical_cpus']} logical), "
             f"{m['os']}, Python {m['python']}. `uptime` at start: {res['uptime']}; at end: {res.get('uptime_end', '?')}.", "",
             f"ISA: {', '.join(m['isa'])}. Peer versions: "
             + ", ".join(f"{k} {v}" for k, v in res["versions"].items()) + ".", "",
             f"Two CPU runtimes, {res['threads']} threads each: ONNX Runtime (CPU provider, sequential, "
             "`ORT_ENABLE_ALL` after each peer's own build) and OpenVINO (CPU plugin, LATENCY hint, "
             "INFERENCE_PRECISION_HINT f32 unless the row says default: the precision the plugin picked, "
             "read back; bf16 only on CPUs with AVX-512 BF16/AMX). `... on OpenVINO`: the workbench's "
             "file run by OpenVINO; `... for openvino`: built with `--device openvino` (int8 with NNCF's "
             "conventions) and run by OpenVINO; NNCF rows quantize OpenVINO's conversion of the FP32 model "
             "(`ov.convert_model`) with the same calibration samples, one per item. Latency p50/p99 at "
             "batch 1, throughput at batch 8 (random inputs); every row of a model measured interleaved "
             "in one process, shuffled each round; **speed-up = median over rounds of the per-round ratio "
             f"to `{BASE}`** (the headline: absolute times on this shared machine are noisy). "
             "Quality: top-1 delta on the labeled test subset "
             "(the trained sample) or fidelity of the first output to ORT FP32 on fixed random inputs "
             "(top-1 agreement where the output is [batch, classes], mean cosine, SQNR, max abs error). "
             f"Wall time of this script: {res['wall_s'] / 60:.1f} min"
             + (f" ({res['cpu_s'] / 60:.1f} CPU-min)" if "cpu_s" in res else "") + ".", "", *headline(res)]
    for key, sub in res["subjects"].items():
        lines += [f"### {key}", "", f"{sub.get('about', '')}. Source: `{sub.get('source', '?')}`."]
        if "error" in sub:
            lines += ["", f"Not measured: {sub['error']}", ""]
            continue
        if "skipped" in sub:
            lines += ["", f"Not in this run: {sub['skipped']}", ""]
            continue
        p = sub["plan"]
        val = (f"; NNCF's accuracy control validates on {sub['validation_samples']} other labeled "
               "images (training images, not the test set)") if sub.get("validation_samples") else ""
        lines += [f"Calibration: {sub['calibration_samples']} samples (the same for every row); quality on "
                  f"{sub['eval_samples']} samples{val}; {p['rounds']} rounds of ~{p['budget_s']} s (>= "
                  f"{p['min_iterations']} runs) per row and batch; {sub['wall_s']:.0f} s.", "",
                  "| row | runtime | quality vs FP32 | speed-up b1 [range] | p50 / p99 b1 ms | speed-up b8 "
                  "| img/s b8 | size | build s | Polygraphy max err (agrees) |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        rows = sub["rows"]
        base = rows[BASE]
        for name, r in rows.items():
            if "skipped" in r:
                lines.append(f"| {name} | | skipped: {r['skipped']} |||||||| ")
                continue
            if "error" in r:
                lines.append(f"| {name} | | **failed**: {_short(r['error'])} |||||||| ")
                continue
            b1, b8 = r["b1"], r["b8"]
            poly = r.get("polygraphy") or {}
            pcell = ("—" if not poly else f"error: {poly['error'][:60]}" if "error" in poly else
                     f"{poly['max_absdiff']:.3g} ({'yes' if poly['agree'] else 'NO'})")
            bold = "**" if r["kind"] == "workbench" else ""
            lines.append(
                f"| {bold}{name}{bold} | {r.get('runtime_label', 'ORT CPU')} | "
                f"{_fmt_quality(r, base, sub['labeled'])} | {b1['speedup']:.2f}x "
                f"[{b1['speedup_range'][0]:.2f}–{b1['speedup_range'][1]:.2f}] | {b1['p50_ms']:.2f} / "
                f"{b1['p99_ms']:.2f} | {b8['speedup']:.2f}x | {b8['throughput']:.0f} | "
                f"{r['size_bytes'] / 1e6:.2f} MB ({r['size_ratio']:.2f}x) | {r['build_s']:.1f} | {pcell} |")
        lines.append("")
    agree = [r["polygraphy"]["agree"] for s in res["subjects"].values() for r in s.get("rows", {}).values()
             if "agree" in r.get("polygraphy", {})]
    if agree:
        lines += [f"Polygraphy cross-check (on the first {XCHECK_ROWS} samples of each model): its max "
                  f"absolute error agrees with the workbench's on the same samples (within 1%) "
                  f"on {sum(agree)} of {len(agree)} built rows.", ""]
    for name in res.get("plots", []):
        lines += [f"![{name}](results/{name})", ""]
    return "\n".join(lines)


# Unlabeled models: a build "keeps quality" at mean cosine >= COSINE_BAR and SQNR >= SQNR_BAR dB to
# FP32. Cosine alone is blind where a sample's output is one number (Silero's speech probability:
# the cosine of two positive scalars is 1), so the error power counts too.
COSINE_BAR = 0.99
SQNR_BAR = 20.0
POINTS_BAR = 1.0  # labeled: within this many top-1 points of FP32


def keeps_quality(row: dict, base: dict, labeled: bool) -> bool:
    if "b1" not in row:
        return False
    if labeled:
        return 100 * (base["top1"] - row["top1"]) <= POINTS_BAR
    return row["fidelity"]["cosine"] >= COSINE_BAR and row["fidelity"]["sqnr_db"] >= SQNR_BAR


def headline(res: dict) -> list[str]:
    """Per subject: the workbench's fastest build that keeps quality against the fastest peer that does."""
    lines = [f"Fastest build within {POINTS_BAR:g} top-1 point (labeled) or at mean cosine >= {COSINE_BAR} "
             f"and SQNR >= {SQNR_BAR:g} dB (unlabeled) to ONNX Runtime FP32 `ORT_ENABLE_ALL`, on either CPU runtime "
             "(the workbench: its builds on ONNX Runtime and on OpenVINO; the peers: ONNX Runtime tools, "
             "OpenVINO FP32/default and NNCF on OpenVINO, and ORT FP32 at its best level); speed-ups are paired ratios to it, "
             f"measured in the same run ({res['threads']} threads; `benchmarks/results/peers.json`).", "",
             "| model | workbench | runtime | speed-up b1 / b8 | best peer | runtime | speed-up b1 / b8 | workbench / peer b1 |",
             "|---|---|---|---|---|---|---|---|"]
    for key, sub in res["subjects"].items():
        rows = sub.get("rows")
        if not rows:
            why = f"not in this run ({sub['skipped']})" if "skipped" in sub else \
                f"not measured: {sub.get('error', '?')[:100]}"
            lines.append(f"| {key} | {why} |||||||")
            continue
        base = rows[BASE]

        def best(*kinds: str, rows: dict = rows, base: dict = base, sub: dict = sub):
            ok = {n: r for n, r in rows.items() if r.get("kind") in kinds
                  and keeps_quality(r, base, sub["labeled"])}
            return max(ok.items(), key=lambda kv: kv[1]["b1"]["speedup"], default=(None, None))

        wn, w = best("workbench")
        pn, pr = best("peer", "ORT FP32")  # ORT FP32 at its best level is a peer too
        wcell = (f"`{wn.removeprefix('workbench ')}`", w.get("runtime_label", "ORT CPU"),
                 f"{w['b1']['speedup']:.2f}x / {w['b8']['speedup']:.2f}x") \
            if w else ("no build kept quality" + _failures(rows), "—", "—")
        ratio = f"{w['b1']['speedup'] / pr['b1']['speedup']:.2f}x" if w else "—"
        lines.append(f"| {key} | {wcell[0]} | {wcell[1]} | {wcell[2]} | {pn} | {pr.get('runtime_label', 'ORT CPU')} | "
                     f"{pr['b1']['speedup']:.2f}x / {pr['b8']['speedup']:.2f}x | {ratio} |")
    return lines + [""]


def _failures(rows: dict) -> str:
    failed = [n.removeprefix("workbench ") for n, r in rows.items() if r.get("kind") == "workbench" and "error" in r]
    return f" ({', '.join(failed)} failed)" if failed else ""


def plot(res: dict, out_dir: Path = HERE / "results") -> list[str]:
    """Speed-up at batch 1 and 8 per row, one panel per subject (PNG, matplotlib Agg).

    Workbench rows red, peers blue, ORT FP32 levels grey; a row that does not keep quality
    (``keeps_quality``) is drawn pale and marked, a row that failed is listed as failed.
    """
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    subs = {k: v for k, v in res["subjects"].items() if "rows" in v}
    if not subs:
        return []
    n_rows = max(len(v["rows"]) for v in subs.values())
    ncols = min(3, len(subs))
    nrows = -(-len(subs) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, (0.3 * n_rows + 1.4) * nrows), squeeze=False)
    for ax in axes.flat[len(subs):]:
        ax.set_visible(False)
    colors = {"workbench": "tab:red", "peer": "tab:blue", "ORT FP32": "tab:gray"}
    for ax, (key, sub) in zip(axes.flat, subs.items()):
        rows = sub["rows"]
        base = rows[BASE]
        names = list(rows)[::-1]
        y = np.arange(len(names))
        for i, name in enumerate(names):
            r = rows[name]
            if "b1" not in r:
                ax.text(0.02, i, "failed" if "error" in r else "skipped", va="center", fontsize=6,
                        color="tab:red" if "error" in r else "gray", transform=ax.get_yaxis_transform())
                continue
            ok = keeps_quality(r, base, sub["labeled"])
            c = colors.get(r["kind"], "k")
            ax.barh(i + 0.2, r["b1"]["speedup"], height=0.4, color=c, alpha=1.0 if ok else 0.3)
            ax.barh(i - 0.2, r["b8"]["speedup"], height=0.4, color=c, alpha=0.55 if ok else 0.15,
                    hatch="//")
            if not ok:
                ax.text(max(r["b1"]["speedup"], r["b8"]["speedup"]), i, " below quality bar", va="center", fontsize=5)
        ax.axvline(1.0, color="k", lw=0.6)
        ax.set_yticks(y, [n.replace("quantize_", "q_").replace("workbench ", "wb ")[:44] for n in names],
                      fontsize=6)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel(f"speed-up vs {BASE} (solid b1, hatched b8)", fontsize=7)
    fig.tight_layout()
    out = out_dir / "peers_speedup.png"
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return [out.name]


def _versions() -> dict[str, str]:
    from importlib import metadata  # noqa: PLC0415

    out = {}
    for d in ("onnxruntime", "openvino", "nncf", "onnxslim", "onnxsim", "olive-ai", "polygraphy", "torch",
              "rapidocr-onnxruntime", "silero-vad", "matplotlib"):
        try:
            out[d] = metadata.version(d)
        except metadata.PackageNotFoundError:
            out[d] = "not installed"
    return out


def _search() -> dict | None:
    """Best recipe per model from results/search.json, if that benchmark ran.

    Finds every ``SearchResult.to_dict()`` in the file (a dict with ``model``, ``best`` and
    ``trials``) wherever it is nested, and takes the recipe of its ``best`` trial.
    """
    path = HERE / "results" / "search.json"
    if not path.exists():
        return None
    found: dict[str, str] = {}

    def walk(v: object) -> None:
        if isinstance(v, dict):
            if {"model", "best", "trials"} <= set(v) and v["best"] is not None:
                best = [t for t in v["trials"] if isinstance(t, dict) and t.get("number") == v["best"]]
                if best and isinstance(best[0].get("recipe"), str):
                    found.setdefault(str(v["model"]), best[0]["recipe"])
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(json.loads(path.read_text()))
    return found


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--subjects", nargs="*", help="subject keys (default: all)")
    p.add_argument("--skip", nargs="*", default=[], metavar="KEY",
                   help="leave these subjects out of the full report (it says so and where they are measured instead)")
    p.add_argument("--quick", action="store_true", help="tiny counts, to check the harness")
    p.add_argument("--no-polygraphy", action="store_true")
    p.add_argument("--eval-samples", type=int, default=1000, help="labeled test images per row")
    p.add_argument("--rounds", type=int, default=3, help="latency rounds per subject (ResNet-50: at most 2)")
    p.add_argument("--eval-unlabeled", type=int, default=32, help="random inputs for fidelity, third-party models")
    p.add_argument("--min-iterations", type=int, default=3, help="timed runs per row, batch and round (at least)")
    p.add_argument("--calib-unlabeled", type=int, default=16, help="calibration inputs, third-party models")
    p.add_argument("--validation", type=int, default=500,
                   help="labeled images NNCF's accuracy control validates on (the sample; held out of calibration)")
    p.add_argument("--render", action="store_true", help="only redraw peers.md and the plot from peers.json")
    a = p.parse_args()
    unknown = sorted((set(a.subjects or []) | set(a.skip)) - {s.key for s in SUBJECTS})
    if unknown:  # a mistyped key would otherwise be measured (--skip) or leave nothing (--subjects)
        p.error(f"unknown subject {', '.join(unknown)}; the subjects are: " + ", ".join(s.key for s in SUBJECTS))
    if a.render:
        res = json.loads((HERE / "results" / "peers.json").read_text())
        res["plots"] = plot(res)
        (HERE / "results" / "peers.md").write_text(report(res))
        return
    t0 = time.perf_counter()
    uptime = os.popen("uptime").read().strip()
    search = _search()
    res: dict = {"threads": a.threads, "uptime": uptime, "versions": _versions(), "subjects": {},
                 "search_json": search is not None}
    for s in SUBJECTS:
        if a.subjects and s.key not in a.subjects:
            continue
        if s.key in a.skip:
            res["subjects"][s.key] = {"about": s.about, "source": s.where,
                                      "skipped": "left out with `--skip` to fit the time budget"
                                      + (f"; {s.elsewhere}" if s.elsewhere else "")
                                      + f"; `python benchmarks/peers.py --subjects {s.key}` measures it alone"}
            continue
        plan = Plan(calib=64 if s.labeled else a.calib_unlabeled, eval_samples=a.eval_samples if s.labeled else a.eval_unlabeled,
                    rounds=a.rounds, min_iterations=a.min_iterations, validation=a.validation)
        if s.key == "sample:resnet50":  # ~100 ms per image at 2 threads: fewer, shorter rounds
            plan = Plan(calib=8, eval_samples=8, rounds=min(2, a.rounds), budget_s=0.1, min_iterations=1)
        if a.quick:
            plan = Plan(calib=4, eval_samples=8, rounds=1, budget_s=0.05, min_iterations=1, validation=16)
        try:
            res["subjects"][s.key] = run_subject(s, plan, a.threads, search, not a.no_polygraphy)
        except Exception as e:  # a subject that cannot load (package missing) is reported
            print(f"{s.key}: FAILED {type(e).__name__}: {e}", file=sys.stderr)
            res["subjects"][s.key] = {"about": s.about, "error": f"{type(e).__name__}: {e}"}
    res["wall_s"] = time.perf_counter() - t0
    cpu = os.times()  # CPU seconds used: with wall_s, says how much the machine's load stretched the run
    res["cpu_s"] = cpu.user + cpu.system + cpu.children_user + cpu.children_system
    res["uptime_end"] = os.popen("uptime").read().strip()
    res["machine"] = machine_info()
    # a partial run (--quick, --subjects) must not overwrite the report's results
    name = "peers" if not (a.quick or a.subjects) else "peers_partial"
    try:
        res["plots"] = plot(res) if name == "peers" else []
    except ImportError as e:
        res["plots"] = []
        print(f"no plots: {e}", file=sys.stderr)
    write_json(name, {k: v for k, v in res.items() if k != "machine"})
    md = report(res)
    (HERE / "results" / f"{name}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
