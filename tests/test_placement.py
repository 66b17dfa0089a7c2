"""GPU placement for searches and sweeps on a multi-GPU host, checked with fake GPU lists: one
pinned worker per GPU, never two trials on one GPU at once, every GPU used, results in order."""

from __future__ import annotations

import os
import time

import pytest

from workbench.core.search.placement import GpuExecutor, gpu_indices, utilization
from workbench.errors import UsageError


def _trial(x: int) -> tuple[int, str, int]:
    """Stands in for a GPU trial: reports the GPU its process was pinned to."""
    time.sleep(0.3)
    return x * x, os.environ.get("CUDA_VISIBLE_DEVICES", ""), os.getpid()


def _fails(x: int) -> int:
    if x == 2:
        raise ValueError("trial 2 failed")
    return x


def test_one_pinned_worker_per_gpu_and_never_two_trials_on_one_gpu():
    with GpuExecutor([0, 1, 2]) as ex:
        t = time.monotonic()
        out = ex.map(_trial, list(range(9)))
        wall = time.monotonic() - t + 0.01
        placements = list(ex.placements)
    assert [o[0] for o in out] == [i * i for i in range(9)]  # in the order given
    by_gpu: dict[int, list] = {}
    for p in placements:
        by_gpu.setdefault(p.gpu, []).append(p)
    assert sorted(by_gpu) == [0, 1, 2] and len(placements) == 9
    for gpu, ps in by_gpu.items():
        ps.sort(key=lambda p: p.start)
        assert all(a.end <= b.start for a, b in zip(ps, ps[1:])), f"overlap on GPU {gpu}"
        seen = {out[p.item][1] for p in ps}
        assert seen == {str(gpu)}, "the worker was not pinned to its GPU"
        assert len({out[p.item][2] for p in ps}) == 1  # one process per GPU
    # The GPUs worked at the same time: trials on different GPUs overlap.
    assert any(a.gpu != b.gpu and a.start < b.end and b.start < a.end for a in placements for b in placements)
    u = utilization(placements)
    assert set(u["gpus"]) == {0, 1, 2} and all(g["trials"] >= 1 for g in u["gpus"].values())
    assert 0 < u["wall_s"] <= wall


def test_a_failing_trial_is_raised_not_lost():
    with GpuExecutor([0, 1]) as ex, pytest.raises(ValueError, match="trial 2 failed"):
        ex.map(_fails, list(range(4)))


def test_gpu_lists():
    assert gpu_indices("2, 0,2") == [0, 2]
    assert gpu_indices([1]) == [1]
    for bad in ("a,b", "", "-1"):
        with pytest.raises(UsageError):
            gpu_indices(bad)


def test_gpu_searches_get_one_pinned_worker_per_gpu(monkeypatch):
    from workbench.core.gpu import GpuInfo, GpuScan
    from workbench.core.search.executors import LocalExecutor, make_executor

    fake = GpuScan(tuple(GpuInfo(i, "GPU", 1 << 34, "9.0") for i in range(4)), "CUDA 13.0", "4 GPU(s)")
    monkeypatch.setattr("workbench.core.gpu.scan_gpus", lambda: fake)
    ex = make_executor("local", device="cuda")
    assert isinstance(ex, GpuExecutor) and ex.gpus == [0, 1, 2, 3]
    assert make_executor("local", device="cuda", workers=2).gpus == [0, 1]
    assert isinstance(make_executor("local", device="cpu"), LocalExecutor)
    assert isinstance(make_executor("local", device="cuda", workers=0), LocalExecutor)  # in-process
