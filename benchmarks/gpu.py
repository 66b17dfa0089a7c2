"""ONNX Runtime CUDA engine on ``sample:resnet50``: what IO binding, CUDA graphs, NHWC and FP16 buy.

Configurations, each at batch 1 and a large batch (256 by default), all in one process and
measured interleaved (a new shuffled order each round, repeated):

- FP32, NCHW, NumPy in / NumPy out (``session.run``: copies to and from the GPU every run)
- FP32, NCHW, IO binding (inputs and outputs stay on the GPU)
- FP32, NCHW, IO binding + CUDA graph
- FP32, NHWC, IO binding + CUDA graph
- FP16 (the ``fp16`` pass, float32 interface), NCHW, IO binding + CUDA graph
- FP16, NHWC, IO binding + CUDA graph
- FP16, NHWC, NumPy in / NumPy out
- INT8 Q/DQ (the ``int8`` pass for ``--device cuda``: symmetric S8S8, TensorRT-style placement),
  NHWC, IO binding + CUDA graph. ONNX Runtime's CUDA provider has no int8 convolution kernels: it
  runs DequantizeLinear then float convolutions, so this row measures what a user gets from a
  Q/DQ model on ORT CUDA (the INT8 speed-up needs TensorRT).

Every IO-bound timing is one ``run_with_iobinding`` followed by a synchronization of the outputs
(the GPU has finished when the clock stops). Random inputs; ``sample:resnet50`` has random
weights, so only latency means anything. cuDNN search: EXHAUSTIVE (the default).

Run on a machine with a GPU and onnxruntime-gpu: ``python benchmarks/gpu.py``; writes
``benchmarks/results/gpu.md`` and ``gpu.json``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import subprocess
import time
from pathlib import Path
from typing import Any

from common import interleaved, machine_line, write_json
from workbench import load_model
from workbench.core.build import optimize
from workbench.core.engines.ort_cuda import OrtCudaOptions, OrtCudaRunner, ort_cuda_version
from workbench.core.evaluation.data import random_dataset
from workbench.core.gpu import scan_gpus
from workbench.core.shapes import random_feeds, resolve_inputs, tensor_specs

HERE = Path(__file__).resolve().parent

CONFIGS: dict[str, tuple[str, OrtCudaOptions]] = {
    "fp32 NCHW numpy": ("fp32", OrtCudaOptions(io_binding=False, prefer_nhwc=False)),
    "fp32 NCHW binding": ("fp32", OrtCudaOptions(cuda_graph=False, prefer_nhwc=False)),
    "fp32 NCHW binding+graph": ("fp32", OrtCudaOptions(cuda_graph=True, prefer_nhwc=False)),
    "fp32 NHWC binding+graph": ("fp32", OrtCudaOptions(cuda_graph=True, prefer_nhwc=True)),
    "fp16 NCHW binding+graph": ("fp16", OrtCudaOptions(cuda_graph=True, prefer_nhwc=False)),
    "fp16 NHWC binding+graph": ("fp16", OrtCudaOptions(cuda_graph=True, prefer_nhwc=True)),
    "fp16 NHWC numpy": ("fp16", OrtCudaOptions(io_binding=False, prefer_nhwc=True)),
    # cuda_graph auto: ONNX Runtime keeps some Q/DQ nodes on the CPU, and then cannot capture
    "int8-qdq NCHW binding": ("int8", OrtCudaOptions(prefer_nhwc=False)),
    "int8-qdq NHWC binding": ("int8", OrtCudaOptions(prefer_nhwc=True)),
}
BASELINE = "fp32 NCHW numpy"


def gpu_info() -> dict[str, Any]:
    scan = scan_gpus()
    info: dict[str, Any] = {"gpus": [g.to_dict() for g in scan.gpus], "cuda_driver_api": scan.driver}
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm,power.limit",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        info["nvidia_smi"] = out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["nvidia_smi"] = None
    try:
        info["cudnn"] = int(ctypes.CDLL("libcudnn.so.9").cudnnGetVersion())
    except (OSError, AttributeError):
        info["cudnn"] = None
    import onnxruntime as ort

    info["onnxruntime"] = ort.__version__
    info["onnxruntime_cuda"] = ort_cuda_version()
    return info


def run(model: str, batches: list[int], rounds: int, budgets: dict[int, float], min_iterations: int) -> dict:
    fp32 = load_model(model)
    t0 = time.time()
    build = optimize(fp32, "fp16", device="cuda")
    rep = build.reports[0]
    fp16_pass = {"wall_s": round(time.time() - t0, 1), "converted": len(rep.converted),
                 "excluded": rep.excluded, "metrics": rep.metrics, "notes": rep.notes}
    print(f"fp16 pass: {fp16_pass}", flush=True)
    models = {"fp32": fp32, "fp16": build.model}
    results: dict[str, Any] = {"model": model, "fp16_pass": fp16_pass}
    t0 = time.time()
    try:
        # Synthetic models have no data: calibrate on random inputs (latency only, like them).
        calib = None if model.startswith("sample:resnet-fashion") else random_dataset(fp32, 64)
        q = optimize(fp32, "int8", device="cuda", calibration=calib)
        models["int8"] = q.model
        results["int8_pass"] = {"wall_s": round(time.time() - t0, 1), "recipe": q.recipe.label(),
                                "calibration": q.calibration}
    except Exception as e:  # noqa: BLE001 - recorded in the report, the other rows still run
        results["int8_pass"] = {"error": f"{type(e).__name__}: {e}"}
    print(f"int8 pass: {results['int8_pass']}", flush=True)
    ins, _ = tensor_specs(fp32.proto.graph)
    for batch in batches:
        feeds = random_feeds(resolve_inputs(ins, batch=batch))
        runners, fns, settings, setup = [], {}, {}, {}
        for name, (prec, opts) in CONFIGS.items():
            if prec not in models:
                continue
            t = time.time()
            r = OrtCudaRunner(models[prec], opts)
            try:
                r.activate()
                fns[name] = r.prepare(feeds)  # probe run, output buffers, warm-up (graph capture)
            except Exception as e:  # noqa: BLE001 - a failing configuration is a result too
                print(f"  batch {batch}: {name}: FAILED {e}", flush=True)
                results.setdefault("failed", {})[f"b{batch} {name}"] = str(e)[:400]
                r.deactivate()
                continue
            runners.append(r)
            settings[name] = r.settings
            if "cuda_graph_note" in r.settings:
                print(f"  {name}: {r.settings['cuda_graph_note']}", flush=True)
            setup[name] = round(time.time() - t, 2)
            print(f"  batch {batch}: {name}: ready in {setup[name]:.1f} s", flush=True)
        res = interleaved(fns, rounds=rounds, batch_of={k: batch for k in fns}, budget_s=budgets[batch],
                          min_iterations=min_iterations)
        for r in runners:
            r.deactivate()
        for name, c in res.items():
            c["vs_baseline"] = res[BASELINE]["p50_ms"] / c["p50_ms"]
            c["setup_s"] = setup[name]
        results[f"b{batch}"] = {"configs": res, "settings": settings}
    return results


def host_line(m: dict) -> str:
    """``common.machine_line()`` for a recorded ``machine_info()`` (so a report can be redone)."""
    return (f"{m['cpu']}, {m['physical_cores']} physical cores ({m['logical_cpus']} logical), "
            f"ISA: {', '.join(m['isa']) or 'none read'}; {m['os']}; Python {m['python']}; "
            + ", ".join(f"{k} {v}" for k, v in m["libraries"].items()))


def report(results: dict, info: dict, rounds: int, budgets: dict[int, float], host: str) -> str:
    g = info["gpus"][0] if info["gpus"] else {"name": "?", "memory_bytes": 0}
    lines = [
        f"## GPU: ONNX Runtime CUDA engine (`{results['model']}`)",
        "",
        f"GPU: {g['name']} ({g['memory_bytes'] / 2**30:.0f} GiB, compute capability "
        f"{g.get('compute_capability', '?')}); nvidia-smi: {info['nvidia_smi']}; CUDA driver API "
        f"{info['cuda_driver_api']}; cuDNN {info['cudnn']}; onnxruntime-gpu {info['onnxruntime']} "
        f"(built for CUDA {info['onnxruntime_cuda']}). Host: {host}.",
        "",
        f"Method: `{results['model']}` "
        + ("(synthetic, random weights: latency only)" if results["model"] != "sample:resnet-fashion"
           else "(the trained sample, 28x28; latency here, accuracy in the CPU sections)")
        + ", random inputs; every "
        f"configuration lives in one process; each of {rounds} rounds measures every configuration "
        f"once in a new shuffled order (1 warm-up run, then runs until "
        + ", ".join(f"{v:g} s at batch {k}" for k, v in budgets.items())
        + f"). Passes: fp16 {results['fp16_pass'].get('wall_s')} s; int8 "
        + (f"{results['int8_pass']['wall_s']} s (`{results['int8_pass']['recipe']}`)"
           if "wall_s" in results.get("int8_pass", {}) else
           f"failed: {results.get('int8_pass', {}).get('error', 'not run')}")
        + ". p50 is the median of the per-round p50s (spread: lowest and highest round p50); p90 "
        "pools every run. IO-bound runs end with an output synchronization. FP16 is the workbench "
        "`fp16` pass (float16 inside, float32 inputs and outputs). cuDNN algorithm search EXHAUSTIVE; "
        "TF32 allowed (ONNX Runtime's default).",
        "",
    ]
    for key, r in results.items():
        if not (key.startswith("b") and key[1:].isdigit()):
            continue
        batch = int(key[1:])
        lines += [f"### Batch {batch}", "",
                  "| configuration | p50 ms | spread ms | p90 ms | img/s | vs fp32 numpy | runs |",
                  "|---|---|---|---|---|---|---|"]
        for name, c in r["configs"].items():
            lines.append(f"| {name} | {c['p50_ms']:.3f} | {c['spread_ms'][0]:.3f}-{c['spread_ms'][1]:.3f} | "
                         f"{c['p90_ms']:.3f} | {c['throughput']:,.0f} | {c['vs_baseline']:.2f}x | "
                         f"{c['iterations']} |")
        lines.append("")
    lines += ["### What each choice did (ratio of p50s; above 1 = faster)", "",
              "| change | " + " | ".join(f"batch {k[1:]}" for k in results if k.startswith("b") and k[1:].isdigit())
              + " |", "|---|" + "---|" * sum(1 for k in results if k.startswith("b") and k[1:].isdigit())]
    for label, slow, fast in PAIRS:
        cells = []
        for key, r in results.items():
            if key.startswith("b") and key[1:].isdigit():
                c = r["configs"]
                cells.append(f"{c[slow]['p50_ms'] / c[fast]['p50_ms']:.2f}x" if slow in c and fast in c else "-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    b1 = results.get("b1", {}).get("configs", {})
    noisy = [f"{k} {c['spread_ms'][0]:.2f}-{c['spread_ms'][1]:.2f} ms" for k, c in b1.items()
             if "graph" not in k and c["spread_ms"][1] > 1.3 * c["spread_ms"][0]]
    if noisy:
        lines += ["Without a CUDA graph, batch 1 is bound by the CPU launching every kernel one by one, "
                  "and its per-round p50 moved a lot between rounds (" + "; ".join(noisy) + "): read "
                  "those rows as a range. With a CUDA graph the spread is a few percent.", ""]
    if results.get("failed"):
        lines += ["Configurations that failed (kept in the results, not hidden):", ""]
        lines += [f"- {k}: {v[:240]}" for k, v in results["failed"].items()]
        lines += ["", "The engine now runs Q/DQ models NCHW by default for this reason "
                  "(`prefer_nhwc=None`: on, except for Q/DQ models).", ""]
    lines += ["For comparison, the figures in the workplace's GPU notes (same GPU kind, torchvision "
              "ResNet-50 with random weights, one run): ORT CUDA FP32 NCHW with IO binding 2.05 ms at "
              "batch 1 and 6,250 img/s at batch 256; + CUDA graph 0.92 ms and 6,320 img/s; FP16 + NHWC + "
              "CUDA graph 0.58 ms and 10,670 img/s.", ""]
    return "\n".join(lines)


PAIRS = [
    ("IO binding vs NumPy in/out (fp32 NCHW)", "fp32 NCHW numpy", "fp32 NCHW binding"),
    ("+ CUDA graph (fp32 NCHW, bound)", "fp32 NCHW binding", "fp32 NCHW binding+graph"),
    ("NHWC vs NCHW (fp32, bound + graph)", "fp32 NCHW binding+graph", "fp32 NHWC binding+graph"),
    ("NHWC vs NCHW (fp16, bound + graph)", "fp16 NCHW binding+graph", "fp16 NHWC binding+graph"),
    ("FP16 vs FP32 (NHWC, bound + graph)", "fp32 NHWC binding+graph", "fp16 NHWC binding+graph"),
    ("IO binding + graph vs NumPy in/out (fp16 NHWC)", "fp16 NHWC numpy", "fp16 NHWC binding+graph"),
    ("all of it vs FP32 NCHW NumPy in/out", "fp32 NCHW numpy", "fp16 NHWC binding+graph"),
    ("INT8 Q/DQ vs FP16 (NHWC, bound + graph)", "fp16 NHWC binding+graph", "int8-qdq NCHW binding"),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--models", nargs="+", default=["sample:resnet50", "sample:resnet-fashion"])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 32, 256])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--budget-small", type=float, default=0.3, help="seconds per config per round, batch 1")
    p.add_argument("--budget-large", type=float, default=1.0, help="seconds per config per round, large batch")
    p.add_argument("--min-iterations", type=int, default=10)
    p.add_argument("--report-only", action="store_true", help="rewrite gpu.md from results/gpu.json")
    a = p.parse_args()
    if a.report_only:
        d = json.loads((HERE / "results" / "gpu.json").read_text())
        budgets = {int(k): v for k, v in d["budgets_s"].items()}
        (HERE / "results" / "gpu.md").write_text("\n".join(
            report(r, d["gpu"], d["rounds"], budgets, host_line(d["machine"])) for r in d["models"]))
        return
    budgets = {b: (a.budget_small if b == 1 else a.budget_large) for b in a.batches}
    info = gpu_info()
    print(info)
    models = [run(m, a.batches, a.rounds, budgets, a.min_iterations) for m in a.models]
    write_json("gpu", {"gpu": info, "rounds": a.rounds, "budgets_s": budgets, "models": models})
    (HERE / "results" / "gpu.md").write_text(
        "\n".join(report(r, info, a.rounds, budgets, machine_line()) for r in models))
    print((HERE / "results" / "gpu.md").read_text())


if __name__ == "__main__":
    main()
