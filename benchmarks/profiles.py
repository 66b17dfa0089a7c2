"""Issue 19's per-layer profile targets: how much of the measured latency the profile explains.

For each model (default ``sample:resnet-fashion`` and ``sample:resnet50``) and runtime (ONNX Runtime
CPU, OpenVINO CPU where it exists; ``--device cuda`` on a GPU machine), ``workbench.profile`` is run
``--repeats`` times: ``--runs`` profiled runs after ``--warmup`` warm-up runs (median per node), and
the latency it is checked against from a separate unprofiled runner, measured in slices between the
profiled runs (so both see the same machine load). Reported per repeat: measured p50, the sum of the
node medians and its share of the p50 ("explained", the target: >= 90%), the median per-run sum of
node times, the runtime's own profiled-run time and what the profiler added. Then the sample's int8
build beside its FP32 baseline (``profile_pair``): time by op type before and after, the units that
moved most, and the speed-up measured interleaved.

    python benchmarks/profiles.py                      # writes results/profiles.{json,md}
    python benchmarks/profiles.py --device cuda --models sample:resnet50 --recipe fp16 --name profiles_gpu
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

from common import HERE, machine_line, write_json
from workbench.core.build import optimize
from workbench.core.engines.registry import list_engines
from workbench.core.profiling.compare import profile_pair
from workbench.core.profiling.run import profile


def _one(model: str, device: str, a: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    rows = []
    for _ in range(a.repeats):
        t = time.perf_counter()
        p = profile(model, device, batch=a.batch, threads=a.threads, runs=a.runs, warmup=a.warmup,
                    measure_s=a.measure, **extra)
        rows.append({"measured_p50_ms": p.measured_ms, "node_median_sum_ms": p.total_ms, "explained": p.explained,
                     "node_sum_per_run_ms": p.node_sum_ms, "explained_per_run": p.explained_per_run,
                     "profiled_run_ms": p.profiled_run_ms, "wall_s": time.perf_counter() - t})
    top = p.by_op_type()[:6]
    return {"model": model, "device": device, "engine": p.engine, "method": p.method, "repeats": rows,
            "explained_median": statistics.median(r["explained"] for r in rows),
            "by_op_type": [{"op_type": o.op_type, "ms": o.ms, "share": o.share, "count": o.count} for o in top],
            "nodes": len(p.nodes), "mapped": sum(1 for n in p.nodes if n.covers),
            "inserted": sum(1 for n in p.nodes if n.origin == "inserted"), "folded": len(p.folded),
            "settings": {k: v for k, v in p.settings.items() if isinstance(v, (int, float, str, bool))},
            "notes": list(p.notes)}


def _pair(a: argparse.Namespace, device: str) -> dict[str, Any]:
    built = optimize(a.models[0], a.recipe, device=device)
    c = profile_pair(built.source, built.model, device, batch=a.batch, threads=a.threads, runs=a.runs,
                     warmup=a.warmup, rounds=a.rounds)
    return {"model": a.models[0], "recipe": a.recipe, "device": device, "speedup": c.speedup,
            "speedup_range": list(c.speedup_range), "rounds": c.rounds,
            "baseline_explained": c.baseline.explained, "build_explained": c.build.explained,
            "by_op_type": [{"op_type": o.op_type, "baseline_ms": o.baseline_ms, "build_ms": o.build_ms,
                            "baseline_count": o.baseline_count, "build_count": o.build_count}
                           for o in c.by_op_type[:10]],
            "faster": [d.to_dict() for d in c.faster(5)], "slower": [d.to_dict() for d in c.slower(5)]}


def report(res: dict[str, Any], a: argparse.Namespace, cmd: str) -> str:
    out = [f"## {a.name}", "", f"`{cmd}`", "", machine_line(), "",
           f"Batch {a.batch}, {a.threads} threads; each repeat: {a.runs} profiled runs after {a.warmup} "
           f"warm-up runs (median per node), checked against ~{a.measure:g} s of unprofiled runs on a runner "
           "of their own, in slices between the profiled runs. Target: the node medians explain >= 90% of "
           "the measured p50.", "",
           "| model | runtime | measured p50 ms | node medians ms | explained | per-run node sum | profiled run ms "
           "| nodes (mapped / inserted) | target |", "|---|---|---|---|---|---|---|---|---|"]
    for r in res["profiles"]:
        reps = r["repeats"]
        p50 = statistics.median(x["measured_p50_ms"] for x in reps)
        med = statistics.median(x["node_median_sum_ms"] for x in reps)
        ex = [x["explained"] for x in reps]
        per = statistics.median(x["explained_per_run"] for x in reps)
        prun = statistics.median(x["profiled_run_ms"] for x in reps)
        ok = "pass" if r["explained_median"] >= 0.9 else "MISS"
        out.append(f"| {r['model']} | {r['engine']} | {p50:.2f} | {med:.2f} | {r['explained_median']:.0%} "
                   f"[{min(ex):.0%}-{max(ex):.0%}] | {per:.0%} | {prun:.2f} | {r['nodes']} ({r['mapped']} / "
                   f"{r['inserted']}) | {ok} |")
    out += ["", "Time by runtime op type (last repeat):", ""]
    for r in res["profiles"]:
        ops = ", ".join(f"{o['op_type']} {o['ms']:.2f} ms ({o['share']:.0%}, x{o['count']})" for o in r["by_op_type"])
        out.append(f"- {r['model']} on {r['engine']}: {ops}")
    if res.get("pair"):
        p = res["pair"]
        lo, hi = p["speedup_range"]
        out += ["", f"### {p['recipe']} beside FP32: {p['model']} on {p['device']}", "",
                f"Speed-up {p['speedup']:.2f}x [{lo:.2f}-{hi:.2f}] (p50, {p['rounds']} interleaved rounds, "
                f"unprofiled); the profiles explain {p['baseline_explained']:.0%} (FP32) and "
                f"{p['build_explained']:.0%} (build).", "",
                "| op type | FP32 ms | build ms | count |", "|---|---|---|---|"]
        for o in p["by_op_type"]:
            out.append(f"| {o['op_type']} | {o['baseline_ms']:.3f} | {o['build_ms']:.3f} | "
                       f"{o['baseline_count']} -> {o['build_count']} |")
        out += ["", "Units (runtime nodes joined through the model nodes they cover) that moved most:", ""]
        for d in p["faster"] + p["slower"]:
            out.append(f"- {d['label']}: {d['baseline_ms']:.3f} -> {d['build_ms']:.3f} ms ({d['kind']}; "
                       f"{d['baseline_ops'] or '-'} -> {d['build_ops'] or '-'})")
    return "\n".join(out) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="sample:resnet-fashion,sample:resnet50")
    p.add_argument("--device", default=None, help="default: cpu and openvino where it exists")
    p.add_argument("--recipe", default="int8", help="the build profiled beside the first model's FP32")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--measure", type=float, default=1.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--name", default="profiles")
    a = p.parse_args()
    a.models = a.models.split(",")
    ready = {e.name for e in list_engines() if e.available}
    devices = [a.device] if a.device else ["cpu"] + (["openvino"] if "openvino" in ready else [])
    res: dict[str, Any] = {"profiles": []}
    for m in a.models:
        for d in devices:
            print(f"{m} on {d}", flush=True)
            res["profiles"].append(_one(m, d, a))
    res["pair"] = _pair(a, devices[0])
    write_json(a.name, res)
    cmd = ("python benchmarks/profiles.py " + " ".join(sys.argv[1:])).strip()
    md = HERE / "results" / f"{a.name}.md"
    md.write_text(report(res, a, cmd))
    print(md.read_text())


if __name__ == "__main__":
    main()
