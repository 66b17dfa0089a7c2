"""Engine registry and the ORT CPU engine."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import tiny_cnn
from workbench import list_engines, load_model, make_runner
from workbench.core.engines.ort_cpu import OrtCpuOptions, OrtCpuRunner
from workbench.core.gpu import scan_gpus
from workbench.errors import EngineRunError, EngineUnavailableError, UsageError

HAS_GPU = bool(scan_gpus().gpus)


def test_registry_lists_every_engine_with_a_reason():
    engines = {e.name: e for e in list_engines()}
    assert set(engines) == {"ort-cpu", "ort-cuda", "ort-tensorrt", "tensorrt", "openvino", "openvino-gpu",
                            "openvino-npu"}
    assert engines["ort-cpu"].available
    for e in engines.values():
        assert e.reason


@pytest.mark.skipif(HAS_GPU, reason="checks the no-GPU reasons; this machine has a GPU")
def test_gpu_engines_say_why_not_without_a_gpu():
    engines = {e.name: e for e in list_engines()}
    for name in ("ort-cuda", "ort-tensorrt", "tensorrt"):
        assert not engines[name].available
        assert "GPU" in engines[name].reason or "driver" in engines[name].reason
    with pytest.raises(EngineUnavailableError, match="ort-cuda is not available here"):
        make_runner(load_model(tiny_cnn()), "cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="no NVIDIA GPU on this machine")
def test_gpu_scan_reports_devices():
    scan = scan_gpus()
    assert scan.driver and scan.gpus[0].memory_bytes > 2**30
    assert scan.gpus[0].compute_capability.count(".") == 1


def test_unknown_device():
    with pytest.raises(EngineUnavailableError, match="unknown device"):
        make_runner(load_model(tiny_cnn()), "tpu")


@pytest.mark.parametrize("level", ["disabled", "basic", "extended", "all"])
def test_ort_cpu_levels_agree_numerically(level):
    m = load_model(tiny_cnn())
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    with OrtCpuRunner(m, OrtCpuOptions(threads=1, optimization_level="disabled")) as ref, \
            OrtCpuRunner(m, OrtCpuOptions(threads=2, optimization_level=level)) as r:
        np.testing.assert_allclose(r.infer({"x": x})["y"], ref.infer({"x": x})["y"], rtol=1e-5, atol=1e-6)
        assert r.settings["threads"] == 2 and r.settings["optimization_level"] == level


def test_ort_cpu_options_validated():
    with pytest.raises(UsageError, match="optimization level"):
        OrtCpuOptions(optimization_level="max")
    with pytest.raises(UsageError, match="threads"):
        OrtCpuOptions(threads=0)


def test_runner_errors_are_clear(tmp_path):
    m = load_model(tiny_cnn())
    r = OrtCpuRunner(m)
    with pytest.raises(EngineRunError, match="not active"):
        r.infer({})
    with r:
        with pytest.raises(EngineRunError, match="no value for model input 'x'"):
            r.infer({})
        with pytest.raises(EngineRunError, match="input 'x'.*inputs were: x \\[2, 3, 9, 9\\]"):
            r.infer({"x": np.zeros((2, 3, 9, 9, 1), np.float32)[..., 0]})


def test_optimized_model_path_is_written(tmp_path):
    out = tmp_path / "opt.onnx"
    with OrtCpuRunner(load_model(tiny_cnn()), OrtCpuOptions(optimized_model_path=str(out))):
        pass
    assert out.stat().st_size > 0


def test_every_gpu_is_listed_as_its_own_device(monkeypatch, capsys):
    """A multi-GPU host: the registry lists cuda:0, cuda:1, ... separately (fake driver scan)."""
    from workbench.cli import main
    from workbench.core.engines import registry
    from workbench.core.gpu import GpuInfo, GpuScan

    fake = GpuScan((GpuInfo(0, "NVIDIA H200", 150_000_000_000, "9.0"),
                    GpuInfo(1, "NVIDIA H200", 150_000_000_000, "9.0")), "CUDA 13.0", "2 GPU(s), driver CUDA 13.0")
    monkeypatch.setattr(registry, "scan_gpus", lambda: fake)
    monkeypatch.setattr("workbench.core.gpu.scan_gpus", lambda: fake)
    devices = registry.list_devices()
    assert [d.device for d in devices] == ["cpu", "cuda:0", "cuda:1"]
    assert devices[0].engines == ("ort-cpu", "openvino") and devices[2].name == "NVIDIA H200"
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    assert "cuda:0  NVIDIA H200, 140 GiB" in out and "cuda:1  NVIDIA H200" in out


def test_workbench_threads_caps_the_default(monkeypatch):
    from workbench.core.engines.ort_cpu import default_threads

    monkeypatch.setenv("WORKBENCH_THREADS", "1")
    assert default_threads() == 1
    monkeypatch.setenv("WORKBENCH_THREADS", "nope")  # ignored: physical cores
    assert default_threads() >= 1
