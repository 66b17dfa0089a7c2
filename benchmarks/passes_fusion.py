"""Where offline fusion pays: fold/fuse against the original at each ONNX Runtime level.

ONNX Runtime fuses Conv+BatchNorm and more itself at session creation, so offline fusion should
matter at ``ORT_DISABLE_ALL`` (engines or deployments that do not optimize) and little at
``ORT_ENABLE_ALL``. Every (variant, level) pair is measured interleaved in one process.
"""

from __future__ import annotations

import argparse
import time

from common import interleaved, machine_line, write_json
from workbench import load_model
from workbench.core.engines.ort_cpu import OrtCpuOptions, OrtCpuRunner
from workbench.core.passes import PassContext, Recipe
from workbench.core.shapes import random_feeds, resolve_inputs, tensor_specs

VARIANTS = {"original": None, "fold": "fold", "fuse": "fuse", "fuse+ort_fusions": "fuse:ort_fusions=true"}
LEVELS = ["disabled", "basic", "all"]


def run(models: list[str], rounds: int, budget: float, batch: int, threads: int) -> dict:
    out = {}
    for name in models:
        model = load_model(name)
        protos, builds = {}, {}
        for v, recipe in VARIANTS.items():
            t0 = time.perf_counter()
            proto = model.proto
            if recipe:
                res = Recipe.parse(recipe).instantiate()[0](model.proto, PassContext())
                proto = res.model
            builds[v] = {"nodes": len(proto.graph.node), "build_s": time.perf_counter() - t0}
            protos[v] = proto
        ins, _ = tensor_specs(model.proto.graph)
        feeds = random_feeds(resolve_inputs(ins, batch=batch))
        runners, configs = [], {}
        for v, proto in protos.items():
            for level in LEVELS:
                r = OrtCpuRunner(load_model(proto), OrtCpuOptions(threads=threads, optimization_level=level))
                r.activate()
                runners.append(r)
                configs[f"{v}/{level}"] = r.prepare(feeds)
        print(f"{name}: {len(configs)} configurations")
        res = interleaved(configs, rounds=rounds, batch_of=dict.fromkeys(configs, batch),
                          min_iterations=5, budget_s=budget)
        for r in runners:
            r.deactivate()
        out[name] = {"builds": builds, "latency": res}
    return out


def report(results: dict, rounds: int, budget: float, batch: int, threads: int) -> str:
    lines = ["## Offline fusion (`fold`, `fuse`) against ONNX Runtime's own optimizations", "",
             f"Machine: {machine_line()}.", "",
             f"Batch {batch}, {threads} threads, random inputs; {rounds} interleaved rounds, each "
             f"configuration ~{budget:g} s per round; p50 = median of round p50s. Ratio = original's "
             "p50 at the same ORT level / this p50 (above 1 = offline fusion helped).", ""]
    for name, r in results.items():
        lines += [f"### `{name}`", "", "| variant | nodes | build s | " + " | ".join(
            f"p50 ms `{lv}` (ratio)" for lv in LEVELS) + " |", "|---|---|---|" + "---|" * len(LEVELS)]
        lat = r["latency"]
        for v, b in r["builds"].items():
            cells = [f"{lat[f'{v}/{lv}']['p50_ms']:.2f} ({lat[f'original/{lv}']['p50_ms'] / lat[f'{v}/{lv}']['p50_ms']:.2f}x)"
                     for lv in LEVELS]
            lines.append(f"| {v} | {b['nodes']} | {b['build_s']:.2f} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--models", nargs="+", default=["sample:resnet-fashion", "sample:resnet50"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--budget", type=float, default=1.0)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="sample only, 2 rounds, short budget")
    a = p.parse_args()
    if a.quick:
        a.models, a.rounds, a.budget = ["sample:resnet-fashion"], 2, 0.3
    results = run(a.models, a.rounds, a.budget, a.batch, a.threads)
    write_json("passes_fusion", {"rounds": a.rounds, "budget_s": a.budget, "batch": a.batch,
                                 "threads": a.threads, "results": results})
    md = report(results, a.rounds, a.budget, a.batch, a.threads)
    (__import__("pathlib").Path(__file__).parent / "results" / "passes_fusion.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
