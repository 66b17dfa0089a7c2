"""GPU engines: ONNX Runtime CUDA (IO binding, CUDA graphs, NHWC, FP16), ONNX Runtime TensorRT,
native TensorRT.

Tests marked ``gpu`` need an NVIDIA GPU and the engine's runtime; elsewhere they skip with the
registry's reason. The unmarked ones run anywhere: options, probes, precision planning, and the
IO-binding mechanics on ONNX Runtime's CPU provider.
"""

from __future__ import annotations

import importlib.util
import warnings
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import make_model, tiny_cnn
from workbench import bench, list_engines, load_model, make_runner
from workbench.core.engines.ort_cpu import OrtCpuOptions, OrtCpuRunner
from workbench.core.engines.ort_cuda import (
    CudaGraphUnsupported,
    OrtCudaOptions,
    OrtCudaRunner,
    model_precision,
)
from workbench.core.engines.ort_trt import OrtTensorRTOptions, OrtTensorRTRunner, probe_libraries
from workbench.core.engines.tensorrt import (
    TensorRTOptions,
    TensorRTRunner,
    _plan_precision,
    summarize_layers,
    typing_mode,
)
from workbench.core.evaluation.run import _gpu_options
from workbench.errors import EngineRunError, EngineUnavailableError, UsageError

ENGINES = {e.name: e for e in list_engines()}


def needs(name: str) -> pytest.MarkDecorator:
    e = ENGINES[name]
    return pytest.mark.skipif(not e.available, reason=f"{name} is not available here: {e.reason}")


def has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def qdq_model() -> onnx.ModelProto:
    """x -> QuantizeLinear -> DequantizeLinear -> Relu: the smallest QDQ graph."""
    s = numpy_helper.from_array(np.array(0.05, np.float32), "s")
    z = numpy_helper.from_array(np.array(0, np.int8), "z")
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
             helper.make_node("Relu", ["d"], ["y"])]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], [s, z])


def fp16_model() -> onnx.ModelProto:
    """x float32 -> Cast(float16) -> Relu -> Cast(float32): float16 inside, float32 interface."""
    nodes = [helper.make_node("Cast", ["x"], ["h"], to=TensorProto.FLOAT16),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Cast", ["r"], ["y"], to=TensorProto.FLOAT)]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])


# ---------------------------------------------------------------------------------------------
# anywhere


def test_gpu_engines_are_implemented_and_say_why_not():
    from workbench.core.engines.registry import ENGINES as REGISTRY

    for name in ("ort-cuda", "ort-tensorrt", "tensorrt"):
        assert REGISTRY[name].implemented
        e = ENGINES[name]
        assert e.reason
        if not e.available:
            assert "this workbench version has no" not in e.reason


@pytest.mark.skipif(has_module("tensorrt"), reason="checks the reason given where tensorrt is missing")
def test_tensorrt_missing_is_reported_not_raised():
    assert "tensorrt is not installed" in ENGINES["tensorrt"].reason
    with pytest.raises(EngineUnavailableError, match="TensorRT"), TensorRTRunner(load_model(tiny_cnn())):
        pass


def test_ort_tensorrt_libraries_are_named_when_missing():
    libs = probe_libraries()
    if libs:
        pytest.skip(f"TensorRT's libraries load here: {libs.reason}")
    assert "libnvinfer" in libs.reason and "pip install" in libs.reason
    assert libs.reason in ENGINES["ort-tensorrt"].reason


def test_gpu_options_validated():
    with pytest.raises(UsageError, match="cudnn_conv_algo_search"):
        OrtCudaOptions(cudnn_conv_algo_search="fastest")
    assert OrtCudaOptions(cudnn_conv_algo_search="heuristic").cudnn_conv_algo_search == "HEURISTIC"
    with pytest.raises(UsageError, match="cuda_graph needs io_binding"):
        OrtCudaOptions(cuda_graph=True, io_binding=False)
    with pytest.raises(UsageError, match="device_id"):
        OrtCudaOptions(device_id=-1)
    with pytest.raises(UsageError, match="precision"):
        OrtTensorRTOptions(precision="int4")
    with pytest.raises(UsageError, match="0-5"):
        OrtTensorRTOptions(builder_optimization_level=7)
    with pytest.raises(UsageError, match="min <= opt <= max"):
        OrtTensorRTOptions(profile_shapes={"x": ((8, 4), (4, 4), (16, 4))})
    with pytest.raises(UsageError, match="batch_range"):
        TensorRTOptions(batch_range=(8, 4, 16))
    with pytest.raises(UsageError, match="precision"):
        TensorRTOptions(precision="bf16")


def test_cuda_provider_options_are_spelled_out():
    o = OrtCudaOptions(device_id=1, prefer_nhwc=True, cuda_graph=True, cudnn_conv_algo_search="DEFAULT",
                       gpu_mem_limit=2**30, provider_options={"arena_extend_strategy": "kSameAsRequested"})
    assert o.cuda_provider_options() == {
        "device_id": "1", "cudnn_conv_algo_search": "DEFAULT", "prefer_nhwc": "1",
        "enable_cuda_graph": "1", "use_tf32": "1", "gpu_mem_limit": str(2**30),
        "arena_extend_strategy": "kSameAsRequested"}


def test_ort_tensorrt_options_use_the_workbench_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    r = OrtTensorRTRunner(load_model(tiny_cnn()), OrtTensorRTOptions(
        builder_optimization_level=5, workspace_bytes=2**30,
        profile_shapes={"x": ((1, 3, 8, 8), (4, 3, 8, 8), (8, 3, 8, 8))}))
    name, trt = r.providers()[0]
    assert name == "TensorrtExecutionProvider"
    assert trt["trt_engine_cache_path"] == str(tmp_path / "trt" / "ort")
    assert trt["trt_timing_cache_path"] == str(tmp_path / "trt")
    assert trt["trt_builder_optimization_level"] == "5" and trt["trt_max_workspace_size"] == str(2**30)
    assert trt["trt_profile_opt_shapes"] == "x:4x3x8x8"
    assert (trt["trt_fp16_enable"], trt["trt_int8_enable"]) == ("0", "0")  # fp32 model, auto
    assert [p if isinstance(p, str) else p[0] for p in r.providers()][1:] == [
        "CUDAExecutionProvider", "CPUExecutionProvider"]
    q = OrtTensorRTRunner(load_model(qdq_model()))
    assert q.precision == "int8" and q.providers()[0][1]["trt_int8_enable"] == "1"
    assert OrtTensorRTRunner(load_model(fp16_model())).precision == "fp16"


def test_model_precision():
    assert model_precision(tiny_cnn()) == "fp32"
    assert model_precision(qdq_model()) == "int8-qdq"
    assert model_precision(fp16_model()) == "fp16"


def test_device_index_and_options_for_gpu_engines():
    assert _gpu_options("ort-cuda", "cuda:2", {"threads": None, "optimization_level": "all"}) == {
        "device_id": 2, "optimization_level": "all"}
    assert _gpu_options("tensorrt", "tensorrt:1", {"threads": None, "optimization_level": "all"}) == {
        "device_id": 1}
    with pytest.raises(UsageError, match="disagree"):
        _gpu_options("ort-cuda", "cuda:1", {"device_id": 0})
    assert _gpu_options("tensorrt", "tensorrt", {"threads": 4}) == {}  # no CPU kernels to thread
    with pytest.raises(UsageError, match="builder_optimization_level"):
        _gpu_options("tensorrt", "tensorrt", {"optimization_level": "basic"})
    with pytest.raises(UsageError, match="bad device"):
        _gpu_options("ort-cuda", "cuda:x", {})


def test_tensorrt_precision_paths_for_10_and_11():
    trt10 = SimpleNamespace(__version__="10.9", BuilderFlag=SimpleNamespace(FP16=0, INT8=1))
    trt11 = SimpleNamespace(__version__="11.0", BuilderFlag=SimpleNamespace(SPARSE_WEIGHTS=7))
    assert (typing_mode(trt10), typing_mode(trt11)) == ("weak", "strong")
    assert _plan_precision(trt10, "fp16", "fp32", "m")[:2] == (False, ["FP16"])
    assert _plan_precision(trt10, "int8", "int8-qdq", "m")[:2] == (False, ["INT8", "FP16"])
    assert _plan_precision(trt10, "model", "fp16", "m")[:2] == (True, [])
    strong, flags, path = _plan_precision(trt11, "fp16", "fp16", "m")
    assert strong and not flags and "strongly typed" in path
    with pytest.raises(UsageError, match="strongly typed"):
        _plan_precision(trt11, "fp16", "fp32", "m")


def test_engine_inspector_json_is_summarized():
    text = ('{"Layers": [{"Name": "conv", "LayerType": "CaskConvolution", '
            '"Outputs": [{"Format/Datatype": "Half format"}]}, {"Name": "fc", "LayerType": "Gemm"}], '
            '"Bindings": ["x", "y"]}')
    s = summarize_layers(text)
    assert s["layers"] == 2 and s["layer_types"] == {"CaskConvolution": 1, "Gemm": 1}
    assert s["output_formats"] == {"Half": 1}
    assert summarize_layers("not json") == {"layers": None}


class _CpuBound(OrtCudaRunner):
    """The CUDA runner's IO-binding and graph bookkeeping, run on the CPU provider."""

    engine = "ort-cuda (on cpu)"
    required_provider = "CPUExecutionProvider"
    ort_device = "cpu"

    def providers(self):
        return ["CPUExecutionProvider"]

    def _check_device(self) -> None:
        pass


@pytest.mark.parametrize("opts", [OrtCudaOptions(io_binding=False), OrtCudaOptions(cuda_graph=False),
                                  OrtCudaOptions(cuda_graph=True)], ids=["numpy", "binding", "graph"])
def test_io_binding_mechanics_on_the_cpu_provider(opts):
    m = load_model(tiny_cnn())
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal(s).astype(np.float32) for s in [(2, 3, 8, 8), (2, 3, 8, 8), (5, 3, 8, 8)]]
    with OrtCpuRunner(m, OrtCpuOptions(threads=1)) as ref, _CpuBound(m, opts) as r:
        for x in [*xs, xs[0]]:
            np.testing.assert_allclose(r.infer({"x": x})["y"], ref.infer({"x": x})["y"], rtol=1e-5, atol=1e-5)
        fn = r.prepare({"x": xs[1]})
        fn()
        # fixed device buffers: one set per input shape for graphs, prepare()'s alone otherwise
        assert len(r._bound) == (2 if opts.cuda_graph else 1 if opts.io_binding else 0)
        with pytest.raises(EngineRunError, match="no value for model input 'x'"):
            r.infer({})


class _CpuNoGraph(_CpuBound):
    """As if ONNX Runtime refused the CUDA graph because shape ops on dynamic dims run on the CPU."""

    def _create_session(self, fixed=None):
        if self.graph_capture and not fixed:
            raise CudaGraphUnsupported("ort-cuda: cannot run in a CUDA graph")
        self.fixed_seen = [*getattr(self, "fixed_seen", []), fixed]
        return super()._create_session(fixed)


def test_cuda_graph_with_dynamic_dims_gets_a_session_per_shape(fashion):
    xs = [_feeds(fashion, b, seed=b) for b in (2, 3, 2)]
    with OrtCpuRunner(fashion) as ref, _CpuNoGraph(fashion, OrtCudaOptions(cuda_graph=True)) as r:
        for x in xs:
            np.testing.assert_allclose(r.infer(x)["logits"], ref.infer(x)["logits"], rtol=1e-4, atol=1e-4)
        r.prepare(xs[1])()
        assert r.fixed_seen == [{"batch": 2}, {"batch": 3}] and len(r._bound) == 2
        assert "one per input shape" in r.settings["cuda_graph_sessions"]
    with pytest.raises(CudaGraphUnsupported), \
            _CpuNoGraph(load_model(_static_cnn()), OrtCudaOptions(cuda_graph=True)):
        pass  # no named dynamic dimension to fix: the refusal stands


def test_cuda_graph_by_default_only_where_onnx_runtime_takes_it(fashion):
    x = _feeds(fashion, 2)
    with OrtCpuRunner(fashion) as ref, _CpuNoGraph(fashion) as r:  # default: cuda_graph=None (auto)
        np.testing.assert_allclose(r.infer(x)["logits"], ref.infer(x)["logits"], rtol=1e-4, atol=1e-4)
        s = r.settings
    assert s["cuda_graph"] is False and s["cuda_graph_asked"] == "auto"
    assert "refused" in s["cuda_graph_note"]
    assert OrtCudaRunner.providers(r)[0][1]["enable_cuda_graph"] == "0"
    assert _CpuBound(fashion).settings["cuda_graph"] is True and _CpuBound(fashion).settings["prefer_nhwc"]


def _static_cnn() -> onnx.ModelProto:
    m = tiny_cnn()
    for d in m.graph.input[0].type.tensor_type.shape.dim:
        if d.dim_param:
            d.dim_value = 2
    m.graph.output[0].type.tensor_type.shape.dim[0].dim_value = 2
    return m


# ---------------------------------------------------------------------------------------------
# on a GPU


@pytest.fixture(scope="module")
def fashion():
    return load_model("sample:resnet-fashion")


@pytest.fixture(scope="module")
def resnet50():
    return load_model("sample:resnet50")


def _feeds(model, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    from workbench.core.shapes import random_feeds, resolve_inputs, tensor_specs

    ins, _ = tensor_specs(model.proto.graph)
    return random_feeds(resolve_inputs(ins, batch=batch), seed=seed)


def _cpu(model, feeds):
    with OrtCpuRunner(model) as r:
        return next(iter(r.infer(feeds).values()))


@pytest.mark.gpu
@needs("ort-cuda")
@pytest.mark.parametrize("name", ["fashion", "resnet50"])
@pytest.mark.parametrize("io_binding", [True, False], ids=["binding", "numpy"])
def test_ort_cuda_matches_cpu(name, io_binding, request):
    model = request.getfixturevalue(name)
    feeds = _feeds(model, 4)
    ref = _cpu(model, feeds)
    with make_runner(model, "cuda", io_binding=io_binding) as r:
        for _ in range(3):  # with a CUDA graph: probe, warm-up, capture, replay
            out = next(iter(r.infer(feeds).values()))
        s = r.settings
    assert out.shape == ref.shape
    assert cosine(out, ref) > 0.9999
    assert s["providers"][0] == "CUDAExecutionProvider"
    resolved = s["provider_options"]["CUDAExecutionProvider"]
    assert resolved["device_id"] == "0" and resolved["prefer_nhwc"] == "1"  # the default
    assert s["gpu"] and r.device == "cuda:0"
    if io_binding:  # CUDA graph by default where ONNX Runtime takes the model, else a note why not
        assert resolved["enable_cuda_graph"] == ("1" if s["cuda_graph"] else "0")
        assert s["cuda_graph"] or "refused" in s["cuda_graph_note"]


@pytest.mark.gpu
@needs("ort-cuda")
def test_cuda_graph_replays_new_inputs_and_shapes(fashion):
    opts = OrtCudaOptions(cuda_graph=True, prefer_nhwc=True)
    a, b, c = _feeds(fashion, 2, seed=1), _feeds(fashion, 2, seed=2), _feeds(fashion, 3, seed=3)
    refs = {k: _cpu(fashion, f) for k, f in [("a", a), ("b", b), ("c", c)]}
    with OrtCudaRunner(fashion, opts) as r:
        for k in "ababcab":  # past ONNX Runtime's warm-up runs, so later ones replay the graph
            out = next(iter(r.infer({"a": a, "b": b, "c": c}[k]).values()))
            assert cosine(out, refs[k]) > 0.9999, k
        fn = r.prepare(b)
        for _ in range(5):
            fn()
        s = r.settings
        assert len(r._bound) == 2  # one captured graph per input shape
    resolved = s["provider_options"]["CUDAExecutionProvider"]
    assert resolved["enable_cuda_graph"] == "1" and resolved["prefer_nhwc"] == "1"
    # the sample's Reshape takes its shape from Shape(input) on a dynamic batch: ONNX Runtime runs
    # that on the CPU, so the graph needs a session per batch size with the dimension fixed
    assert s["cuda_graph"] and "one per input shape" in s["cuda_graph_sessions"]


@pytest.mark.gpu
@needs("ort-cuda")
def test_fp16_model_from_the_pass_runs(fashion):
    from workbench.core.passes.registry import get_pass

    try:
        get_pass("fp16")
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"no fp16 pass in this version: {e}")
    from workbench.core.build import optimize

    built = optimize(fashion, "fp16", device="cuda").model
    feeds = _feeds(fashion, 8, seed=4)
    ref = _cpu(fashion, feeds)
    with make_runner(built, "cuda", cuda_graph=True, prefer_nhwc=True) as r:
        for _ in range(3):
            out = next(iter(r.infer(feeds).values()))
        s = r.settings
    assert s["model_precision"] == "fp16" and s["cuda_graph"]
    assert out.dtype == np.float32  # keep_io_types: float32 interface
    assert cosine(out, ref) > 0.999
    assert (out.argmax(1) == ref.argmax(1)).mean() >= 0.875


@pytest.mark.gpu
@needs("ort-cuda")
def test_bad_device_id_is_a_clear_error(fashion):
    with pytest.raises(EngineUnavailableError, match="no CUDA device 99"):
        with make_runner(fashion, "cuda:99"):
            pass
    with pytest.raises(EngineUnavailableError, match="no CUDA device 7"):
        OrtCudaRunner(fashion, OrtCudaOptions(device_id=7)).activate()


@pytest.mark.gpu
@needs("ort-cuda")
def test_bench_on_cuda_reports_what_ran():
    r = bench("sample:resnet-fashion", device="cuda", batch=8, warmup=3, iterations=20)
    assert r.device == "cuda:0" and r.engine == "ort-cuda"
    assert r.settings["io_binding"] and r.settings["providers"][0] == "CUDAExecutionProvider"
    assert r.latency.p50_ms > 0


@pytest.mark.gpu
@needs("ort-cuda")
def test_bench_on_cuda_reports_compute_and_end_to_end():
    """Like trtexec: device-resident time and host-to-host time, both synchronized. At batch 256
    the host copies (800 KB in) must show: end-to-end is not faster than device-resident."""
    r = bench("sample:resnet-fashion", device="cuda", batch=256, warmup=5, iterations=30)
    d = r.to_dict()
    assert r.latency_e2e is not None and d["end_to_end"]["iterations"] == 30
    assert "device-resident" in d["timing"]
    assert r.latency_e2e.p50_ms >= 0.95 * r.latency.p50_ms
    numpy_io = bench("sample:resnet-fashion", device="cuda", batch=8, iterations=10, io_binding=False)
    assert numpy_io.latency_e2e is None and numpy_io.timing.startswith("host")


@pytest.mark.skipif(ENGINES["ort-tensorrt"].available, reason="ort-tensorrt is available here")
def test_ort_tensorrt_unavailable_says_why():
    with pytest.raises(EngineUnavailableError, match="ort-tensorrt is not available here") as e:
        make_runner(load_model(tiny_cnn()), "ort-tensorrt")
    assert ENGINES["ort-tensorrt"].reason in str(e.value)


@pytest.mark.gpu
@needs("ort-tensorrt")
def test_ort_tensorrt_matches_cpu(fashion):
    feeds = _feeds(fashion, 4)
    ref = _cpu(fashion, feeds)
    with make_runner(fashion, "ort-tensorrt") as r:
        out = next(iter(r.infer(feeds).values()))
        assert r.settings["providers"][0] == "TensorrtExecutionProvider"
    assert cosine(out, ref) > 0.9999


@pytest.mark.gpu
@pytest.mark.skipif(not (ENGINES["ort-cuda"].available and has_module("cuda.bindings")),
                    reason="needs a GPU and cuda-python (cuda.bindings)")
def test_cuda_python_buffers_round_trip():
    from workbench.core.engines.tensorrt import DeviceBuffer, _cuda, import_cudart

    cudart = import_cudart()
    stream = _cuda(cudart, cudart.cudaStreamCreate(), "cudaStreamCreate")
    assert int(stream)
    try:
        x = np.arange(3000, dtype=np.float32).reshape(30, 100)
        buf = DeviceBuffer(cudart)
        buf.upload(x, stream)
        y = np.empty_like(x)
        buf.download(y, stream)
        _cuda(cudart, cudart.cudaStreamSynchronize(stream), "sync")
        np.testing.assert_array_equal(x, y)
        buf.free()
    finally:
        cudart.cudaStreamDestroy(stream)


@pytest.mark.gpu
@needs("tensorrt")
def test_tensorrt_matches_cpu_with_dynamic_batch_and_cache(fashion, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    opts = TensorRTOptions(batch_range=(1, 4, 8))
    with TensorRTRunner(fashion, opts) as r:
        for batch in (2, 8):
            feeds = _feeds(fashion, batch, seed=batch)
            assert cosine(next(iter(r.infer(feeds).values())), _cpu(fashion, feeds)) > 0.9999
        with pytest.raises(EngineRunError, match="outside the engine's profile"):
            r.infer(_feeds(fashion, 16))
        s = r.settings
        fn = r.prepare(_feeds(fashion, 4))
        fn()
    assert s["typing"] == "strong" and "strongly typed" in s["build_path"]
    assert s["engine_cache_hit"] is False and (tmp_path / "trt" / "engines").is_dir()
    assert s["layer_summary"]["layers"]
    with TensorRTRunner(fashion, opts) as again:
        assert again.settings["engine_cache_hit"] is True


@pytest.mark.gpu
@needs("tensorrt")
def test_tensorrt_fp16(fashion, tmp_path, monkeypatch):
    import tensorrt as trt

    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    feeds = _feeds(fashion, 4)
    ref = _cpu(fashion, feeds)
    if typing_mode(trt) == "weak":  # TensorRT 10: the FP16 builder flag on the float32 model
        model, opts = fashion, TensorRTOptions(precision="fp16")
    else:  # TensorRT 11: float16 comes from the model
        from workbench.core.build import optimize

        model, opts = optimize(fashion, "fp16", device="tensorrt").model, TensorRTOptions()
    with TensorRTRunner(model, opts) as r:
        out = next(iter(r.infer(feeds).values()))
        path = r.settings["build_path"]
    assert cosine(out, ref) > 0.999
    assert ("FP16" in path) == (typing_mode(trt) == "weak")


@pytest.mark.gpu
@pytest.mark.skipif(not (ENGINES["ort-cuda"].available and has_module("tensorrt_rtx_bindings")),
                    reason="needs a GPU and TensorRT-RTX (tensorrt_rtx_bindings) to check the build path")
def test_tensorrt_rtx_parses_and_builds_the_workbench_models(fashion, tmp_path, monkeypatch):
    """TensorRT-RTX shares TensorRT 11's strongly typed builder API: the ONNX the workbench
    writes (FP32 and the fp16 pass's output) must parse and build there."""
    from workbench.core.build import optimize
    from workbench.core.engines.tensorrt import build_engine, import_tensorrt

    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    try:
        rtx = import_tensorrt("tensorrt_rtx_bindings")
    except EngineUnavailableError as e:
        pytest.skip(str(e))
    opts = TensorRTOptions(module="tensorrt_rtx_bindings", batch_range=(1, 8, 32))
    sparse = TensorRTOptions(module="tensorrt_rtx_bindings", batch_range=(1, 8, 32), sparse_weights=True)
    builds = {"fp32": (fashion, opts), "fp16": (optimize(fashion, "fp16", device="tensorrt").model, opts),
              "int8-qdq": (optimize(fashion, "int8", device="tensorrt").model, opts),
              "2:4": (optimize(fashion, "prune-2:4", device="tensorrt").model, sparse)}
    for name, (model, o) in builds.items():
        built = build_engine(model, o, trt=rtx)
        assert len(built.plan) > 10_000, name
        assert built.info["typing"] == "strong" and built.info["profile"]["input"][2][0] == 32, name
        if name == "2:4":  # the flag is set where this TensorRT has it, else a note says why not
            if hasattr(rtx.BuilderFlag, "SPARSE_WEIGHTS"):
                assert "SPARSE_WEIGHTS" in built.info["builder_flags"], built.info
            else:
                assert any("sparse_weights" in n for n in built.info["notes"]), built.info
    # The whole runner (cuda-python stream and buffers, deserialization): TensorRT-RTX does not
    # run on data-center GPUs, which must come back as a clear EngineRunError, not a crash.
    feeds = _feeds(fashion, 4)
    try:
        with TensorRTRunner(fashion, opts) as r:
            out = next(iter(r.infer(feeds).values()))
        assert cosine(out, _cpu(fashion, feeds)) > 0.9999
    except EngineRunError as e:
        warnings.warn(f"TensorRT-RTX runner on this GPU: {e}", stacklevel=1)
    if typing_mode(rtx) == "strong":  # no FP16 flag: an fp32 model cannot be asked for fp16
        with pytest.raises(UsageError, match="strongly typed"):
            build_engine(fashion, TensorRTOptions(module="tensorrt_rtx_bindings", precision="fp16",
                                                  batch_range=(1, 1, 1)), trt=rtx)


def test_qdq_models_run_nchw_by_default(fashion):
    """On an H100, ONNX Runtime 1.31's NHWC rewrite broke every Q/DQ convolution ("Input channels
    C is not equal to kernel channels * group"): Q/DQ models get NCHW unless asked otherwise."""
    from workbench.core.build import optimize

    qdq = optimize(fashion, "int8", device="cuda").model
    auto = _CpuBound(qdq)
    assert auto.settings["prefer_nhwc"] is False and "Q/DQ" in auto.settings["prefer_nhwc_note"]
    assert OrtCudaRunner.providers(auto)[0][1]["prefer_nhwc"] == "0"
    forced = _CpuBound(qdq, OrtCudaOptions(prefer_nhwc=True))
    assert forced.settings["prefer_nhwc"] is True and "prefer_nhwc_note" not in forced.settings
    assert OrtCudaRunner.providers(_CpuBound(fashion))[0][1]["prefer_nhwc"] == "1"
