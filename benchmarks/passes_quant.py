"""Quantization passes: speed against FP32 and ONNX Runtime's own defaults, accuracy on the sample.

Part 1, ``sample:resnet50`` (random weights: latency only), batch 1, 2 threads, ORT_ENABLE_ALL:
FP32; ``quantize_static`` with its defaults (QDQ, S8S8, per-tensor, MinMax), on the model as
given and after ``quant_pre_process``; the workbench ``int8`` with its device-aware defaults (and
with S8 activations, to show why they are not the default on x86); ``quantize_dynamic`` with its
defaults. All configurations live in one process and are measured interleaved, in a new shuffled
order each round; speedups are the median over rounds of the per-round ratio (paired, which
cancels most of the machine's load swings).

Part 2, ``sample:resnet-fashion``: top-1 on the 10,000 test images and latency at batch 1 and 8
for FP32, ``int8`` with each calibration method, ``int8`` with the TensorRT scheme (accuracy of
its QDQ graph run by ONNX Runtime on CPU), ``int8-dynamic`` and ``fp16``.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

import onnx

from common import interleaved, machine_line, top1, write_json
from workbench import load_dataset, load_model, random_dataset
from workbench.core.engines.ort_cpu import OrtCpuOptions, OrtCpuRunner
from workbench.core.passes import PassContext, Recipe
from workbench.core.shapes import random_feeds, resolve_inputs, tensor_specs

HERE = Path(__file__).resolve().parent
HAND = "quantize_static hand-tuned (QDQ U8S8 per-channel + pre_process)"  # the best hand-tuned ORT setting


class _Reader:
    """CalibrationDataReader over a Dataset, for ONNX Runtime's own quantize_static."""

    def __init__(self, data, n: int, batch: int) -> None:
        self._it = iter([f for f, _ in data.batches(batch, n)])

    def get_next(self):
        return next(self._it, None)


def ort_static_defaults(proto: onnx.ModelProto, data, n: int, preprocess: bool, **kwargs) -> onnx.ModelProto:
    """``quantize_static(model, out, reader)`` with every other argument left at its default
    (or set by ``kwargs``: the hand-tuned variant)."""
    from onnxruntime.quantization import quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as d:
        src, pre, out = Path(d) / "m.onnx", Path(d) / "pre.onnx", Path(d) / "q.onnx"
        onnx.save(proto, str(src))
        if preprocess:
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            src = pre
        quantize_static(str(src), str(out), _Reader(data, n, 16), **kwargs)
        return onnx.load(str(out))


def ort_dynamic_defaults(proto: onnx.ModelProto) -> onnx.ModelProto:
    from onnxruntime.quantization import quantize_dynamic

    with tempfile.TemporaryDirectory() as d:
        src, out = Path(d) / "m.onnx", Path(d) / "q.onnx"
        onnx.save(proto, str(src))
        quantize_dynamic(str(src), str(out))
        return onnx.load(str(out))


def apply(recipe: str, proto: onnx.ModelProto, calib, device: str = "cpu"):
    p = Recipe.parse(recipe).instantiate()[0]
    res = p(proto, PassContext(device=device, calibration=calib))
    return res.model, res.report


def measure(protos: dict[str, onnx.ModelProto], batches: list[int], threads: int, rounds: int,
            budget: float, base: str) -> dict:
    runners, configs, batch_of = [], {}, {}
    ins, _ = tensor_specs(protos[base].graph)
    for b in batches:
        feeds = random_feeds(resolve_inputs(ins, batch=b), seed=1)
        for name, proto in protos.items():
            r = OrtCpuRunner(load_model(proto, check=False), OrtCpuOptions(threads=threads))
            r.activate()
            runners.append(r)
            key = f"{name}/b{b}"
            configs[key], batch_of[key] = r.prepare(feeds), b
    res = interleaved(configs, rounds=rounds, batch_of=batch_of, min_iterations=5, budget_s=budget)
    for r in runners:
        r.deactivate()
    for key, c in res.items():
        name, b = key.rsplit("/", 1)
        ref = res[f"{base}/{b}"]["round_p50s_ms"]
        ratios = [x / y for x, y in zip(ref, c["round_p50s_ms"])]
        c["speedup_vs_" + base] = statistics.median(ratios)
        c["speedup_round_range"] = [min(ratios), max(ratios)]
    return res


def ort_optimized_ops(proto: onnx.ModelProto) -> dict[str, int]:
    """Op histogram of the graph ONNX Runtime's CPU engine runs (after ``ORT_ENABLE_ALL``)."""
    from collections import Counter

    with tempfile.TemporaryDirectory() as d:
        path = str(Path(d) / "opt.onnx")
        r = OrtCpuRunner(load_model(proto, check=False), OrtCpuOptions(threads=1, optimized_model_path=path))
        r.activate()
        r.deactivate()
        return dict(sorted(Counter(n.op_type for n in onnx.load(path).graph.node).items()))


def part_resnet50(rounds: int, budget: float, calib_n: int) -> dict:
    from onnxruntime.quantization import QuantType
    model = load_model("sample:resnet50")
    calib = random_dataset(model, calib_n)
    protos, builds = {"fp32": model.proto}, {}
    steps = {
        "quantize_static defaults": lambda: ort_static_defaults(model.proto, calib, calib_n, False),
        "quantize_static defaults + pre_process": lambda: ort_static_defaults(model.proto, calib, calib_n, True),
        # The "QDQ U8S8 per-channel" column: the best hand-tuned setting on AVX2.
        HAND: lambda: ort_static_defaults(
            model.proto, calib, calib_n, True, activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8, per_channel=True),
        "int8 (auto)": lambda: apply(f"int8:samples={calib_n}", model.proto, calib)[0],
        "int8 activation_type=s8": lambda: apply(f"int8:samples={calib_n}:activation_type=s8",
                                                 model.proto, calib)[0],
        "quantize_dynamic defaults": lambda: ort_dynamic_defaults(model.proto),
    }
    for name, fn in steps.items():
        t0 = time.perf_counter()
        protos[name] = fn()
        builds[name] = round(time.perf_counter() - t0, 1)
        print(f"  built {name} in {builds[name]} s", flush=True)
    print(f"sample:resnet50: {len(protos)} configurations, {rounds} rounds", flush=True)
    lat = measure(protos, [1], 2, rounds, budget, "fp32")
    # The two have the same graph after ONNX Runtime's optimization (53 QLinearConv, 16 QLinearAdd,
    # ...): a paired A/B with many short alternations says whether they differ at all.
    ab = measure({HAND: protos[HAND], "int8 (auto)": protos["int8 (auto)"]}, [1], 2, 4 * rounds,
                 max(0.25, budget / 4), HAND)
    ops = {name: ort_optimized_ops(protos[name]) for name in (HAND, "int8 (auto)")}
    return {"builds_s": builds, "calibration_samples": calib_n, "latency": lat, "ab_auto_vs_hand": ab,
            "ort_optimized_ops": ops, "rounds": rounds, "budget_s": budget}


FULL_SET = ("fp32", "int8 minmax", "int8 entropy", "int8 percentile")  # the rows claims rest on


def part_fashion(rounds: int, budget: float, limit: int | None, samples: int,
                 limit_other: int | None = None) -> dict:
    model = load_model("sample:resnet-fashion")
    calib = load_dataset("sample:resnet-fashion:calib", model)
    test = load_dataset("sample:resnet-fashion", model)
    recipes = {
        "int8 minmax": ("int8:calibration=minmax", "cpu"),
        "int8 entropy": ("int8:calibration=entropy", "cpu"),
        "int8 percentile": ("int8:calibration=percentile", "cpu"),
        "int8 minmax reduce_range=false": ("int8:reduce_range=false", "cpu"),
        "int8 tensorrt scheme": ("int8", "tensorrt"),
        "int8-dynamic": ("int8-dynamic", "cpu"),
        "fp16": ("fp16", "cpu"),
    }
    protos, builds, reports = {"fp32": model.proto}, {}, {}
    for name, (recipe, device) in recipes.items():
        if recipe.split(":")[0] == "int8":
            recipe += f":samples={samples}"
        t0 = time.perf_counter()
        protos[name], rep = apply(recipe, model.proto, calib, device)
        builds[name] = round(time.perf_counter() - t0, 1)
        reports[name] = {"recipe": recipe, "device": device, "notes": rep.notes,
                         "quantized": len(rep.quantized), "converted": len(rep.converted),
                         "excluded": len(rep.excluded)}
        print(f"  built {name} in {builds[name]} s", flush=True)
    protos["quantize_static defaults + pre_process"] = ort_static_defaults(model.proto, calib, samples, True)
    acc = {}
    fp32_at: dict[int, float] = {}  # FP32 top-1 on the same first-N images, for every row's delta
    for name, proto in protos.items():
        n = limit if name in FULL_SET or limit_other is None else min(limit_other, limit or 10**9)
        t0 = time.perf_counter()
        t1, n_done = top1(proto, test, limit=n, label=name)
        acc[name] = {"top1": t1, "samples": n_done, "seconds": round(time.perf_counter() - t0, 1)}
        print(f"  {name}: top-1 {t1:.4f} on {n_done}", flush=True)
        if name == "fp32":
            fp32_at[n_done] = t1
        elif n_done not in fp32_at:
            fp32_at[n_done] = top1(model.proto, test, limit=n_done, label="fp32")[0]
        acc[name]["fp32_top1_same_images"] = fp32_at[n_done]
    lat_protos = {k: v for k, v in protos.items() if k not in ("int8 tensorrt scheme",
                                                               "int8 minmax reduce_range=false")}
    print(f"sample:resnet-fashion latency: {len(lat_protos) * 2} configurations, {rounds} rounds", flush=True)
    lat = measure(lat_protos, [1, 8], 2, rounds, budget, "fp32")
    return {"builds_s": builds, "reports": reports, "accuracy": acc, "latency": lat,
            "calibration_samples": samples}


def report(r50: dict, fm: dict, a) -> str:
    lines = [
        "## Quantization passes (`int8`, `int8-dynamic`, `fp16`) on ONNX Runtime CPU",
        "",
        f"Machine: {machine_line()}.",
        "",
        f"Method: every configuration of a table lives in one process; each of {a.rounds} rounds "
        f"({r50.get('rounds', a.rounds)} of {r50.get('budget_s', a.budget):g} s for ResNet-50) "
        f"measures every configuration once, in a new shuffled order (1 warm-up run, then runs until "
        f"{a.budget:g} s and at least 5). p50 = median of the round p50s (spread: lowest-highest "
        "round p50). Speedup = median over rounds of (FP32 p50 / p50) in the same round, with its "
        "range. 2 intra-op threads, `ORT_ENABLE_ALL`, random inputs for latency.",
        "",
        "### `sample:resnet50` (synthetic, random weights: latency only), batch 1, 2 threads",
        "",
        f"Calibration: {r50['calibration_samples']} random inputs for every static variant.",
        "",
        "| variant | p50 ms | spread ms | speedup vs FP32 (range) | vs quantize_static defaults | build s |",
        "|---|---|---|---|---|---|",
    ]
    lat = r50["latency"]
    qs = lat["quantize_static defaults/b1"]["round_p50s_ms"]
    for key, c in lat.items():
        name = key.rsplit("/", 1)[0]
        vs_qs = statistics.median([x / y for x, y in zip(qs, c["round_p50s_ms"])])
        lines.append(f"| {name} | {c['p50_ms']:.1f} | {c['spread_ms'][0]:.1f}-{c['spread_ms'][1]:.1f} | "
                     f"{c['speedup_vs_fp32']:.2f}x ({c['speedup_round_range'][0]:.2f}-"
                     f"{c['speedup_round_range'][1]:.2f}) | {vs_qs:.2f}x | "
                     f"{r50['builds_s'].get(name, 0):.1f} |")
    ab = r50["ab_auto_vs_hand"]["int8 (auto)/b1"]
    n_ab = len(ab["round_p50s_ms"])
    ops = r50.get("ort_optimized_ops", {})
    same = bool(ops) and ops.get(HAND) == ops.get("int8 (auto)")
    hist = ", ".join(f"{n} {op}" for op, n in ops.get("int8 (auto)", {}).items() if not op.startswith("Dequant"))
    lines += ["", f"Paired A/B, `int8` (auto) against the hand-tuned `quantize_static` alone, {n_ab} "
              f"alternating rounds: `int8` is {ab['speedup_vs_' + HAND]:.3f}x "
              f"the hand-tuned speed (per-round range {ab['speedup_round_range'][0]:.2f}-"
              f"{ab['speedup_round_range'][1]:.2f}; above 1 = `int8` faster). The graphs ONNX Runtime "
              f"runs after its own optimization (read back from `optimized_model_filepath`) are "
              + ("the same op for op" if same else "**not** the same") + f" (`int8` (auto): {hist}).", ""]
    fp32_acc = fm["accuracy"]["fp32"]
    lines += ["", f"### `sample:resnet-fashion` (trained; FP32 top-1 {fp32_acc['top1']:.4f} on the "
              f"{fp32_acc['samples']:,} test images)", "",
              f"Calibration: the first {fm['calibration_samples']} of the 2,000 calibration images. "
              "Top-1 on the first *images* test images of the row; the delta is against FP32 on "
              "the same images. The TensorRT-scheme "
              "model (symmetric S8S8, Q/DQ on weighted-op inputs) is run by ONNX Runtime on CPU here "
              "for its accuracy only; `reduce_range=false` shows what full 8-bit weights cost (the u8 x s8 "
              "products saturate in int16 on x86 CPUs without VNNI; VNNI and AMX accumulate in int32).",
              "",
              "| variant | images | top-1 | Δ vs FP32 (points) | p50 ms b1 | speedup b1 | p50 ms b8 | speedup b8 | build s |",
              "|---|---|---|---|---|---|---|---|---|"]
    flat = fm["latency"]
    for name, acc in fm["accuracy"].items():
        base = acc.get("fp32_top1_same_images", fm["accuracy"]["fp32"]["top1"])
        row = f"| {name} | {acc['samples']:,} | {acc['top1']:.4f} | {100 * (acc['top1'] - base):+.2f} |"
        for b in (1, 8):
            c = flat.get(f"{name}/b{b}")
            row += (f" {c['p50_ms']:.2f} | {c['speedup_vs_fp32']:.2f}x |" if c else " - | - |")
        row += f" {fm['builds_s'].get(name, 0):.1f} |"
        lines.append(row)
    lines += ["", "Pass notes (int8, minmax):", ""]
    lines += [f"- {n}" for n in fm["reports"]["int8 minmax"]["notes"]]
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--budget", type=float, default=2.0, help="seconds per configuration per round")
    p.add_argument("--samples", type=int, default=256, help="calibration samples (fashion)")
    p.add_argument("--calib-resnet50", type=int, default=32, help="random calibration inputs (resnet50)")
    p.add_argument("--rounds-resnet50", type=int, default=None, help="rounds for part 1 (default: --rounds)")
    p.add_argument("--budget-resnet50", type=float, default=None, help="seconds per round, part 1 (default: --budget)")
    p.add_argument("--limit", type=int, default=None, help="test images (default: all 10,000)")
    p.add_argument("--quick", action="store_true", help="2 rounds, short budgets, 2,000 test images")
    p.add_argument("--resnet50-only", action="store_true", help="only part 1 (no report written)")
    p.add_argument("--limit-other", type=int, default=None,
                   help="test images for the rows no claim rests on (default: as --limit)")
    a = p.parse_args()
    if a.quick:
        a.rounds, a.budget, a.limit, a.samples, a.calib_resnet50 = 2, 0.5, a.limit or 2000, 128, 8
    logging.disable(logging.WARNING)  # ONNX Runtime's quantizer warns through the root logger
    t0 = time.time()
    r50 = part_resnet50(a.rounds_resnet50 or a.rounds, a.budget_resnet50 or a.budget, a.calib_resnet50)
    if a.resnet50_only:
        write_json("passes_quant_resnet50", {"rounds": a.rounds, "budget_s": a.budget, "resnet50": r50})
        print(json.dumps({k: {kk: v[kk] for kk in ("p50_ms", "speedup_vs_fp32", "speedup_round_range")}
                          for k, v in r50["latency"].items()}, indent=1))
        return
    fm = part_fashion(a.rounds, a.budget, a.limit, a.samples, a.limit_other)
    payload = {"rounds": a.rounds, "budget_s": a.budget, "quick": a.quick, "resnet50": r50,
               "resnet_fashion": fm, "seconds": round(time.time() - t0, 1)}
    name = "passes_quant" + ("_quick" if a.quick else "")
    write_json(name, payload)
    (HERE / "results" / f"{name}.md").write_text(report(r50, fm, a))
    print((HERE / "results" / f"{name}.md").read_text())


if __name__ == "__main__":
    main()
