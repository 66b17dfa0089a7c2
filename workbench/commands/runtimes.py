"""``workbench bench MODEL --device cpu,openvino``: one model on several runtimes, side by side."""

from __future__ import annotations

import argparse
import sys

from ..errors import UsageError
from .common import print_json, progress, shapes_values

__all__ = ["cmd_bench_runtimes"]


def cmd_bench_runtimes(args: argparse.Namespace) -> int:
    from ..core.bundle import is_bundle, load_bundle  # noqa: PLC0415
    from ..core.evaluation.compare import compare_runtimes, cpu_targets, parse_targets  # noqa: PLC0415

    if args.opt_level is not None:
        raise UsageError("--opt-level is ONNX Runtime's alone", "leave it out when comparing runtimes")
    precisions = [p.strip() for p in args.precision.split(",")] if args.precision else None
    model = args.model
    if is_bundle(model):  # the bundle's model.onnx, on each runtime
        b = load_bundle(model, warn=False)
        for w in b.warnings:
            print(f"warning: {w}", file=sys.stderr)
        model = b.model
    device = args.device or "all-cpu"
    targets = (cpu_targets(precisions, args.hint) if device == "all-cpu"
               else parse_targets(device, precisions, args.hint))
    shapes, values = shapes_values(args)
    budget = args.time_budget if args.time_budget else 0.3
    c = compare_runtimes(model, targets, batch=args.batch or 1, threads=args.threads, rounds=args.rounds,
                         budget_s=budget, warmup=min(args.warmup, 3), shapes=shapes, values=values,
                         progress=progress(args))
    if args.json:
        print_json(c.to_dict())
        return 0
    print(f"{c.model} on {len(c.rows)} runtimes ({c.machine['cpu']}; {', '.join(c.machine['isa'])})")
    print("  inputs: " + ", ".join(f"{k} {v['shape']} {v['dtype']}" for k, v in c.inputs.items()))
    print(f"  {c.method}")
    width = max(len(r.label) for r in c.rows)
    print(f"  {'runtime':<{width}}  {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'items/s':>9}  "
          f"{'speed-up [range]':<20} {'hint':<9} max|err| vs first")
    for r in c.rows:
        lat = r.latency
        prec = str(r.settings.get("precision") or "-")
        lo, hi = r.speedup_range
        print(f"  {r.label:<{width}}  {lat.p50_ms:8.3f} {lat.p90_ms:8.3f} {lat.p99_ms:8.3f} "
              f"{lat.throughput:9.1f}  {r.speedup:5.2f}x [{lo:.2f}-{hi:.2f}]{'':<5} {prec:<9} {r.max_abs:.3g}")
    f = c.fastest
    print(f"fastest: {f.label}, {f.speedup:.2f}x {c.rows[0].label}")
    return 0
