"""``workbench export`` and ``workbench build --manifest``: engine bundles from the command line.

``workbench bench DIR`` and ``workbench eval DIR`` take a bundle folder through :func:`target`.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from ..errors import UsageError
from .common import calib_data, print_json, progress

__all__ = ["register", "target"]


def target(model: str, device: str | None) -> tuple[Any, str, dict[str, Any]]:
    """(model, device, engine options) for ``bench``/``eval``: a bundle folder is verified and
    runs as exported (warnings on stderr); anything else is passed through."""
    from ..core.bundle import is_bundle, load_bundle  # noqa: PLC0415

    if not is_bundle(model):
        return model, device or "cpu", {}
    b = load_bundle(model, warn=False)
    for w in b.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return b.target(device)


def _sigterm_as_exit(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds, so the half-written temporary folder is removed


def cmd_export(args: argparse.Namespace) -> int:
    from ..core.cache import BuildCache  # noqa: PLC0415
    from ..core.export import MeasureSpec, export  # noqa: PLC0415
    from ..core.passes.recipe import Recipe  # noqa: PLC0415

    if (args.passes is None) == (args.recipe is None):
        raise UsageError("give exactly one of --passes LIST or --recipe FILE",
                         "e.g. --passes fuse,int8:calibration=entropy")
    recipe = Recipe.parse(args.passes) if args.passes else Recipe.load(args.recipe)
    for name in ("batch", "iterations", "samples"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name} must be >= 1, got {getattr(args, name)}")
    spec = None if args.no_measure else MeasureSpec(batch=args.batch, threads=args.threads,
                                                    iterations=args.iterations, samples=args.samples,
                                                    data=calib_data(args, "data"))
    opts = {"threads": args.threads} if args.threads else {}
    signal.signal(signal.SIGTERM, _sigterm_as_exit)
    b = export(args.model, recipe, args.out, device=args.device, calibration=calib_data(args), force=args.force,
               engine_options=opts, measure=spec, cache=BuildCache(enabled=not args.no_cache),
               progress=progress(args))
    m = b.manifest
    if args.json:
        print_json({"bundle": str(b.path), **m})
        return 0
    eng = m["engine"]
    print(f"{m['source']['name']} + {m['recipe_label']} -> {b.path}")
    print(f"  engine {eng['name']} on {eng['device']}: artifact {eng.get('artifact') or 'none'}"
          + (f" (outputs identical to the build: {eng['verified']['identical']})" if eng.get("verified") else ""))
    for n in eng.get("notes", []):
        print(f"  note: {n}")
    met = m.get("metrics") or {}
    if lat := met.get("latency"):
        c = lat["conditions"]
        print(f"  latency p50 {lat['p50_ms']:.3f} ms, p99 {lat['p99_ms']:.3f} ms (batch {c['batch']}, "
              f"threads {c['threads']}, {c['iterations']} iterations after {c['warmup']} warm-up, {c['data']})")
    if q := met.get("quality"):
        c = q["conditions"]
        top1 = "n/a" if q["top1"] is None else f"{q['top1']:.4f}"
        print(f"  top-1 {top1}, top-1 agreement with the source {q['top1_agreement_with_source']}, "
              f"cosine {q['cosine_to_source']:.6f} ({c['samples']} samples of {c['data']})")
    print("  files: " + ", ".join(f"{k} ({v['bytes'] / 1e6:.2f} MB)" for k, v in m["files"].items()))
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from ..core.export import MeasureSpec, reproduce  # noqa: PLC0415

    r = reproduce(args.manifest, out=args.out, source=args.source, force=args.force,
                  measure=MeasureSpec() if args.out and not args.no_measure else None,
                  progress=progress(args))
    if args.json:
        print_json(r.to_dict())
    else:
        print(("identical: every artifact's fingerprint matches" if r.identical
               else "differs: " + ", ".join(r.differences)) + (f"  (rebuilt in {r.out})" if r.out else ""))
        for name, c in r.compared.items():
            mark = "same" if c["same"] else "DIFFERS"
            shown = "" if c["same"] or isinstance(c["bundle"], (dict, list)) else \
                f"  bundle {c['bundle']}  rebuilt {c['rebuilt']}"
            print(f"  {name:<32} {mark}{shown}")
        for n in r.notes:
            print(f"  note: {n}")
    return 0 if r.identical else 3


def register(sub: Any) -> None:
    s = sub.add_parser("export", help="build a recipe and export it as a bundle (model, engine, manifest)")
    s.add_argument("model", help="a .onnx path or sample:NAME")
    s.add_argument("--passes", default=None, metavar="LIST", help="e.g. fuse,int8:calibration=entropy")
    s.add_argument("--recipe", default=None, metavar="FILE", help="a recipe JSON file")
    s.add_argument("--device", default="cpu", help="cpu, openvino[:DEVICE] (OpenVINO IR beside model.onnx), cuda[:N], ort-tensorrt, tensorrt")
    s.add_argument("--calib", default=None, metavar="DATA",
                   help="calibration data for passes that need it, or random (latency-only)")
    s.add_argument("--preprocess", default=None, metavar="SPEC",
                   help="image preprocessing of --calib/--data, e.g. size=224x224,layout=NHWC,channels=BGR")
    s.add_argument("--out", required=True, metavar="DIR", help="the bundle folder (must not exist)")
    s.add_argument("--force", action="store_true", help="replace a bundle already in DIR")
    s.add_argument("--data", default=None, metavar="DATA",
                   help="labeled data for the accuracy measured at export (default: the sample's test set)")
    s.add_argument("--batch", type=int, default=1, help="batch of the latency measurement")
    s.add_argument("--threads", type=int, default=None, help="intra-op threads (default: physical cores)")
    s.add_argument("--iterations", type=int, default=50, help="timed runs of the latency measurement")
    s.add_argument("--samples", type=int, default=500, help="samples for accuracy and fidelity")
    s.add_argument("--no-measure", action="store_true", help="record no metrics (faster)")
    s.add_argument("--no-cache", action="store_true", help="build even if an identical build is cached")
    s.add_argument("--quiet", action="store_true")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_export)

    s = sub.add_parser("build", help="rebuild a bundle from its manifest and compare (exit 3 if it differs)")
    s.add_argument("--manifest", required=True, metavar="DIR/manifest.json")
    s.add_argument("--out", default=None, metavar="DIR2", help="keep the rebuilt bundle here")
    s.add_argument("--source", default=None, metavar="MODEL", help="the source model, if it has moved")
    s.add_argument("--force", action="store_true", help="replace a bundle already in DIR2")
    s.add_argument("--no-measure", action="store_true", help="with --out: record no metrics")
    s.add_argument("--quiet", action="store_true")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_build)
