"""Pruning: accuracy, size and speed of prune-channels (with and without reconstruction),
prune-magnitude and prune-2:4 on the sample, and prune-channels' speedup on ResNet-50.

Accuracy is top-1 on the sample's 10,000 test images. Structured pruning (prune-channels) changes
shapes, so the cut model and the refit one run equally fast and are timed once per ratio; zeroed
weights (magnitude, 2:4) keep shapes and are timed to show that ONNX Runtime gains nothing from
them. All latency configurations of one model family are measured interleaved in one process.
ResNet-50 has random weights: its rows are latency only and say nothing about accuracy.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import interleaved, machine_line, top1, write_json
from workbench import load_dataset, load_model, summarize
from workbench.core.engines.ort_cpu import OrtCpuOptions, OrtCpuRunner
from workbench.core.passes import PassContext, get_pass
from workbench.core.shapes import random_feeds, resolve_inputs, tensor_specs

SAMPLE, R50 = "sample:resnet-fashion", "sample:resnet50"


def build(model, recipe: tuple[str, dict] | None, calib) -> tuple:
    if not recipe:
        return model.proto, 0.0, None
    t0 = time.perf_counter()
    # get_pass, not Recipe.parse: the CLI grammar splits "prune-2:4" at its colon
    res = get_pass(recipe[0])(**recipe[1])(model.proto, PassContext(calibration=calib))
    return res.model, time.perf_counter() - t0, res.report


def latency(protos: dict, batches: list[int], threads: int, rounds: int, budget: float) -> dict:
    first = load_model(next(iter(protos.values())))
    ins, _ = tensor_specs(first.proto.graph)
    runners, configs, batch_of = [], {}, {}
    for b in batches:
        feeds = random_feeds(resolve_inputs(ins, batch=b))
        for name, proto in protos.items():
            r = OrtCpuRunner(load_model(proto), OrtCpuOptions(threads=threads))
            r.activate()
            runners.append(r)
            configs[f"{name}/b{b}"] = r.prepare(feeds)
            batch_of[f"{name}/b{b}"] = b
    print(f"  latency: {len(configs)} configurations, {rounds} rounds")
    res = interleaved(configs, rounds=rounds, batch_of=batch_of, min_iterations=5, budget_s=budget)
    for r in runners:
        r.deactivate()
    return res


def run_sample(ratios: list[float], limit: int | None, rounds: int, budget: float, threads: int) -> dict:
    model = load_model(SAMPLE)
    calib = load_dataset(f"{SAMPLE}:calib", model)
    test = load_dataset(SAMPLE, model)  # loaded once for every row's top-1
    recipes: dict[str, tuple[str, dict] | None] = {"original": None}
    for r in ratios:
        recipes[f"channels {r:.0%} cut"] = ("prune-channels", {"ratio": r, "reconstruct": False})
        recipes[f"channels {r:.0%} refit"] = ("prune-channels", {"ratio": r, "reconstruct": True})
    if 0.3 in ratios:
        recipes["channels 30% refit multiple=8"] = ("prune-channels", {"ratio": 0.3, "multiple": 8})
    recipes["magnitude 50%"] = ("prune-magnitude", {"sparsity": 0.5})
    recipes["2:4"] = ("prune-2:4", {})
    rows, protos = {}, {}
    for name, recipe in recipes.items():
        proto, secs, report = build(model, recipe, calib)
        s = summarize(load_model(proto))
        t0 = time.perf_counter()
        acc = top1(proto, test, limit=limit, label=name)[0]
        rows[name] = {"recipe": list(recipe) if recipe else None, "build_s": round(secs, 2), "params": s.params, "flops": s.flops,
                      "top1": acc, "eval_s": round(time.perf_counter() - t0, 1),
                      "report": {"metrics": report.metrics, "pruned": report.pruned} if report else None}
        print(f"  {name}: top-1 {acc:.4f}, params {s.params}, build {secs:.1f} s")
        if not name.endswith(" cut"):  # the cut and refit models have the same shapes
            protos[name] = proto
    lat = latency(protos, [1, 8], threads, rounds, budget)
    return {"rows": rows, "latency": lat, "eval_images": limit or 10000}


def run_r50(ratios: list[float], rounds: int, budget: float, threads: int) -> dict:
    model = load_model(R50)
    protos, rows = {"original": model.proto}, {"original": {"params": summarize(model).params,
                                                             "flops": summarize(model).flops, "build_s": 0.0}}
    for r in ratios:
        for mult in (1, 8):
            name = f"channels {r:.0%}" + (" multiple=8" if mult > 1 else "")
            proto, secs, report = build(model, ("prune-channels", {"ratio": r, "multiple": mult}), None)
            s = summarize(load_model(proto))
            rows[name] = {"params": s.params, "flops": s.flops, "build_s": round(secs, 2),
                          "removed": report.metrics["removed_fraction"]}
            protos[name] = proto
    return {"rows": rows, "latency": latency(protos, [1], threads, rounds, budget), "rounds": rounds,
            "budget_s": budget}


def report(res: dict, a: argparse.Namespace) -> str:
    smp = res["sample"]
    rows, lat = smp["rows"], smp["latency"]
    base = rows["original"]
    lines = [
        "## Pruning: `prune-channels`, `prune-magnitude`, `prune-2:4`", "",
        f"Machine: {machine_line()}.", "",
        f"Sample `{SAMPLE}`: top-1 on {smp['eval_images']} test images. `prune-channels` defaults: "
        "scope=layer (the ratio of each prunable group), L1 x BN scale, first conv and last layer "
        "protected, residual-coupled groups left alone (so the ratio is of the 8 inner block "
        "channel groups, 1,200 channels); `refit` = reconstruction on the 2,000-image calibration "
        "set (1,000 images used, 16 positions each, ridge 1e-3). Latency: ONNX Runtime CPU, "
        f"{a.threads} threads, `ORT_ENABLE_ALL`, random inputs, {a.rounds} interleaved rounds of "
        f"~{a.budget:g} s per configuration; p50 = median of round p50s; speedup = original p50 / p50. "
        "Cut and refit models have identical shapes: one latency per ratio.", "",
        "| variant | params | FLOPs | top-1 | Δ top-1 | p50 b1 ms (spread) | speedup b1 | p50 b8 ms (spread) | speedup b8 | build s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        key = name.replace(" cut", " refit")
        l1, l8 = lat[f"{key}/b1"]["p50_ms"], lat[f"{key}/b8"]["p50_ms"]
        s1, s8 = lat[f"{key}/b1"]["spread_ms"], lat[f"{key}/b8"]["spread_ms"]
        b1, b8 = lat["original/b1"]["p50_ms"], lat["original/b8"]["p50_ms"]
        lines.append(
            f"| {name} | {r['params'] / 1e6:.2f} M | {r['flops'] / 1e6:.0f} M | {r['top1']:.4f} | "
            f"{(r['top1'] - base['top1']) * 100:+.2f} | {l1:.2f} ({s1[0]:.2f}-{s1[1]:.2f}) | {b1 / l1:.2f}x | "
            f"{l8:.2f} ({s8[0]:.1f}-{s8[1]:.1f}) | {b8 / l8:.2f}x | {r['build_s']:.1f} |")
    lines += ["", "`magnitude 50%` and `2:4` keep every shape and run the same dense kernels: their latency "
              "differences from the original are run-to-run noise (compare the spreads), not an effect. "
              "`multiple=8` keeps channel counts a multiple of 8 (the first stage keeps 32 of 40 instead "
              "of 28), which ONNX Runtime's AVX2 convolution kernels block by."]
    if "r50" in res:
        r50 = res["r50"]
        b1 = r50["latency"]["original/b1"]["p50_ms"]
        lines += ["", f"### `{R50}` (random weights: latency only), batch 1, {a.threads} threads", "",
                  "Channels removed from the 32 inner bottleneck groups (no calibration data, so no "
                  "refit); `multiple=8` rounds each kept count to a multiple of 8. "
                  f"{r50.get('rounds', '?')} interleaved rounds of ~{r50.get('budget_s', '?')} s per configuration.", "",
                  "| variant | params | FLOPs | p50 ms | spread ms | speedup | build s |", "|---|---|---|---|---|---|---|"]
        for name, r in r50["rows"].items():
            c = r50["latency"][f"{name}/b1"]
            lines.append(f"| {name} | {r['params'] / 1e6:.1f} M | {r['flops'] / 1e9:.2f} G | {c['p50_ms']:.1f} | "
                         f"{c['spread_ms'][0]:.1f}-{c['spread_ms'][1]:.1f} | {b1 / c['p50_ms']:.2f}x | "
                         f"{r['build_s']:.1f} |")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--ratios", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    p.add_argument("--limit", type=int, default=None, help="test images (default: all 10,000)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--budget", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-r50", action="store_true")
    p.add_argument("--quick", action="store_true", help="30%% and 50%% only, 1,000 test images, short timing")
    p.add_argument("--report-only", action="store_true", help="rewrite the .md from the last .json")
    a = p.parse_args()
    out = Path(__file__).parent / "results"
    if a.report_only:
        saved = json.loads((out / "passes_prune.json").read_text())
        for k, v in saved["args"].items():
            setattr(a, k, v)
        (out / "passes_prune.md").write_text(report(saved["results"], a))
        return
    if a.quick:
        a.ratios, a.limit, a.rounds, a.budget = [0.3, 0.5], 1000, 2, 0.3
    t0 = time.time()
    print(SAMPLE)
    res = {"sample": run_sample(a.ratios, a.limit, a.rounds, a.budget, a.threads)}
    if not a.no_r50:
        print(R50)
        res["r50"] = run_r50([0.3, 0.5], a.rounds + 2, a.budget, a.threads)
    write_json("passes_prune", {"args": vars(a), "seconds": round(time.time() - t0), "results": res})
    md = report(res, a)
    (out / "passes_prune.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
