"""The best recipe on the sample: combinations of pruning and INT8 against FP32 `ORT_ENABLE_ALL`.

Target (issue: optimization passes): within 1 point of FP32 top-1 on the 10,000 test images and at
least 3x faster than FP32 with `ORT_ENABLE_ALL`, at batch 1 and batch 8. Every candidate and FP32
are measured interleaved in one process; accuracy on all 10,000 test images.
"""

from __future__ import annotations

import argparse
import time

from common import interleaved, machine_line, top1, write_json
from workbench import load_dataset, load_model
from workbench.core.build import optimize
from workbench.core.cache import BuildCache
from workbench.core.engines.ort_cpu import OrtCpuOptions, OrtCpuRunner
from workbench.core.shapes import random_feeds, resolve_inputs, tensor_specs

CANDIDATES = [
    "int8:calibration=entropy",
    "prune-channels:ratio=0.3:multiple=8,int8:calibration=entropy",
    "prune-channels:ratio=0.5:multiple=8,int8:calibration=entropy",
    "prune-channels:ratio=0.6:multiple=8,int8:calibration=entropy",
    "prune-channels:ratio=0.5:multiple=8:prune_residual=true,int8:calibration=entropy",
]


def run(rounds: int, budget: float, threads: int, candidates: list[str]) -> dict:
    src = load_model("sample:resnet-fashion")
    test = load_dataset(None, src)
    builds = {"fp32": {"model": src, "build_s": 0.0}}
    for c in candidates:
        t0 = time.perf_counter()
        res = optimize(src, c, cache=BuildCache(enabled=False))
        builds[c] = {"model": res.model, "build_s": time.perf_counter() - t0}
        print(f"built {c} in {builds[c]['build_s']:.1f} s")
    for name, b in builds.items():
        b["top1"], b["samples"] = top1(b["model"], test, label=name)
        print(f"{name}: top-1 {b['top1']:.4f}")
    ins, _ = tensor_specs(src.proto.graph)
    latency = {}
    for batch in (1, 8):
        feeds = random_feeds(resolve_inputs(ins, batch=batch))
        runners, configs = [], {}
        for name, b in builds.items():
            r = OrtCpuRunner(b["model"], OrtCpuOptions(threads=threads, optimization_level="all"))
            r.activate()
            runners.append(r)
            configs[name] = r.prepare(feeds)
        latency[batch] = interleaved(configs, rounds=rounds, batch_of=dict.fromkeys(configs, batch),
                                     min_iterations=10, budget_s=budget)
        for r in runners:
            r.deactivate()
    out = {}
    for name, b in builds.items():
        out[name] = {"top1": b["top1"], "samples": b["samples"], "build_s": b["build_s"],
                     "size_bytes": b["model"].size_bytes,
                     **{f"b{bt}": latency[bt][name] for bt in (1, 8)},
                     **{f"speedup_b{bt}": latency[bt]["fp32"]["p50_ms"] / latency[bt][name]["p50_ms"]
                        for bt in (1, 8)}}
    return out


def report(res: dict, rounds: int, budget: float, threads: int) -> str:
    base = res["fp32"]["top1"]
    ok = {k: v for k, v in res.items() if k != "fp32" and v["top1"] >= base - 0.01}
    best = max(ok, key=lambda k: min(ok[k]["speedup_b1"], ok[k]["speedup_b8"]), default=None)
    lines = ["## Best recipe on `sample:resnet-fashion`", "", f"Machine: {machine_line()}.", "",
             f"Top-1 on all 10,000 test images. Latency: ONNX Runtime CPU `ORT_ENABLE_ALL`, {threads} "
             f"threads, random inputs, {rounds} interleaved rounds of ~{budget:g} s per build; p50 = median "
             "of round p50s; speed-up = FP32 p50 / build p50 in the same run.", "",
             "| recipe | top-1 | Δ pt | p50 b1 ms | speed-up b1 | p50 b8 ms | speed-up b8 | MB | build s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for k, v in res.items():
        mark = " **(best)**" if k == best else ""
        lines.append(f"| `{k}`{mark} | {v['top1']:.4f} | {100 * (v['top1'] - base):+.2f} | "
                     f"{v['b1']['p50_ms']:.2f} | {v['speedup_b1']:.2f}x | {v['b8']['p50_ms']:.2f} | "
                     f"{v['speedup_b8']:.2f}x | {v['size_bytes'] / 1e6:.2f} | {v['build_s']:.1f} |")
    if best:
        b = res[best]
        verdict = "meets" if min(b["speedup_b1"], b["speedup_b8"]) >= 3 else "does NOT meet"
        lines += ["", f"Best within 1 point: `{best}`: {b['speedup_b1']:.2f}x at batch 1, "
                      f"{b['speedup_b8']:.2f}x at batch 8, {100 * (b['top1'] - base):+.2f} points: "
                      f"{verdict} the 3x target."]
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--budget", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    cands = CANDIDATES[:3] if a.quick else CANDIDATES
    if a.quick:
        a.rounds, a.budget = 2, 0.3
    res = run(a.rounds, a.budget, a.threads, cands)
    write_json("passes_best", {"rounds": a.rounds, "budget_s": a.budget, "threads": a.threads,
                               "results": res})
    md = report(res, a.rounds, a.budget, a.threads)
    (__import__("pathlib").Path(__file__).parent / "results" / "passes_best.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
