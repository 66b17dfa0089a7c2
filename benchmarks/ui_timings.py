"""The interactive loop's timings: from toggling a pass to the first deltas in the panel.

Drives the real panel in-process (the same object a click drives), auto-build on, on
`sample:resnet-fashion`: each pass is toggled on, which builds, measures latency interleaved with
the baseline and accuracy on the quick subset, and renders the deltas. Then each configuration is
toggled again (same session: results come straight back), and built in a fresh session (the build
comes from the disk cache, the measurement is redone). A fresh, empty cache folder is used.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from common import machine_line, write_json

CONFIGS = [("fuse", {}), ("fp16", {}), ("prune-channels", {"ratio": 0.3}), ("int8", {})]


def run(quick_samples: int) -> dict:
    os.environ["WORKBENCH_CACHE_DIR"] = tempfile.mkdtemp(prefix="wb-ui-bench-")
    from workbench.ui import Workbench  # noqa: PLC0415

    t0 = time.perf_counter()
    wb = Workbench("sample:resnet-fashion", quick_samples=quick_samples, refine=False, auto_build=True)
    out = {"load_and_baseline_s": time.perf_counter() - t0, "configs": {}}
    for name, opts in CONFIGS:
        t = time.perf_counter()
        wb.enable(name, **opts)
        with_accuracy = time.perf_counter() - t
        first = (wb.first_deltas_at or t) - t
        final = (wb.final_deltas_at or t) - t
        rec = wb.current
        t = time.perf_counter()  # the Graph tab opened on this build: baseline and build laid out
        wb.tabs.selected_index = wb.TAB_GRAPH
        graph_tab = time.perf_counter() - t
        wb.tabs.selected_index = wb.TAB_CHARTS
        wb.disable(name)
        t = time.perf_counter()
        wb.enable(name, **opts)
        again = time.perf_counter() - t
        wb.disable(name)
        out["configs"][name] = {"first_deltas_s": first, "own_deltas_s": final,
                                "first_look": first < final - 1e-9,
                                "with_subset_accuracy_s": with_accuracy,
                                "again_same_session_s": again, "graph_tab_s": graph_tab,
                                "build_s": rec.build.wall_s, "speedup_p50": rec.baseline_latency.p50_ms / rec.latency.p50_ms,
                                "top1_subset": rec.accuracy.top1, "error": wb.w_error.value or None}
        print(name, out["configs"][name])
    wb2 = Workbench("sample:resnet-fashion", quick_samples=quick_samples, refine=False, auto_build=True)
    for name, opts in CONFIGS:
        t = time.perf_counter()
        wb2.enable(name, **opts)
        out["configs"][name]["new_session_disk_cache_s"] = time.perf_counter() - t
        out["configs"][name]["disk_cache_hit"] = bool(wb2.current.build.cache_hit)
        wb2.disable(name)
    t = time.perf_counter()
    wb2.session.refine(wb2.current)
    out["refine_full_set_s"] = time.perf_counter() - t
    wb.close()
    wb2.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick-samples", type=int, default=1000)
    a = p.parse_args()
    res = run(a.quick_samples)
    write_json("ui_timings", {"quick_samples": a.quick_samples, "results": res})
    targets = {"fuse": 3, "fp16": 3, "prune-channels": 3, "int8": 10}
    lines = ["## Interactive loop (the panel, in-process)", "", f"Machine: {machine_line()}.", "",
             f"`sample:resnet-fashion`, batch 1, default threads; accuracy first on {a.quick_samples} test "
             "images (95% Wilson interval shown in the panel), latency interleaved with the baseline "
             "for ~1 s. Times are wall-clock from the toggle, one run each: *first deltas* is when latency, "
             "throughput, size and memory deltas are rendered (the panel says accuracy is being "
             "measured); *with accuracy* adds top-1 and agreement on the quick subset. For "
             "`prune-channels` the first deltas are a *first look*: the same graph structure built "
             "with the channels cut but not yet refit (`reconstruct=false`, latency and size only, "
             "labeled as such in the panel), measured interleaved with the baseline while nothing "
             "else runs; then the real build (with reconstruction) is measured again and its own "
             "deltas replace the first look (*own deltas* column).", "",
             f"Loading the model and measuring the baseline: {res['load_and_baseline_s']:.1f} s. "
             f"Refining one build's accuracy to all 10,000 images (background): {res['refine_full_set_s']:.1f} s.", "",
             "The graphs are drawn only while the Graph tab is shown (issue 20); *Graph tab s* is the "
             "time to open it on the build (baseline and build laid out side by side, Q/DQ folded).", "",
             "| pass | first deltas s (target) | own deltas s | with subset accuracy s | of which build s | toggled again, same session s | new session, build from disk cache s | Graph tab s |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in res["configs"].items():
        look = " (first look)" if r["first_look"] else ""
        lines.append(f"| {name} | {r['first_deltas_s']:.2f}{look} (< {targets[name]}) | "
                     f"{r['own_deltas_s']:.2f} | {r['with_subset_accuracy_s']:.2f} | {r['build_s']:.2f} | "
                     f"{r['again_same_session_s']:.3f} (< 0.5) | {r['new_session_disk_cache_s']:.2f} "
                     f"({'hit' if r['disk_cache_hit'] else 'miss'}) | {r['graph_tab_s']:.2f} |")
    lines.append("")
    md = "\n".join(lines)
    (__import__("pathlib").Path(__file__).parent / "results" / "ui_timings.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
