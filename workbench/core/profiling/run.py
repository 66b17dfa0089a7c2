"""``profile(model, device)``: a per-layer profile, checked against a separately measured latency.

The profiled runs and the timed runs are different runs of different sessions: a profiler adds its
own cost to every node (ONNX Runtime writes an event per node, OpenVINO reads counters), so the
latency the profile is checked against comes from an unprofiled runner, measured the usual way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx

from ...errors import EngineUnavailableError, UsageError
from ..engines.registry import engine_for_device
from ..evaluation.latency import LatencyResult, time_callable
from ..evaluation.run import Progress, _with_values_shapes, make_runner
from ..machine import machine_info
from ..model import Model, ModelSource, load_model
from ..shapes import random_feeds, resolve_inputs, tensor_specs
from .layers import BLOCKS, Collected, LayerProfile, model_node_names

__all__ = ["profile", "named_copy"]

Collector = Callable[..., Collected]


def _collector(engine: str) -> Collector:
    if engine in ("ort-cpu", "ort-cuda"):
        from .ort import collect_ort  # noqa: PLC0415

        return collect_ort
    if engine.startswith("openvino"):
        from .openvino import collect_openvino  # noqa: PLC0415

        return collect_openvino
    if engine == "tensorrt":
        from .tensorrt import collect_tensorrt  # noqa: PLC0415

        return collect_tensorrt
    raise EngineUnavailableError(
        f"{engine} gives no per-layer profile here",
        "profile on cpu, cuda, openvino or tensorrt (ONNX Runtime's TensorRT provider compiles the "
        "graph into engines it does not break down; profile with --device tensorrt instead)")


def named_copy(model: Model) -> tuple[Model, dict[str, str]]:
    """``model`` with every node named uniquely (``<OpType>_<k>`` for unnamed or repeated names),
    and the names it gave: profiles must name the nodes they map back to."""
    seen: set[str] = set()
    given: dict[str, str] = {}
    def fix(g: onnx.GraphProto) -> None:
        for k, n in enumerate(g.node):
            if not n.name or n.name in seen:
                new = f"{n.op_type}_{k}"
                while new in seen:
                    new += "_"
                given[new] = n.name
                n.name = new
            seen.add(n.name)
            for a in n.attribute:
                for sg in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                    fix(sg)

    names = model_node_names(model.proto)
    if all(names) and len(set(names)) == len(names):
        return model, given
    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    fix(proto.graph)
    return dataclasses.replace(model, proto=proto), given


def profile(model: ModelSource, device: str = "cpu", *, batch: int | None = 1, runs: int = 20,
            warmup: int = 5, threads: int | None = None, measure_s: float = 1.0,
            shapes: dict[str, tuple[int, ...]] | None = None, values: dict[str, np.ndarray] | None = None,
            seed: int = 0, progress: Progress | None = None, **options: Any) -> LayerProfile:
    """Per-node times of ``model`` on ``device`` (median of ``runs`` profiled runs after ``warmup``),
    mapped to the model's node names, with the p50 latency of separate unprofiled runs (about
    ``measure_s`` seconds of them, on a runner of their own, in slices between blocks of profiled
    runs so that both see the same machine load; see :func:`~.layers.run_schedule`) that the sum of
    node times is checked against.

    Example:
        >>> p = profile("sample:resnet-fashion", "cpu", threads=2)
        >>> round(p.explained, 1)  # doctest: +SKIP
        0.97
    """
    if runs < 1 or warmup < 0 or measure_s <= 0:
        raise UsageError("runs must be >= 1, warmup >= 0 and the measuring time > 0 s")
    m, given = named_copy(load_model(model))
    entry = engine_for_device(device)  # raises with the reason where it cannot run here
    collect = _collector(entry.name)
    ins, _ = tensor_specs(m.proto.graph)
    resolved = resolve_inputs(ins, _with_values_shapes(shapes, values), batch)
    feeds = random_feeds(resolved, seed=seed, values=values)
    actual_batch = batch or next((r.shape[0] for r in resolved if len(r.shape) > 1), 1)
    opts = {**({"threads": threads} if threads else {}), **options}
    if progress:
        progress("profile", 0, BLOCKS)
    samples: list[float] = []
    done = [0]
    measure_opts = dict(opts)
    if entry.name == "ort-cuda" and "cuda_graph" not in opts:
        # the profiled session cannot replay a CUDA graph: time the same kind of run it makes
        measure_opts["cuda_graph"] = False
    runner = make_runner(m, device, **measure_opts)
    with runner:
        fn = runner.prepare(feeds)
        first = time_callable(fn, batch=actual_batch, warmup=warmup, iterations=3)
        per_slice = max(3, int(measure_s / BLOCKS / max(first.p50_ms / 1e3, 1e-6)))

        def between() -> None:  # unprofiled runs, interleaved with the profiled ones
            samples.extend(time_callable(fn, batch=actual_batch, warmup=0, iterations=per_slice).samples_ms)
            done[0] += 1
            if progress:
                progress("profile", min(done[0], BLOCKS), BLOCKS)

        got = collect(m, feeds, runs=runs, warmup=warmup, device=device, options=opts, between=between)
    lat = LatencyResult.from_samples(np.asarray(samples) * 1e6, actual_batch, warmup, 0.0)
    covered = {c for n in got.nodes for c in n.covers}
    main = [n.name for n in m.proto.graph.node]
    inner = set(model_node_names(m.proto)) - set(main)
    folded = tuple(n for n in main if n not in covered and n not in inner)
    notes = list(got.notes)
    if given:
        notes.append(f"{len(given)} unnamed or repeated node names were given names like "
                     f"{next(iter(given))!r}")
    return LayerProfile(
        model=m.name, fingerprint=m.fingerprint, engine=entry.name, device=device, batch=actual_batch,
        runs=runs, warmup=warmup, nodes=got.nodes, measured_ms=lat.p50_ms, measured_p90_ms=lat.p90_ms,
        profiled_run_ms=got.profiled_run_ms, node_sum_ms=got.node_sum_ms, folded=folded, settings=got.settings,
        inputs={x.spec.name: {"shape": list(x.shape), "dtype": x.spec.dtype} for x in resolved},
        notes=tuple(notes), machine=machine_info())
