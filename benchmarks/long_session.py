"""A long session: 200 toggle/build/measure cycles in one process, resident memory per cycle.

Drives the panel's engine (``workbench.core.session.Session``) on ``sample:resnet-fashion`` the
way a user toggling passes does: each cycle picks the next pass combination, builds it (the first
round builds for real, later rounds get the session's record back) and measures it again against
the baseline (fresh ONNX Runtime sessions, interleaved latency with a short budget, accuracy on a
quick subset). A second phase builds a *new* recipe every cycle (prune-magnitude at a new
sparsity), which is what grows a session's history. RSS is read after every cycle.

    nice -n 10 python benchmarks/long_session.py [--cycles 200] [--unique 50]
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time

import numpy as np
import psutil

from common import HERE, machine_line, write_json

TOGGLES = ["fold", "fuse", "fuse,fp16", "fuse,int8", "int8-dynamic", "fuse,prune-magnitude",
           "fuse,prune-channels:ratio=0.3", "fp16"]


def _slope_mib_per_100(rss: list[float]) -> float:
    """Least-squares slope of RSS (MiB) per 100 cycles."""
    if len(rss) < 2:
        return 0.0
    return float(np.polyfit(np.arange(len(rss)), rss, 1)[0] * 100)


def run(cycles: int, unique: int, budget_s: float, quick: int) -> dict:
    os.environ["WORKBENCH_CACHE_DIR"] = tempfile.mkdtemp(prefix="wb-long-")
    from workbench.core.session import Session  # noqa: PLC0415

    proc = psutil.Process()
    t0 = time.perf_counter()
    s = Session("sample:resnet-fashion", threads=2, latency_budget_s=budget_s, quick_samples=quick)
    s.measure(s.baseline)
    rss0 = proc.memory_info().rss / 2**20
    toggle_rss, toggle_s = [], []
    for i in range(cycles):
        t = time.perf_counter()
        rec = s.build(TOGGLES[i % len(TOGGLES)], measure=False)
        s.measure(rec)
        gc.collect()
        toggle_s.append(time.perf_counter() - t)
        toggle_rss.append(proc.memory_info().rss / 2**20)
    unique_rss, unique_s = [], []
    for j in range(unique):
        t = time.perf_counter()
        s.build(f"prune-magnitude:sparsity={0.05 + 0.9 * j / max(unique, 1):.4f}")
        gc.collect()
        unique_s.append(time.perf_counter() - t)
        unique_rss.append(proc.memory_info().rss / 2**20)
    warm = toggle_rss[len(TOGGLES):]  # after the first round every build exists
    return {
        "model": "sample:resnet-fashion", "threads": 2, "latency_budget_s": budget_s,
        "quick_samples": quick, "cycles": cycles, "unique_builds": unique,
        "rss_after_baseline_mib": rss0,
        "toggle": {"rss_mib": toggle_rss, "cycle_s": toggle_s,
                   "rss_first_round_end_mib": toggle_rss[len(TOGGLES) - 1],
                   "rss_last_mib": toggle_rss[-1], "rss_max_mib": max(toggle_rss),
                   "slope_after_first_round_mib_per_100_cycles": _slope_mib_per_100(warm)},
        "unique": {"rss_mib": unique_rss, "cycle_s": unique_s,
                   "slope_mib_per_100_builds": _slope_mib_per_100(unique_rss),
                   "records": len(s.records)},
        "wall_s": time.perf_counter() - t0,
    }


def render(r: dict) -> str:
    t, u = r["toggle"], r["unique"]
    lines = [
        "# Long session: memory over 200 toggle/build/measure cycles", "",
        f"Machine: {machine_line()}", "",
        f"`Session('{r['model']}')`, {r['threads']} threads, latency budget {r['latency_budget_s']} s per "
        f"measurement, accuracy on {r['quick_samples']} samples; RSS read after each cycle "
        f"(after `gc.collect()`); total wall time {r['wall_s']:.0f} s.", "",
        "| phase | cycles | RSS start MiB | RSS end MiB | RSS max MiB | slope MiB / 100 cycles | s / cycle (median) |",
        "|---|---|---|---|---|---|---|",
        f"| toggle {len(TOGGLES)} recipes round-robin, re-measure each | {r['cycles']} | "
        f"{r['rss_after_baseline_mib']:.0f} (after baseline) | {t['rss_last_mib']:.0f} | {t['rss_max_mib']:.0f} | "
        f"{t['slope_after_first_round_mib_per_100_cycles']:+.1f} (after round 1) | "
        f"{np.median(t['cycle_s']):.2f} |",
    ]
    if r["unique_builds"]:
        lines.append(
            f"| a new recipe each cycle (history grows) | {r['unique_builds']} | {t['rss_last_mib']:.0f} | "
            f"{u['rss_mib'][-1]:.0f} | {max(u['rss_mib']):.0f} | {u['slope_mib_per_100_builds']:+.1f} | "
            f"{np.median(u['cycle_s']):.2f} |")
    lines += ["", f"Recipes toggled: {', '.join(f'`{x}`' for x in TOGGLES)}.",
              "The per-cycle numbers are in `long_session.json`."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=200)
    ap.add_argument("--unique", type=int, default=50)
    ap.add_argument("--budget", type=float, default=0.05, help="latency budget per measurement, s")
    ap.add_argument("--quick", type=int, default=100, help="accuracy samples per measurement")
    args = ap.parse_args()
    r = run(args.cycles, args.unique, args.budget, args.quick)
    write_json("long_session", r)
    md = render(r)
    (HERE / "results" / "long_session.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
