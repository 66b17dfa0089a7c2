"""The ``workbench`` command line: the same verbs as the UI, for terminals and CI.

A user error prints one ``error: ...`` line on stderr and exits with status 2; anything else that
escapes is a bug and keeps its traceback (exit status 1).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from .commands.common import add_model_inputs, print_json, progress, shapes_values
from .errors import UsageError, WorkbenchError

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse, but bad flags end in one ``error:`` line rather than a usage dump."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(2)


def _fmt_count(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return f"{n:.0f}"


def cmd_samples(args: argparse.Namespace) -> int:
    from .core.samples import SAMPLES  # noqa: PLC0415

    rows = [{"name": f"sample:{s.name}", "description": s.description, "latency_only": s.latency_only,
             "labeled_data": s.test_data is not None} for s in SAMPLES.values()]
    if args.json:
        print_json(rows)
    else:
        for r in rows:
            print(f"{r['name']:<24} {r['description']}")
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    from .core.engines.registry import list_devices, list_engines  # noqa: PLC0415
    from .core.gpu import scan_gpus  # noqa: PLC0415
    from .core.machine import machine_info  # noqa: PLC0415

    engines = list_engines()
    devices = list_devices()
    if args.json:
        print_json({"engines": [e.to_dict() for e in engines], "devices": [d.to_dict() for d in devices],
                    "gpus": scan_gpus().to_dict(), "machine": machine_info()})
        return 0
    mi = machine_info()
    print(f"CPU: {mi['cpu']} ({mi['physical_cores']} cores; {', '.join(mi['isa']) or 'no SIMD flags read'})")
    print(f"GPU: {scan_gpus().reason}")
    for d in (d for d in devices[1:] if d.device.startswith("cuda")):
        print(f"  {d.device:<7} {d.name}, {(d.memory_bytes or 0) / 2**30:.0f} GiB, compute capability "
              f"{d.compute_capability}; engines: {', '.join(d.engines) or 'none available'}")
    intel = [d for d in devices[1:] if not d.device.startswith("cuda")]  # OpenVINO's GPUs and NPUs
    if intel:
        print("Intel GPU/NPU (OpenVINO):")
    for d in intel:
        print(f"  {d.device:<15} {d.name}; engines: {', '.join(d.engines)}")
    print("Engines:")
    for e in engines:
        mark = "yes" if e.available else "no "
        print(f"  {e.name:<13} {e.device:<5} {mark}  {e.reason}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .core.model import load_model  # noqa: PLC0415
    from .core.summary import summarize  # noqa: PLC0415

    shapes, _ = shapes_values(args)
    s = summarize(load_model(args.model), shapes=shapes or None, batch=args.batch)
    if args.json:
        print_json(s.to_dict(per_node=args.per_node))
        return 0
    print(f"{s.name}  ({s.size_bytes / 1e6:.2f} MB, {s.fingerprint[:19]})")
    if s.latency_only:
        print("  NOTE: random weights, latency only: its accuracy means nothing")
    print(f"  producer: {s.producer or '?'}   IR {s.ir_version}, opset {s.opset}")
    for kind, specs in (("input", s.inputs), ("output", s.outputs)):
        for t in specs:
            print(f"  {kind:<6} {t.name}: {t.dtype} {list(t.shape) if t.shape is not None else '?'}")
    print(f"  nodes: {s.nodes}   params: {_fmt_count(s.params)}   "
          f"MACs: {_fmt_count(s.macs)}   FLOPs: {_fmt_count(s.flops)}")
    print("  ops: " + ", ".join(f"{k} {v}" for k, v in s.ops.items()))
    for a in s.assumed:
        print(f"  assumed {a}")
    return 0


def _int_list(text: str) -> int | list[int]:
    """``4`` -> 4 (one value keeps ``bench``'s single measurement); ``1,8,32`` -> [1, 8, 32]."""
    parts = [t.strip() for t in text.split(",")]
    try:
        values = [int(t) for t in parts]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r} (give N or a list like 1,8,32)") from e
    return values[0] if len(values) == 1 else values


_SWEEP_ONLY = (("latency_bound", "--latency-bound"), ("duration", "--duration"), ("baseline", "--baseline"),
               ("mode", "--mode"))


def cmd_bench(args: argparse.Namespace) -> int:
    from .commands.bundle import target  # noqa: PLC0415
    from .core.evaluation.run import bench  # noqa: PLC0415

    if args.concurrency is not None or isinstance(args.batch, list):
        from .commands.sweep import cmd_bench_sweep  # noqa: PLC0415

        return cmd_bench_sweep(args)
    given = [flag for name, flag in _SWEEP_ONLY if getattr(args, name) is not None]
    if given:
        raise UsageError(f"{given[0]} belongs to a throughput sweep",
                         "add --concurrency LIST (e.g. 1,2,4) or several batches (--batch 1,8,32)")
    if args.rounds is None:
        args.rounds = 5
    if args.device and ("," in args.device or args.device == "all-cpu") or args.precision or args.hint:
        from .commands.runtimes import cmd_bench_runtimes  # noqa: PLC0415

        return cmd_bench_runtimes(args)
    shapes, values = shapes_values(args)
    model, device, opts = target(args.model, args.device)  # a bundle runs as exported
    opts.update({k: v for k, v in (("threads", args.threads), ("optimization_level", args.opt_level))
                 if v is not None})
    r = bench(model, device=device, batch=args.batch, warmup=args.warmup,
              iterations=None if args.time_budget else args.iterations,
              time_budget_s=args.time_budget, shapes=shapes, values=values,
              progress=progress(args), **opts)
    if args.json:
        print_json(r.to_dict(samples=args.samples))
        return 0
    lat = r.latency
    st = r.settings
    how = (f"optimization {st['optimization_level']}" if "optimization_level" in st else
           f"precision {st.get('precision')}, hint {st.get('performance_hint')}, streams {st.get('streams')}")
    print(f"{r.model} on {r.engine} ({r.machine['cpu']}), threads {st.get('threads')}, {how}")
    print("  inputs: " + ", ".join(f"{k} {v['shape']} {v['dtype']}" for k, v in r.inputs.items()))
    for a in r.assumed:
        print(f"  assumed {a}")
    print(f"  batch {lat.batch}, warmup {lat.warmup}, iterations {lat.iterations}")
    print(f"  latency ms: p50 {lat.p50_ms:.3f}  p90 {lat.p90_ms:.3f}  p99 {lat.p99_ms:.3f}  "
          f"mean {lat.mean_ms:.3f} ± {lat.std_ms:.3f}")
    print(f"  throughput: {lat.throughput:.1f} samples/s   peak RSS "
          f"{r.memory['peak_rss_bytes'] / 2**20:.0f} MiB")
    print(f"  timing: {r.timing}")
    if (e := r.latency_e2e) is not None:
        print(f"  end-to-end ms: p50 {e.p50_ms:.3f}  p90 {e.p90_ms:.3f}  p99 {e.p99_ms:.3f}  "
              f"throughput {e.throughput:.1f} samples/s")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .commands.bundle import target  # noqa: PLC0415
    from .core.evaluation.run import evaluate  # noqa: PLC0415

    shapes, values = shapes_values(args)
    model, device, opts = target(args.model, args.device)  # a bundle runs as exported
    if args.threads is not None:
        opts["threads"] = args.threads
    if "plan" in opts and args.reference:
        raise UsageError("--reference cannot run with a TensorRT bundle's plan",
                         "eval the bundle alone, or its model.onnx with --reference")
    r = evaluate(model, data=args.data, reference=args.reference, limit=args.limit,
                 preprocessing=args.preprocess,
                 batch=args.batch, shapes=shapes, values=values, progress=progress(args),
                 device=device, **opts)
    if args.json:
        print_json(r.to_dict())
        return 0
    print(f"{r.model} on {r.data}: {r.samples} samples")
    if r.accuracy:
        print(f"  top-1 {r.accuracy.top1:.4f}   top-5 {r.accuracy.top5:.4f}")
    if r.fidelity:
        f = r.fidelity
        agree = "n/a" if f.top1_agreement is None else f"{f.top1_agreement:.4f}"
        print(f"  vs {r.reference}: top-1 agreement {agree}, cosine {f.cosine:.6f} "
              f"(min {f.min_cosine:.6f}), max |diff| {f.max_abs:.3e}, SQNR {f.sqnr_db:.1f} dB")
    for n in r.notes:
        print(f"  note: {n}")
    return 0


def cmd_passes(args: argparse.Namespace) -> int:
    from .core.passes.registry import all_passes  # noqa: PLC0415

    passes = [p.describe() for p in all_passes().values()]
    if args.json:
        print_json(passes)
        return 0
    for p in passes:
        calib = "  (needs calibration data)" if p["needs_calibration"] else ""
        print(f"{p['name']}: {p['summary']}{calib}")
        for o in p["options"]:
            choices = f" [{'|'.join(map(str, o['choices']))}]" if o["choices"] else ""
            print(f"    {o['name']}={o['default']!s}{choices}  {o['help']}")
    return 0


def cmd_optimize(args: argparse.Namespace) -> int:
    from .core.build import optimize, write_build  # noqa: PLC0415
    from .core.cache import BuildCache  # noqa: PLC0415
    from .core.passes.recipe import Recipe  # noqa: PLC0415

    if (args.passes is None) == (args.recipe is None):
        raise UsageError("give exactly one of --passes LIST or --recipe FILE",
                         "e.g. --passes fuse,int8:calibration=entropy")
    recipe = Recipe.parse(args.passes) if args.passes else Recipe.load(args.recipe)
    from .commands.common import calib_data  # noqa: PLC0415

    result = optimize(args.model, recipe, device=args.device, calibration=calib_data(args),
                      cache=BuildCache(enabled=not args.no_cache), progress=progress(args))
    path = write_build(result, args.out, force=args.force)
    if args.json:
        print_json({"model": str(path), "manifest": str(path.parent / "manifest.json"),
                     "cache_hit": result.cache_hit, "wall_s": result.wall_s, **result.manifest()})
        return 0
    src, out = result.source, result.model
    print(f"{src.name} -> {path}  ({'from cache' if result.cache_hit else 'built'} in {result.wall_s:.2f} s)")
    print(f"  recipe: {result.recipe.label()}   device: {result.device}")
    for r in result.reports:
        print(f"  {r.name}: nodes {r.nodes_before} -> {r.nodes_after}, {r.wall_s:.2f} s")
        for k, v in r.fused.items():
            print(f"      fused {k}: {v}")
        if r.quantized:
            print(f"      quantized {len(r.quantized)} nodes")
        if r.converted:
            print(f"      converted {len(r.converted)} nodes")
        if r.pruned:
            print(f"      pruned {len(r.pruned)} layers")
        for e in r.excluded:
            print(f"      excluded {e['node']}: {e['reason']}")
        for d in r.declined[:10]:
            print(f"      declined {d['what']}: {d['reason']}")
        if len(r.declined) > 10:
            print(f"      ... and {len(r.declined) - 10} more declined (see manifest.json)")
        for n in r.notes:
            print(f"      note: {n}")
    print(f"  size {src.size_bytes / 1e6:.2f} MB -> {out.size_bytes / 1e6:.2f} MB")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from .core.cache import BuildCache  # noqa: PLC0415

    cache = BuildCache()
    if args.action == "clear":
        n = cache.clear()
        info = {**cache.info(), "removed": n}
    else:
        info = cache.info()
    if args.json:
        print_json(info)
    else:
        print(", ".join(f"{k}: {v}" for k, v in info.items()))
    return 0


def cmd_lab(args: argparse.Namespace) -> int:
    from .lab import lab_command  # noqa: PLC0415

    extra = [a for a in args.jupyter_args if a != "--"]
    cmd = lab_command(port=args.port, open_browser=not args.no_browser, extra=extra, root=args.root)
    print("starting: " + " ".join(cmd), file=sys.stderr, flush=True)
    os.execv(cmd[0], cmd)
    return 0  # not reached


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="workbench", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("samples", help="list the sample models")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_samples)

    s = sub.add_parser("devices", help="engines and devices, available or why not")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_devices)

    s = sub.add_parser("info", help="summary of a model: inputs, ops, params, FLOPs")
    s.add_argument("model", help="a .onnx path or sample:NAME")
    s.add_argument("--batch", type=int, default=None, help="batch for FLOPs (default 1)")
    s.add_argument("--shape", action="append", metavar="NAME=DIMS")
    s.add_argument("--per-node", action="store_true", help="include per-node costs in --json")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_info)

    s = sub.add_parser("bench", help="measure latency and throughput")
    s.add_argument("model", help="a .onnx path, sample:NAME or a bundle folder")
    s.add_argument("--device", default=None,
                   help="cpu (default), openvino[:DEVICE], cuda[:N], ...; a bundle's own device. "
                        "Several, comma-separated (cpu,openvino), or all-cpu: measured side by side")
    s.add_argument("--precision", default=None, metavar="LIST",
                   help="OpenVINO inference precision hints to compare, e.g. f32,bf16 (default: f32 and, "
                        "where the CPU has it, bf16)")
    s.add_argument("--hint", default=None, choices=["latency", "throughput"],
                   help="OpenVINO performance hint when comparing runtimes (default latency)")
    s.add_argument("--rounds", type=int, default=None,
                   help="interleaved rounds when comparing runtimes (default 5) or in a sweep (default 3)")
    s.add_argument("--batch", type=_int_list, default=None, metavar="N[,N...]",
                   help="batch size (default 1); several (1,8,32): a throughput sweep")
    s.add_argument("--concurrency", type=_int_list, default=None, metavar="LIST",
                   help="concurrent requests, e.g. 1,2,4: a throughput sweep over batch x concurrency")
    s.add_argument("--latency-bound", type=float, default=None, metavar="MS",
                   help="sweep: the knee is the highest throughput with p99 within this bound")
    s.add_argument("--duration", type=float, default=None, metavar="S",
                   help="sweep: seconds per point and round (default 0.5)")
    s.add_argument("--baseline", default=None, metavar="MODEL",
                   help="sweep: measure this model at every point too, interleaved, for speed-ups")
    s.add_argument("--mode", default=None, choices=["shared", "per-request", "streams"],
                   help="sweep: one session for all requests (shared), one per request (per-request), "
                        "or OpenVINO streams (default: the runtime's own, see workbench.core.evaluation.sweep)")
    s.add_argument("--threads", type=int, default=None, help="intra-op threads (default: cores)")
    s.add_argument("--warmup", type=int, default=10)
    s.add_argument("--iterations", type=int, default=100)
    s.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                   help="time for as many iterations as fit, in place of --iterations")
    s.add_argument("--opt-level", default=None, choices=["disabled", "basic", "extended", "all"],
                   help="ONNX Runtime graph optimization level (default all; a bundle's as exported)")
    s.add_argument("--samples", action="store_true", help="include every run's latency in --json")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--json", action="store_true")
    add_model_inputs(s)
    s.set_defaults(fn=cmd_bench)

    s = sub.add_parser("eval", help="accuracy on labeled data and fidelity to a reference")
    s.add_argument("model", help="a .onnx path, sample:NAME or a bundle folder")
    s.add_argument("--data", default=None, help=".npz, image folder (DIR/<class>/...), or sample:NAME")
    s.add_argument("--preprocess", default=None, metavar="SPEC", help="image preprocessing, e.g. "
                   "size=224x224,mean=0.485+0.456+0.406,std=0.229+0.224+0.225,layout=NHWC,channels=BGR")
    s.add_argument("--reference", default=None, metavar="MODEL", help="compare outputs to this model")
    s.add_argument("--device", default=None,
                   help="engine that runs the model (and the reference): cpu (default), cuda, ...; "
                        "a bundle's own device")
    s.add_argument("--limit", type=int, default=None, help="at most this many samples")
    s.add_argument("--batch", type=int, default=100)
    s.add_argument("--threads", type=int, default=None)
    s.add_argument("--quiet", action="store_true")
    s.add_argument("--json", action="store_true")
    add_model_inputs(s)
    s.set_defaults(fn=cmd_eval)

    s = sub.add_parser("passes", help="list the optimization passes with their options")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_passes)

    s = sub.add_parser("optimize", help="apply passes to a model and write the result")
    s.add_argument("model")
    s.add_argument("--passes", default=None, metavar="LIST",
                   help="e.g. fuse,int8:calibration=entropy,prune-channels:ratio=0.3")
    s.add_argument("--recipe", default=None, metavar="FILE", help="a recipe JSON file")
    s.add_argument("--device", default="cpu", help="target device: cpu, cuda, tensorrt (defaults follow it)")
    s.add_argument("--calib", default=None, metavar="DATA",
                   help="calibration data: .npz, image folder, sample:NAME:calib, or random "
                        "(latency-only: the build's accuracy says nothing)")
    s.add_argument("--preprocess", default=None, metavar="SPEC",
                   help="image preprocessing of the calibration data, e.g. size=224x224,layout=NHWC")
    s.add_argument("--out", required=True, metavar="DIR")
    s.add_argument("--force", action="store_true", help="replace a build already in DIR")
    s.add_argument("--no-cache", action="store_true", help="build even if an identical build is cached")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_optimize)

    s = sub.add_parser("cache", help="show or clear the build cache")
    s.add_argument("action", nargs="?", default="info", choices=["info", "clear"])
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_cache)

    s = sub.add_parser("lab", help="launch JupyterLab on the workbench notebook (127.0.0.1)")
    s.add_argument("--port", type=int, default=8888)
    s.add_argument("--no-browser", action="store_true")
    s.add_argument("--root", default=None, metavar="DIR",
                   help="serve this folder (holding notebooks/) instead of the repository")
    s.add_argument("jupyter_args", nargs=argparse.REMAINDER,
                   help="after --: more options for jupyter lab (e.g. -- --LabApp.user_settings_dir=DIR)")
    s.set_defaults(fn=cmd_lab)

    import importlib  # noqa: PLC0415

    from .commands import EXTRA  # noqa: PLC0415

    for name in EXTRA:
        importlib.import_module(name).register(sub)
    return p


def _version() -> str:
    from . import __version__  # noqa: PLC0415

    return f"workbench {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except WorkbenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
