"""How much the workbench's latency loop adds to a bare ``session.run`` loop.

Both loops call the same ONNX Runtime session on the same inputs the same number of times; the
bare loop is ``for _ in range(n): session.run(None, feeds)`` timed as a whole. Rounds alternate
which loop goes first. The overhead is (workbench loop wall time / bare loop wall time) - 1,
median over rounds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from common import machine_line, write_json
from workbench import load_model
from workbench.core.engines.ort_cpu import OrtCpuOptions, OrtCpuRunner
from workbench.core.evaluation.latency import time_callable
from workbench.core.shapes import random_feeds, resolve_inputs, tensor_specs


def tiny_model():
    """A single Relu on 1x64: a run of a few microseconds, the worst case for loop overhead."""
    from onnx import TensorProto, helper  # noqa: PLC0415

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def measure(model_src, n: int, rounds: int, threads: int) -> dict:
    model = load_model(model_src)
    ins, _ = tensor_specs(model.proto.graph)
    feeds = random_feeds(resolve_inputs(ins, batch=1))
    with OrtCpuRunner(model, OrtCpuOptions(threads=threads)) as r:
        sess = r.session
        fn = r.prepare(feeds)
        for _ in range(20):
            fn()
        ratios, bare_us, wb_us = [], [], []
        for i in range(rounds):
            def bare() -> float:
                t0 = time.perf_counter()
                for _ in range(n):
                    sess.run(None, feeds)
                return time.perf_counter() - t0

            def ours() -> float:
                return time_callable(fn, warmup=0, iterations=n).wall_s

            if i % 2 == 0:
                b, w = bare(), ours()
            else:
                w, b = ours(), bare()
            ratios.append(w / b)
            bare_us.append(b / n * 1e6)
            wb_us.append(w / n * 1e6)
    return {
        "iterations_per_loop": n, "rounds": rounds, "threads": threads,
        "bare_us_per_run": statistics.median(bare_us), "workbench_us_per_run": statistics.median(wb_us),
        "overhead_pct": (statistics.median(ratios) - 1) * 100,
        "overhead_pct_quartiles": [float((q - 1) * 100) for q in np.percentile(ratios, [25, 75])],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=20)
    a = p.parse_args()
    res = {
        "sample:resnet-fashion (batch 1)": measure("sample:resnet-fashion", 100, a.rounds, 2),
        "single Relu 1x64 (worst case)": measure(tiny_model(), 2000, a.rounds, 1),
    }
    write_json("latency_overhead", {"results": res})
    lines = ["## Latency-loop overhead", "", f"Machine: {machine_line()}.", "",
             "Same session, same inputs; each round runs a bare `session.run` loop and the "
             "workbench's `time_callable` loop (order alternating), overhead = median over rounds of "
             "(workbench wall / bare wall) - 1. Target: at most 2%.", "",
             "| model | runs per loop | rounds | bare µs/run | workbench µs/run | overhead (median) | IQR |",
             "|---|---|---|---|---|---|---|"]
    for name, r in res.items():
        q = r["overhead_pct_quartiles"]
        lines.append(f"| {name} | {r['iterations_per_loop']} | {r['rounds']} | {r['bare_us_per_run']:.1f} | "
                     f"{r['workbench_us_per_run']:.1f} | {r['overhead_pct']:+.2f}% | "
                     f"{q[0]:+.2f}% to {q[1]:+.2f}% |")
    lines.append("")
    (__import__("pathlib").Path(__file__).parent / "results" / "latency_overhead.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
