"""Per-layer times from OpenVINO: ``PERF_COUNT`` profiling info mapped onto the model's nodes.

With ``PERF_COUNT`` on, an infer request keeps the times of its last inference per layer of the
compiled (runtime) graph; only layers with status ``EXECUTED`` ran. The runtime graph's rt_info
says what each layer is: ``originalLayersNames`` (the friendly names of the ops fused into it: an
ONNX node name, ``<node>/<suffix>``, or a name OpenVINO generated), ``layerType``,
``primitiveType`` (the kernel), ``runtimePrecision``, ``outputLayouts``, ``execOrder``.

The CPU plugin loses names when it folds a BatchNorm into a Conv's weights: the Conv comes out
named after the generated Multiply (``Multiply_5673``), so the Conv, and in exported PyTorch
models the BatchNorm too, is named by no layer. Such nodes are attributed by the data flow (see
:func:`_attribute_by_flow`); the layer's note says so. The layers' ``real_time`` can add up to a
little more than the wall-clock time of the same run (up to ~3% on the sample, 2 threads).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import onnx

from ...errors import EngineRunError, UsageError
from ..model import Model
from .layers import Collected, DisjointSets, NodeTime, model_node_names, node_stats, run_schedule

__all__ = ["collect_openvino", "profile_request", "resolver"]

_INSERTED_TYPES = {"Reorder"}  # layout/precision reorders OpenVINO adds between layers
_INPUT = "Input"


@dataclass
class _Layer:
    """One op of the compiled model's runtime graph."""

    name: str
    type: str
    kernel: str
    precision: str
    layout: str
    order: int
    raw_names: list[str]
    preds: list[str]
    succs: list[str]
    covers: list[str] = field(default_factory=list)
    inferred: list[str] = field(default_factory=list)  # covers attributed by the data flow


def profile_request(run: Callable[[], Any], request: Any, *, runs: int, warmup: int,
                    between: Callable[[], None] | None = None) -> tuple[list[dict[str, float]], list[float], dict[str, str]]:
    """Call ``run`` ``warmup`` times, then ``runs`` times reading ``request``'s profiling info after
    each (it holds the last inference only), and ``between`` after each of those. Returns, per run,
    milliseconds per executed layer name; each run's wall-clock milliseconds; each executed layer's
    type (``node_type``: ``ReduceMean`` where rt_info says ``Reduce``)."""
    out: list[dict[str, float]] = []
    wall: list[float] = []
    types: dict[str, str] = {}
    last = [0.0]

    def timed() -> None:
        t0 = time.perf_counter_ns()
        run()
        last[0] = (time.perf_counter_ns() - t0) / 1e6

    def read(kept: bool) -> None:
        if not kept:
            return
        wall.append(last[0])
        ms: dict[str, float] = {}
        for p in request.get_profiling_info():
            if p.status == p.Status.EXECUTED:  # NOT_RUN: fused into another layer, or in place
                ms[p.node_name] = ms.get(p.node_name, 0.0) + p.real_time.total_seconds() * 1e3
                types[p.node_name] = p.node_type
        out.append(ms)

    run_schedule(timed, runs=runs, warmup=warmup, between=between, after=read)
    return out, wall, types


def resolver(proto: onnx.ModelProto) -> Callable[[str], str | None]:
    """The model node an OpenVINO friendly name stands for, or None: a node name, a node output
    name, or either followed by ``/suffix`` segments (``node_conv2d/WithoutBiases``). The rules of
    :func:`~workbench.core.profiling.layers.name_covers`, built once per model, with the suffix cut
    from the right: exported PyTorch node names contain ``/`` themselves
    (``layer1.0.conv1/Conv_4/WithoutBiases``)."""
    known = set(model_node_names(proto))
    producer = {o: n.name for n in proto.graph.node for o in n.output if o}

    def resolve(raw: str) -> str | None:
        name = raw
        while True:
            if name in known:
                return name
            if name in producer:
                return producer[name]
            if "/" not in name:
                return None
            name = name.rsplit("/", 1)[0]

    return resolve


def _text(rt: Any, key: str) -> str:
    return rt[key].astype(str) if key in rt else ""


def _runtime_layers(runtime_model: Any) -> dict[str, _Layer]:
    layers: dict[str, _Layer] = {}
    for op in runtime_model.get_ordered_ops():
        rt = op.get_rt_info()
        order = _text(rt, "execOrder")
        layers[op.get_friendly_name()] = _Layer(
            name=op.get_friendly_name(), type=_text(rt, "layerType"), kernel=_text(rt, "primitiveType"),
            precision=_text(rt, "runtimePrecision"), layout=_text(rt, "outputLayouts"),
            order=int(order) if order.lstrip("-").isdigit() else 1 << 30,
            raw_names=[x for x in _text(rt, "originalLayersNames").split(",") if x],
            preds=[i.get_source_output().get_node().get_friendly_name() for i in op.inputs()],
            succs=[t.get_node().get_friendly_name() for o in op.outputs() for t in o.get_target_inputs()])
    return layers


def _inserted(layer: _Layer) -> bool:
    return not layer.covers and (layer.type in _INSERTED_TYPES or not layer.raw_names)


def _attribute_by_flow(proto: onnx.ModelProto, layers: dict[str, _Layer], executed: set[str]) -> None:
    """Give the model nodes no layer names to the layer that must compute them.

    The nodes named by no layer are grouped into connected pieces of the model graph (constant
    subgraphs left out: OpenVINO folds them). A piece is computed between the layers that own its
    inputs and the layers that consume its outputs. It goes to the one executed layer that names
    no model node and sits between those in the runtime graph (a renamed Conv+BatchNorm), else to
    its single consuming layer when that layer reads directly from the piece's input layers (the
    Conv folded into the Relu's layer). Anything else stays unattributed.
    """
    nodes = list(proto.graph.node)
    const = {t.name for t in proto.graph.initializer}
    for n in nodes:
        if all(not i or i in const for i in n.input):
            const.update(n.output)
    owners: dict[str, list[str]] = {}
    for layer in layers.values():
        for c in layer.covers:
            owners.setdefault(c, []).append(layer.name)
    params = {ly.name: ly.name for ly in layers.values() if ly.type == _INPUT}

    def real(name: str) -> bool:
        ly = layers[name]
        return ly.type == _INPUT or (name in executed and not _inserted(ly))

    def reach(start: Iterable[str], step: Callable[[_Layer], list[str]]) -> set[str]:
        out, todo, seen = set(), list(start), set()
        while todo:
            x = todo.pop()
            if x in seen or x not in layers or layers[x].type == "Const":
                continue
            seen.add(x)
            if real(x):
                out.add(x)
            else:
                todo.extend(step(layers[x]))
        return out

    @cache
    def preds(name: str) -> frozenset[str]:
        return frozenset(reach(layers[name].preds, lambda ly: ly.preds))

    @cache
    def succs(name: str) -> frozenset[str]:
        return frozenset(reach(layers[name].succs, lambda ly: ly.succs))

    free = [n for n in nodes if n.name not in owners and not all(o in const for o in n.output if o)]
    piece_of = {n.name: i for i, n in enumerate(free)}  # union-find over tensor edges
    sets = DisjointSets(len(free))
    made = {o: n.name for n in nodes for o in n.output if o}
    for n in free:
        for i in n.input:
            if made.get(i) in piece_of:
                sets.union(piece_of[n.name], piece_of[made[i]])
    pieces: dict[int, list[onnx.NodeProto]] = {}
    for n in free:
        pieces.setdefault(sets.find(piece_of[n.name]), []).append(n)
    consumers: dict[str, list[str]] = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n.name)
    graph_out = {o.name for o in proto.graph.output}
    unnamed = [ly for ly in layers.values() if ly.name in executed and not ly.covers and not _inserted(ly)]
    for piece in pieces.values():
        names = {n.name for n in piece}
        ins: set[str] = set()
        for n in piece:
            for i in n.input:
                if not i or i in const or made.get(i) in names:
                    continue
                src = [params[i]] if i in params else owners.get(made.get(i, ""), [])
                ins |= {r for s in src for r in ({s} if real(s) else preds(s))}
        outs = {ly for n in piece for o in n.output
                for c in consumers.get(o, []) if c not in names for ly in owners.get(c, [])}
        if not ins or not outs or any(o in graph_out for n in piece for o in n.output):
            continue
        outs = {r for s in outs for r in ({s} if real(s) else succs(s))}
        lone = [ly for ly in unnamed if not ly.covers and preds(ly.name) and preds(ly.name) <= ins
                and succs(ly.name) & outs]
        target = lone[0] if len(lone) == 1 else None
        if target is None and len(outs) == 1 and ins <= preds(next(iter(outs))):
            target = layers[next(iter(outs))]
        if target is not None:
            ordered = [n.name for n in piece]
            target.inferred += ordered
            target.covers += ordered


def _map(proto: onnx.ModelProto, layers: dict[str, _Layer], executed: set[str]) -> None:
    resolve = resolver(proto)
    for layer in layers.values():
        for raw in layer.raw_names:
            name = resolve(raw)
            if name and name not in layer.covers:
                layer.covers.append(name)
    _attribute_by_flow(proto, layers, executed)
    index = {n: i for i, n in enumerate(model_node_names(proto))}
    for layer in layers.values():
        layer.covers.sort(key=lambda n: index.get(n, 1 << 30))


def _note(layer: _Layer, layers: dict[str, _Layer]) -> str:
    if layer.type == "Reorder":
        src = next((layers[p] for p in layer.preds if p in layers), None)
        frm = src.layout.split(",")[0] if src and src.layout else "?"
        note = f"layout reorder {frm} -> {layer.layout or '?'}"
        if src and src.precision and layer.precision and src.precision != layer.precision:
            note += f", {src.precision} -> {layer.precision}"
        return note
    if layer.inferred:
        return (f"{', '.join(layer.inferred)}: named by no layer, attributed by the data flow "
                "(OpenVINO renamed the layer that computes them)")
    return ""


def _origin(layer: _Layer) -> str:
    if layer.covers:
        return "model" if len(layer.covers) == 1 else "fused"
    return "inserted" if _inserted(layer) else "unmapped"


def collect_openvino(model: Model, feeds: dict[str, np.ndarray], *, runs: int, warmup: int,
                     device: str = "openvino", options: dict[str, Any] | None = None,
                     between: Callable[[], None] | None = None) -> Collected:
    """Profile ``model`` on OpenVINO: ``warmup`` runs, then ``runs`` runs with ``PERF_COUNT``; per
    executed layer its median and p90 ``real_time``, in execution order, mapped to model nodes.
    ``between`` is called after each kept run (the caller's unprofiled timing, interleaved)."""
    from ..evaluation.run import make_runner  # noqa: PLC0415 - evaluation imports the engines

    if runs < 1 or warmup < 0:
        raise UsageError(f"need runs >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    runner = make_runner(model, device, perf_count=True, **(options or {}))
    with runner:
        run = runner.prepare(feeds)
        # prepare() returns its own InferRequest's bound ``infer``; the runner exposes neither the
        # request nor the compiled model, so both are read here from what exists (private).
        request = getattr(run, "__self__", None)
        if not hasattr(request, "get_profiling_info"):
            raise EngineRunError("OpenVinoRunner.prepare() no longer returns an InferRequest's infer",
                                 "the OpenVINO profiler needs updating to the runner")
        per_run, wall, types = profile_request(run, request, runs=runs, warmup=warmup, between=between)
        layers = _runtime_layers(runner._compiled.get_runtime_model())  # type: ignore[attr-defined]
        settings = {**runner.settings, "perf_count": True}
    executed = {name for ms in per_run for name in ms}
    _map(model.proto, layers, executed)
    missing = sorted(executed - set(layers))
    nodes = []
    for name in sorted(executed, key=lambda n: (layers[n].order if n in layers else 1 << 30, n)):
        med, p90 = node_stats(ms.get(name, 0.0) for ms in per_run)
        ly = layers.get(name)
        if ly is None:
            nodes.append(NodeTime(name, types.get(name, "?"), med, p90, origin="unmapped",
                                  note="not in the runtime model"))
            continue
        nodes.append(NodeTime(name, types.get(name) or ly.type, med, p90, tuple(ly.covers), _origin(ly), ly.kernel,
                              ly.precision, _note(ly, layers)))
    notes = ["OpenVINO reports no whole-run time with PERF_COUNT: profiled_run_ms is the wall-clock "
             "time of the profiled infer() calls (median), measured around them",
             "times are OpenVINO's real_time per executed layer; layers fused into another report "
             "NOT_RUN and are in that layer's covers"]
    inferred = sum(len(ly.inferred) for ly in layers.values() if ly.name in executed)
    if inferred:
        notes.append(f"{inferred} model nodes are named by no OpenVINO layer and were attributed by "
                     "the data flow (the CPU plugin renames a Conv when it folds a BatchNorm into it)")
    if missing:
        notes.append(f"{len(missing)} executed layers are not in the runtime model: {', '.join(missing[:5])}")
    sums = float(np.median([sum(ms.values()) for ms in per_run]))
    return Collected(nodes, float(np.median(wall)), settings, notes, sums)
