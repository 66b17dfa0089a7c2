"""A benchmark sweep spread over every GPU of a host, against the same sweep on one GPU.

Each trial builds one configuration (model x recipe) for ``cuda`` and measures it at several
batches on the GPU its worker is pinned to (``GpuExecutor``: one worker per GPU, one trial at a
time). The sweep runs once on all the GPUs given and once on the first GPU alone; the report gives
both wall times, the speed-up, and each GPU's busy share of the wall time.

    python benchmarks/gpu_sweep.py --gpus 0,1        # writes results/gpu_sweep.md/.json
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path
from typing import Any

from common import machine_line, write_json
from workbench.core.search.placement import GpuExecutor, gpu_indices, utilization

HERE = Path(__file__).resolve().parent


def trial(cfg: tuple[str, str, tuple[int, ...], float]) -> dict[str, Any]:
    """Build ``recipe`` of ``model`` for cuda and measure it on this worker's GPU."""
    import os  # noqa: PLC0415

    from workbench.core.build import optimize  # noqa: PLC0415
    from workbench.core.evaluation.run import bench  # noqa: PLC0415

    model, recipe, batches, budget = cfg
    t = time.monotonic()
    built = optimize(model, recipe, device="cuda").model if recipe != "fp32" else model
    out: dict[str, Any] = {"model": model, "recipe": recipe, "gpu_env": os.environ.get("CUDA_VISIBLE_DEVICES")}
    for b in batches:
        r = bench(built, device="cuda:0", batch=b, warmup=5, iterations=None, time_budget_s=budget)
        out[f"b{b}_p50_ms"] = r.latency.p50_ms
        out[f"b{b}_img_s"] = r.latency.throughput
    out["trial_s"] = round(time.monotonic() - t, 2)
    return out


def sweep(gpus: list[int], cfgs: list[tuple]) -> dict[str, Any]:
    t = time.monotonic()
    with GpuExecutor(gpus) as ex:
        rows = ex.map(trial, cfgs)
        placements = list(ex.placements)
    return {"gpus": gpus, "wall_s": round(time.monotonic() - t, 2), "rows": rows,
            "utilization": utilization(placements)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--gpus", default=None, help="GPU indices, e.g. 0,1 (default: every GPU)")
    p.add_argument("--models", nargs="+", default=["sample:resnet-fashion", "sample:resnet50"])
    p.add_argument("--recipes", nargs="+", default=["fp32", "fp16", "fuse,fp16"])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    p.add_argument("--budget", type=float, default=0.5, help="seconds of timing per batch")
    a = p.parse_args()
    gpus = gpu_indices(a.gpus)
    cfgs = [(m, r, tuple(a.batches), a.budget) for m, r in itertools.product(a.models, a.recipes)]
    runs = {"all": sweep(gpus, cfgs)}
    if len(gpus) > 1:
        runs["one"] = sweep(gpus[:1], cfgs)
    write_json("gpu_sweep", {"configs": len(cfgs), "runs": runs})
    lines = ["## GPU sweep across the GPUs of one host", "", f"Host: {machine_line()}.", "",
             f"{len(cfgs)} trials (models {', '.join(a.models)} x recipes {', '.join(a.recipes)}; each builds "
             f"for cuda and measures batches {', '.join(map(str, a.batches))} for {a.budget:g} s each), "
             "one worker per GPU pinned with CUDA_VISIBLE_DEVICES, one trial per GPU at a time.", "",
             "| run | GPUs | wall s | per-GPU trials / busy share |", "|---|---|---|---|"]
    for name, r in runs.items():
        per = "; ".join(f"GPU {g}: {u['trials']} / {u['busy_share']:.0%}" for g, u in r["utilization"]["gpus"].items())
        lines.append(f"| {name} | {','.join(map(str, r['gpus']))} | {r['wall_s']:.1f} | {per} |")
    if "one" in runs:
        lines += ["", f"Speed-up of the sweep on {len(gpus)} GPUs over one: "
                  f"{runs['one']['wall_s'] / runs['all']['wall_s']:.2f}x."]
    else:
        lines += ["", "One GPU only on this host: no multi-GPU comparison was possible."]
    lines += ["", "| model | recipe | " + " | ".join(f"b{b} p50 ms | b{b} img/s" for b in a.batches) + " |",
              "|---|---|" + "---|---|" * len(a.batches)]
    for row in runs["all"]["rows"]:
        lines.append(f"| {row['model']} | {row['recipe']} | " + " | ".join(
            f"{row[f'b{b}_p50_ms']:.3f} | {row[f'b{b}_img_s']:,.0f}" for b in a.batches) + " |")
    (HERE / "results" / "gpu_sweep.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
