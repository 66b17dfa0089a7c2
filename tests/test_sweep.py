"""Throughput sweeps: the knee, point bookkeeping, real concurrency, baselines, OpenVINO streams, CLI, figure."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import make_model
from workbench.core.engines.registry import list_engines
from workbench.core.evaluation.sweep import SweepPoint, knee, run_concurrent, sweep
from workbench.errors import EngineRunError, UsageError

ENGINES = {e.name: e for e in list_engines()}
FAST = {"duration_s": 0.05, "rounds": 2, "threads": 1}


def mlp(batch: int | str = "batch", seed: int = 0):
    """x[batch, 64] -> MatMul(64x64) -> Relu."""
    w = numpy_helper.from_array(np.random.default_rng(seed).standard_normal((64, 64)).astype(np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 64])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 64])], [w])


def pt(batch: int, c: int, tput: float, p99: float) -> SweepPoint:
    return SweepPoint(batch, c, tput, p99 / 2, p99 * 0.8, p99, 10, 1.0, [tput])


def test_knee_on_a_synthetic_curve():
    curve = [pt(1, 1, 100, 2), pt(1, 4, 300, 6), pt(8, 1, 500, 9), pt(8, 4, 900, 30), pt(32, 1, 700, 12)]
    assert knee(curve, 10) is curve[2]  # the fastest within the bound, not the fastest overall
    assert knee(curve, 40) is curve[3]
    assert knee(curve, 6) is curve[1]  # p99 equal to the bound fits
    assert knee(curve, 1.9) is None
    assert knee([], 10) is None


def test_knee_ties_go_to_lower_p99_then_fewer_items_in_flight():
    a, b = pt(8, 2, 500, 9), pt(8, 1, 500, 7)
    assert knee([a, b], 10) is b
    c, d = pt(4, 2, 500, 7), pt(8, 1, 500, 7)
    assert knee([c, d], 10) is c  # 8 in flight each: the smaller batch
    e = pt(2, 2, 500, 7)
    assert knee([c, d, e], 10) is e


def test_run_concurrent_runs_threads_at_once():
    def nap() -> None:
        time.sleep(0.01)  # releases the GIL, as session.run does

    r = run_concurrent([nap, nap], 0.1, warmup=0)
    assert len(set(r.thread_ids)) == 2 and threading.get_ident() not in r.thread_ids
    assert all(len(x) >= 5 for x in r.latencies_ns)
    # Serially, 0.1 s of 10 ms naps is ~10 requests; two at once make ~20 in about the same wall.
    assert r.requests >= 14 and r.wall_s < 0.2


def test_run_concurrent_raises_a_failing_thread():
    calls = []

    def bad() -> None:
        calls.append(1)
        if len(calls) > 3:
            raise ValueError("boom")

    with pytest.raises(EngineRunError, match="boom"):
        run_concurrent([bad, lambda: time.sleep(0.001)], 5.0, warmup=0)


@pytest.fixture(scope="module")
def mlp_sweep():
    return sweep(mlp(), batches=(1, 4), concurrency=(1, 2), latency_bound_ms=50, **FAST)


def test_points_are_consistent(mlp_sweep):
    r = mlp_sweep
    assert [(p.batch, p.concurrency) for p in r.points] == [(1, 1), (1, 2), (4, 1), (4, 2)]
    assert r.engine == "ort-cpu" and r.mode == "per-request" and r.baseline_points is None and r.rounds == 2
    for p in r.points:
        assert len(p.round_throughputs) == len(p.round_requests) == len(p.round_wall_s) == 2
        for t, n, w in zip(p.round_throughputs, p.round_requests, p.round_wall_s):
            assert t == pytest.approx(p.batch * n / w, rel=1e-9)
        assert p.throughput == pytest.approx(statistics.median(p.round_throughputs))
        assert p.requests == sum(p.round_requests) == sum(p.thread_requests)
        pooled = p.batch * p.requests / p.wall_s  # lies between the rounds' throughputs
        assert min(p.round_throughputs) * 0.999 <= pooled <= max(p.round_throughputs) * 1.001
        assert 0 < p.p50_ms <= p.p90_ms <= p.p99_ms
        assert p.wall_s >= 2 * 0.05 and p.speedup is None
        assert len(p.thread_requests) == p.concurrency and all(n > 0 for n in p.thread_requests)
    assert r.inputs == {"x": {"shape": ["batch", 64], "dtype": "float32"}}
    assert "2 rounds" in r.method and "shuffled" in r.method and r.elapsed_s >= r.setup_s > 0


def test_result_knee_and_json(mlp_sweep):
    r = mlp_sweep
    assert r.knee() == knee(r.points, 50)
    assert r.knee(1e-6) is None
    d = json.loads(json.dumps(r.to_dict()))
    assert len(d["points"]) == 4 and d["peak"]["throughput"] == max(p.throughput for p in r.points)
    assert d["machine"]["cpu"] and d["method"] == r.method


def test_per_request_mode_splits_threads():
    r = sweep(mlp(), batches=(2,), concurrency=(1, 2), mode="per-request", duration_s=0.05, rounds=1, threads=2)
    assert r.mode == "per-request"
    assert [p.config["sessions"] for p in r.points] == [1, 2]
    assert [p.config["threads"] for p in r.points] == [2, 1]


def test_baseline_against_itself_is_about_one():
    r = sweep(mlp(), baseline=mlp(), batches=(8,), concurrency=(1, 2), duration_s=0.05, rounds=3, threads=1)
    assert r.baseline_points is not None and len(r.baseline_points) == 2
    for p in r.points:
        assert 0.5 < p.speedup < 2, p
        lo, hi = p.speedup_range
        assert lo <= p.speedup <= hi
    assert "A B B A" in r.method


def test_mode_against_another_mode_of_the_same_model():
    r = sweep(mlp(), baseline=mlp(), baseline_mode="shared", mode="per-request", batches=(1,),
              concurrency=(2,), duration_s=0.05, rounds=1, threads=2)
    assert r.mode == "per-request" and r.baseline_mode == "shared"
    assert r.points[0].config["sessions"] == 2 and r.baseline_points[0].config["sessions"] == 1


@pytest.mark.skipif(not ENGINES["openvino"].available, reason="openvino is not installed")
def test_openvino_streams_follow_concurrency():
    r = sweep(mlp(), "openvino", batches=(4,), concurrency=(1, 2), duration_s=0.05, rounds=1, threads=2)
    assert r.engine == "openvino" and r.mode == "streams"
    assert [p.config["streams_asked"] for p in r.points] == [1, 2]
    assert [p.config["streams"] for p in r.points] == [1, 2]  # what OpenVINO read back
    assert all(p.requests > 0 and p.config["sessions"] == 1 for p in r.points)
    assert r.points[1].thread_requests[0] > 0 and r.points[1].thread_requests[1] > 0
    with pytest.raises(UsageError, match="streams"):
        sweep(mlp(), "openvino", batches=(1,), concurrency=(1,), mode="streams", streams=2, **FAST)


def test_fixed_batch_is_declined_with_a_note():
    r = sweep(mlp(batch=4), batches=(1, 4), concurrency=(1,), **FAST)
    assert [p.batch for p in r.points] == [4]
    assert len(r.declined) == 1 and "batch 1" in r.declined[0] and "'x'" in r.declined[0]
    with pytest.raises(UsageError, match="no batch of .* can run.*'x'"):
        sweep(mlp(batch=4), batches=(1, 8), concurrency=(1,), **FAST)


@pytest.mark.parametrize("kwargs, match", [
    ({"batches": ()}, "at least one"),
    ({"concurrency": []}, "at least one"),
    ({"batches": (0, 1)}, "batch must be integers >= 1"),
    ({"concurrency": (1, -2)}, "concurrency must be integers >= 1"),
    ({"batches": (1, 1)}, "twice"),
    ({"duration_s": 0}, "duration"),
    ({"duration_s": -1.0}, "duration"),
    ({"rounds": 0}, "rounds"),
    ({"latency_bound_ms": 0}, "latency bound"),
    ({"mode": "fast"}, "unknown sweep mode"),
    ({"mode": "streams"}, "OpenVINO's"),
    ({"threads": 0}, "threads"),
    ({"baseline_mode": "shared"}, "needs a baseline"),
])
def test_bad_arguments_are_usage_errors(kwargs, match):
    with pytest.raises(UsageError, match=match):
        sweep(mlp(), **{"batches": (1,), "concurrency": (1,), "duration_s": 0.05, **kwargs})


def test_progress_reports_setup_and_rounds():
    seen = []
    sweep(mlp(), batches=(1,), concurrency=(1, 2), duration_s=0.02, rounds=2, threads=1,
          progress=lambda s, d, t: seen.append((s, d, t)))
    assert ("setup", 2, 2) in seen and seen[-1] == ("sweep", 4, 4)


@pytest.mark.gpu
@pytest.mark.skipif(not ENGINES["ort-cuda"].available, reason="ort-cuda is not available here")
def test_ort_cuda_sweep_uses_a_session_per_thread():
    r = sweep(mlp(), "cuda", batches=(4,), concurrency=(1, 2), duration_s=0.05, rounds=1)
    assert r.mode == "per-request" and [p.config["sessions"] for p in r.points] == [1, 2]
    with pytest.raises(UsageError, match="IO binding"):
        sweep(mlp(), "cuda", batches=(4,), concurrency=(2,), mode="shared", duration_s=0.05)


def test_cli_sweep_json(model_file):
    path = str(model_file(mlp()))
    p = subprocess.run([sys.executable, "-m", "workbench", "bench", path, "--batch", "1,4", "--concurrency", "1,2",
                        "--duration", "0.05", "--rounds", "1", "--threads", "1", "--json"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert [(x["batch"], x["concurrency"]) for x in d["points"]] == [(1, 1), (1, 2), (4, 1), (4, 2)]
    assert d["rounds"] == 1 and d["duration_s"] == 0.05 and d["knee"] is None and d["peak"]


def _main(capsys, *args: str) -> tuple[int, str, str]:
    from workbench.cli import main

    try:
        rc = main(list(args))
    except SystemExit as e:  # argparse's errors
        rc = int(e.code)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_sweep_table(model_file, capsys):
    from workbench.core.machine import machine_info

    path = str(model_file(mlp()))
    fast = ("--duration", "0.05", "--rounds", "1", "--threads", "1")
    rc, out, err = _main(capsys, "bench", path, "--batch", "2", "--concurrency", "1,2", *fast,
                         "--latency-bound", "1000", "--baseline", path)
    assert rc == 0, err
    assert "knee under p99 <= 1000 ms: batch 2 x concurrency" in out
    assert "speed-up [range]" in out and "method:" in out and machine_info()["cpu"] in out
    rc, out, err = _main(capsys, "bench", path, "--batch", "1,2", *fast)
    assert rc == 0, err
    assert "peak: batch" in out and "--latency-bound MS sets the knee" in out


def test_cli_single_batch_keeps_bench(model_file, capsys):
    path = str(model_file(mlp()))
    rc, out, err = _main(capsys, "bench", path, "--batch", "4", "--iterations", "5", "--warmup", "1", "--json")
    assert rc == 0, err
    d = json.loads(out)
    assert d["batch"] == 4 and d["iterations"] == 5 and "points" not in d
    rc, _, err = _main(capsys, "bench", path, "--batch", "4", "--latency-bound", "5")
    assert rc == 2 and "--latency-bound belongs to a throughput sweep" in err
    rc, _, err = _main(capsys, "bench", path, "--batch", "1,x")
    assert rc == 2 and "invalid int" in err
    rc, _, err = _main(capsys, "bench", path, "--concurrency", "0", "--duration", "0.05")
    assert rc == 2 and "concurrency must be integers >= 1" in err
    rc, _, err = _main(capsys, "bench", path, "--concurrency", "1", "--device", "cpu,openvino")
    assert rc == 2 and "one device" in err


def test_sweep_figure_and_table(mlp_sweep):
    from workbench.ui.sweep_view import sweep_figure, sweep_table_html

    fig = sweep_figure(mlp_sweep, bound_ms=1e4)
    names = [t.name for t in fig.data]
    assert names == ["batch 1", "batch 4", "knee"]
    assert list(fig.data[0].text) == ["c=1", "c=2"]
    assert fig.data[2].marker.symbol == "star" and "knee" in fig.data[2].hovertext[0]
    assert "items/s" in fig.layout.xaxis.title.text and "ms" in fig.layout.yaxis.title.text
    assert any(s.y0 == 1e4 for s in fig.layout.shapes)
    same = sweep_figure(json.loads(json.dumps(mlp_sweep.to_dict())), bound_ms=1e4)  # from saved JSON
    assert [t.name for t in same.data] == names
    assert [t.name for t in sweep_figure(mlp_sweep, bound_ms=1e-6).data] == ["batch 1", "batch 4"]
    table = sweep_table_html(mlp_sweep, bound_ms=1e4)
    assert table.count("wb-sweep-row") == 4 and "font-weight:bold" in table and "knee" in table


def test_sweep_figure_draws_the_baseline_dashed():
    from workbench.ui.sweep_view import sweep_figure, sweep_table_html

    r = sweep(mlp(), baseline=mlp(seed=1), batches=(1, 2), concurrency=(1,), duration_s=0.02, rounds=1,
              threads=1)
    fig = sweep_figure(r)
    base = [t for t in fig.data if t.name.startswith("baseline")]
    assert len(base) == 2 and all(t.line.dash == "dash" for t in base)
    assert len([t for t in fig.data if t.name.startswith("batch")]) == 2
    assert "speed-up" in sweep_table_html(r)
