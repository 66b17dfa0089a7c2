"""Join models to engines: build a runner for a device, benchmark it, evaluate it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import DataError, EngineUnavailableError, UsageError
from ..engines.base import Runner
from ..engines.registry import engine_for_device
from ..machine import machine_info
from ..model import Model, ModelSource, load_model
from ..shapes import random_feeds, resolve_inputs, tensor_specs
from .data import Dataset, load_dataset, random_dataset
from .latency import LatencyResult, time_callable
from .memory import track_peak_memory
from .metrics import AccuracyResult, FidelityAccumulator, FidelityResult, topk_correct

__all__ = ["make_runner", "bench", "evaluate", "BenchResult", "EvalResult", "Progress"]

Progress = Callable[[str, int, int], None]  # (stage, done, total)


def make_runner(model: Model, device: str = "cpu", **options: Any) -> Runner:
    """A runner for ``model`` on ``device`` (``cpu``, ``cuda[:N]``, ``openvino[:DEVICE]``, or an
    engine name[:N]).

    GPU engines take the device index from ``cuda:N`` (or ``device_id=N``); OpenVINO takes its
    device from ``openvino:GPU.1`` (default CPU). Options are the engine's options class fields
    (``OrtCpuOptions``, ``OrtCudaOptions``, ``OrtTensorRTOptions``, ``TensorRTOptions``,
    ``OpenVinoOptions``). ``threads=None``, which the CLI always passes, is dropped for GPU engines
    and OpenVINO; native TensorRT and OpenVINO ignore the default ``optimization_level="all"``, and
    OpenVINO on an Intel GPU or NPU ignores ``threads`` (a CPU plugin setting).
    """
    entry = engine_for_device(device)
    if entry.name.startswith("openvino"):
        return _openvino_runner(model, device, options)
    if entry.name == "ort-cpu":
        from ..engines.ort_cpu import OrtCpuOptions, OrtCpuRunner  # noqa: PLC0415

        try:
            return OrtCpuRunner(model, OrtCpuOptions(**options))
        except TypeError as e:
            raise UsageError(f"bad option for ort-cpu: {e}") from e
    opts = _gpu_options(entry.name, device, options)
    try:
        if entry.name == "ort-cuda":
            from ..engines.ort_cuda import OrtCudaOptions, OrtCudaRunner  # noqa: PLC0415

            return OrtCudaRunner(model, OrtCudaOptions(**opts))
        if entry.name == "ort-tensorrt":
            from ..engines.ort_trt import OrtTensorRTOptions, OrtTensorRTRunner  # noqa: PLC0415

            return OrtTensorRTRunner(model, OrtTensorRTOptions(**opts))
        if entry.name == "tensorrt":
            from ..engines.tensorrt import TensorRTOptions, TensorRTRunner  # noqa: PLC0415

            return TensorRTRunner(model, TensorRTOptions(**opts))
    except TypeError as e:
        raise UsageError(f"bad option for {entry.name}: {e}") from e
    raise EngineUnavailableError(f"engine {entry.name} cannot be built by this version",
                                 "use --device cpu")


def _openvino_runner(model: Model, device: str, options: dict[str, Any]) -> Runner:
    from ..engines.openvino import OpenVinoOptions, OpenVinoRunner, split_device  # noqa: PLC0415

    opts = dict(options)
    if opts.get("threads") is None:
        opts.pop("threads", None)
    if opts.get("optimization_level", "all") == "all":
        opts.pop("optimization_level", None)
    if "optimization_level" in opts:
        raise UsageError("openvino has no optimization_level option (ONNX Runtime's graph optimization "
                         "level)", "OpenVINO optimizes every graph it compiles; its settings are "
                         "performance_hint, streams, threads and precision")
    ir = opts.pop("ir", None)  # a bundle's pre-converted IR (OpenVinoIR)
    _, ov_device = split_device(device)
    if ":" in device and "device" in opts and opts["device"].upper() != ov_device:
        raise UsageError(f"device {device!r} and device={opts['device']!r} disagree")
    opts.setdefault("device", ov_device)
    if not str(opts["device"]).upper().startswith("CPU"):  # CPU threads: GPU/NPU plugins have none
        opts.pop("threads", None)
    try:
        return OpenVinoRunner(model, OpenVinoOptions(**opts), ir=ir)
    except TypeError as e:
        raise UsageError(f"bad option for openvino: {e}") from e


def _gpu_options(engine: str, device: str, options: dict[str, Any]) -> dict[str, Any]:
    """Options for a GPU engine: ``device_id`` from ``cuda:N``, CPU-only defaults dropped."""
    opts = dict(options)
    if opts.get("threads") is None:
        opts.pop("threads", None)
    if engine == "tensorrt":  # ONNX Runtime's options: native TensorRT runs no CPU kernels
        opts.pop("threads", None)
        if opts.get("optimization_level", "all") == "all":
            opts.pop("optimization_level", None)
        if "optimization_level" in opts:
            raise UsageError("tensorrt has no optimization_level option (ONNX Runtime's graph level)",
                             "TensorRT's own is builder_optimization_level (0-5)")
    _, _, index = device.partition(":")
    if index:
        try:
            device_id = int(index)
        except ValueError as e:
            raise UsageError(f"bad device {device!r}", "use cuda:N with N a GPU index") from e
        if device_id < 0:
            raise UsageError(f"bad device {device!r}", "use cuda:N with N >= 0")
        if opts.get("device_id", device_id) != device_id:
            raise UsageError(f"device {device!r} and device_id={opts['device_id']} disagree")
        opts["device_id"] = device_id
    return opts


def _with_values_shapes(shapes: dict[str, tuple[int, ...]] | None,
                        values: dict[str, np.ndarray] | None) -> dict[str, tuple[int, ...]]:
    """User values with a shape fix that input's shape unless a shape was given."""
    out = dict(shapes or {})
    for name, v in (values or {}).items():
        if np.ndim(v) > 0 and name not in out:
            out[name] = tuple(np.shape(v))
    return out


@dataclass(frozen=True)
class BenchResult:
    """A latency measurement with everything needed to read it honestly."""

    model: str
    fingerprint: str
    engine: str
    device: str
    settings: dict[str, Any]
    inputs: dict[str, dict[str, Any]]
    assumed: list[str]
    latency: LatencyResult
    memory: dict[str, Any]
    machine: dict[str, Any] = field(default_factory=machine_info)
    # GPU engines: ``latency`` keeps inputs and outputs on the device (trtexec's "GPU compute"
    # view, synchronized); ``latency_e2e`` copies host arrays in and results out on every run.
    latency_e2e: LatencyResult | None = None

    @property
    def timing(self) -> str:
        if self.latency_e2e is None:
            return "host (inputs and outputs in host memory)"
        return "device-resident (IO bound on the GPU, synchronized); end_to_end adds host transfers"

    def to_dict(self, samples: bool = False) -> dict[str, Any]:
        lat = self.latency.to_dict(samples=samples)
        extra = {"end_to_end": self.latency_e2e.to_dict(samples=samples)} if self.latency_e2e else {}
        return {
            **lat,
            **extra,
            "timing": self.timing,
            "threads": self.settings.get("threads"),
            "device": self.device,
            "engine": self.engine,
            "model": self.model,
            "fingerprint": self.fingerprint,
            "settings": self.settings,
            "inputs": self.inputs,
            "assumed": self.assumed,
            "memory": self.memory,
            "machine": self.machine,
        }


def bench(
    model: ModelSource,
    *,
    device: str = "cpu",
    batch: int | None = None,
    warmup: int = 10,
    iterations: int | None = 100,
    time_budget_s: float | None = None,
    shapes: dict[str, tuple[int, ...]] | None = None,
    values: dict[str, np.ndarray] | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    **engine_options: Any,
) -> BenchResult:
    """Measure latency of one model on one engine on generated (or given) inputs.

    Example:
        >>> r = bench("sample:resnet-fashion", batch=1, threads=2, iterations=50)
        >>> r.latency.p50_ms > 0
        True
    """
    if batch is not None and batch < 1:
        raise UsageError(f"batch must be >= 1, got {batch}")
    m = load_model(model)
    ins, _ = tensor_specs(m.proto.graph)
    resolved = resolve_inputs(ins, _with_values_shapes(shapes, values), batch)
    feeds = random_feeds(resolved, seed=seed, values=values)
    actual_batch = batch or next((r.shape[0] for r in resolved if len(r.shape) > 1), 1)
    runner = make_runner(m, device, **engine_options)
    with track_peak_memory() as mem, runner:
        fn = runner.prepare(feeds)
        on = (lambda d, t: progress("latency", d, t)) if progress else None
        lat = time_callable(fn, batch=actual_batch, warmup=warmup, iterations=iterations,
                            time_budget_s=time_budget_s, on_progress=on)
        e2e = None
        # Host-memory engines (ONNX Runtime's CPU provider, OpenVINO's inputs set as host tensors)
        # have no device-resident timing to tell apart from an end-to-end one.
        host_io = runner.engine == "ort-cpu" or runner.engine.startswith("openvino")
        if not host_io and runner.settings.get("io_binding", True):
            on = (lambda d, t: progress("end-to-end", d, t)) if progress else None
            e2e = time_callable(lambda: runner.infer(feeds), batch=actual_batch, warmup=warmup,
                                iterations=iterations, time_budget_s=time_budget_s, on_progress=on)
    return BenchResult(
        model=m.name, fingerprint=m.fingerprint, engine=runner.engine, device=runner.device,
        settings=runner.settings,
        inputs={r.spec.name: {"shape": list(r.shape), "dtype": r.spec.dtype} for r in resolved},
        assumed=[f"{r.spec.name}: {n}" for r in resolved for n in r.defaults],
        latency=lat, memory=mem.to_dict(), latency_e2e=e2e,
    )


@dataclass(frozen=True)
class EvalResult:
    """Accuracy on labeled data and/or fidelity to a reference, with the data they used."""

    model: str
    reference: str | None
    data: str
    samples: int
    accuracy: AccuracyResult | None
    fidelity: FidelityResult | None
    latency_only: bool
    notes: list[str]
    memory: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"model": self.model, "data": self.data, "samples": self.samples}
        if self.accuracy:
            d.update(top1=self.accuracy.top1, top5=self.accuracy.top5)
            d["accuracy"] = self.accuracy.to_dict()
        if self.fidelity:
            f = self.fidelity
            d.update(reference=self.reference, top1_agreement=f.top1_agreement, cosine=f.cosine,
                     max_abs=f.max_abs, mean_abs=f.mean_abs, sqnr_db=f.sqnr_db)
            d["fidelity"] = f.to_dict()
        d["latency_only"] = self.latency_only
        d["notes"] = self.notes
        d["memory"] = self.memory
        return d


def evaluate(
    model: ModelSource,
    *,
    data: str | Dataset | None = None,
    reference: ModelSource | None = None,
    limit: int | None = None,
    batch: int = 100,
    device: str = "cpu",
    shapes: dict[str, tuple[int, ...]] | None = None,
    values: dict[str, np.ndarray] | None = None,
    progress: Progress | None = None,
    preprocessing: Any = None,
    **engine_options: Any,
) -> EvalResult:
    """Top-1/top-5 on labeled data, and fidelity to ``reference`` when one is given.

    Without data, a sample model uses its own test set; any other model needs ``data`` or a
    ``reference`` (then it is compared on ``limit`` random inputs, 100 by default).
    ``preprocessing`` (a Preprocessing, a dict or ``--preprocess`` text) applies to image data.
    """
    if limit is not None and limit < 1:
        raise UsageError(f"limit must be >= 1, got {limit}")
    if batch < 1:
        raise UsageError(f"batch must be >= 1, got {batch}")
    m = load_model(model)
    ref = load_model(reference) if reference is not None else None
    if isinstance(data, Dataset):
        ds = data
    elif data is None and ref is not None and not m.source.startswith("sample:"):
        ds = random_dataset(m, limit or 100, shapes=_with_values_shapes(shapes, values), values=values)
    else:
        ds = load_dataset(data, m, preprocessing)
    if ds.labels is None and ref is None:
        raise DataError(f"{ds.source} has no labels, so accuracy cannot be measured",
                        "give labeled data (a 'labels' array) or --reference MODEL for fidelity")
    n = len(ds) if limit is None else min(limit, len(ds))
    acc1 = acc5 = 0
    fid = None
    latency_only = m.metadata.get("workbench.latency_only") == "true"
    runners = [make_runner(m, device, **engine_options)]
    if ref is not None:
        runners.append(make_runner(ref, device, **engine_options))
    with track_peak_memory() as mem:
        for r in runners:
            r.activate()
        try:
            done = 0
            for feeds, labels in ds.batches(batch, n):
                outs = runners[0].infer(feeds)
                first = next(iter(outs))
                if labels is not None:
                    logits = outs[first]
                    acc1 += topk_correct(logits, labels, 1)
                    acc5 += topk_correct(logits, labels, 5)
                if ref is not None:
                    ref_outs = runners[1].infer(feeds)
                    ref_first = next(iter(ref_outs))
                    if fid is None:
                        fid = FidelityAccumulator(first)
                    fid.update(ref_outs[ref_first], outs[first])
                done += len(next(iter(feeds.values()))) if ds.groups is None else 1
                if progress:
                    progress("evaluate", min(done, n), n)
        finally:
            for r in runners:
                r.deactivate()
    accuracy = None
    notes = list(ds.notes)
    if ds.labels is not None:
        accuracy = AccuracyResult(acc1 / n, acc5 / n, n, acc1, acc5)
        if latency_only:
            notes.append(f"{m.name} has random weights (latency only): its accuracy means nothing")
    return EvalResult(m.name, ref.name if ref else None, ds.source, n, accuracy,
                      fid.result() if fid else None, latency_only, notes, mem.to_dict())
