"""``int8`` built for ``--device cpu`` against ``int8`` built for ``--device openvino``, on OpenVINO.

The two device defaults differ (``workbench/core/passes/int8_scheme.py``): ``cpu`` is ONNX
Runtime's (U8S8, asymmetric U8 activations, 7-bit weights everywhere on x86 without VNNI, Q/DQ on
every op ORT quantizes); ``openvino`` is NNCF's ``nncf.quantize`` default (activation sign from the
calibration data, U8 zero point 0 or S8 symmetric, 7-bit weights on the first convolution only,
NNCF's CPU op types, outputs in float). Both files and FP32 run on OpenVINO's CPU plugin
(``make_runner(model, "openvino", precision="f32", performance_hint="latency")``) and, for
reference, on ONNX Runtime's CPU provider; every row of a model is measured interleaved in one
process, shuffled each round; speed-up = median over rounds of the per-round ratio to FP32 on
OpenVINO. Quality: top-1 on the labeled test set (the trained sample), fidelity to FP32 on
OpenVINO on fixed random inputs (synthetic ResNet-50). For each int8 file the script also counts
the convolutions OpenVINO's compiled graph runs in int8 (its runtime precisions).
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import time
from typing import Any

import numpy as np

from common import HERE, interleaved, machine_line, write_json
from workbench import load_dataset, load_model, random_dataset
from workbench.core.build import optimize
from workbench.core.cache import BuildCache
from workbench.core.evaluation.metrics import FidelityAccumulator
from workbench.core.evaluation.run import make_runner
from workbench.core.model import Model
from workbench.core.shapes import random_feeds, resolve_inputs, tensor_specs

BASE = "FP32 on OpenVINO"


def _feeds(model: Model, batch: int, seed: int) -> dict[str, np.ndarray]:
    ins, _ = tensor_specs(model.proto.graph)
    return random_feeds(resolve_inputs(ins, None, batch=batch), seed=seed)


def _runtime_precisions(model: Model, threads: int) -> dict[str, int]:
    """Convolution / FullyConnected nodes of OpenVINO's compiled graph by runtime precision."""
    import openvino as ov  # noqa: PLC0415

    core = ov.Core()
    m = core.read_model(model=model.proto.SerializeToString(), weights=b"")
    c = core.compile_model(m, "CPU", {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"})
    out: collections.Counter = collections.Counter()
    for op in c.get_runtime_model().get_ops():
        info = op.get_rt_info()
        kind = info["layerType"].astype(str)
        if kind in ("Convolution", "FullyConnected"):
            out[f"{kind} {info['runtimePrecision'].astype(str)}"] += 1
    return dict(out)


def run_subject(key: str, threads: int, rounds: int, budget_s: float, eval_n: int, calib_n: int,
                log=print) -> dict[str, Any]:
    model = load_model(key)
    labeled = key == "sample:resnet-fashion"
    calib = load_dataset(f"{key}:calib", model) if labeled else random_dataset(model, calib_n)
    builds: dict[str, Model] = {"FP32": model}
    notes: dict[str, list[str]] = {}
    for device in ("cpu", "openvino"):
        t0 = time.perf_counter()
        r = optimize(model, f"int8:samples={calib_n}", device=device, calibration=calib,
                     cache=BuildCache(enabled=False))
        builds[f"int8 (device {device})"] = r.model
        notes[device] = list(r.reports[0].notes)
        log(f"  built int8 for {device} in {time.perf_counter() - t0:.1f} s: {notes[device][0]}")
    rows: dict[str, dict[str, Any]] = {}
    runners = {}
    for build, m in builds.items():
        for engine in ("openvino", "cpu"):
            name = f"{build} on {'OpenVINO' if engine == 'openvino' else 'ORT'}"
            opts: dict[str, Any] = {"threads": threads}
            if engine == "openvino":
                opts.update(precision="f32", performance_hint="latency")
            r = make_runner(m, engine, **opts)
            r.activate()
            runners[name] = r
            rows[name] = {"build": build, "runtime": engine, "settings": {k: v for k, v in r.settings.items()
                                                                          if k in ("precision", "threads",
                                                                                   "performance_hint")}}
    # quality
    if labeled:
        test = load_dataset(None, model)
        n = min(eval_n, len(test))
        batches = list(test.batches(250, n))
        for name, r in runners.items():
            correct = sum(int((r.infer(f)[model.proto.graph.output[0].name].argmax(1) == y).sum())
                          for f, y in batches)
            rows[name]["top1"] = correct / n
        log("  top-1: " + ", ".join(f"{k} {v['top1']:.4f}" for k, v in rows.items()))
    else:
        xs = [_feeds(model, 8, 100 + i) for i in range(max(1, eval_n // 8))]
        out = model.proto.graph.output[0].name
        refs = [runners[BASE].infer(x)[out] for x in xs]
        for name, r in runners.items():
            acc = FidelityAccumulator(out)
            for x, ref in zip(xs, refs):
                acc.update(ref, r.infer(x)[out])
            rows[name]["fidelity"] = acc.result().to_dict()
    # OpenVINO's compiled graphs: which convolutions run in int8
    for build, m in builds.items():
        rows[f"{build} on OpenVINO"]["openvino_runtime_precisions"] = _runtime_precisions(m, threads)
    # latency, batch 1, interleaved
    x = _feeds(model, 1, 7)
    configs = {name: r.prepare(x) for name, r in runners.items()}
    res = interleaved(configs, rounds=rounds, batch_of=dict.fromkeys(configs, 1), min_iterations=3,
                      budget_s=budget_s, log=log)
    for r in runners.values():
        r.deactivate()
    ref = res[BASE]["round_p50s_ms"]
    for name, c in res.items():
        ratios = [a / b for a, b in zip(ref, c["round_p50s_ms"])]
        rows[name]["b1"] = {"p50_ms": c["p50_ms"], "p99_ms": c["p99_ms"], "iterations": c["iterations"],
                            "speedup": statistics.median(ratios), "speedup_range": [min(ratios), max(ratios)],
                            "round_p50s_ms": c["round_p50s_ms"]}
    return {"labeled": labeled, "calibration": {"source": calib.source, "samples": min(calib_n, len(calib))},
            "eval_samples": eval_n if not labeled else min(eval_n, len(load_dataset(None, model))),
            "notes": notes, "rows": rows}


def report(res: dict) -> str:
    lines = ["## int8 for device cpu against int8 for device openvino, run on OpenVINO", "",
             f"Machine: {res['machine_line']}.", "",
             f"Batch 1, {res['threads']} threads, {res['rounds']} interleaved rounds of ~{res['budget_s']} s "
             "(>= 3 runs) per row; OpenVINO CPU plugin with INFERENCE_PRECISION_HINT f32 and the LATENCY "
             "hint; ONNX Runtime CPU provider, ORT_ENABLE_ALL. Speed-up: median over rounds of the "
             f"per-round ratio to `{BASE}`.", ""]
    for key, sub in res["subjects"].items():
        q = "top-1" if sub["labeled"] else "fidelity to FP32 on OpenVINO"
        lines += [f"### {key}", "", f"Calibration: {sub['calibration']['samples']} samples of "
                  f"{sub['calibration']['source']}; {q} on {sub['eval_samples']} samples.", "",
                  "| build | runtime | quality | speed-up b1 [range] | p50 ms | OpenVINO conv/FC precisions |",
                  "|---|---|---|---|---|---|"]
        for r in sub["rows"].values():
            if sub["labeled"]:
                qual = f"{100 * r['top1']:.2f}%"
            else:
                f = r["fidelity"]
                qual = f"top-1 agree {100 * f['top1_agreement']:.0f}%, cos {f['cosine']:.5f}, SQNR {f['sqnr_db']:.1f} dB"
            b1 = r["b1"]
            prec = ", ".join(f"{k}: {v}" for k, v in sorted(r.get("openvino_runtime_precisions", {}).items()))
            lines.append(f"| {r['build']} | {'OpenVINO' if r['runtime'] == 'openvino' else 'ORT'} | {qual} | "
                         f"{b1['speedup']:.2f}x [{b1['speedup_range'][0]:.2f}-{b1['speedup_range'][1]:.2f}] | "
                         f"{b1['p50_ms']:.2f} | {prec or '—'} |")
        lines += ["", "Schemes: " + "; ".join(f"`{d}`: {n[0].removeprefix('scheme: ')}" for d, n in sub["notes"].items()), ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--subjects", nargs="*", default=["sample:resnet-fashion", "sample:resnet50"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--budget", type=float, default=1.0, help="seconds per row and round")
    p.add_argument("--eval-samples", type=int, default=10000, help="test images (sample) / random inputs (resnet50: 16)")
    p.add_argument("--calib", type=int, default=256, help="calibration samples (resnet50: random inputs, 32)")
    a = p.parse_args()
    t0 = time.perf_counter()
    res: dict[str, Any] = {"threads": a.threads, "rounds": a.rounds, "budget_s": a.budget,
                           "uptime": os.popen("uptime").read().strip(), "subjects": {}}
    for key in a.subjects:
        print(f"{key}:", flush=True)
        big = key == "sample:resnet50"
        res["subjects"][key] = run_subject(key, a.threads, a.rounds, a.budget, 16 if big else a.eval_samples,
                                           32 if big else a.calib)
    res["wall_s"] = time.perf_counter() - t0
    res["uptime_end"] = os.popen("uptime").read().strip()
    res["machine_line"] = machine_line()
    write_json("openvino_targets", res)
    md = report(res)
    (HERE / "results" / "openvino_targets.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
