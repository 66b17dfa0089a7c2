"""Per-layer times from native TensorRT: an ``IProfiler`` on the runner's execution context, and the
engine inspector's JSON for each layer's kernel (tactic) and precision.

TensorRT names a layer after the ONNX nodes it fuses, in a few documented shapes (TREx and
``trtexec --dumpLayerInfo`` show them): ``Conv_5 + Add_6 + Relu_7``, ``/cv1/conv/Conv || /cv2/conv/Conv``
(parallel convolutions), ``PWN(PWN(/act/Sigmoid), PWN(/act/Mul))`` (generated pointwise kernels),
``{ForeignNode[/attn/Split_16.../attn/Add]}`` (a Myelin region: its first and last node),
``Reformatting CopyNode for Input Tensor 0 to Conv_5 + Add_6`` (a reformat TensorRT inserted),
``/model.9/cv1/conv/Conv_output_0 copy`` (a tensor copied into a Concat's output), Myelin's own
kernels (``__myl_MulMaxSubExpSum_myl109_3``, ``/model_10/attn/MatMul_myl109_2`` with ``.`` made
``_``), and layers TensorRT made (``[trainStation1]``, ``(Unnamed Layer* 539) [Shuffle]``). Where
the engine was built with ``ProfilingVerbosity.DETAILED`` (the runner's default,
``detailed_profile=True``), the inspector's ``Metadata`` field names the ONNX nodes exactly
(``[ONNX Layer: <node>]`` per node, as TensorRT's ONNX parser writes it) and is preferred.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import onnx

from ...errors import EngineRunError, UsageError
from ..model import Model
from .layers import Collected, NodeTime, model_node_names, node_stats, run_schedule

__all__ = ["LayerName", "parse_layer_name", "parse_inspector_json", "map_layers", "collect_tensorrt"]

_PROFILE = re.compile(r"\s*\[profile \d+\]$")  # layers of the 2nd, 3rd... optimization profile
_REFORMAT = re.compile(r"^Reformatting CopyNode for (Input|Output) Tensor (\d+) to (.+)$")
_SPAN = re.compile(r"^\{ForeignNode\[(.*)\]\}$")
_MYELIN_SUFFIX = re.compile(r"_myl\d+_\d+$")
_MADE = re.compile(r"^(\[[A-Za-z]+\d*\]|\(Unnamed Layer\* ?\d+\) \[[^\]]*\]|__myl_.*)$")
_METADATA = re.compile(r"\[ONNX Layer: ([^|\]]*)")
_DTYPES = (("BFloat16", "bf16"), ("BF16", "bf16"), ("FP32", "fp32"), ("Float", "fp32"), ("FP16", "fp16"),
           ("Half", "fp16"), ("FP8", "fp8"), ("UInt8", "uint8"), ("Int8", "int8"), ("INT8", "int8"),
           ("Int32", "int32"), ("INT32", "int32"), ("Int64", "int64"), ("BOOL", "bool"), ("Bool", "bool"))


class LayerName(list[str]):
    """The ONNX names a TensorRT layer name gives (a list), and what kind of layer it says it is.

    ``kind``: ``single`` or ``fused`` (one or several names), ``span`` (a Myelin region: the list is
    its first and last node), ``reformat`` (inserted; the list names the layer it feeds, ``target``),
    ``copy`` (the list is the copied tensor), ``myelin`` (a kernel Myelin generated inside a region),
    or ``made`` (a layer TensorRT made, naming nothing).
    """

    def __init__(self, names: Iterable[str] = (), kind: str = "single", target: str = "") -> None:
        super().__init__(names)
        self.kind = kind
        self.target = target


def _split_top(text: str, seps: tuple[str, ...]) -> list[str]:
    """``text`` split at ``seps`` outside parentheses and brackets."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        ch = text[i]
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth = max(depth - 1, 0)
        elif depth == 0:
            sep = next((s for s in seps if text.startswith(s, i)), None)
            if sep:
                parts.append(text[start:i])
                i += len(sep)
                start = i
                continue
        i += 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _closes_at_end(text: str, open_at: int) -> bool:
    """Whether the parenthesis at ``open_at`` is closed by the last character."""
    depth = 0
    for i in range(open_at, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return i == len(text) - 1
    return False


def _names(text: str) -> list[str]:
    text = text.strip()
    parts = _split_top(text, (" + ", " || "))
    if len(parts) > 1:
        return [n for p in parts for n in _names(p)]
    if text.startswith("PWN(") and _closes_at_end(text, 3):
        return [n for p in _split_top(text[4:-1], (", ",)) for n in _names(p)]
    if _MADE.match(text):
        return []
    return [_MYELIN_SUFFIX.sub("", text)]


def parse_layer_name(name: str) -> LayerName:
    """The ONNX node (or tensor) names in a TensorRT layer name, with its ``kind``.

    >>> parse_layer_name("PWN(PWN(/act/Sigmoid), PWN(/act/Mul))")
    ['/act/Sigmoid', '/act/Mul']
    """
    name = _PROFILE.sub("", name.strip())
    m = _REFORMAT.match(name)
    if m:
        return LayerName(parse_layer_name(m.group(3)), "reformat", m.group(3))
    if name.endswith(" copy"):
        return LayerName([name.removesuffix(" copy").strip()], "copy")
    m = _SPAN.match(name)
    if m:
        ends = [e for part in m.group(1).split("...") for e in _names(part)]
        return LayerName(ends, "span" if len(ends) > 1 else "single" if ends else "made")
    names = _names(name)
    if not names:
        return LayerName([], "myelin" if name.startswith("__myl_") else "made")
    return LayerName(names, "fused" if len(names) > 1 else "single")


def _dtype(fmt: str) -> str:
    return next((v for k, v in _DTYPES if re.search(rf"\b{k}\b", fmt)), "")


def parse_inspector_json(text: str) -> dict[str, dict[str, Any]]:
    """Per layer name, from ``IEngineInspector.get_engine_information(LayerInformationFormat.JSON)``
    (``{"Layers": [...], "Bindings": [...]}``): ``type`` (``LayerType``: ``CaskConvolution``),
    ``kernel`` (``TacticName``), ``precision`` (of its first input, as TREx reads it), ``formats``
    (input and output ``Format/Datatype``) and ``onnx`` (the node names in ``Metadata``). Engines
    built without ``ProfilingVerbosity.DETAILED`` list names only: those layers get an empty dict."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        return {}
    out: dict[str, dict[str, Any]] = {}
    for layer in data.get("Layers", []) if isinstance(data, dict) else []:
        if isinstance(layer, str):
            out.setdefault(layer, {})
            continue
        if not isinstance(layer, dict) or "Name" not in layer:
            continue
        ins = [str(t.get("Format/Datatype", "")) for t in layer.get("Inputs") or [] if isinstance(t, dict)]
        outs = [str(t.get("Format/Datatype", "")) for t in layer.get("Outputs") or [] if isinstance(t, dict)]
        meta = re.split("[\x1e\x1f]", str(layer.get("Metadata", "")))
        out.setdefault(str(layer["Name"]), {
            "type": str(layer.get("LayerType", "")), "kernel": str(layer.get("TacticName", "")),
            "precision": next((p for p in map(_dtype, ins + outs) if p), ""), "formats": (ins, outs),
            "onnx": [m.group(1).strip() for part in meta if (m := _METADATA.search(part))]})
    return out


class _Names:
    """Model node names for TensorRT's: exact, by output tensor, or Myelin-mangled (``.`` -> ``_``)."""

    def __init__(self, proto: onnx.ModelProto) -> None:
        self.order = {n: i for i, n in enumerate(model_node_names(proto))}
        self.nodes = list(proto.graph.node)
        self.producer = {o: n.name for n in self.nodes for o in n.output if o}
        mangled: dict[str, list[str]] = {}
        for n in self.order:
            mangled.setdefault(n.replace(".", "_"), []).append(n)
        self.mangled = {k: v[0] for k, v in mangled.items() if len(v) == 1}

    def resolve(self, raw: str) -> str | None:
        if raw in self.order:
            return raw
        return self.producer.get(raw) or self.mangled.get(raw.replace(".", "_"))

    def covers(self, names: Iterable[str]) -> list[str]:
        out = [r for r in map(self.resolve, names) if r]
        return sorted(dict.fromkeys(out), key=lambda n: self.order.get(n, 1 << 30))

    def between(self, first: str, last: str) -> list[str]:
        """Nodes on a path from ``first`` to ``last`` (a Myelin region's nodes), ends included."""
        consumers: dict[str, list[str]] = {}
        for n in self.nodes:
            for i in n.input:
                if i in self.producer:
                    consumers.setdefault(self.producer[i], []).append(n.name)
        inputs = {n.name: [self.producer[i] for i in n.input if i in self.producer] for n in self.nodes}

        def walk(start: str, step: dict[str, list[str]]) -> set[str]:
            seen, todo = {start}, [start]
            while todo:
                for nxt in step.get(todo.pop(), []):
                    if nxt not in seen:
                        seen.add(nxt)
                        todo.append(nxt)
            return seen

        return self.covers(walk(first, consumers) & walk(last, inputs) | {first, last})

    def concat_of(self, tensor: str) -> str | None:
        return next((n.name for n in self.nodes if n.op_type == "Concat" and tensor in n.input), None)


def _node(name: str, med: float, p90: float, info: dict[str, Any], names: _Names) -> NodeTime:
    parsed = parse_layer_name(name)
    kernel, precision = info.get("kernel", ""), info.get("precision", "")
    op = info.get("type") or {"reformat": "Reformat", "copy": "Reformat"}.get(parsed.kind, "")
    ins, outs = info.get("formats") or ([], [])
    if parsed.kind == "reformat":
        how = f" ({ins[0]} -> {outs[0]})" if ins and outs else ""
        return NodeTime(name, op, med, p90, (), "inserted", kernel, precision,
                        f"reformat{how} for {parsed.target}")
    if parsed.kind == "copy":
        concat = names.concat_of(parsed[0])
        if concat:
            return NodeTime(name, op, med, p90, (concat,), "model", kernel, precision,
                            f"copies {parsed[0]} into {concat}'s output (TensorRT's Concat)")
        return NodeTime(name, op, med, p90, (), "inserted", kernel, precision, f"copy of {parsed[0]}")
    note = ""
    covers = names.covers(info.get("onnx") or [])
    if not covers and parsed.kind == "span":
        first, last = (names.resolve(parsed[0]), names.resolve(parsed[-1]))
        covers = names.between(first, last) if first and last else names.covers(parsed)
        note = f"Myelin region {parsed[0]} ... {parsed[-1]}: the model nodes between its ends"
    elif not covers:
        covers = names.covers(parsed)
    if covers:
        return NodeTime(name, op, med, p90, tuple(covers), "model" if len(covers) == 1 else "fused",
                        kernel, precision, note)
    if parsed.kind == "made":
        return NodeTime(name, op, med, p90, (), "inserted", kernel, precision, "a layer TensorRT made")
    note = "a kernel Myelin generated inside a region" if parsed.kind == "myelin" else ""
    return NodeTime(name, op, med, p90, (), "unmapped", kernel, precision, note)


def map_layers(proto: onnx.ModelProto, per_run: list[dict[str, float]], order: Iterable[str],
               info: dict[str, dict[str, Any]] | None = None) -> list[NodeTime]:
    """One :class:`NodeTime` per layer in ``order`` (execution order): its median and p90 over
    ``per_run`` (milliseconds per layer name, one dict per profiled run), mapped to ``proto``'s
    nodes by the inspector's ``info`` (:func:`parse_inspector_json`) or else by its name."""
    names, info = _Names(proto), info or {}
    return [_node(n, *node_stats(ms.get(n, 0.0) for ms in per_run), info.get(n, {}), names) for n in order]


def _profiler(trt: Any) -> Any:
    class _Profiler(trt.IProfiler):  # the documented way: subclass IProfiler, call its __init__
        def __init__(self) -> None:
            trt.IProfiler.__init__(self)
            self.ms: dict[str, float] = {}
            self.order: list[str] = []

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            if layer_name not in self.ms:
                self.order.append(layer_name)
            self.ms[layer_name] = self.ms.get(layer_name, 0.0) + float(ms)

        def take(self) -> dict[str, float]:
            got, self.ms = self.ms, {}
            return got

    return _Profiler()


def collect_tensorrt(model: Model, feeds: dict[str, np.ndarray], *, runs: int, warmup: int,
                     device: str = "tensorrt", options: dict[str, Any] | None = None,
                     between: Callable[[], None] | None = None) -> Collected:
    """Profile ``model`` on native TensorRT: ``warmup`` runs, then ``runs`` runs with an
    ``IProfiler`` attached; per layer its median and p90 over the runs, in execution order.
    ``between`` is called after each kept run (the caller's unprofiled timing, interleaved)."""
    from ..engines.tensorrt import import_tensorrt  # noqa: PLC0415 - imports no TensorRT itself
    from ..evaluation.run import make_runner  # noqa: PLC0415

    if runs < 1 or warmup < 0:
        raise UsageError(f"need runs >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    options = dict(options or {})
    trt = import_tensorrt(options.get("module", "tensorrt"))  # EngineUnavailableError with the hint
    runner = make_runner(model, device, **options)
    with runner:
        run = runner.prepare(feeds)
        profiler = _profiler(trt)
        runner.context.profiler = profiler  # type: ignore[attr-defined]
        per_run: list[dict[str, float]] = []
        wall: list[float] = []
        last = [0.0]

        def timed() -> None:
            t0 = time.perf_counter_ns()
            run()  # execute_async_v3 + stream sync; the profiler reports before it returns
            last[0] = (time.perf_counter_ns() - t0) / 1e6

        def read(kept: bool) -> None:
            layers = profiler.take()
            if kept:
                wall.append(last[0])
                per_run.append(layers)

        run_schedule(timed, runs=runs, warmup=warmup, between=between, after=read)
        info = parse_inspector_json(runner.layer_information or "")  # type: ignore[attr-defined]
        settings = dict(runner.settings)
    if not any(per_run):
        raise EngineRunError(f"TensorRT's profiler reported no layers for {model.name}",
                             "this TensorRT may not report layer times for enqueueV3")
    nodes = map_layers(model.proto, per_run, profiler.order, info)
    notes = ["times are TensorRT's IProfiler layer times; with a profiler attached TensorRT runs "
             "synchronously, so the profiled runs are slower than the timed ones",
             "profiled_run_ms is the wall-clock time of the profiled runs (median), execute and "
             "synchronize"]
    if not info:
        notes.append("no engine inspector JSON (build with detailed_profile=True): no kernels or precisions")
    sums = float(np.median([sum(ms.values()) for ms in per_run]))
    return Collected(nodes, float(np.median(wall)), settings, notes, sums)
