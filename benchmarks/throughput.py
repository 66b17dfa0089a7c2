"""Throughput curves on the sample: batch 1, 8, 32 x concurrency 1, 2, 4, and the knee.

Four sweeps, each in one process with its configurations interleaved (``workbench.core.evaluation.sweep``):

1. the ``int8`` build against FP32 on ONNX Runtime CPU, both measured at every point in the same
   round (the headline: items/s, p50/p99, speed-up with its spread over rounds, the knee);
2. the ``int8`` build alone (the wall time of a sweep without a baseline);
3. ONNX Runtime ``per-request`` (one session per request, threads split) against ``shared`` (one
   session, every thread) on FP32: which mode the sweep uses by default;
4. OpenVINO streams = concurrency against one stream (``shared``) on FP32.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from common import machine_line, write_json
from workbench.core.build import optimize
from workbench.core.engines.registry import list_engines
from workbench.core.evaluation.sweep import SweepResult, sweep

SAMPLE = "sample:resnet-fashion"
CMD = "python benchmarks/throughput.py"


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _run(label: str, **kw) -> tuple[SweepResult, dict]:
    before = _load()
    t0 = time.perf_counter()
    r = sweep(**kw)
    wall = time.perf_counter() - t0
    print(f"{label}: {wall:.1f} s (setup {r.setup_s:.1f} s), load {before} -> {_load()}", flush=True)
    return r, {"label": label, "wall_s": round(wall, 2), "load_before": before, "load_after": _load(),
               "result": r.to_dict()}


def _spread(r: SweepResult) -> dict:
    """How far the per-round speed-ups stray from their median, over every point."""
    rel = [max(p.speedup / p.speedup_range[0], p.speedup_range[1] / p.speedup) - 1 for p in r.points
           if p.speedup and p.speedup_range]
    widths = [p.speedup_range[1] - p.speedup_range[0] for p in r.points if p.speedup_range]
    return {"median_rel": statistics.median(rel), "max_rel": max(rel),
            "median_width": statistics.median(widths), "max_width": max(widths)}


def run(rounds: int, duration: float, bounds: list[float], batches: list[int], conc: list[int]) -> dict:
    int8 = optimize(SAMPLE, "int8").model
    common = {"batches": batches, "concurrency": conc, "rounds": rounds, "duration_s": duration,
              "latency_bound_ms": bounds[0]}
    out = {"rounds": rounds, "duration_s": duration, "bound_ms": bounds[0], "bounds_ms": bounds, "batches": batches,
           "concurrency": conc, "int8_recipe": "int8 (sample calibration set)", "runs": {}}
    r, out["runs"]["int8_vs_fp32"] = _run("int8 vs fp32 (ORT CPU)", model=int8, baseline=SAMPLE, **common)
    out["runs"]["int8_vs_fp32"]["spread"] = _spread(r)
    _, out["runs"]["int8_alone"] = _run("int8 alone (ORT CPU)", model=int8, **common)
    r, out["runs"]["per_request_vs_shared"] = _run(
        "per-request vs shared (ORT CPU, fp32)", model=SAMPLE, baseline=SAMPLE, mode="per-request",
        baseline_mode="shared", **common)
    out["runs"]["per_request_vs_shared"]["spread"] = _spread(r)
    if any(e.name == "openvino" and e.available for e in list_engines()):
        r, out["runs"]["openvino_streams"] = _run(
            "OpenVINO streams=c vs 1 stream (fp32)", model=SAMPLE, device="openvino", baseline=SAMPLE,
            mode="streams", baseline_mode="shared", **common)
        out["runs"]["openvino_streams"]["spread"] = _spread(r)
    return out


def _table(res: dict, build: str, base: str) -> list[str]:
    lines = [f"| batch | concurrency | {build} items/s | {base} items/s | speed-up [round range] | "
             f"{build} p50 / p99 ms | {base} p50 / p99 ms | {build} config |", "|---|---|---|---|---|---|---|---|"]
    for p, q in zip(res["points"], res["baseline_points"]):
        cfg = ", ".join(f"{k} {v}" for k, v in p["config"].items())
        lo, hi = p["speedup_range"]
        lines.append(f"| {p['batch']} | {p['concurrency']} | {p['throughput']:.0f} | {q['throughput']:.0f} | "
                     f"{p['speedup']:.2f}x [{lo:.2f}-{hi:.2f}] | {p['p50_ms']:.1f} / {p['p99_ms']:.1f} | "
                     f"{q['p50_ms']:.1f} / {q['p99_ms']:.1f} | {cfg} |")
    return lines


def _knee(points: list[dict], bound: float) -> str:
    fit = [p for p in points if p["p99_ms"] <= bound]
    if not fit:
        low = min(points, key=lambda p: p["p99_ms"])
        return f"none (lowest p99 {low['p99_ms']:.1f} ms at batch {low['batch']} x concurrency {low['concurrency']})"
    k = max(fit, key=lambda p: (p["throughput"], -p["p99_ms"]))
    return (f"batch {k['batch']} x concurrency {k['concurrency']}, {k['throughput']:.0f} items/s "
            f"(p99 {k['p99_ms']:.1f} ms)")


def _by_concurrency(res: dict) -> str:
    """Median speed-up over the batches, per concurrency."""
    by: dict[int, list[float]] = {}
    for p in res["points"]:
        by.setdefault(p["concurrency"], []).append(p["speedup"])
    return ", ".join(f"{statistics.median(v):.2f}x at concurrency {c}" for c, v in sorted(by.items()))


def _spread_line(s: dict) -> str:
    return (f"per-round speed-ups lie within {100 * s['median_rel']:.0f}% of their median at the median point "
            f"(worst point {100 * s['max_rel']:.0f}%; range width median {s['median_width']:.2f}, "
            f"max {s['max_width']:.2f})")


def report(out: dict) -> str:
    runs = out["runs"]
    head = runs["int8_vs_fp32"]
    r = head["result"]
    lines = ["## throughput", "", f"Command: `{CMD}` (`--rounds {out['rounds']} --duration {out['duration_s']:g} "
             f"--bounds {','.join(f'{b:g}' for b in out['bounds_ms'])}`).", "", f"Machine: {machine_line()}.", "",
             f"Method: {r['method']}. Each sweep in one process; load average (1, 5, 15 min) before and "
             "after each sweep is given, as three agents shared this 2-core machine.", "",
             f"### `int8` build against FP32, ONNX Runtime CPU ({r['mode']} mode, {r['threads']} threads)", ""]
    lines += _table(r, "int8", "fp32")
    alone = runs["int8_alone"]
    lines += [""] + [f"Knee under p99 <= {b:g} ms: int8 {_knee(r['points'], b)}; fp32 "
                     f"{_knee(r['baseline_points'], b)}." for b in out["bounds_ms"]]
    lines += ["", f"Median speed-up over batches: {_by_concurrency(r)}.", "",
              f"Wall time of the 3x3 sweep: {head['wall_s']:.1f} s with the FP32 baseline interleaved (setup "
              f"{r['setup_s']:.1f} s; load {head['load_before']} -> {head['load_after']}), {alone['wall_s']:.1f} s "
              f"for the int8 build alone (setup {alone['result']['setup_s']:.1f} s; load {alone['load_before']} -> "
              f"{alone['load_after']}); target < 60 s.", "",
              f"Spread: {_spread_line(head['spread'])}.", ""]
    pr = runs["per_request_vs_shared"]
    lines += ["### ONNX Runtime: per-request (one session per request) against shared (one session)", ""]
    lines += _table(pr["result"], "per-request", "shared")
    lines += ["", f"Median over batches: {_by_concurrency(pr['result'])} (at concurrency 1 both are one "
              "session with every thread: that row is the noise floor).", "",
              f"Spread: {_spread_line(pr['spread'])}. Wall {pr['wall_s']:.1f} s, load {pr['load_before']} -> "
              f"{pr['load_after']}.", ""]
    if "openvino_streams" in runs:
        ov = runs["openvino_streams"]
        lines += ["### OpenVINO: streams = concurrency against one stream", ""]
        lines += _table(ov["result"], "streams", "1 stream")
        lines += ["", f"Median over batches: {_by_concurrency(ov['result'])}.", "",
                  f"OpenVINO caps streams at its thread count ({ov['result']['threads']}): `streams` is "
                  "what the compiled model reports, `streams_asked` what the sweep asked for. "
                  f"Spread: {_spread_line(ov['spread'])}. Wall {ov['wall_s']:.1f} s, load {ov['load_before']} "
                  f"-> {ov['load_after']}.", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=0.5, help="seconds per point and round")
    p.add_argument("--bounds", default="10,50,200", help="p99 bounds for the knee, ms (the first is the sweep's)")
    p.add_argument("--batches", default="1,8,32")
    p.add_argument("--concurrency", default="1,2,4")
    a = p.parse_args()
    out = run(a.rounds, a.duration, [float(x) for x in a.bounds.split(",")], [int(x) for x in a.batches.split(",")],
              [int(x) for x in a.concurrency.split(",")])
    write_json("throughput", out)
    md = report(out)
    from common import HERE  # noqa: PLC0415

    (HERE / "results" / "throughput.md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    sys.exit(main())
