"""Model summary: inputs and outputs, op histogram, parameters, per-node and total FLOPs.

Counting convention (the one most profilers use, stated so numbers can be compared):
``macs`` are multiply-accumulates of Conv, ConvTranspose, Gemm and MatMul; ``flops`` are
``2 * macs`` plus one per output element of elementwise and normalization ops (two for
BatchNormalization, the kernel size for pooling, one per input element for reductions).
Shape and data-movement ops count zero. Dynamic dimensions take the values that
:func:`~workbench.core.shapes.resolve_inputs` gives them (batch 1), listed in ``assumed``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from math import prod

import onnx

from .model import TWO_GB, Model, proto_size
from .shapes import ResolvedInput, TensorSpec, resolve_inputs, tensor_specs

__all__ = ["NodeCost", "ModelSummary", "summarize"]

_ELEMENTWISE = {
    "Add", "Sub", "Mul", "Div", "Relu", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "Clip", "Exp",
    "Log", "Sqrt", "Pow", "Erf", "Gelu", "HardSigmoid", "HardSwish", "Softplus", "Elu", "Selu",
    "Max", "Min", "Sum", "Mean", "Neg", "Abs", "Reciprocal", "Where", "Softmax", "LogSoftmax",
    "QuantizeLinear", "DequantizeLinear", "Cast",
}
_REDUCE = {"GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin",
           "ReduceL2", "ReduceProd", "LayerNormalization", "InstanceNormalization"}
# Initializer dtypes that hold weights; int64/int32 initializers hold shapes and indices.
_WEIGHT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16,
                 onnx.TensorProto.DOUBLE, onnx.TensorProto.INT8, onnx.TensorProto.UINT8,
                 onnx.TensorProto.INT4, onnx.TensorProto.UINT4}


@dataclass(frozen=True)
class NodeCost:
    """One node's work: MACs, FLOPs and the number of weights it reads."""

    name: str
    op_type: str
    macs: int
    flops: int
    params: int
    output_shape: tuple[int, ...] | None


@dataclass(frozen=True)
class ModelSummary:
    """What ``workbench info`` prints; ``to_dict`` is its ``--json`` form."""

    name: str
    fingerprint: str
    size_bytes: int
    producer: str
    ir_version: int
    opset: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    nodes: int
    ops: dict[str, int]
    params: int
    macs: int
    flops: int
    assumed: list[str]
    metadata: dict[str, str]
    per_node: list[NodeCost] = field(repr=False)

    @property
    def latency_only(self) -> bool:
        return self.metadata.get("workbench.latency_only") == "true"

    def to_dict(self, per_node: bool = False) -> dict:
        d = asdict(self)
        d["inputs"] = [s.to_dict() for s in self.inputs]
        d["outputs"] = [s.to_dict() for s in self.outputs]
        d["latency_only"] = self.latency_only
        if per_node:
            d["per_node"] = [asdict(n) for n in self.per_node]
        else:
            del d["per_node"]
        return d


def _with_fixed_inputs(proto: onnx.ModelProto, resolved: list[ResolvedInput]) -> onnx.ModelProto:
    """A shallow copy of the graph (no weights) with concrete input shapes, for shape inference."""
    m = onnx.ModelProto()
    m.CopyFrom(proto)
    for init in m.graph.initializer:  # shape inference needs only dims and dtypes
        if init.data_type in _WEIGHT_TYPES and prod(init.dims) > 64:
            init.ClearField("raw_data")
            init.ClearField("float_data")
            init.ClearField("int32_data")
            init.ClearField("data_location")
            del init.external_data[:]
            # An empty tensor with dims keeps its shape visible to inference as an initializer.
    by_name = {r.spec.name: r.shape for r in resolved}
    for vi in m.graph.input:
        if vi.name in by_name and vi.type.HasField("tensor_type"):
            dims = vi.type.tensor_type.shape.dim
            for d, v in zip(dims, by_name[vi.name]):
                d.Clear()
                d.dim_value = v
    del m.graph.value_info[:]
    return m


def _shapes(proto: onnx.ModelProto, resolved: list[ResolvedInput]) -> dict[str, tuple[int, ...]]:
    fixed = _with_fixed_inputs(proto, resolved)
    try:
        inferred = onnx.shape_inference.infer_shapes(fixed, data_prop=True)
    except Exception:  # noqa: BLE001  (summary degrades to no per-node costs)
        inferred = fixed
    out = {}
    g = inferred.graph
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        t = vi.type.tensor_type
        if t.HasField("shape") and all(d.HasField("dim_value") for d in t.shape.dim):
            out[vi.name] = tuple(d.dim_value for d in t.shape.dim)
    for init in proto.graph.initializer:
        out[init.name] = tuple(init.dims)
    return out


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _node_cost(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...]]) -> tuple[int, int]:
    """(macs, flops) of one node; zero where shapes are unknown."""
    out = shapes.get(node.output[0]) if node.output else None
    ins = [shapes.get(i) if i else None for i in node.input]
    op = node.op_type
    if op in ("Conv", "ConvInteger", "QLinearConv") and out and len(ins) > 1:
        w = ins[3] if op == "QLinearConv" else ins[1]
        if w is None:
            return 0, 0
        macs = prod(out) * prod(w[1:])
        bias = prod(out) if len(node.input) > 2 and node.input[2] and op == "Conv" else 0
        return macs, 2 * macs + bias
    if op == "ConvTranspose" and ins and ins[0] and len(ins) > 1 and ins[1]:
        x, w = ins[0], ins[1]
        macs = prod(x) * prod(w[1:])
        return macs, 2 * macs
    if op == "Gemm" and out and ins[0]:
        k = ins[0][0] if _attr(node, "transA", 0) else ins[0][-1]
        macs = prod(out) * k
        bias = prod(out) if len(node.input) > 2 and node.input[2] else 0
        return macs, 2 * macs + bias
    if op in ("MatMul", "MatMulInteger", "QLinearMatMul") and out and ins[0]:
        macs = prod(out) * ins[0][-1]
        return macs, 2 * macs
    if not out:
        return 0, 0
    if op == "BatchNormalization":
        return 0, 2 * prod(out)
    if op in ("MaxPool", "AveragePool", "LpPool"):
        return 0, prod(out) * prod(_attr(node, "kernel_shape", [1]))
    if op in _REDUCE and ins and ins[0]:
        return 0, prod(ins[0])
    if op in _ELEMENTWISE:
        return 0, prod(out)
    return 0, 0


def _count(t: onnx.TensorProto) -> int:
    return prod(t.dims) if t.data_type in _WEIGHT_TYPES else 0


def summarize(model: Model, shapes: dict[str, tuple[int, ...]] | None = None,
              batch: int | None = None) -> ModelSummary:
    """Summarize a loaded model; FLOPs are for the resolved input shapes (batch 1 by default)."""
    g = model.proto.graph
    ins, outs = tensor_specs(g)
    resolved = resolve_inputs(ins, shapes, batch)
    weights: dict[str, int] = {i.name: _count(i) for i in g.initializer}
    for node in g.node:  # exporters sometimes keep weights in Constant nodes
        if node.op_type == "Constant":
            value = _attr(node, "value", None)
            if isinstance(value, onnx.TensorProto):
                weights[node.output[0]] = _count(value)
    inferred = _shapes(model.proto, resolved) if proto_size(model.proto) <= TWO_GB else {}
    per_node = []
    for i, node in enumerate(g.node):
        macs, flops = _node_cost(node, inferred)
        per_node.append(NodeCost(
            node.name or f"{node.op_type}_{i}", node.op_type, macs, flops,
            sum(weights.get(x, 0) for x in node.input if node.op_type != "Constant"),
            inferred.get(node.output[0]) if node.output else None,
        ))
    return ModelSummary(
        name=model.name,
        fingerprint=model.fingerprint,
        size_bytes=model.size_bytes,
        producer=" ".join(x for x in (model.proto.producer_name, model.proto.producer_version) if x),
        ir_version=model.proto.ir_version,
        opset=model.opset,
        inputs=ins,
        outputs=outs,
        nodes=len(g.node),
        ops=dict(Counter(n.op_type for n in g.node).most_common()),
        params=int(sum(weights.values())),
        macs=int(sum(n.macs for n in per_node)),
        flops=int(sum(n.flops for n in per_node)),
        assumed=[f"{r.spec.name}: {note}" for r in resolved for note in r.defaults],
        metadata=model.metadata,
        per_node=per_node,
    )

