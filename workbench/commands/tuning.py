"""``workbench sensitivity`` (which layers lose the accuracy) and ``workbench search`` (the best
build within an accuracy budget)."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import Any

from ..errors import UsageError
from .common import print_json, progress

__all__ = ["register"]


def cmd_sensitivity(args: argparse.Namespace) -> int:
    from ..core.cache import BuildCache  # noqa: PLC0415
    from ..core.sensitivity import analyze, auto_mixed_precision  # noqa: PLC0415

    if args.samples < 1 or args.tensor_samples < 1:
        raise UsageError("--samples and --tensor-samples must be >= 1")
    cache = BuildCache(enabled=not args.no_cache)
    r = analyze(args.model, args.passes, device=args.device, calibration=args.calib, samples=args.samples,
                tensor_samples=args.tensor_samples, cache=cache, tensors=not args.no_tensors,
                op_types=[t for t in (args.op_types or "").split("+") if t] or None,
                progress=progress(args))
    mp = None
    if args.budget is not None:
        mp = auto_mixed_precision(args.model, args.passes, args.budget, ranking=r.ranking(), data=args.data,
                                  samples=args.eval_samples, device=args.device, calibration=args.calib,
                                  cache=cache, progress=progress(args))
    if args.json:
        print_json({**r.to_dict(), "mixed_precision": mp.to_dict() if mp else None})
        return 0
    print(f"{r.model} {r.recipe} on {r.device}: logits SQNR {r.output_sqnr_db:.1f} dB, top-1 agreement "
          f"{r.top1_agreement:.2%} ({r.samples} calibration samples)")
    print("layers, most sensitive first (share of the output error removed by keeping it in float):")
    for i, s in enumerate(r.layers[:args.top], 1):
        print(f"  {i:>2}. {s.node:<28} {s.op_type:<8} {s.score:7.1%}   SQNR without it {s.output_sqnr_db:5.1f} dB")
    if r.tensors:
        print("worst tensors (float activations against the float model):")
        for t in r.tensors[:min(args.top, 10)]:
            print(f"  {t.tensor:<28} SQNR {t.sqnr_db:5.1f} dB  cosine {t.cosine:.5f}  max |err| {t.max_abs:.4g}")
    if mp:
        state = "within" if mp.within_budget else "NOT within"
        print(f"mixed precision: {len(mp.excluded)} layer(s) in float -> top-1 {mp.top1:.2%} vs "
              f"{mp.baseline_top1:.2%} ({(mp.baseline_top1 - mp.top1) * 100:+.2f} pt drop, {state} "
              f"{mp.budget_points} pt, {mp.samples} images): {mp.recipe}")
    return 0


def resolve_metric(ref: str) -> Callable[..., Any]:
    """``pkg.module:function`` (or ``pkg.module.function``) imported and looked up."""
    mod_name, sep, attr = ref.partition(":")
    if not sep:
        mod_name, _, attr = ref.rpartition(".")
    if not mod_name or not attr:
        raise UsageError(f"--metric {ref!r} is not MODULE:FUNCTION", "e.g. --metric mypkg.metrics:miou")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise UsageError(f"--metric: cannot import {mod_name!r}: {e}",
                         "put the module on PYTHONPATH (or install its package)") from e
    fn: Any = mod
    for part in attr.split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            raise UsageError(f"--metric: {mod_name!r} has no {attr!r}", "check the function's name")
    if not callable(fn):
        raise UsageError(f"--metric {ref!r} is a {type(fn).__name__}, not a function",
                         "give metric(outputs: dict[str, np.ndarray], labels) -> float")
    return fn  # type: ignore[no-any-return]


def cmd_search(args: argparse.Namespace) -> int:
    from ..core.search import search  # noqa: PLC0415

    metric = resolve_metric(args.metric) if args.metric else None
    r = search(args.model, device=args.device, budget_points=args.budget, objective=args.objective,
               trials=args.trials, seed=args.seed, executor=args.executor, address=args.address,
               workers=args.workers, data=args.data, calib=args.calib, metric=metric,
               metric_name=args.metric_name, screen_samples=args.screen_samples,
               final_samples=args.final_samples, max_exclude=args.max_exclude, threads=args.threads,
               progress=progress(args))
    if args.json:
        print_json(r.to_dict())
        return 0
    unit = r.drop_label  # "pt top-1", "pt top-1 agreement" or "drop in <metric>"
    fmt = (lambda v: f"{v:+.4g} ({unit})") if r.score == "metric" else (lambda v: f"{v:+.2f} {unit}")
    print(f"{r.model} on {r.device}: {len(r.trials)} trials, objective {r.objective} (ratio to the "
          f"baseline, lower is better), budget {r.budget_points:g} ({unit}), seed {r.seed}, "
          f"{r.conditions['executor']['executor']} executor, {r.wall_s:.0f} s")
    for note in r.notes:
        print(f"  note: {note}")
    print(f"Pareto frontier (screened {r.score_name} drop vs cost):")
    for n in r.pareto:
        t = r.trial(n)
        print(f"  #{n:<3} drop {fmt(t.drop_points)}  cost {t.cost:.3f}  {t.label}")
    b = r.best_trial
    if b is None:
        print("no build within the budget on the full evaluation set")
        return 0
    assert b.final is not None
    print(f"best within {r.budget_points:g} ({unit}): #{b.number} {b.label}")
    cost = b.final.get("cost", b.cost)
    how = " (finalists measured side by side)" if "cost" in b.final else ""
    print(f"  cost {cost:.3f} ({1 / cost:.2f}x){how}, {r.score_name} drop {fmt(b.final['drop_points'])} on "
          f"{b.final['samples']} samples")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sensitivity", help="per-layer and per-tensor sensitivity of a quantized build")
    p.add_argument("model")
    p.add_argument("--passes", required=True, help="a recipe with int8 or fp16, e.g. int8:calibration=entropy")
    p.add_argument("--device", default="cpu")
    p.add_argument("--calib", help="calibration data (default: the sample's own)")
    p.add_argument("--samples", type=int, default=256, help="calibration samples scoring each layer")
    p.add_argument("--tensor-samples", type=int, default=32, help="samples for the per-tensor errors")
    p.add_argument("--no-tensors", action="store_true", help="skip the per-tensor errors")
    p.add_argument("--op-types", help="rank only these op types, e.g. Conv+Gemm (default: every layer "
                                      "the pass quantized or converted)")
    p.add_argument("--budget", type=float, help="also find the fewest layers to keep in float so the top-1 "
                                                "drop is within this many points (automatic mixed precision)")
    p.add_argument("--data", help="labeled data for --budget (default: the sample's test set)")
    p.add_argument("--eval-samples", type=int, default=2000, help="labeled images for --budget")
    p.add_argument("--top", type=int, default=10, help="layers to print")
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=cmd_sensitivity)

    s = sub.add_parser("search", help="search recipes for the best build within an accuracy budget")
    s.add_argument("model")
    s.add_argument("--device", default="cpu")
    s.add_argument("--budget", type=float, required=True,
                   help="allowed drop: top-1 points (labeled data), the metric's own units (--metric), "
                        "or points of top-1 agreement with the baseline (unlabeled data)")
    s.add_argument("--objective", default="latency", choices=("latency", "throughput", "size"))
    s.add_argument("--trials", type=int, default=24)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--executor", default="local", choices=("local", "ray"))
    s.add_argument("--address", help="Ray cluster address (auto, ray://HOST:10001); default: a local instance")
    s.add_argument("--workers", type=int, help="parallel trials (default: 2 locally, the cluster's CPUs on Ray)")
    s.add_argument("--data", help="evaluation data: .npz, image folder or sample:NAME (default: the "
                                  "sample's test set); without labels the budget is on top-1 agreement")
    s.add_argument("--calib", help="calibration data, or 'random' for a latency-only look (default: the "
                                   "sample's own, else the first 512 samples of --data)")
    s.add_argument("--metric", help="MODULE:FUNCTION, metric(outputs, labels) -> float, higher is better; "
                                    "the budget is then in its units")
    s.add_argument("--metric-name", help="the metric's name in the output (default: the function's)")
    s.add_argument("--screen-samples", type=int, default=2000, help="samples scoring each trial")
    s.add_argument("--final-samples", type=int, help="samples for the finalists (default: all)")
    s.add_argument("--max-exclude", type=int, default=3, help="most sensitive int8 layers the search may "
                                                              "keep in float")
    s.add_argument("--threads", type=int, help="threads for the latency measurements")
    s.add_argument("--json", action="store_true")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(fn=cmd_search)

