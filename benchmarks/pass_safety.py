"""Every pass on the generated third-party-like zoo (tests/zoo.py): built or declined, and why.

Writes ``benchmarks/results/pass_safety.json`` and ``pass_safety.md``. Run:
``.venv/bin/python benchmarks/pass_safety.py [--models a,b] [--passes p,q]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the zoo is a test fixture, not product code

from zoo import PASSES, build_zoo, check_pass  # noqa: E402

OUT = ROOT / "benchmarks" / "results"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", default="", help="comma-separated zoo names (default: all)")
    ap.add_argument("--passes", default="", help="comma-separated passes (default: all)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args()
    passes = [p for p in args.passes.split(",") if p] or list(PASSES)
    with tempfile.TemporaryDirectory() as d:
        zoo = build_zoo(d)
        if args.models:
            zoo = [m for m in zoo if m.name in args.models.split(",")]
        rows = []
        for m in zoo:
            for p in passes:
                t0 = time.perf_counter()
                row = check_pass(m, p)
                row["seconds"] = round(time.perf_counter() - t0, 2)
                rows.append(row)
                print(f"{row['outcome']:8s} {m.name:22s} {p:15s} {row['seconds']:6.2f}s  {row['why'][:150]}",
                      flush=True)
        what = {m.name: m.represents for m in zoo}
    counts = Counter(r["outcome"] for r in rows)
    print(dict(counts))
    if not args.no_write:
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "pass_safety.json").write_text(json.dumps({"counts": counts, "models": what, "rows": rows},
                                                         indent=2))
        (OUT / "pass_safety.md").write_text(_markdown(rows, what, passes, counts))
    return 1 if counts.get("failed") else 0


def _markdown(rows: list[dict], what: dict[str, str], passes: list[str], counts: Counter) -> str:
    cell = {"built": "built", "declined": "declined", "failed": "**FAILED**"}
    lines = ["## Pass safety on the generated zoo", "",
             "Every pass on every model of `tests/zoo.py` (generated locally, seeded): **built** = ONNX "
             "Runtime (CPU) loads and runs the result on the baseline's random inputs, same output names "
             "and shapes, finite where the baseline is; **declined** = a reason and the model unchanged. "
             f"Totals: {', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}.", "",
             "| model | " + " | ".join(passes) + " |", "|---" * (len(passes) + 1) + "|"]
    by = {(r["model"], r["pass"]): r for r in rows}
    for m in what:
        lines.append(f"| {m} | " + " | ".join(cell[by[(m, p)]["outcome"]] if (m, p) in by else "" for p in passes)
                     + " |")
    lines += ["", "## Models", ""] + [f"- `{m}`: {w}" for m, w in what.items()]
    lines += ["", "## Declines and failures", ""]
    for r in rows:
        if r["outcome"] != "built":
            lines.append(f"- `{r['model']}` / `{r['pass']}` ({r['outcome']}): {r['why']}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
