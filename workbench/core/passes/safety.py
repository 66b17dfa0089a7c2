"""What keeps passes safe on models from other projects: quantized-graph detection, attributes
newer than the model's opset, old IR versions, and the check every pass's output goes through.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
from onnx import defs, numpy_helper

from ..model import proto_size

__all__ = ["QUANT_OPS", "RNN_OPS", "quantized_ops", "already_quantized", "scrub_new_attributes",
           "upgrade_ir", "validation_error", "ort_crashes"]

# Operators of a model that is already quantized (ONNX standard and ONNX Runtime contrib ops).
QUANT_OPS = frozenset({
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "ConvInteger", "MatMulInteger",
    "QLinearConv", "QLinearMatMul", "QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearLeakyRelu",
    "QLinearAveragePool", "QLinearGlobalAveragePool", "QLinearConcat", "QLinearSoftmax",
    "QLinearReduceMean", "QLinearWhere", "QLinearConvTranspose", "QGemm", "QAttention", "QOrderedMatMul",
    "DynamicQuantizeMatMul", "DynamicQuantizeLSTM", "MatMulIntegerToFloat", "MatMulNBits",
    "QEmbedLayerNormalization", "GatherBlockQuantized", "DequantizeBFP", "QuantizeBFP",
})
RNN_OPS = frozenset({"LSTM", "GRU", "RNN"})


def quantized_ops(model: onnx.ModelProto) -> Counter[str]:
    """How many nodes of each quantized op type the main graph holds."""
    return Counter(n.op_type for n in model.graph.node if n.op_type in QUANT_OPS)


def already_quantized(model: onnx.ModelProto) -> str | None:
    """A decline reason when the model is quantized already, else None."""
    ops = quantized_ops(model)
    if not ops:
        return None
    counts = ", ".join(f"{v} {k}" for k, v in ops.most_common(3))
    more = ", ..." if len(ops) > 3 else ""
    return (f"already quantized ({counts}{more} nodes): quantizing again would stack scales on "
            "integer tensors; the model is returned unchanged")


def _opsets(model: onnx.ModelProto) -> dict[str, int]:
    return {("" if o.domain == "ai.onnx" else o.domain): o.version for o in model.opset_import}


def scrub_new_attributes(model: onnx.ModelProto) -> list[str]:
    """Drop attributes that the model's opset does not know, where they hold the default of the
    newer version (so meaning is unchanged): rewriters write e.g. Reshape's ``allowzero=0``
    (opset 14) into older models, which the checker and ONNX Runtime then reject. Returns what
    was dropped, as "Op.attr" strings; attributes with a non-default value are left for the
    checker to report."""
    opsets = _opsets(model)
    dropped: list[str] = []
    consts = _constants(model.graph)
    for node in _all_nodes(model.graph):
        domain = "" if node.domain == "ai.onnx" else node.domain
        if domain != "" or domain not in opsets:
            continue
        try:
            schema = defs.get_schema(node.op_type, opsets[domain], domain)
        except defs.SchemaError:
            continue
        unknown = [a for a in node.attribute if a.name not in schema.attributes]
        if not unknown:
            continue
        try:
            latest = defs.get_schema(node.op_type, defs.onnx_opset_version(), domain).attributes
        except defs.SchemaError:
            continue
        for a in unknown:
            default = latest[a.name].default_value if a.name in latest else None
            same = default is not None and default.type == a.type and \
                onnx.helper.get_attribute_value(default) == onnx.helper.get_attribute_value(a)
            if same or _moot(node, a, consts):
                node.attribute.remove(a)
                dropped.append(f"{node.op_type}.{a.name}")
    return dropped


def _constants(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    found = {t.name: t for t in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.output:
            t = next((a.t for a in n.attribute if a.name == "value" and a.type == onnx.AttributeProto.TENSOR), None)
            if t is not None:
                found[n.output[0]] = t
    return found


def _moot(node: onnx.NodeProto, attr: onnx.AttributeProto, consts: dict[str, onnx.TensorProto]) -> bool:
    """Whether an attribute the opset lacks changes nothing here: Reshape's allowzero=1 (which
    onnxscript's rewriter writes when it materializes a shape) only matters for a 0 in the shape."""
    if node.op_type == "Reshape" and attr.name == "allowzero" and len(node.input) > 1:
        shape = consts.get(node.input[1])
        return shape is not None and bool(np.all(numpy_helper.to_array(shape) != 0))
    return False


def _all_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    nodes = list(graph.node)
    for n in graph.node:
        for a in n.attribute:
            for g in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                nodes += _all_nodes(g)
    return nodes


def upgrade_ir(model: onnx.ModelProto) -> str | None:
    """IR 3 models list every initializer as a graph input, and tools that add initializers
    (ONNX Runtime's quantizer, BatchNorm folding) do not. Move to IR 4, where initializers need
    not be inputs, and drop the initializer inputs (ONNX Runtime treats such inputs as overridable
    and will not fold them). Returns a note, or None when nothing changed."""
    if model.ir_version >= 4:
        return None
    inits = {t.name for t in model.graph.initializer}
    keep = [v for v in model.graph.input if v.name not in inits]
    dropped = len(model.graph.input) - len(keep)
    del model.graph.input[:]
    model.graph.input.extend(keep)
    old, model.ir_version = model.ir_version, 4
    return (f"IR version {old} -> 4 ({dropped} initializers no longer listed as graph inputs), "
            "which the quantizer's added initializers need")


def validation_error(model: onnx.ModelProto) -> str | None:
    """The ONNX checker's first line for ``model``, or None when it passes."""
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        return str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
    return None


_PROBE = ("import sys, onnxruntime as ort; so = ort.SessionOptions(); so.log_severity_level = 4; "
          "ort.InferenceSession(sys.argv[1], so, providers=['CPUExecutionProvider'])")


def ort_crashes(model: onnx.ModelProto, timeout_s: float = 120.0) -> str | None:
    """Create an ONNX Runtime CPU session for ``model`` in a child process: a reason when that
    process dies from a signal (ONNX Runtime's graph optimizers crash on some float16 graphs,
    which no ``except`` can catch), else None. An ordinary session error is not a crash."""
    import signal  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415
    import tempfile  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="workbench-probe-") as d:
        path = Path(d) / "probe.onnx"
        onnx.save_model(model, str(path), save_as_external_data=proto_size(model) > 2**30)
        try:
            rc = subprocess.run([sys.executable, "-c", _PROBE, str(path)], capture_output=True,
                                timeout=timeout_s).returncode
        except subprocess.TimeoutExpired:
            return None
    if rc >= 0:
        return None
    try:
        sig = signal.Signals(-rc).name
    except ValueError:
        sig = f"signal {-rc}"
    return f"ONNX Runtime's CPU provider crashed ({sig}) creating a session for the converted model"
