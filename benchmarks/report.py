"""Assemble benchmarks/REPORT.md from the sections the benchmark scripts wrote."""

from __future__ import annotations

import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
SECTIONS = ["latency_overhead", "cpu_baseline", "passes_fusion", "passes_quant", "passes_prune",
            "passes_best", "peers", "search", "ui_timings", "gpu", "gpu_verification", "gpu_sweep"]


def main() -> None:
    parts = [
        "# Benchmark report",
        "",
        f"Regenerated {datetime.date.today().isoformat()} by `./scripts/bench` (raw numbers in "
        "`benchmarks/results/*.json`). Machines here are shared and noisy: every comparison is "
        "measured side by side in one run, interleaved and repeated; read the ratios first.",
        "",
    ]
    parts += peers_summary()
    for name in SECTIONS:
        md = HERE / "results" / f"{name}.md"
        parts.append(md.read_text() if md.exists() else f"## {name}\n\n(not run: `python benchmarks/{name}.py`)\n")
    (HERE / "REPORT.md").write_text("\n".join(parts))
    print(f"wrote {HERE / 'REPORT.md'}")


def peers_summary() -> list[str]:
    """Headline table from benchmarks/peers.py (the workbench against the peers), if it ran."""
    path = HERE / "results" / "peers.json"
    if not path.exists():
        return []
    import json  # noqa: PLC0415

    from peers import headline  # noqa: PLC0415

    return ["## Where the workbench stands against the usual tools", "", *headline(json.loads(path.read_text()))]


if __name__ == "__main__":
    main()
