"""GPU code paths that can be checked without a GPU.

The sweep on a GPU engine (one session per thread) failed on an H200 with CUDA error 900
("operation not permitted when stream is capturing"): ONNX Runtime's CUDA provider keeps its CUDA
graphs per thread, so each round's new threads captured again inside the timed loop, concurrently.
The fix: on GPU engines the warm-up calls run one thread at a time, enough of them to capture.
"""

from __future__ import annotations

import threading
import time

import workbench.core.evaluation.sweep as sweep_mod
from workbench.core.evaluation.sweep import GPU_ROUND_WARMUP, ROUND_WARMUP, ConcurrentRun, run_concurrent


class _Probe:
    """Callables that record how many of them run at once, before and after the barrier."""

    def __init__(self, n: int, warmup: int) -> None:
        self.lock = threading.Lock()
        self.active = 0
        self.max_warm = 0
        self.max_timed = 0
        self.calls = [0] * n
        self.warmup = warmup

    def fn(self, i: int):
        def call() -> None:
            warm = self.calls[i] < self.warmup
            self.calls[i] += 1
            with self.lock:
                self.active += 1
                if warm:
                    self.max_warm = max(self.max_warm, self.active)
                else:
                    self.max_timed = max(self.max_timed, self.active)
            time.sleep(0.01)
            with self.lock:
                self.active -= 1

        return call


def test_serial_warmup_runs_one_thread_at_a_time_then_all_together():
    probe = _Probe(4, warmup=3)
    r = run_concurrent([probe.fn(i) for i in range(4)], 0.15, warmup=3, serial_warmup=True)
    assert probe.max_warm == 1  # no warm-up call overlapped another thread's
    assert probe.max_timed >= 2  # the timed calls still ran concurrently
    assert all(c > 3 for c in probe.calls) and r.requests == sum(probe.calls) - 12


def test_default_warmup_stays_concurrent():
    probe = _Probe(4, warmup=3)
    run_concurrent([probe.fn(i) for i in range(4)], 0.05, warmup=3)
    assert probe.max_warm >= 2


def _side(engine: str, slow: bool, monkeypatch) -> list[dict]:
    seen: list[dict] = []

    def fake(fns, duration_s, warmup=ROUND_WARMUP, serial_warmup=False):
        seen.append({"warmup": warmup, "serial": serial_warmup})
        return ConcurrentRun([[10**9 if slow else 10**6]], duration_s, [0])

    monkeypatch.setattr(sweep_mod, "run_concurrent", fake)
    s = sweep_mod._Side(None, "x", {}, engine, "per-request")  # type: ignore[arg-type]
    s.fns[(1, 1)] = [lambda: None]
    s.runs[(1, 1)] = []
    for _ in range(2):
        s.runs[(1, 1)].append(s.measure((1, 1), 0.01))
    return seen


def test_gpu_engines_warm_up_serially_every_round_even_when_slow(monkeypatch):
    for engine in ("ort-cuda", "ort-tensorrt", "tensorrt"):
        seen = _side(engine, slow=True, monkeypatch=monkeypatch)
        assert seen == [{"warmup": GPU_ROUND_WARMUP, "serial": True}] * 2
    assert GPU_ROUND_WARMUP >= 2  # a regular run, then the capture


def test_cpu_engines_keep_their_warmup(monkeypatch):
    seen = _side("ort-cpu", slow=True, monkeypatch=monkeypatch)
    assert seen == [{"warmup": ROUND_WARMUP, "serial": False}, {"warmup": 0, "serial": False}]
    seen = _side("openvino", slow=False, monkeypatch=monkeypatch)
    assert seen == [{"warmup": ROUND_WARMUP, "serial": False}] * 2


def _collect_as_cuda(monkeypatch, **options):
    """collect_ort's CUDA branch, run on the CPU provider: the runner factory is swapped for one that
    records what the collector asked for and builds a CPU runner."""
    import workbench.core.evaluation.run as run_mod
    from conftest import tiny_cnn
    from workbench.core.model import load_model
    from workbench.core.profiling.ort import collect_ort
    from workbench.core.shapes import random_feeds, resolve_inputs, tensor_specs

    real = run_mod.make_runner
    asked: list[dict] = []

    def fake(model, device, **opts):
        asked.append({"device": device, **opts})
        opts.pop("cuda_graph", None)
        return real(model, "cpu", **opts)

    monkeypatch.setattr(run_mod, "make_runner", fake)
    m = load_model(tiny_cnn())
    ins, _ = tensor_specs(m.proto.graph)
    feeds = random_feeds(resolve_inputs(ins, None, 1))
    got = collect_ort(m, feeds, runs=2, warmup=1, device="cuda", options={"threads": 1, **options})
    return asked, got


def test_cuda_profile_runs_without_a_graph_and_says_what_node_times_are(monkeypatch):
    monkeypatch.delenv("CUDA_LAUNCH_BLOCKING", raising=False)
    asked, got = _collect_as_cuda(monkeypatch)
    assert asked[0]["device"] == "cuda" and asked[0]["cuda_graph"] is False
    text = " ".join(got.notes)
    assert "launch cost, not GPU time" in text and "CUDA_LAUNCH_BLOCKING=1" in text
    assert "both run without a CUDA graph" in text and "compare like with like" not in text
    assert got.nodes and all(n.median_ms >= 0 for n in got.nodes)
    _, graphed = _collect_as_cuda(monkeypatch, cuda_graph=True)
    assert "cuda_graph=False to compare like with like" in " ".join(graphed.notes)


def test_cuda_profile_times_the_same_kind_of_run_it_profiles(monkeypatch):
    """On an H200 the latency replayed a CUDA graph while the profiled session could not (the profile
    'explained' 535% of it): profile() now times without the graph unless told otherwise."""
    import dataclasses

    import workbench.core.profiling.run as prun
    from conftest import tiny_cnn
    from workbench.core.engines.registry import engine_for_device
    from workbench.core.profiling.layers import Collected

    real = prun.make_runner
    timed: list[dict] = []

    def fake_runner(model, device, **opts):
        timed.append(dict(opts))
        opts.pop("cuda_graph", None)
        return real(model, "cpu", **opts)

    cpu_entry = engine_for_device("cpu")
    monkeypatch.setattr(prun, "engine_for_device", lambda d: dataclasses.replace(cpu_entry, name="ort-cuda"))
    monkeypatch.setattr(prun, "make_runner", fake_runner)
    monkeypatch.setattr(prun, "_collector", lambda engine: lambda m, feeds, **kw: (kw["between"](), Collected([]))[1])
    prun.profile(tiny_cnn(), "cuda", threads=1, runs=2, warmup=1, measure_s=0.02)
    assert timed[-1]["cuda_graph"] is False
    prun.profile(tiny_cnn(), "cuda", threads=1, runs=2, warmup=1, measure_s=0.02, cuda_graph=True)
    assert timed[-1]["cuda_graph"] is True


def test_cuda_profile_notes_follow_launch_blocking_and_graph_option(monkeypatch):
    monkeypatch.setenv("CUDA_LAUNCH_BLOCKING", "1")
    _, got = _collect_as_cuda(monkeypatch, cuda_graph=False)
    text = " ".join(got.notes)
    assert "hold the GPU time plus one synchronization" in text
    assert "launch cost" not in text and "compare like with like" not in text
