"""``fp16``: float16 weights and activations, float32 inputs and outputs, for GPUs.

The conversion is ONNX Runtime's ``onnxruntime.transformers.float16.convert_float_to_float16``
(``keep_io_types``: the model keeps its float32 interface; Cast nodes at the edges). Nodes stay in
float32 when their op type is blocked (ONNX Runtime's default block list: ops without float16
kernels), when named in ``exclude``, or, with ``auto_exclude_overflow``, when running the float32
model on calibration data (or random inputs) shows that their output, or an input they would
receive as float16, exceeds the float16 range. The report lists those nodes with their largest
absolute value, and the fidelity of the converted model to the float32 one on the same inputs.

On CPU this is expected to be slower: ONNX Runtime's CPU provider has few float16 kernels and
runs most nodes through inserted Casts. It exists for CUDA and TensorRT (tensor cores).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from ...errors import UsageError
from ..model import proto_size
from .base import Option, Pass, PassContext, PassReport, PassResult
from .registry import register
from .safety import QUANT_OPS, RNN_OPS, already_quantized, ort_crashes

__all__ = ["Fp16Pass", "FP16_MAX", "default_block_ops", "activation_max_abs", "toposort"]

FP16_MAX = float(np.finfo(np.float16).max)  # 65504
_2GB = 2**31 - 1


def default_block_ops() -> list[str]:
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST  # noqa: PLC0415

    return list(DEFAULT_OP_BLOCK_LIST)


def toposort(graph: onnx.GraphProto) -> None:
    """Order ``graph.node`` topologically in place (the converter appends its Casts at the end)."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    nodes = list(graph.node)
    ordered: list[onnx.NodeProto] = []
    waiting = {id(n): n for n in nodes}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    missing: dict[int, int] = {}
    for n in nodes:
        need = {i for i in n.input if i not in available} | _outer_inputs(n, available)
        missing[id(n)] = len(need)
        for i in need:
            consumers.setdefault(i, []).append(n)
    ready = [n for n in nodes if missing[id(n)] == 0]
    while ready:
        n = ready.pop(0)
        if id(n) not in waiting:
            continue
        del waiting[id(n)]
        ordered.append(n)
        for o in n.output:
            for c in consumers.pop(o, []):
                missing[id(c)] -= 1
                if missing[id(c)] == 0:
                    ready.append(c)
    ordered += [n for n in nodes if id(n) in waiting]  # cycles or dangling inputs: keep, checker says
    del graph.node[:]
    graph.node.extend(ordered)


def _outer_inputs(node: onnx.NodeProto, available: set[str]) -> set[str]:
    """Names a node's subgraphs read from the outer scope (If/Loop/Scan bodies)."""
    names: set[str] = set()
    for attr in node.attribute:
        for g in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
            local = {i.name for i in g.input} | {i.name for i in g.initializer}
            for n in g.node:
                local.update(n.output)
            for n in g.node:
                names.update(i for i in n.input if i and i not in local and i not in available)
    return names


def _feeds(model: onnx.ModelProto, ctx: PassContext, samples: int, batch: int
           ) -> tuple[list[dict[str, np.ndarray]], str]:
    """Batches of inputs for the overflow check: calibration data if there is some, else random."""
    if ctx.calibration is not None:
        data = ctx.calibration
        n = min(samples, len(data))
        return [f for f, _ in data.batches(batch, n)], f"{n} calibration samples"
    from ..model import load_model  # noqa: PLC0415
    from ..shapes import random_feeds, resolve_inputs, tensor_specs  # noqa: PLC0415

    ins, _ = tensor_specs(load_model(model, check=False).proto.graph)
    out, done, seed = [], 0, ctx.seed
    while done < samples:
        b = min(batch, samples - done)
        try:
            resolved = resolve_inputs(ins, batch=b)
        except Exception:  # noqa: BLE001  (fixed batch: take the model's own)
            resolved = resolve_inputs(ins)
        out.append(random_feeds(resolved, seed=seed))
        b_real = next((r.shape[0] for r in resolved if len(r.shape) > 1), 1)
        done += max(1, b_real)
        seed += 1
    return out, f"{done} random input samples (no calibration data given)"


def activation_max_abs(model: onnx.ModelProto, feeds: list[dict[str, np.ndarray]]
                       ) -> tuple[dict[str, float], list[list[np.ndarray]]]:
    """Largest |value| of every float32 tensor a node produces, over ``feeds``; also the model's
    own outputs per batch (the reference for fidelity)."""
    import onnxruntime as ort  # noqa: PLC0415

    inferred = onnx.shape_inference.infer_shapes(model) if proto_size(model) < _2GB else model
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.value_info, *g.input, *g.output]}
    graph_outputs = [o.name for o in model.graph.output]
    produced = [o for n in model.graph.node for o in n.output if o]
    wanted = [t for t in produced if types.get(t) == TensorProto.FLOAT and t not in graph_outputs]
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for t in wanted:
        probe.graph.output.append(helper.make_tensor_value_info(t, TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.log_severity_level = 3
    sess = ort.InferenceSession(probe.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    peak: dict[str, float] = {}
    reference = []
    for f in feeds:
        values = sess.run(None, f)
        reference.append(values[:len(graph_outputs)])
        for name, v in zip(names, values):
            if isinstance(v, np.ndarray) and v.dtype.kind == "f" and v.size:
                with np.errstate(invalid="ignore"):
                    m = float(np.nanmax(np.abs(v)))
                peak[name] = max(peak.get(name, 0.0), m)
    return peak, reference


def _fidelity(model: onnx.ModelProto, feeds: list[dict[str, np.ndarray]],
              reference: list[list[np.ndarray]]) -> dict[str, Any]:
    import onnxruntime as ort  # noqa: PLC0415

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    a_all, b_all = [], []
    for f, ref in zip(feeds, reference):
        out = sess.run(None, f)
        for a, b in zip(ref, out):
            if isinstance(a, np.ndarray) and a.dtype.kind == "f":
                a_all.append(a.astype(np.float64).ravel())
                b_all.append(np.asarray(b, np.float64).ravel())
    if not a_all:
        return {}
    a, b = np.concatenate(a_all), np.concatenate(b_all)
    finite = bool(np.all(np.isfinite(b)))
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    cosine = float(a @ b / denom) if denom > 0 and finite else float("nan")
    return {"cosine": cosine, "max_abs": float(np.max(np.abs(a - b))) if finite else float("inf"),
            "all_finite": finite, "values": int(a.size)}


@register
class Fp16Pass(Pass):
    name = "fp16"
    uses_calibration = True
    summary = ("float16 weights and activations with float32 inputs/outputs (ONNX Runtime's "
               "converter); overflow-prone nodes kept in float32; for GPUs (slower on CPU)")
    options = (
        Option("block_ops", list, ["default"],
               "op types kept in float32; 'default' stands for ONNX Runtime's block list (ops "
               "without float16 kernels), e.g. default+Softmax"),
        Option("exclude", list, [], "node names kept in float32"),
        Option("auto_exclude_overflow", bool, True,
               "run the float32 model on calibration data (or random inputs) and keep in float32 "
               "the nodes whose activations exceed the float16 range"),
        Option("overflow_threshold", float, FP16_MAX / 2,
               "|value| above which a tensor counts as overflowing (default: half of float16's "
               "65504, headroom for inputs beyond the data seen)"),
        Option("samples", int, 32, "samples for the overflow check and the fidelity measurement"),
        Option("keep_io_types", bool, True, "keep float32 model inputs and outputs (Cast at the edges)"),
    )

    def validate(self) -> None:
        if self.opts["samples"] < 1:
            raise UsageError(f"fp16: samples must be >= 1, got {self.opts['samples']}")
        if not 0 < self.opts["overflow_threshold"] <= FP16_MAX:
            raise UsageError(f"fp16: overflow_threshold must be in (0, {FP16_MAX:g}]")
        for t in self.opts["block_ops"]:
            if t != "default" and not t[:1].isupper():
                raise UsageError(f"fp16: block_ops has {t!r}, which is not an ONNX op type",
                                 "give op types as in the graph, e.g. default+Softmax")

    def call(self, model: onnx.ModelProto, ctx: PassContext) -> PassResult:
        from onnxruntime.transformers.float16 import convert_float_to_float16  # noqa: PLC0415

        o = self.opts
        report = self.new_report()
        why = already_quantized(model)
        if why:  # int32 accumulators and float32 scales of integer kernels overflow float16
            report.decline("the whole model", why.replace("quantizing again would stack scales on "
                           "integer tensors", "float16 around integer kernels gains little, and their "
                           "int32 accumulators (cast to float) overflow float16"))
            return PassResult(model, report)
        block_ops = sorted({b for t in o["block_ops"] for b in (default_block_ops() if t == "default" else [t])})
        names = {n.name for n in model.graph.node}
        missing = [n for n in o["exclude"] if n not in names]
        if missing:
            raise UsageError(f"fp16: exclude names nodes not in the model: {', '.join(missing)}")
        for i, node in enumerate(model.graph.node):  # blocking goes by node name
            if not node.name:
                node.name = f"{node.op_type}_{i}"
        blocked: dict[str, str] = {}
        for node in model.graph.node:
            if node.op_type in block_ops:
                blocked[node.name] = f"op type {node.op_type} is in block_ops"
        for name in o["exclude"]:
            blocked.setdefault(name, "exclude option")
        for node in model.graph.node:
            if node.op_type in QUANT_OPS:
                blocked.setdefault(node.name, f"{node.op_type} is a quantized op: it and its float "
                                              "scales stay float32 (Casts at its edges)")
            elif node.op_type in RNN_OPS:
                blocked.setdefault(node.name, f"ONNX Runtime's CPU provider has no float16 {node.op_type} "
                                              "kernel (onnxruntime 1.32 crashed creating a session for "
                                              "one): kept in float32")

        feeds: list[dict[str, np.ndarray]] = []
        reference: list[list[np.ndarray]] = []
        if o["auto_exclude_overflow"]:
            feeds, source = _feeds(model, ctx, o["samples"], 16)
            ctx.report_progress("overflow check", 0, len(feeds))
            peak, reference = activation_max_abs(model, feeds)
            ctx.report_progress("overflow check", len(feeds), len(feeds))
            self._block_overflow(model, peak, o["overflow_threshold"], blocked, report)
            report.notes.append(f"overflow check on {source}: {len(peak)} float32 tensors, largest "
                                f"|value| {max(peak.values(), default=0.0):.4g}")
            report.metrics["overflow_check"] = {"source": source, "tensors": len(peak),
                                                "max_abs": max(peak.values(), default=0.0)}
        self._check_initializers(model, blocked, report)

        out = convert_float_to_float16(model, keep_io_types=o["keep_io_types"], op_block_list=block_ops,
                                       node_block_list=sorted(blocked),
                                       disable_shape_infer=proto_size(model) >= _2GB)
        round_trips = _drop_round_trips(out.graph)
        toposort(out.graph)
        crash = ort_crashes(out)
        if crash:  # e.g. ORT 1.32's NchwcTransformer on a float16 Conv -> MaxPool -> Transpose
            report.decline("the whole model", f"{crash}; returned unchanged (float32)")
            return PassResult(model, report)
        for name, reason in sorted(blocked.items()):
            report.exclude(name, reason)
        fp16_values = _float16_tensors(out)
        for node in out.graph.node:
            if node.name in blocked or node.op_type == "Cast":
                continue
            if any(t in fp16_values for t in node.output):
                report.converted.append(node.name)
        casts = sum(1 for n in out.graph.node if n.op_type == "Cast") - \
            sum(1 for n in model.graph.node if n.op_type == "Cast")
        report.metrics.update({
            "block_ops": block_ops, "casts_added": casts, "cast_round_trips_removed": round_trips,
            "float16_initializers": sum(1 for t in out.graph.initializer if t.data_type == TensorProto.FLOAT16),
            "float32_initializers": sum(1 for t in out.graph.initializer if t.data_type == TensorProto.FLOAT),
            "weights_bytes": {"before": _bytes(model), "after": _bytes(out)},
        })
        if feeds:
            fid = _fidelity(out, feeds, reference)
            report.metrics["fidelity"] = fid
            if fid:
                report.notes.append(f"fidelity to float32 on the same inputs (ONNX Runtime CPU): cosine "
                                    f"{fid['cosine']:.6f}, max |diff| {fid['max_abs']:.3g}; the CPU "
                                    "provider computes most float16 nodes in float32 behind Casts, so "
                                    "this measures weight and edge rounding more than GPU float16 "
                                    "arithmetic")
        report.notes.append("float16 is for GPUs (CUDA, TensorRT tensor cores); on CPU expect it to "
                            "be slower than float32 (0.85-0.9x on the sample): ONNX Runtime's CPU "
                            "provider has few float16 kernels and adds Casts around the rest")
        report.modified = bool(report.converted)
        return PassResult(out, report)

    @staticmethod
    def _block_overflow(model: onnx.ModelProto, peak: dict[str, float], threshold: float,
                        blocked: dict[str, str], report: PassReport) -> None:
        """Keep in float32 the producer of every overflowing tensor and its consumers (which
        would otherwise receive it cast to float16, i.e. inf)."""
        over = {t: v for t, v in peak.items() if not v <= threshold}  # NaN counts as overflow
        if not over:
            return
        for node in model.graph.node:
            hit_out = [t for t in node.output if t in over]
            hit_in = [t for t in node.input if t in over]
            if hit_out:
                t = hit_out[0]
                blocked.setdefault(node.name, f"output {t} reaches |{over[t]:.4g}| > {threshold:.4g} "
                                              f"(float16 max {FP16_MAX:g})")
            elif hit_in:
                t = hit_in[0]
                blocked.setdefault(node.name, f"input {t} reaches |{over[t]:.4g}|: it would arrive "
                                              "as float16 inf")
        report.metrics["overflowing_tensors"] = {t: float(v) for t, v in sorted(over.items())}

    @staticmethod
    def _check_initializers(model: onnx.ModelProto, blocked: dict[str, str], report: PassReport) -> None:
        """Weights beyond float16's range would be clamped to 65504: keep their consumers float32."""
        from onnx import numpy_helper  # noqa: PLC0415

        big = {}
        for t in model.graph.initializer:
            if t.data_type == TensorProto.FLOAT:
                a = numpy_helper.to_array(t)
                if a.size and float(np.max(np.abs(a))) > FP16_MAX:
                    big[t.name] = float(np.max(np.abs(a)))
        if not big:
            return
        for node in model.graph.node:
            hit = [i for i in node.input if i in big]
            if hit:
                blocked.setdefault(node.name, f"weight {hit[0]} reaches |{big[hit[0]]:.4g}|, beyond float16")


def _drop_round_trips(graph: onnx.GraphProto) -> int:
    """Remove float32 -> float16 -> float32 Cast pairs between float32 nodes.

    The converter casts every blocked node's output to float16 and back for each blocked
    consumer; across two blocked nodes that round trip would overflow the very values the
    blocking keeps in float32 (and rounds the rest). Returns how many pairs were removed."""
    producer = {o: n for n in graph.node for o in n.output}
    graph_outputs = {o.name for o in graph.output}

    def cast_to(node: onnx.NodeProto) -> int | None:
        if node.op_type != "Cast" or node.domain not in ("", "ai.onnx"):
            return None
        return next((a.i for a in node.attribute if a.name == "to"), None)

    rename: dict[str, str] = {}
    dropped: set[int] = set()
    for node in graph.node:
        if cast_to(node) != TensorProto.FLOAT or node.output[0] in graph_outputs:
            continue
        first = producer.get(node.input[0])
        if first is None or cast_to(first) != TensorProto.FLOAT16:
            continue
        src = producer.get(first.input[0])
        if src is None or src.op_type == "Cast" or first.input[0] in rename:
            continue
        rename[node.output[0]] = first.input[0]
        dropped.add(id(node))
    if not rename:
        return 0
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    used = {i for n in graph.node if id(n) not in dropped for i in n.input} | graph_outputs
    keep = [n for n in graph.node if id(n) not in dropped
            and not (cast_to(n) == TensorProto.FLOAT16 and n.output[0] not in used)]
    removed = len(graph.node) - len(keep)
    del graph.node[:]
    graph.node.extend(keep)
    return removed // 2 if removed else 0


def _float16_tensors(model: onnx.ModelProto) -> set[str]:
    g = model.graph
    return {v.name for v in [*g.value_info, *g.output] if v.type.tensor_type.elem_type == TensorProto.FLOAT16}


def _bytes(model: onnx.ModelProto) -> int:
    return sum(len(t.raw_data) or t.ByteSize() for t in model.graph.initializer)

