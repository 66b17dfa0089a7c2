"""Assemble benchmarks/REPORT.md from the sections the benchmark scripts wrote."""

from __future__ import annotations

import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
SECTIONS = ["latency_overhead", "cpu_baseline", "passes_fusion", "passes_quant", "passes_prune",
            "passes_best", "pass_safety", "peers", "peers_openvino", "openvino_targets", "profiles", "throughput", "search", "ui_timings", "gpu", "gpu_verification", "gpu_sweep", "profiles_gpu"]


def main() -> None:
    parts = [
        "# Benchmark report",
        "",
        f"Regenerated {datetime.date.today().isoformat()} by `./scripts/bench` (raw numbers in "
        "`benchmarks/results/*.json`). Machines here are shared and noisy: every comparison is "
        "measured side by side in one run, interleaved and repeated; read the ratios first. "
        "Within one `./scripts/bench` run, top-1 of the same model bytes on the same images is "
        "computed once and read back by later steps (FP32 on the 10,000 test images is asked for "
        "by three of them); latency is always measured anew. In the interleaved rounds, a "
        "configuration is warmed up (one untimed run) before each round while its runs take under "
        "50 ms, and before the first round only when they take longer.",
        "",
    ]
    parts += peers_summary()
    parts += run_times()
    for name in SECTIONS:
        md = HERE / "results" / f"{name}.md"
        parts.append(md.read_text() if md.exists() else f"## {name}\n\n(not run: `python benchmarks/{name}.py`)\n")
    (HERE / "REPORT.md").write_text("\n".join(parts))
    print(f"wrote {HERE / 'REPORT.md'}")


def run_times() -> list[str]:
    """How long each step of the last ``./scripts/bench`` took (written by the script)."""
    path = HERE / "results" / "bench_times.txt"
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    rows = [ln.rsplit(":", 1) for ln in lines[1:] if ":" in ln]
    out = ["## How long the regeneration took", "", lines[0].lstrip("# ") + ".", "",
           "| step | wall s |", "|---|---|"]
    out += [f"| `{k.strip()}` | {v.strip()} |" for k, v in rows]
    return out + [""]


def peers_summary() -> list[str]:
    """Headline table from benchmarks/peers.py (the workbench against the peers), if it ran."""
    path = HERE / "results" / "peers.json"
    if not path.exists():
        return []
    import json  # noqa: PLC0415

    from peers import headline  # noqa: PLC0415

    data = json.loads(path.read_text())
    return ["## Where the workbench stands against the usual tools", "",
            f"From `benchmarks/peers.py` ({data.get('wall_s', 0) / 60:.0f} min); "
            f"machine state at its start: `{data.get('uptime', '?')}`. A loaded machine inflates the "
            "FP32 baselines' spread; rerun `python benchmarks/peers.py` on a quiet machine for headline "
            "figures. Per-section results below may come from other runs (each states its machine).", "",
            *headline(data)]


if __name__ == "__main__":
    main()
