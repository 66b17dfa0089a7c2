"""``workbench profile MODEL [--passes LIST | --baseline MODEL]``: where the time goes, per layer."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import UsageError
from .common import add_model_inputs, calib_data, print_json, progress, shapes_values

__all__ = ["register", "cmd_profile"]


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("profile", help="per-layer time profile (and a build's beside its baseline's)")
    s.add_argument("model", help="a .onnx path, sample:NAME or a bundle folder (profiled as exported)")
    s.add_argument("--passes", default=None, metavar="LIST",
                   help="build this recipe and profile it beside the model, e.g. int8")
    s.add_argument("--baseline", default=None, metavar="MODEL",
                   help="profile MODEL (e.g. a bundle) beside this baseline")
    s.add_argument("--device", default=None, help="cpu (default), openvino[:DEVICE], cuda[:N], tensorrt")
    s.add_argument("--calib", default=None, metavar="DATA", help="calibration data for --passes")
    s.add_argument("--preprocess", default=None, metavar="SPEC", help="preprocessing of --calib")
    s.add_argument("--batch", type=int, default=None, help="batch size (default 1)")
    s.add_argument("--threads", type=int, default=None, help="intra-op threads (default: cores)")
    s.add_argument("--runs", type=int, default=20, help="profiled runs (after the warm-up)")
    s.add_argument("--warmup", type=int, default=5)
    s.add_argument("--rounds", type=int, default=3, help="interleaved rounds for the speed-up")
    s.add_argument("--top", type=int, default=10, help="nodes to print")
    s.add_argument("--quiet", action="store_true")
    s.add_argument("--json", action="store_true")
    add_model_inputs(s)
    s.set_defaults(fn=cmd_profile)


def _target(model: str, device: str | None) -> tuple[Any, str, dict[str, Any]]:
    from .bundle import target  # noqa: PLC0415

    return target(model, device)


def cmd_profile(args: argparse.Namespace) -> int:
    from ..core.profiling.compare import profile_pair  # noqa: PLC0415
    from ..core.profiling.run import profile  # noqa: PLC0415

    if args.passes and args.baseline:
        raise UsageError("give --passes or --baseline, not both",
                         "--passes builds from MODEL; --baseline compares MODEL with another model")
    shapes, values = shapes_values(args)
    common = {"batch": args.batch or 1, "runs": args.runs, "warmup": args.warmup, "threads": args.threads,
              "shapes": shapes, "values": values, "progress": progress(args)}
    model, device, opts = _target(args.model, args.device)
    if not args.passes and not args.baseline:
        p = profile(model, device, **common, **opts)
        if args.json:
            print_json(p.to_dict())
        else:
            _print_profile(p, args.top)
        return 0
    if args.passes:
        from ..core.build import optimize  # noqa: PLC0415

        built = optimize(model, args.passes, device=device, calibration=calib_data(args), progress=progress(args))
        base, build = built.source, built.model
    else:
        base = _target(args.baseline, None)[0]
        build = model
        if opts:
            print("note: the bundle's engine options are not applied beside a baseline", file=sys.stderr)
    c = profile_pair(base, build, device, rounds=args.rounds, **common)
    if args.json:
        print_json(c.to_dict())
        return 0
    _print_comparison(c, args.top)
    return 0


def _ms(x: float) -> str:
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def _head(p: Any) -> list[str]:
    m = p.machine
    per_run = (f"; per run the nodes add up to {_ms(p.node_sum_ms)} ms ({p.explained_per_run:.0%})"
               if p.node_sum_ms == p.node_sum_ms else "")
    return [f"{p.model} on {p.engine} ({m.get('cpu')}; {', '.join(m.get('isa') or [])})",
            f"  {p.method}",
            f"  measured p50 {_ms(p.measured_ms)} ms; the node medians add up to {_ms(p.total_ms)} ms: the "
            f"profile explains {p.explained:.0%} of it{per_run}"] + _overhead(p)


def _overhead(p: Any) -> list[str]:
    if not p.profiled_run_ms == p.profiled_run_ms or p.measured_ms <= 0:
        return []
    extra = p.profiled_run_ms / p.measured_ms - 1
    return [f"  a profiled run took {_ms(p.profiled_run_ms)} ms ({extra:+.0%} on the unprofiled p50): the "
            "profiler's own cost is in the node times" + (" (a small model's nodes are mostly that)"
                                                          if extra > 0.3 else "")]


def _print_profile(p: Any, top: int) -> None:
    for line in _head(p):
        print(line)
    for n in p.notes:
        print(f"  note: {n}")
    print("  by op type:")
    for o in p.by_op_type()[:12]:
        print(f"    {o.op_type:<22} {_ms(o.ms):>8} ms {o.share:6.1%}  x{o.count}")
    print(f"  top {top} nodes:")
    print(f"    {'node':<40} {'op':<16} {'ms':>8} {'share':>6}  kernel / covers")
    total = p.total_ms or 1.0
    for n in p.top(top):
        cov = ", ".join(n.covers[:4]) + (f" +{len(n.covers) - 4}" if len(n.covers) > 4 else "")
        what = n.note or cov
        print(f"    {n.name[:40]:<40} {n.op_type[:16]:<16} {_ms(n.median_ms):>8} {n.median_ms / total:6.1%}  "
              f"{n.kernel}{' | ' if n.kernel and what else ''}{what}")
    if p.folded:
        print(f"  {len(p.folded)} model nodes ran nowhere (folded or removed at load): "
              + ", ".join(p.folded[:6]) + (" ..." if len(p.folded) > 6 else ""))


def _print_comparison(c: Any, top: int) -> None:
    a, b = c.baseline, c.build
    print(f"{b.model} beside {a.model}")
    lo, hi = c.speedup_range
    print(f"  speed-up {c.speedup:.2f}x [{lo:.2f}-{hi:.2f}] (p50, {c.rounds} interleaved rounds, unprofiled)")
    for line in _head(a)[1:] + [f"  build: {b.engine}"] + _head(b)[2:]:
        print(line)
    print(f"  by op type ({'ms':>6}: baseline -> build):")
    for o in c.by_op_type[:12]:
        print(f"    {o.op_type:<22} {_ms(o.baseline_ms):>8} -> {_ms(o.build_ms):>8}  ({o.delta_ms:+.3f})  "
              f"x{o.baseline_count} -> x{o.build_count}")
    for title, rows in (("faster", c.faster(top)), ("slower", c.slower(top))):
        print(f"  {title}:")
        for d in rows:
            ops = f"{d.baseline_ops or '-'} -> {d.build_ops or '-'}"
            print(f"    {d.label[:40]:<40} {_ms(d.baseline_ms):>8} -> {_ms(d.build_ms):>8} ms  "
                  f"({d.delta_ms:+.3f})  {d.kind:<8} {ops}")
    print(f"  where the build's time is now (top {min(top, 5)}):")
    for n in b.top(min(top, 5)):
        print(f"    {n.name[:40]:<40} {n.op_type:<16} {_ms(n.median_ms):>8} ms {n.median_ms / (b.total_ms or 1):6.1%}")
