"""CPU baseline of the samples: batch 1 and 8, threads 1 and 2, ORT levels disabled/basic/all.

Every configuration of one model is measured in the same run, interleaved in a shuffled order
each round and repeated; the headline numbers are ratios to ``ORT_ENABLE_ALL`` at the same batch
and threads. Inputs are random (latency does not depend on values for these models).
"""

from __future__ import annotations

import argparse
import itertools
import time

from common import interleaved, machine_line, write_json
from workbench import load_model
from workbench.core.engines.ort_cpu import OrtCpuOptions, OrtCpuRunner
from workbench.core.shapes import random_feeds, resolve_inputs, tensor_specs

LEVELS = ["disabled", "basic", "all"]


def run(models: list[str], rounds: int, budget_s: float, min_iterations: int) -> dict:
    results = {}
    for name in models:
        model = load_model(name)
        ins, _ = tensor_specs(model.proto.graph)
        runners, configs, batch_of = [], {}, {}
        for batch, threads, level in itertools.product([1, 8], [1, 2], LEVELS):
            feeds = random_feeds(resolve_inputs(ins, batch=batch))
            r = OrtCpuRunner(model, OrtCpuOptions(threads=threads, optimization_level=level))
            r.activate()
            runners.append(r)
            key = f"b{batch}/t{threads}/{level}"
            configs[key] = r.prepare(feeds)
            batch_of[key] = batch
        print(f"{name}: {len(configs)} configurations, {rounds} rounds")
        t0 = time.time()
        res = interleaved(configs, rounds=rounds, batch_of=batch_of, min_iterations=min_iterations,
                          budget_s=budget_s)
        for r in runners:
            r.deactivate()
        results[name] = {"configs": res, "seconds": round(time.time() - t0, 1)}
    return results


def report(results: dict, rounds: int, budget_s: float, min_iterations: int) -> str:
    lines = [
        "## CPU baseline (ONNX Runtime, FP32)",
        "",
        f"Machine: {machine_line()}.",
        "",
        f"Method: for each model, all 12 configurations live in one process; each of {rounds} rounds "
        f"measures every configuration once in a new shuffled order (1 warm-up run, then runs until "
        f"{budget_s:g} s and at least {min_iterations} runs). p50 is the median of the per-round p50s "
        "(spread: lowest and highest round p50); p90/p99 pool every run. Random inputs. Ratios are "
        "p50 of `ORT_ENABLE_ALL` / p50 of the level (below 1 = slower than `all`).",
        "",
    ]
    for name, r in results.items():
        lines += [f"### `{name}`" + (" (synthetic, random weights: latency only)" if "resnet50" in name
                                     or "resnet18" in name else ""), "",
                  "| batch | threads | level | p50 ms | spread ms | p90 ms | p99 ms | img/s | vs `all` | runs |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        cfg = r["configs"]
        for key, c in cfg.items():
            b, t, level = key.split("/")
            ratio = cfg[f"{b}/{t}/all"]["p50_ms"] / c["p50_ms"]
            lines.append(f"| {b[1:]} | {t[1:]} | {level} | {c['p50_ms']:.2f} | "
                         f"{c['spread_ms'][0]:.2f}-{c['spread_ms'][1]:.2f} | {c['p90_ms']:.2f} | "
                         f"{c['p99_ms']:.2f} | {c['throughput']:.0f} | {ratio:.2f}x | {c['iterations']} |")
        speedups = [cfg[f"b{b}/t1/all"]["p50_ms"] / cfg[f"b{b}/t2/all"]["p50_ms"] for b in (1, 8)]
        lines += ["", f"Two threads against one (`all`): {speedups[0]:.2f}x at batch 1, "
                      f"{speedups[1]:.2f}x at batch 8. Measured in {r['seconds']:.0f} s.", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--models", nargs="+", default=["sample:resnet-fashion", "sample:resnet50"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--budget", type=float, default=1.0, help="seconds per configuration per round")
    p.add_argument("--min-iterations", type=int, default=5)
    a = p.parse_args()
    results = run(a.models, a.rounds, a.budget, a.min_iterations)
    write_json("cpu_baseline", {"rounds": a.rounds, "budget_s": a.budget, "results": results})
    (__import__("pathlib").Path(__file__).parent / "results" / "cpu_baseline.md").write_text(
        report(results, a.rounds, a.budget, a.min_iterations))


if __name__ == "__main__":
    main()
