"""Issue 19 on a GPU: per-layer profiles, FP16 beside FP32, and a throughput sweep on ORT CUDA.

On ``cuda`` (ONNX Runtime's CUDA provider), for ``sample:resnet50`` (synthetic, random weights) and
its ``fp16`` build (``optimize(..., "fp16", device="cuda")``):

1. ``profile()`` of the FP16 build at each ``--profile-batches`` (``--runs`` profiled runs after
   ``--warmup``): top nodes, time by op type, the share of the separately measured p50 that the node
   times explain, and the collector's notes (on CUDA the profiled session runs without a CUDA graph
   and ONNX Runtime's per-node times are host-side: it launches kernels asynchronously);
2. ``profile_pair(fp32, fp16, "cuda")`` at ``--pair-batch``: time by op type before and after, the
   units that moved most, the speed-up measured interleaved (unprofiled);
3. ``sweep(fp16, a.device, baseline=fp32)`` over ``--batches`` x ``--concurrency`` (one session per
   thread on GPU engines), with the knee under each of ``--bounds`` ms.

Each part is run in its own try/except: a failure is recorded (its traceback in the JSON, its last
line in the markdown) and the next part still runs. Results are written after every part.

    cd benchmarks && PYTHONUNBUFFERED=1 python3 gpu_profile.py     # results/profiles_gpu.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

from common import HERE, machine_line, write_json
from workbench.core.build import optimize
from workbench.core.evaluation.run import make_runner
from workbench.core.evaluation.sweep import knee, sweep
from workbench.core.model import load_model
from workbench.core.profiling.compare import profile_pair
from workbench.core.profiling.run import profile
from workbench.core.shapes import random_feeds, resolve_inputs, tensor_specs

NAME = "profiles_gpu"  # --name changes it


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def progress_printer(label: str):
    last: dict[str, float] = {}

    def show(phase: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if done == total or now - last.get(phase, 0.0) > 5.0:
            last[phase] = now
            log(f"  {label}: {phase} {done}/{total}")

    return show


def gpu_machine() -> dict[str, Any]:
    """GPU name, driver, ONNX Runtime version and providers, CPU: what the results ran on."""
    out: dict[str, Any] = {"cpu_line": machine_line()}
    try:
        q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit",
                            "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
        out["nvidia_smi"] = q.stdout.strip() or q.stderr.strip()
    except Exception as e:  # noqa: BLE001
        out["nvidia_smi"] = f"not read: {e}"
    try:
        from workbench.core.gpu import scan_gpus  # noqa: PLC0415

        out["gpus"] = scan_gpus().to_dict()
    except Exception as e:  # noqa: BLE001
        out["gpus"] = f"not read: {e}"
    try:
        import onnxruntime as ort  # noqa: PLC0415

        out["onnxruntime"] = ort.__version__
        out["providers"] = ort.get_available_providers()
        from workbench.core.engines.ort_cuda import ort_cuda_version  # noqa: PLC0415

        out["onnxruntime_cuda"] = ort_cuda_version()
    except Exception as e:  # noqa: BLE001
        out["onnxruntime"] = f"not importable: {e}"
    return out


def _scalars(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if isinstance(v, (int, float, str, bool, list)) or v is None}


def _profile_dict(p: Any, wall: float) -> dict[str, Any]:
    return {
        "batch": p.batch, "engine": p.engine, "method": p.method, "wall_s": round(wall, 2),
        "measured_p50_ms": p.measured_ms, "measured_p90_ms": p.measured_p90_ms,
        "node_median_sum_ms": p.total_ms, "explained": p.explained,
        "node_sum_per_run_ms": p.node_sum_ms, "explained_per_run": p.explained_per_run,
        "profiled_run_ms": p.profiled_run_ms,
        "nodes": len(p.nodes), "mapped": sum(1 for n in p.nodes if n.covers),
        "inserted": sum(1 for n in p.nodes if n.origin == "inserted"), "folded": len(p.folded),
        "origins": {o: sum(1 for n in p.nodes if n.origin == o) for o in ("model", "fused", "inserted", "unmapped")},
        "by_op_type": [{"op_type": o.op_type, "ms": o.ms, "share": o.share, "count": o.count}
                       for o in p.by_op_type()],
        "top": [{"name": n.name, "op_type": n.op_type, "median_ms": n.median_ms, "p90_ms": n.p90_ms,
                 "kernel": n.kernel, "precision": n.precision, "origin": n.origin, "covers": list(n.covers)[:6],
                 "note": n.note} for n in p.top(12)],
        "settings": _scalars(p.settings), "notes": list(p.notes),
    }


def _error(e: BaseException) -> dict[str, Any]:
    hint = getattr(e, "hint", None)
    return {"error": f"{type(e).__name__}: {e}", "hint": str(hint) if hint else None,
            "traceback": traceback.format_exc()}


VARIANTS = {"default": {}, "timed without CUDA graph": {"cuda_graph": False}}


def part_profiles(fp16: Any, a: argparse.Namespace) -> list[dict[str, Any]]:
    """Each batch with the engine's defaults (the timed runner replays a CUDA graph where ONNX
    Runtime takes one; the profiled session never does) and with the timed runner also without one,
    so that the explained share compares like with like."""
    rows = []
    variants = VARIANTS if a.device.startswith("cuda") else {"default": {}}
    for b, (variant, extra) in ((b, v) for b in a.profile_batches for v in variants.items()):
        log(f"profile fp16 batch {b} ({variant})")
        t = time.perf_counter()
        try:
            p = profile(fp16, a.device, batch=b, runs=a.runs, warmup=a.warmup, measure_s=a.measure,
                        progress=progress_printer(f"profile b{b}"), **extra)
            rows.append({"variant": variant, **_profile_dict(p, time.perf_counter() - t)})
            r = rows[-1]
            log(f"  p50 {r['measured_p50_ms']:.3f} ms, node medians {r['node_median_sum_ms']:.3f} ms "
                f"({r['explained']:.0%}), profiled run {r['profiled_run_ms']:.3f} ms, {r['wall_s']} s")
        except Exception as e:  # noqa: BLE001
            rows.append({"batch": b, "variant": variant, **_error(e)})
            log(f"  FAILED: {rows[-1]['error']}")
    return rows


def part_trace(fp16: Any, a: argparse.Namespace) -> dict[str, Any]:
    """What ONNX Runtime's profiler writes on this provider: event categories, event kinds, and the
    args of a few node events (is there any device-side time in it?)."""
    b = a.pair_batch
    log(f"trace diagnostic batch {b}")
    with tempfile.TemporaryDirectory(prefix="wb-trace-") as tmp:
        extra = {"cuda_graph": False} if a.device.startswith("cuda") else {}
        r = make_runner(fp16, a.device, profile_prefix=str(Path(tmp) / "ort"), **extra)
        ins, _ = tensor_specs(fp16.proto.graph)
        feeds = random_feeds(resolve_inputs(ins, None, b))
        with r:
            fn = r.prepare(feeds)
            for _ in range(5):
                fn()
            path = r.session.end_profiling()
        events = json.loads(Path(path).read_text())
    kinds = Counter(f"{e.get('cat')}:{e.get('name', '').rsplit('_', 1)[-1] if e.get('cat') == 'Node' else e.get('name')}"
                    for e in events)
    nodes = [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    conv = [e for e in nodes if "Conv" in str(e.get("args", {}).get("op_name", ""))][:2]
    return {"batch": b, "events": len(events), "kinds": dict(kinds.most_common(20)),
            "categories": dict(Counter(str(e.get("cat")) for e in events)),
            "sample_node_events": (conv or nodes)[:2], "last_model_run_us": next(
                (e.get("dur") for e in reversed(events) if e.get("name") == "model_run"), None),
            "CUDA_LAUNCH_BLOCKING": os.environ.get("CUDA_LAUNCH_BLOCKING")}


def part_pair(fp32: Any, fp16: Any, a: argparse.Namespace) -> dict[str, Any]:
    log(f"profile_pair fp32 vs fp16 batch {a.pair_batch}")
    t = time.perf_counter()
    c = profile_pair(fp32, fp16, a.device, batch=a.pair_batch, runs=a.runs, warmup=a.warmup, rounds=a.pair_rounds,
                     progress=progress_printer("pair"))
    out = {"batch": a.pair_batch, "speedup": c.speedup, "speedup_range": list(c.speedup_range), "rounds": c.rounds,
           "wall_s": round(time.perf_counter() - t, 2),
           "baseline": _profile_dict(c.baseline, 0.0), "build": _profile_dict(c.build, 0.0),
           "by_op_type": [{"op_type": o.op_type, "baseline_ms": o.baseline_ms, "build_ms": o.build_ms,
                           "baseline_count": o.baseline_count, "build_count": o.build_count}
                          for o in c.by_op_type],
           "faster": [d.to_dict() for d in c.faster(6)], "slower": [d.to_dict() for d in c.slower(6)],
           "kinds": {k: sum(1 for d in c.by_node if d.kind == k) for k in ("matched", "added", "removed", "inserted")},
           "notes": list(c.notes)}
    log(f"  speed-up {c.speedup:.2f}x [{c.speedup_range[0]:.2f}-{c.speedup_range[1]:.2f}], {out['wall_s']} s")
    return out


def part_sweep(fp32: Any, fp16: Any, a: argparse.Namespace) -> dict[str, Any]:
    log(f"sweep fp16 vs fp32: batches {a.batches} x concurrency {a.concurrency}")
    t = time.perf_counter()
    r = sweep(fp16, a.device, baseline=fp32, batches=a.batches, concurrency=a.concurrency, duration_s=a.duration,
              rounds=a.rounds, latency_bound_ms=a.bounds[0], progress=progress_printer("sweep"))
    d = r.to_dict()
    d["wall_s"] = round(time.perf_counter() - t, 2)
    d["knees"] = {}
    for bound in a.bounds:
        kb, kf = knee(r.points, bound), knee(r.baseline_points or [], bound)
        d["knees"][f"{bound:g}"] = {"fp16": kb.to_dict() if kb else None, "fp32": kf.to_dict() if kf else None}
    log(f"  {d['wall_s']} s (setup {r.setup_s:.1f} s)")
    return d


# -- report --

def _fmt_err(part: dict[str, Any]) -> list[str]:
    return [f"**Failed**: `{part['error'].splitlines()[0][:600]}`" + (f" (hint: {part['hint']})" if part.get("hint") else ""),
            ""]


def _profile_md(r: dict[str, Any], label: str) -> list[str]:
    out = [f"#### {label}: batch {r['batch']}", ""]
    if "error" in r:
        return out + _fmt_err(r)
    timed = ("the timed runner without a CUDA graph" if r.get("variant") != "default" else
             "the timed runner with the engine's defaults: a CUDA graph where ONNX Runtime takes one")
    out += [f"Measured p50 {r['measured_p50_ms']:.3f} ms (p90 {r['measured_p90_ms']:.3f}; unprofiled, {timed}; "
            "the profiled session never replays a graph), node medians sum "
            f"{r['node_median_sum_ms']:.3f} ms: **explained {r['explained']:.0%}** (per-run sums "
            f"{r['explained_per_run']:.0%}); ONNX Runtime's own profiled-run time {r['profiled_run_ms']:.3f} ms. "
            f"{r['nodes']} runtime nodes ({r['origins']['model']} model, {r['origins']['fused']} fused, "
            f"{r['origins']['inserted']} inserted, {r['origins']['unmapped']} unmapped), {r['folded']} model nodes "
            f"folded. Wall {r['wall_s']} s.", "",
            "| op type | ms | share | count |", "|---|---|---|---|"]
    out += [f"| {o['op_type']} | {o['ms']:.3f} | {o['share']:.0%} | {o['count']} |" for o in r["by_op_type"][:8]]
    out += ["", "| top node | op | median ms | p90 ms | kernel | precision | origin |", "|---|---|---|---|---|---|---|"]
    out += [f"| {n['name']} | {n['op_type']} | {n['median_ms']:.4f} | {n['p90_ms']:.4f} | {n['kernel']} | "
            f"{n['precision']} | {n['origin']} |" for n in r["top"][:8]]
    out += ["", "Notes: " + ("; ".join(r["notes"]) or "none"), ""]
    return out


def _knee_txt(p: dict[str, Any] | None) -> str:
    if not p:
        return "none"
    return f"batch {p['batch']} x c {p['concurrency']}, {p['throughput']:.0f} img/s (p99 {p['p99_ms']:.2f} ms)"


def report(res: dict[str, Any], cmd: str) -> str:
    m = res["gpu_machine"]
    launch = os.environ.get("CUDA_LAUNCH_BLOCKING")
    out = [f"## {NAME}", "", f"Command (on the device machine, in `benchmarks/`): `{cmd}`"
           + (f" with `CUDA_LAUNCH_BLOCKING={launch}` (every kernel launch waits for the kernel: host-side "
              "node times then hold the device time)" if launch else ""), "",
           f"GPU: {m.get('nvidia_smi')} (name, driver, memory, max SM clock, power limit); CUDA driver API "
           f"{(m.get('gpus') or {}).get('driver') if isinstance(m.get('gpus'), dict) else m.get('gpus')}; "
           f"onnxruntime {m.get('onnxruntime')} (CUDA {m.get('onnxruntime_cuda')}), providers "
           f"{', '.join(m.get('providers') or [])}.", "", f"Host: {m['cpu_line']}.", "",
           f"Model: `{res['model']}` (synthetic, random weights) FP32 and its `fp16` build "
           f"(`optimize(model, \"fp16\", device=\"cuda\")`). Engine `ort-cuda` with its defaults (IO binding, "
           "NHWC, EXHAUSTIVE cuDNN search, CUDA graph where ONNX Runtime takes it; the profiled session runs "
           "without a CUDA graph).", ""]
    b = res.get("build", {})
    if "error" in b:
        out += ["### fp16 build", ""] + _fmt_err(b)
    elif b:
        out += [f"fp16 build: {b.get('wall_s')} s; {b.get('summary', '')}", ""]
    a = res["args"]
    out += [f"### FP16 profiles ({a['runs']} profiled runs after {a['warmup']} warm-up, median per node)", ""]
    for r in res.get("profiles", []):
        out += _profile_md(r, f"fp16, {r.get('variant', 'default')}")
    tr = res.get("trace")
    if tr is not None:
        out += [f"### What ONNX Runtime's profiler writes here (batch {tr.get('batch')}, 5 runs, no CUDA graph)", ""]
        if "error" in tr:
            out += _fmt_err(tr)
        else:
            ev = [{**e, "args": {k: ("(per-thread counters)" if k == "thread_scheduling_stats" else v)
                                 for k, v in e.get("args", {}).items()}} for e in tr["sample_node_events"][:1]]
            out += [f"{tr['events']} events; categories {json.dumps(tr['categories'])}; kinds "
                    f"{json.dumps(tr['kinds'])} (`Node:time` = `<node>_kernel_time`).", "",
                    "A node event as written (`dur` in microseconds):", "", "```", json.dumps(ev, default=str), "```", ""]
    p = res.get("pair")
    if p is not None:
        out += [f"### FP16 beside FP32 (`profile_pair`, batch {a['pair_batch']})", ""]
        if "error" in p:
            out += _fmt_err(p)
        else:
            lo, hi = p["speedup_range"]
            out += [f"Speed-up **{p['speedup']:.2f}x** [{lo:.2f}-{hi:.2f}] (p50, {p['rounds']} interleaved rounds, "
                    f"unprofiled, CUDA graph where taken); FP32 p50 {p['baseline']['measured_p50_ms']:.3f} ms, "
                    f"FP16 p50 {p['build']['measured_p50_ms']:.3f} ms; the profiles explain "
                    f"{p['baseline']['explained']:.0%} (FP32) and {p['build']['explained']:.0%} (FP16). Units: "
                    + ", ".join(f"{v} {k}" for k, v in p["kinds"].items()) + f". Wall {p['wall_s']} s.", "",
                    "| op type | FP32 ms | FP16 ms | count |", "|---|---|---|---|"]
            out += [f"| {o['op_type']} | {o['baseline_ms']:.3f} | {o['build_ms']:.3f} | {o['baseline_count']} -> "
                    f"{o['build_count']} |" for o in p["by_op_type"][:12]]
            out += ["", "Units (runtime nodes joined through the model nodes they cover) that moved most:", ""]
            out += [f"- {d['label']}: {d['baseline_ms']:.4f} -> {d['build_ms']:.4f} ms ({d['kind']}; "
                    f"{d['baseline_ops'] or '-'} -> {d['build_ops'] or '-'})" for d in p["faster"] + p["slower"]]
            out += [""]
    s = res.get("sweep")
    if s is not None:
        out += ["### Throughput sweep, FP16 against FP32 (`sweep(..., baseline=fp32)`)", ""]
        if "error" in s:
            out += _fmt_err(s)
        else:
            out += [f"Method: {s['method']}. Mode {s['mode']}. Wall {s['wall_s']} s (setup {s['setup_s']:.1f} s).", "",
                    "| batch | concurrency | fp16 img/s | fp32 img/s | speed-up [round range] | fp16 p50 / p99 ms | "
                    "fp32 p50 / p99 ms | sessions |", "|---|---|---|---|---|---|---|---|"]
            for x, y in zip(s["points"], s["baseline_points"]):
                lo, hi = x["speedup_range"]
                out.append(f"| {x['batch']} | {x['concurrency']} | {x['throughput']:.0f} | {y['throughput']:.0f} | "
                           f"{x['speedup']:.2f}x [{lo:.2f}-{hi:.2f}] | {x['p50_ms']:.2f} / {x['p99_ms']:.2f} | "
                           f"{y['p50_ms']:.2f} / {y['p99_ms']:.2f} | {x['config'].get('sessions')} |")
            out += [""]
            for bound, k in s["knees"].items():
                out.append(f"- Knee under p99 <= {bound} ms: fp16 {_knee_txt(k['fp16'])}; fp32 {_knee_txt(k['fp32'])}.")
            pk = s.get("peak")
            if pk:
                out.append(f"- Peak fp16: {_knee_txt(pk)}.")
            if s.get("declined"):
                out.append(f"- Declined: {'; '.join(s['declined'])}.")
            out.append(f"- Settings: {json.dumps(_scalars(s['settings']), default=str)[:800]}")
            out += [""]
    out.append(f"Total wall {res.get('wall_s', float('nan')):.1f} s.")
    return "\n".join(out) + "\n"


def main() -> int:
    global NAME
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="sample:resnet50")
    ap.add_argument("--device", default="cuda", help="cuda (the point); cpu only to try the script")
    ap.add_argument("--profile-batches", default="1,32")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--measure", type=float, default=1.0, help="seconds of unprofiled timing per profile")
    ap.add_argument("--pair-batch", type=int, default=32)
    ap.add_argument("--pair-rounds", type=int, default=3)
    ap.add_argument("--batches", default="1,8,32,64,128,256")
    ap.add_argument("--concurrency", default="1,2,4")
    ap.add_argument("--duration", type=float, default=0.3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--bounds", default="2,5,20")
    ap.add_argument("--parts", default="profile,trace,pair,sweep")
    ap.add_argument("--name", default=NAME, help="results/NAME.{json,md}")
    a = ap.parse_args()
    a.profile_batches = [int(x) for x in a.profile_batches.split(",")]
    a.batches = [int(x) for x in a.batches.split(",")]
    a.concurrency = [int(x) for x in a.concurrency.split(",")]
    a.bounds = [float(x) for x in a.bounds.split(",")]
    parts = set(a.parts.split(","))
    NAME = a.name
    cmd = ("python3 gpu_profile.py " + " ".join(sys.argv[1:])).strip()
    if os.environ.get("CUDA_LAUNCH_BLOCKING"):
        cmd = f"CUDA_LAUNCH_BLOCKING={os.environ['CUDA_LAUNCH_BLOCKING']} {cmd}"
    t0 = time.perf_counter()
    res: dict[str, Any] = {"model": a.model, "args": {k: v for k, v in vars(a).items()}, "gpu_machine": gpu_machine()}
    log(f"machine: {json.dumps(res['gpu_machine'], default=str)}")

    def save() -> None:
        res["wall_s"] = time.perf_counter() - t0
        write_json(NAME, res)
        (HERE / "results" / f"{NAME}.md").write_text(report(res, cmd))

    fp32 = fp16 = None
    try:
        fp32 = load_model(a.model)
        t = time.perf_counter()
        built = optimize(fp32, "fp16", device=a.device)
        fp16 = built.model
        rep = built.reports[0].to_dict() if built.reports else {}
        res["build"] = {"wall_s": round(time.perf_counter() - t, 2), "cache_hit": built.cache_hit,
                        "recipe": built.recipe.label(), "report": rep,
                        "summary": "; ".join(rep.get("notes", [])[:2])}
        log(f"fp16 build in {res['build']['wall_s']} s")
    except Exception as e:  # noqa: BLE001
        res["build"] = _error(e)
        log(f"build FAILED: {res['build']['error']}")
    save()
    if fp16 is not None:
        if "profile" in parts:
            res["profiles"] = part_profiles(fp16, a)
            save()
        if "trace" in parts:
            try:
                res["trace"] = part_trace(fp16, a)
                log(f"  trace: {res['trace']['categories']} {res['trace']['kinds']}")
            except Exception as e:  # noqa: BLE001
                res["trace"] = _error(e)
                log(f"trace FAILED: {res['trace']['error']}")
            save()
        if "pair" in parts:
            try:
                res["pair"] = part_pair(fp32, fp16, a)
            except Exception as e:  # noqa: BLE001
                res["pair"] = _error(e)
                log(f"pair FAILED: {res['pair']['error']}")
            save()
        if "sweep" in parts:
            try:
                res["sweep"] = part_sweep(fp32, fp16, a)
            except Exception as e:  # noqa: BLE001
                res["sweep"] = _error(e)
                log(f"sweep FAILED: {res['sweep']['error']}\n{res['sweep']['traceback']}")
            save()
    save()
    print((HERE / "results" / f"{NAME}.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
