"""``workbench bench MODEL --batch 1,8,32 --concurrency 1,2,4``: a throughput sweep and its knee."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import UsageError
from .common import print_json, progress, shapes_values

__all__ = ["cmd_bench_sweep", "knee_line"]


def _as_list(v: int | list[int] | None, default: list[int]) -> list[int]:
    return default if v is None else (list(v) if isinstance(v, list) else [v])


def knee_line(r: Any) -> str:
    """The knee under the sweep's bound, or the peak and how to set a bound."""
    bound = r.latency_bound_ms
    if bound is not None:
        k = r.knee()
        if k is None:
            low = min(r.points, key=lambda p: p.p99_ms)
            return (f"knee under p99 <= {bound:g} ms: none (the lowest p99 is {low.p99_ms:.2f} ms, "
                    f"batch {low.batch} x concurrency {low.concurrency})")
        return (f"knee under p99 <= {bound:g} ms: batch {k.batch} x concurrency {k.concurrency}, "
                f"{k.throughput:.1f} items/s (p99 {k.p99_ms:.2f} ms)")
    p = r.peak
    return (f"peak: batch {p.batch} x concurrency {p.concurrency}, {p.throughput:.1f} items/s (p99 "
            f"{p.p99_ms:.2f} ms); --latency-bound MS sets the knee")


def _baseline_model(source: str) -> Any:
    from ..core.bundle import is_bundle, load_bundle  # noqa: PLC0415

    return load_bundle(source, warn=False).model if is_bundle(source) else source


def cmd_bench_sweep(args: argparse.Namespace) -> int:
    from ..core.evaluation.sweep import sweep  # noqa: PLC0415
    from .bundle import target  # noqa: PLC0415

    if args.device and ("," in args.device or args.device == "all-cpu"):
        raise UsageError("a sweep runs on one device", "give one --device (sweep each runtime apart)")
    if args.precision or args.hint:
        raise UsageError("--precision and --hint compare runtimes; a sweep runs one",
                         "leave them out of a sweep (OpenVINO streams follow --concurrency)")
    model, device, opts = target(args.model, args.device)  # a bundle runs as exported
    if args.opt_level is not None:
        opts["optimization_level"] = args.opt_level
    bundle_threads = opts.pop("threads", None)  # the sweep splits threads per mode itself
    threads = args.threads if args.threads is not None else bundle_threads
    if args.mode in (None, "streams") and opts.get("streams") is not None:
        print(f"note: the bundle's streams {opts.pop('streams')} give way to streams = concurrency "
              "(--mode shared keeps them)", file=sys.stderr)
    shapes, values = shapes_values(args)
    r = sweep(model, device, baseline=_baseline_model(args.baseline) if args.baseline else None,
              batches=_as_list(args.batch, [1]), concurrency=_as_list(args.concurrency, [1]),
              duration_s=0.5 if args.duration is None else args.duration,
              rounds=3 if args.rounds is None else args.rounds, threads=threads,
              latency_bound_ms=args.latency_bound, mode=args.mode or "auto", shapes=shapes, values=values,
              progress=progress(args), **opts)
    if args.json:
        print_json(r.to_dict())
        return 0
    m = r.machine
    base = f", baseline {r.baseline}" + (f" ({r.baseline_mode})" if r.baseline_mode != r.mode else "")
    print(f"{r.model} on {r.engine}, mode {r.mode}{base if r.baseline else ''} "
          f"({m['cpu']}; {', '.join(m['isa']) or 'ISA not read'})")
    print("  inputs: " + ", ".join(f"{k} {v['shape']} {v['dtype']}" for k, v in r.inputs.items()))
    for d in r.declined:
        print(f"  declined {d}")
    print(f"  method: {r.method}")
    print(f"  {'batch':>5} {'conc':>4} {'items/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}"
          + ("  speed-up [range]" if r.baseline else ""))
    for p in r.points:
        line = (f"  {p.batch:5d} {p.concurrency:4d} {p.throughput:9.1f} {p.p50_ms:8.2f} {p.p90_ms:8.2f} "
                f"{p.p99_ms:8.2f}")
        if p.speedup is not None and p.speedup_range is not None:
            line += f"  {p.speedup:.2f}x [{p.speedup_range[0]:.2f}-{p.speedup_range[1]:.2f}]"
        print(line)
    print(knee_line(r))
    print(f"  measured in {r.elapsed_s:.1f} s ({r.setup_s:.1f} s setting up)")
    return 0
