"""``int8`` and ``int8-dynamic``: INT8 quantization with ONNX Runtime's quantization tooling.

``int8`` is static post-training quantization in the QDQ format (QuantizeLinear/DequantizeLinear
pairs around the operators, which ONNX Runtime and TensorRT fuse into integer kernels). Its
``auto`` defaults depend on the target, because the fastest and safe scheme differs:

* x86 CPU without VNNI (AVX2): U8S8 (uint8 activations, int8 weights), per-channel weights,
  ``reduce_range`` (7-bit weights). MLAS's x86 int8 kernels take uint8 activations and int8
  weights; S8S8 runs much slower there. AVX2 multiplies u8 x s8 pairs into saturating int16
  (``vpmaddubsw``), so full 8-bit weights can overflow: on the sample that cost 0.17-0.6 top-1 points (10,000 images),
  7-bit weights cost nothing measurable.
* x86 CPU with VNNI or AMX: U8S8, per-channel, full 8-bit weights (int32 accumulation, no
  saturation).
* Arm CPU: S8S8 with symmetric activations, ONNX Runtime's guidance (not measured here).
* TensorRT and CUDA: symmetric signed int8 (all zero points 0), per-channel weights, per-tensor
  activations, Q/DQ placed as TensorRT's explicit-quantization guide recommends: on the inputs of
  weighted operators (Conv, ConvTranspose, Gemm, MatMul) and on the residual input of an Add fed
  by two weighted operators; the outputs of weighted operators are left to TensorRT's fusions.
* OpenVINO (``openvino[:CPU|GPU|NPU]``): NNCF's ``nncf.quantize`` defaults for OpenVINO
  (``int8_scheme``): symmetric activations whose sign comes from the calibration data (U8 with
  zero point 0 after ReLU, S8 where negative), S8 symmetric per-channel weights, 7-bit weights on the
  first layer only, Q/DQ on the op types NNCF quantizes for CPUs, model outputs in float.

``int8-dynamic`` is ``quantize_dynamic``: int8 weights, activations quantized at run time. It suits
MatMul-heavy models (transformers, LSTMs). By default it leaves Conv in float: ConvInteger has no
fast CPU kernels (2.6-5x slower than FP32 here; ``benchmarks/passes_quant.py``); ``ops=...+Conv``
includes it. On ``openvino`` it declines: OpenVINO runs MatMulInteger in f32 (slower than FP32).
Both passes decline models that are quantized already.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ...errors import UsageError
from ..machine import cpu_isa
from ..model import proto_size
from .base import Option, Pass, PassContext, PassReport, PassResult, decline_control_flow, default_opset
from .int8_scheme import AUTO_BOOL, OPENVINO_OPS, VNNI, Int8Scheme, resolve_int8_scheme
from .int8_scheme import device_family as _device_family
from .int8_scheme import is_arm as _is_arm
from .int8_scheme import tri as _tri
from .registry import register
from .safety import already_quantized, upgrade_ir

__all__ = ["Int8Scheme", "resolve_int8_scheme", "Int8Pass", "Int8DynamicPass"]

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
CALIB_BATCH = 16  # calibration batch when the model's batch axis is free
_2GB = 2**31 - 1
# int8-dynamic's default op types: quantize_dynamic's (IntegerOpsRegistry) less Conv.
DYNAMIC_OPS = ("MatMul", "Attention", "LSTM", "Gather", "Transpose", "EmbedLayerNormalization")
OPENVINO_DYNAMIC_NOTE = (
    "dynamic quantization declined on openvino: OpenVINO's ONNX frontend runs DynamicQuantizeLinear + "
    "MatMulInteger as f32 FullyConnected layers on int32-converted inputs, with no int8 kernel: "
    "0.80-0.83x of OpenVINO FP32 on a 4-block MLP (1x128x768 by 768x3072 MatMuls, AVX2, 2 threads, two "
    "runs), where ONNX Runtime ran the same file 1.2-1.5x faster than its FP32; use int8 (static Q/DQ, which OpenVINO "
    "runs as int8 kernels) or build int8-dynamic for --device cpu")
CONV_NOTE = ("Conv left in float: ONNX Runtime's ConvInteger kernel ran 2.6-5x slower than FP32 Conv on "
             "x86 CPUs (batch 1, 2 threads); include it with ops=MatMul+Attention+LSTM+Gather+Conv")


# --- shared helpers -----------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ONNX Runtime's quantizer logs warnings through the root logger and prints histograms
    progress to stdout; keep both out of the workbench's output."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(previous)


def _name_nodes(model: onnx.ModelProto) -> int:
    """Give unnamed nodes a name (exclusion and reports go by name). Returns how many."""
    used = {n.name for n in model.graph.node if n.name}
    count = 0
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in used:
                name += "_"
            node.name = name
            used.add(name)
            count += 1
    return count


def _opset_for_qdq(model: onnx.ModelProto, scheme: Int8Scheme,
                   report: PassReport) -> tuple[onnx.ModelProto, Int8Scheme]:
    """Per-channel Q/DQ needs opset 13 (the ``axis`` of QuantizeLinear/DequantizeLinear): convert
    older models with ONNX's version converter, or fall back to per-tensor scales if it cannot."""
    opset = default_opset(model)
    if opset >= 13 or not scheme.per_channel:
        return model, scheme
    from onnx import version_converter  # noqa: PLC0415

    try:
        converted = version_converter.convert_version(model, 13)
        onnx.checker.check_model(converted)
    except Exception as e:  # noqa: BLE001 - the converter raises bare RuntimeErrors
        report.notes.append(f"opset {opset} is below 13, which per-channel Q/DQ needs, and ONNX's "
                            f"version converter could not convert it ({str(e).splitlines()[0][:160]}): "
                            "per-tensor weight scales instead")
        return model, replace(scheme, per_channel=False)
    report.notes.append(f"converted from opset {opset} to 13 (ONNX's version converter): per-channel "
                        "Q/DQ needs the axis attribute of opset 13")
    return converted, scheme


def _save(model: onnx.ModelProto, path: Path) -> None:
    if proto_size(model) > _2GB:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data")
    else:
        onnx.save_model(model, str(path))


_CWD_LOCK = threading.Lock()


def _import_ort_tools_without_torch() -> None:
    """Import ``onnxruntime.tools`` (quant_pre_process's symbolic shape inference) without torch.

    Its ``__init__`` imports torch whenever torch is installed, for a PyTorch export helper the
    quantizer never calls: measured 6.2 s of a 9.6 s int8 build of the sample in a fresh process
    (the panel's kernel, every test worker). ``find_spec`` answers None for a module set to None
    in ``sys.modules``; torch already imported costs nothing and is left alone.
    """
    if "onnxruntime.tools" in sys.modules or "torch" in sys.modules:
        return
    sys.modules["torch"] = None  # type: ignore[assignment]
    try:
        import onnxruntime.tools  # noqa: F401, PLC0415
    finally:
        del sys.modules["torch"]


def _preprocess(src: Path, dst: Path, report: PassReport) -> None:
    """ONNX Runtime's quant_pre_process: shape inference and basic graph optimization (BatchNorm
    folded into Conv, constants folded), which the quantizer needs for good results."""
    from onnxruntime.quantization.shape_inference import quant_pre_process  # noqa: PLC0415

    _import_ort_tools_without_torch()

    # When its symbolic shape inference gives up, ONNX Runtime saves "sym_shape_infer_temp.onnx"
    # into the current directory: run it from the build's temporary folder so nothing is written
    # in the user's (the lock keeps two builds in this process from changing directory at once).
    with _CWD_LOCK:
        cwd = os.getcwd()
        os.chdir(src.parent)
        try:
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
        except Exception as e:  # noqa: BLE001  (symbolic shape inference fails on some graphs)
            report.notes.append(f"preprocess: ONNX Runtime's symbolic shape inference failed on this graph "
                                f"({type(e).__name__}: {str(e)[:80]}); used ONNX shape inference")
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
        finally:
            os.chdir(cwd)


def _producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {o: n for n in model.graph.node for o in n.output}


def _float_tensors(model: onnx.ModelProto) -> set[str]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model) if proto_size(model) < _2GB else model
    except Exception:  # noqa: BLE001
        inferred = model
    g = inferred.graph
    return {v.name for v in [*g.value_info, *g.input, *g.output]
            if v.type.tensor_type.elem_type in (TensorProto.FLOAT, TensorProto.FLOAT16)}


def _summarize_quantized(before: onnx.ModelProto, out: onnx.ModelProto, op_types: set[str],
                         user_excluded: dict[str, str], report: PassReport) -> None:
    """Fill quantized/excluded lists. A node is quantized when its data input comes from a
    DequantizeLinear and, for Conv/Gemm/MatMul, its weight too, or, for other ops, its outputs are
    quantized again (ONNX Runtime then runs it as an integer kernel). A candidate node that is not
    (and that no option excluded) was left in float by the quantizer: reported with the likely
    reason."""
    prod = _producers(out)
    floats = _float_tensors(before)
    out_names = {n.name for n in out.graph.node}
    quantizes = {n.input[0] for n in out.graph.node if n.op_type == "QuantizeLinear"}

    def from_dq(name: str) -> bool:
        src = prod.get(name)
        return src is not None and src.op_type == "DequantizeLinear"

    for node in out.graph.node:
        if node.op_type not in op_types or not node.input or not from_dq(node.input[0]):
            continue
        if node.op_type in WEIGHTED_OPS:
            ok = len(node.input) > 1 and from_dq(node.input[1])
        else:  # a DQ input alone may just be a quantized neighbour's output
            ok = all(o in quantizes for o in node.output)
        if ok:
            report.quantized.append(node.name)
    quantized = set(report.quantized)
    for name, reason in user_excluded.items():
        report.exclude(name, reason)
    for node in before.graph.node:
        if (node.name in quantized or node.name in user_excluded or node.op_type not in op_types
                or not node.input or node.input[0] not in floats):
            continue
        if node.name not in out_names:
            if node.op_type in ("Relu", "Clip"):
                continue  # removed: folded into the quantization range (reported in notes)
            report.exclude(node.name, "no longer in the quantized graph")
            continue
        if node.op_type in WEIGHTED_OPS or node.op_type in ("Add", "Mul", "Concat"):
            reason = "left in float by ONNX Runtime's quantizer (no calibrated range or unsupported " \
                     "input/attribute)"
        else:
            reason = "left in float: ONNX Runtime quantizes this op only between quantized tensors"
        report.exclude(node.name, reason)


def _check_excludes(model: onnx.ModelProto, names: list[str], pass_name: str) -> None:
    known = {n.name for n in model.graph.node}
    missing = [n for n in names if n not in known]
    if missing:
        sample = ", ".join(sorted(known)[:8])
        raise UsageError(f"{pass_name}: exclude names nodes not in the model: {', '.join(missing)}",
                         f"node names look like: {sample}{', ...' if len(known) > 8 else ''}")


def _decline_unsupported(model: onnx.ModelProto, report: PassReport) -> bool:
    """Decline control flow and already-quantized models (True: return the model as it is);
    otherwise move IR 3 models to IR 4, which the quantizer's new initializers need."""
    if decline_control_flow(model, report):
        return True
    why = already_quantized(model)
    if why:
        report.decline("the whole model", why)
        return True
    note = upgrade_ir(model)
    if note:
        report.notes.append(note)
    return False


def _check_op_types(names: list[str], pass_name: str) -> None:
    for t in names:
        if not t or not (t[0].isupper() or "." in t):
            raise UsageError(f"{pass_name}: exclude_op_types has {t!r}, which is not an ONNX op type",
                             "give op types as in the graph, e.g. Conv+Gemm")


def _apply_exclusions(pre: onnx.ModelProto, original_names: set[str], exclude: list[str],
                      exclude_ops: list[str], report: PassReport) -> dict[str, str]:
    """Node name -> reason, for the nodes the options keep in float (after preprocessing)."""
    names_now = {n.name for n in pre.graph.node}
    excluded: dict[str, str] = {}
    for name in exclude:
        if name in names_now:
            excluded[name] = "exclude option"
        elif name in original_names:
            report.decline(f"exclude {name}", "preprocessing fused this node into another "
                                              "(e.g. BatchNormalization into Conv); exclude that node "
                                              "or set preprocess=false")
    ops = set(exclude_ops)
    for node in pre.graph.node:
        if node.op_type in ops and node.name not in excluded:
            excluded[node.name] = f"exclude_op_types ({node.op_type})"
    return excluded


def _restore_metadata(out: onnx.ModelProto, like: onnx.ModelProto) -> None:
    have = {p.key for p in out.metadata_props}
    for p in like.metadata_props:
        if p.key not in have:
            out.metadata_props.append(p)


def _model_bytes(model: onnx.ModelProto) -> int:
    return sum(len(t.raw_data) or t.ByteSize() for t in model.graph.initializer)


# --- calibration --------------------------------------------------------------------------------

# Calibration ranges depend only on the preprocessed model, the op types calibrated, the method and
# the data, not on the node exclusions; leave-one-out sensitivity and the search build the same
# model with many exclusion lists, so the ranges are kept (in this process) and reused.
_CALIBRATION_MEMO: dict[str, tuple[Any, int, int]] = {}
_MEMO_SIZE = 8


def _calibration_key(pre: onnx.ModelProto, op_types: list[str], opts: dict[str, Any], data: Any) -> str | None:
    if data is None or proto_size(pre) > _2GB:
        return None
    h = hashlib.sha256(pre.SerializeToString())
    h.update(repr((sorted(op_types), opts["calibration"], opts["percentile"], opts["samples"])).encode())
    h.update(data.content_hash().encode())
    return h.hexdigest()



class _Feeds:
    """A CalibrationDataReader over one batch."""

    def __init__(self, feeds: dict[str, np.ndarray]) -> None:
        self._feeds: dict[str, np.ndarray] | None = feeds

    def get_next(self) -> dict[str, np.ndarray] | None:
        feeds, self._feeds = self._feeds, None
        return feeds

    def __iter__(self):  # noqa: ANN204
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        f = self.get_next()
        if f is None:
            raise StopIteration
        return f


def _fixed_batch(model: onnx.ModelProto) -> int | None:
    """The batch size the model's inputs fix (a number on axis 0), or None if it is free."""
    inits = {i.name for i in model.graph.initializer}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        dims = vi.type.tensor_type.shape.dim
        if len(dims) > 1 and dims[0].HasField("dim_value") and dims[0].dim_value > 0:
            return int(dims[0].dim_value)
    return None


def _calibrate(path: Path, op_types: list[str], method: str, percentile: float, data: Any,
               samples: int, ctx: PassContext, tmp: Path, large: bool) -> tuple[Any, int, int]:
    """Run ONNX Runtime's calibrator batch by batch (progress, bounded memory); returns the
    tensor ranges, the samples used and the batch size."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator  # noqa: PLC0415

    cm = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
          "percentile": CalibrationMethod.Percentile}[method]
    extra: dict[str, Any] = {"percentile": percentile} if method == "percentile" else {}
    model = onnx.load(str(path), load_external_data=False)
    fixed = _fixed_batch(model)
    batch = fixed or CALIB_BATCH
    available = len(data)
    if data.groups is not None:
        total, batch = min(samples, available), 1
    else:
        total = min(samples, available)
        if fixed:
            total -= total % fixed
    if total < 1:
        raise UsageError(f"int8: the calibration data has {available} samples, fewer than the "
                         f"model's fixed batch of {fixed}", "give more calibration samples")
    with _quiet():
        calibrator = create_calibrator(path, op_types, augmented_model_path=str(tmp / "augmented.onnx"),
                                       calibrate_method=cm, use_external_data_format=large,
                                       extra_options=extra)
        done = 0
        ctx.report_progress("calibration", 0, total)
        for feeds, _ in data.batches(batch, total):
            calibrator.collect_data(_Feeds(feeds))
            done += 1 if data.groups is not None else len(next(iter(feeds.values())))
            ctx.report_progress("calibration", done, total)
        ctx.report_progress("calibration ranges", 0, 1)
        ranges = calibrator.compute_data()
        ctx.report_progress("calibration ranges", 1, 1)
    return ranges, total, batch


# --- OpenVINO (NNCF's conventions) -------------------------------------------------------------


def _first_convs(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The first convolution on each path from the graph inputs, as NNCF's OverflowFix.FIRST_LAYER
    finds them (``_get_first_quantized_convolutions``: a breadth-first walk from each input that
    stops at a plain convolution and walks on through every other op, grouped convolutions and
    MatMuls included)."""
    inits = {i.name for i in model.graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    found: list[onnx.NodeProto] = []
    seen: set[int] = set()
    queue = [i.name for i in model.graph.input if i.name not in inits]
    while queue:
        for n in consumers.get(queue.pop(0), []):
            if id(n) in seen:
                continue
            seen.add(id(n))
            group = next((a.i for a in n.attribute if a.name == "group"), 1)
            if n.op_type == "Conv" and group == 1 and len(n.input) > 1 and n.input[1] in inits:
                found.append(n)
            else:
                queue.extend(n.output)
    return found


def _openvino_overrides(pre: onnx.ModelProto, ranges: Any, scheme: Int8Scheme,
                        excluded: dict[str, str]) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """TensorQuantOverrides for NNCF's conventions: S8 symmetric activations where the calibrated
    minimum is negative (U8 with its zero point at 0 elsewhere: ONNX Runtime's asymmetric U8 range
    starts at min(rmin, 0) = 0, which is NNCF's unsigned symmetric range), and 7-bit weights on the
    first convolutions. Returns the overrides and what they did, for the report."""
    from onnxruntime.quantization import QuantType  # noqa: PLC0415

    inits = {i.name: i for i in pre.graph.initializer}
    overrides: dict[str, list[dict[str, Any]]] = {}
    info: dict[str, Any] = {"signed": 0, "unsigned": 0, "first_layer": []}
    if scheme.activation_signedness == "per-tensor":
        for name, td in ranges.items():
            if name in inits:
                continue
            if float(np.min(td.range_value[0])) < 0:
                overrides[name] = [{"quant_type": QuantType.QInt8, "symmetric": True}]
                info["signed"] += 1
            else:
                info["unsigned"] += 1
    if scheme.reduce_range_first_layer:
        for node in _first_convs(pre):
            if node.name in excluded:
                continue
            rr: dict[str, Any] = {"reduce_range": True}
            if scheme.per_channel and len(inits[node.input[1]].dims) > 1:
                rr["axis"] = 0  # Conv output channels; without an axis ONNX Runtime goes per-tensor
            overrides[node.input[1]] = [rr]
            info["first_layer"].append(node.name)
    return overrides, info


def _strip_float_qdq(model: onnx.ModelProto, quantized_ops: set[str]) -> int:
    """Remove the activation Q/DQ pairs that no quantized op consumes: in front of the model outputs
    and of ops left in float (Softmax, Sigmoid, ...). NNCF places quantizers on the inputs of
    quantizable ops only (and none on outputs, ``quantize_outputs=False``); ONNX Runtime also
    quantizes every quantized op's output, which there only adds a rounding. Returns how many."""
    inits = {i.name for i in model.graph.initializer}
    outputs = {o.name for o in model.graph.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    prod = _producers(model)
    drop: list[onnx.NodeProto] = []
    removed = 0
    for q in [n for n in model.graph.node if n.op_type == "QuantizeLinear"]:
        x = q.input[0]
        dqs = consumers.get(q.output[0], [])
        if x in inits or not dqs or any(d.op_type != "DequantizeLinear" for d in dqs):
            continue
        kept = len(dqs)
        for dq in dqs:
            y = dq.output[0]
            users = consumers.get(y, [])
            if any(u.op_type in quantized_ops for u in users):
                continue
            if y in outputs:  # the output keeps its name: the float producer writes it directly
                src = prod.get(x)
                if (len(dqs) > 1 or src is None or len(consumers.get(x, [])) != 1 or x in outputs
                        or any(i.name == x for i in model.graph.input)):
                    continue
                src.output[list(src.output).index(x)] = y
            else:
                for u in users:
                    for k, name in enumerate(u.input):
                        if name == y:
                            u.input[k] = x
            drop.append(dq)
            kept -= 1
            removed += 1
        if not kept:
            drop.append(q)
    for n in drop:
        model.graph.node.remove(n)
    return removed


# --- TensorRT residual inputs -------------------------------------------------------------------


def _qdq_residual_adds(model: onnx.ModelProto, ranges: Any, report: PassReport) -> int:
    """Q/DQ the residual input of Adds whose two inputs both come straight from weighted ops, so
    TensorRT can fuse the Add into the other op's int8 kernel (its placement guide)."""
    prod = _producers(model)
    consumers = Counter(i for n in model.graph.node for i in n.input)
    added = 0
    new_nodes: list[tuple[int, list[onnx.NodeProto]]] = []
    inits = []
    for idx, node in enumerate(model.graph.node):
        if node.op_type != "Add" or len(node.input) != 2:
            continue
        srcs = [prod.get(i) for i in node.input]
        if not all(s is not None and s.op_type in WEIGHTED_OPS for s in srcs):
            continue
        tensor = node.input[1]  # `out + identity`: the second input is the shortcut branch
        if tensor not in ranges:
            report.decline(f"residual Q/DQ at {node.name}", f"no calibrated range for {tensor}")
            continue
        lo, hi = ranges[tensor].range_value
        amax = max(abs(float(np.min(lo))), abs(float(np.max(hi))), 1e-8)
        base = f"{tensor}_residual"
        scale = numpy_helper.from_array(np.array(amax / 127.0, np.float32), base + "_scale")
        zp = numpy_helper.from_array(np.array(0, np.int8), base + "_zero_point")
        inits += [scale, zp]
        q = helper.make_node("QuantizeLinear", [tensor, scale.name, zp.name], [base + "_q"],
                             name=base + "_QuantizeLinear")
        dq = helper.make_node("DequantizeLinear", [base + "_q", scale.name, zp.name], [base + "_dq"],
                              name=base + "_DequantizeLinear")
        if consumers[tensor] > 1:
            report.notes.append(f"residual Q/DQ at {node.name}: {tensor} has other consumers, "
                                "which keep the float tensor")
        node.input[1] = dq.output[0]
        new_nodes.append((idx, [q, dq]))
        added += 1
    for idx, nodes in reversed(new_nodes):
        for k, n in enumerate(nodes):
            model.graph.node.insert(idx + k, n)
    model.graph.initializer.extend(inits)
    return added


# --- passes -------------------------------------------------------------------------------------

_QTYPE = {"u8": "QUInt8", "s8": "QInt8"}


@register
class Int8Pass(Pass):
    name = "int8"
    summary = ("static INT8 quantization (QDQ) with ONNX Runtime's quantizer and calibration data; "
               "device-aware defaults (CPU instruction set, TensorRT placement)")
    needs_calibration = True
    options = (
        Option("calibration", str, "minmax",
               "how activation ranges are chosen from the calibration data: minmax (observed "
               "range), entropy (KL-divergence threshold), percentile (clip at the percentile)",
               choices=("minmax", "entropy", "percentile")),
        Option("samples", int, 256, "calibration samples used (the first N of the calibration data)"),
        Option("percentile", float, 99.999, "percentile for calibration=percentile"),
        Option("per_channel", str, "auto", "per-channel weight scales (auto: true on every target)",
               choices=AUTO_BOOL),
        Option("activation_type", str, "auto",
               "activation integer type (auto: u8 on x86 CPUs, s8 on Arm and GPUs; on openvino each "
               "tensor's sign decides, as NNCF does: u8 where non-negative, else s8)",
               choices=("auto", "u8", "s8")),
        Option("weight_type", str, "auto", "weight integer type (auto: s8)", choices=("auto", "u8", "s8")),
        Option("symmetric_activations", str, "auto",
               "symmetric activation ranges (auto: true for TensorRT/CUDA, Arm and openvino, false on "
               "x86 so uint8 zero points can absorb ReLU)", choices=AUTO_BOOL),
        Option("symmetric_weights", str, "auto", "symmetric weight ranges (auto: true)",
               choices=AUTO_BOOL),
        Option("reduce_range", str, "auto",
               "7-bit weights (auto: true on x86 CPUs without VNNI, whose u8 x s8 kernels saturate; "
               "on openvino the first convolution only, NNCF's default)",
               choices=AUTO_BOOL),
        Option("exclude", list, [], "node names to keep in float (e.g. conv1+fc)"),
        Option("exclude_op_types", list, [], "op types to keep in float (e.g. Gemm+Add)"),
        Option("preprocess", bool, True,
               "run ONNX Runtime's quant_pre_process first (shape inference, BatchNorm folding, "
               "constant folding)"),
    )

    def validate(self) -> None:
        if self.opts["samples"] < 1:
            raise UsageError(f"int8: samples must be >= 1, got {self.opts['samples']}")
        if not 0 < self.opts["percentile"] <= 100:
            raise UsageError(f"int8: percentile must be in (0, 100], got {self.opts['percentile']}")
        if self.opts["activation_type"] == "s8" and self.opts["weight_type"] == "u8":
            raise UsageError("int8: activation_type=s8 with weight_type=u8 is not supported",
                             "use u8 activations, or s8 weights")
        _check_op_types(self.opts["exclude_op_types"], self.name)

    def call(self, model: onnx.ModelProto, ctx: PassContext) -> PassResult:
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_static  # noqa: PLC0415
        from onnxruntime.quantization.calibrate import CalibrationMethod, save_tensors_data  # noqa: PLC0415
        from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry  # noqa: PLC0415

        o = self.opts
        scheme = resolve_int8_scheme(ctx.device, **{k: o[k] for k in (
            "activation_type", "weight_type", "per_channel", "reduce_range", "symmetric_activations",
            "symmetric_weights")})
        report = self.new_report()
        _check_excludes(model, o["exclude"], self.name)
        if _decline_unsupported(model, report):
            return PassResult(model, report)
        model, scheme = _opset_for_qdq(model, scheme, report)
        renamed = _name_nodes(model)
        if renamed:
            report.notes.append(f"{renamed} unnamed nodes were given names (op type and index)")
        original_names = {n.name for n in model.graph.node}
        if scheme.placement == "tensorrt":
            op_types = list(WEIGHTED_OPS)
        elif scheme.placement == "openvino":
            op_types = list(OPENVINO_OPS)  # ReduceMean, in no ORT registry, gets its generic Q/DQ
        else:
            op_types = sorted(set(QLinearOpsRegistry) | set(QDQRegistry))
        op_types = [t for t in op_types if t not in set(o["exclude_op_types"])]
        large = proto_size(model) > _2GB
        with tempfile.TemporaryDirectory(prefix="workbench-int8-") as d:
            tmp = Path(d)
            src, pre_path = tmp / "model.onnx", tmp / "pre.onnx"
            _save(model, src)
            if o["preprocess"]:
                ctx.report_progress("preprocess", 0, 1)
                with _quiet():
                    _preprocess(src, pre_path, report)
                ctx.report_progress("preprocess", 1, 1)
            else:
                pre_path = src
            pre = onnx.load(str(pre_path))
            bn_before = sum(n.op_type == "BatchNormalization" for n in model.graph.node)
            bn_after = sum(n.op_type == "BatchNormalization" for n in pre.graph.node)
            if o["preprocess"]:
                report.metrics["preprocess"] = {"nodes_before": len(model.graph.node),
                                                "nodes_after": len(pre.graph.node),
                                                "batchnorm_folded": bn_before - bn_after}
            if bn_after:
                report.notes.append(f"{bn_after} BatchNormalization nodes remain "
                                    f"({'not foldable' if o['preprocess'] else 'preprocess=false'}): "
                                    "they are quantized separately and block Conv fusions")
            excluded = _apply_exclusions(pre, original_names, o["exclude"], o["exclude_op_types"], report)

            t0 = time.perf_counter()
            memo_key = _calibration_key(pre, op_types, o, ctx.calibration)
            memo = _CALIBRATION_MEMO.get(memo_key) if memo_key else None
            if memo is None:
                memo = _calibrate(pre_path, op_types, o["calibration"], o["percentile"],
                                  ctx.calibration, o["samples"], ctx, tmp, large)
                if memo_key:
                    _CALIBRATION_MEMO[memo_key] = memo
                    while len(_CALIBRATION_MEMO) > _MEMO_SIZE:
                        _CALIBRATION_MEMO.pop(next(iter(_CALIBRATION_MEMO)))
            else:
                report.notes.append("calibration ranges reused from an earlier build in this process "
                                    "(same preprocessed model, op types, method and data)")
            ranges, used, batch = memo
            calib_s = time.perf_counter() - t0
            cache = tmp / "calibration.json"
            save_tensors_data(ranges, cache)

            per_tensor = scheme.activation_signedness == "per-tensor"
            extra: dict[str, Any] = {
                # per-tensor signedness: asymmetric U8 by default (zero point 0 on non-negative
                # tensors, so ReLU/Clip are absorbed), S8 symmetric overrides for signed tensors
                "ActivationSymmetric": scheme.symmetric_activations and not per_tensor,
                "WeightSymmetric": scheme.symmetric_weights,
            }
            ov_info: dict[str, Any] = {}
            if per_tensor or scheme.reduce_range_first_layer:
                overrides, ov_info = _openvino_overrides(pre, ranges, scheme, excluded)
                if overrides:
                    extra["TensorQuantOverrides"] = overrides
            if scheme.placement == "tensorrt":
                # TensorRT's DequantizeLinear takes int8 (not int32 biases): biases stay float
                extra.update(OpTypesToExcludeOutputQuantization=list(WEIGHTED_OPS),
                             QDQKeepRemovableActivations=True, QuantizeBias=False)
            cm = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                  "percentile": CalibrationMethod.Percentile}[o["calibration"]]
            out_path = tmp / "int8.onnx"
            ctx.report_progress("quantize", 0, 1)
            with _quiet():
                quantize_static(
                    str(pre_path), str(out_path), None, quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=op_types, per_channel=scheme.per_channel,
                    reduce_range=scheme.reduce_range,
                    activation_type=getattr(QuantType, _QTYPE[scheme.activation_type]),
                    weight_type=getattr(QuantType, _QTYPE[scheme.weight_type]),
                    nodes_to_exclude=sorted(excluded), use_external_data_format=large,
                    calibrate_method=cm, extra_options=extra, calibration_cache_path=str(cache))
            ctx.report_progress("quantize", 1, 1)
            out = onnx.load(str(out_path))
        residual = 0
        if scheme.placement == "tensorrt":
            residual = _qdq_residual_adds(out, ranges, report)
        outputs_float = 0 if scheme.quantize_outputs else _strip_float_qdq(out, set(op_types))
        _restore_metadata(out, model)

        candidates = set(op_types) | ({"Relu", "Clip"} if scheme.placement == "all" else set())
        _summarize_quantized(pre, out, candidates, excluded, report)
        removed_acts = [n.name for n in pre.graph.node if n.op_type in ("Relu", "Clip")
                        and n.name not in {m.name for m in out.graph.node}]
        report.notes.insert(0, f"scheme: {scheme.short()}")
        report.notes[1:1] = list(scheme.reasons)
        method = o["calibration"] + (f" {o['percentile']}" if o["calibration"] == "percentile" else "")
        report.notes.append(f"calibration: {method} on {used} samples (batch {batch}) in {calib_s:.1f} s")
        if removed_acts:
            report.notes.append(f"{len(removed_acts)} Relu/Clip nodes removed: their range is absorbed "
                                "by the uint8 zero point of the following Q/DQ")
        if residual:
            report.notes.append(f"{residual} residual Add inputs given Q/DQ for TensorRT's Add fusion")
        if ov_info.get("signed") or ov_info.get("unsigned"):
            report.notes.append(f"activation signs from calibration: {ov_info['unsigned']} calibrated tensors "
                                f"non-negative (U8, zero point 0), {ov_info['signed']} signed (S8 symmetric)")
        if ov_info.get("first_layer"):
            report.notes.append("7-bit weights on the first layer: " + ", ".join(ov_info["first_layer"]))
        if outputs_float:
            report.notes.append(f"{outputs_float} Q/DQ pairs left out where no quantized op reads the "
                                "tensor (model outputs, ops kept in float), as NNCF places them")
        ops = Counter(n.op_type for n in out.graph.node)
        report.metrics.update({
            "scheme": scheme.to_dict(),
            "device": ctx.device,
            "cpu_isa": list(cpu_isa()) if scheme.target.startswith(("cpu", "openvino")) else None,
            "calibration": {"method": o["calibration"], "samples": used, "batch": batch,
                            "seconds": round(calib_s, 2),
                            "percentile": o["percentile"] if o["calibration"] == "percentile" else None},
            "quantize_linear": ops.get("QuantizeLinear", 0),
            "dequantize_linear": ops.get("DequantizeLinear", 0),
            "quantized_by_op": dict(Counter(n.op_type for n in out.graph.node
                                            if n.name in set(report.quantized))),
            "relu_clip_removed": len(removed_acts),
            "activation_signs": ({"unsigned": ov_info["unsigned"], "signed": ov_info["signed"]}
                                 if ov_info.get("signed") or ov_info.get("unsigned") else None),
            "first_layer_7bit": ov_info.get("first_layer") or [],
            "outputs_float": outputs_float,
            "weights_bytes": {"before": _model_bytes(model), "after": _model_bytes(out)},
        })
        report.modified = True
        return PassResult(out, report)


@register
class Int8DynamicPass(Pass):
    name = "int8-dynamic"
    summary = ("dynamic INT8 quantization (ONNX Runtime quantize_dynamic): int8 weights, activations "
               "quantized at run time; for MatMul-heavy models, usually slower on CPU conv nets")
    options = (
        Option("per_channel", bool, False, "per-channel weight scales"),
        Option("weight_type", str, "s8", "weight integer type", choices=("u8", "s8")),
        Option("reduce_range", str, "auto",
               "7-bit weights (auto: true on x86 CPUs without VNNI, whose u8 x s8 kernels saturate)",
               choices=AUTO_BOOL),
        Option("ops", list, list(DYNAMIC_OPS),
               "op types to quantize (default: all of quantize_dynamic's but Conv, whose ConvInteger "
               "runs slower than FP32 on CPUs; add it with ops=MatMul+Attention+LSTM+Gather+Conv)"),
        Option("exclude", list, [], "node names to keep in float"),
        Option("exclude_op_types", list, [], "op types to keep in float (e.g. Conv)"),
        Option("preprocess", bool, True, "run ONNX Runtime's quant_pre_process first"),
    )

    def validate(self) -> None:
        from onnxruntime.quantization.registry import IntegerOpsRegistry  # noqa: PLC0415

        _check_op_types(self.opts["exclude_op_types"], self.name)
        bad = [t for t in self.opts["ops"] if t not in IntegerOpsRegistry]
        if bad or not self.opts["ops"]:
            raise UsageError(f"int8-dynamic: ops {bad or '(empty)'} not among quantize_dynamic's op types",
                             f"choose from {'+'.join(IntegerOpsRegistry)}")

    def call(self, model: onnx.ModelProto, ctx: PassContext) -> PassResult:
        from onnxruntime.quantization import QuantType, quantize_dynamic  # noqa: PLC0415
        from onnxruntime.quantization.registry import IntegerOpsRegistry  # noqa: PLC0415

        o = self.opts
        report = self.new_report()
        family = _device_family(ctx.device)
        _check_excludes(model, o["exclude"], self.name)
        if family == "openvino":
            report.decline("the whole model", OPENVINO_DYNAMIC_NOTE + "; returned unchanged")
            return PassResult(model, report)
        if _decline_unsupported(model, report):
            return PassResult(model, report)
        renamed = _name_nodes(model)
        if renamed:
            report.notes.append(f"{renamed} unnamed nodes were given names (op type and index)")
        original_names = {n.name for n in model.graph.node}
        isa = cpu_isa()
        vnni = any(v in isa for v in VNNI) or _is_arm(isa)
        rr = _tri(o["reduce_range"], not vnni and family == "cpu")
        op_types = [t for t in o["ops"] if t in IntegerOpsRegistry and t not in set(o["exclude_op_types"])]
        large = proto_size(model) > _2GB
        with tempfile.TemporaryDirectory(prefix="workbench-int8dyn-") as d:
            tmp = Path(d)
            src, pre_path = tmp / "model.onnx", tmp / "pre.onnx"
            _save(model, src)
            if o["preprocess"]:
                with _quiet():
                    _preprocess(src, pre_path, report)
            else:
                pre_path = src
            pre = onnx.load(str(pre_path))
            excluded = _apply_exclusions(pre, original_names, o["exclude"], o["exclude_op_types"], report)
            out_path = tmp / "int8dyn.onnx"
            with _quiet():
                quantize_dynamic(str(pre_path), str(out_path), op_types_to_quantize=op_types,
                                 per_channel=o["per_channel"], reduce_range=rr,
                                 weight_type=getattr(QuantType, _QTYPE[o["weight_type"]]),
                                 nodes_to_exclude=sorted(excluded), use_external_data_format=large)
            out = onnx.load(str(out_path))
        _restore_metadata(out, model)
        integer_ops = {"ConvInteger", "MatMulInteger", "DynamicQuantizeMatMul", "DynamicQuantizeLSTM",
                       "QAttention", "QEmbedLayerNormalization", "GatherQuant"}
        names_out = {n.name for n in out.graph.node}
        for node in out.graph.node:  # quantize_dynamic names a quantized node "<name>_quant"
            if node.op_type in integer_ops:
                report.quantized.append(node.name.removesuffix("_quant"))
        quantized = set(report.quantized)
        for name, reason in excluded.items():
            report.exclude(name, reason)
        for node in pre.graph.node:
            if node.op_type in ("Conv", "MatMul") and node.op_type in op_types and node.name not in excluded \
                    and node.name not in quantized and node.name in names_out:
                report.exclude(node.name, "left in float by quantize_dynamic (non-constant weight "
                                          "or unsupported shape)")
        convs = sum(1 for n in out.graph.node if n.op_type == "ConvInteger")
        report.notes.append(f"weights int8 ({o['weight_type'].upper()}), activations quantized to "
                            f"uint8 at run time per tensor; reduce_range={rr}"
                            f"{' (auto: x86 without VNNI)' if o['reduce_range'] == 'auto' and rr else ''}")
        if convs:
            report.notes.append(f"{convs} Conv nodes became ConvInteger, which has no fast CPU kernels: "
                                "on convolution nets this is usually much slower than FP32 (measured "
                                "0.3x on ResNet-50 and 0.2x on the sample, AVX2, 2 threads); use int8 (static) for "
                                "conv nets, or exclude_op_types=Conv")
        left = sorted({n.op_type for n in pre.graph.node} & ({"Conv"} - set(op_types)))
        if left:
            report.notes.append(CONV_NOTE)
        if {n.op_type for n in pre.graph.node} & {"Gemm", "GRU", "RNN"}:
            report.notes.append("Gemm, GRU and RNN stay in float: quantize_dynamic has no integer "
                                "form for them (only MatMul, Attention, LSTM, Gather, Conv, ...)")
        if family != "cpu":
            report.notes.append(f"dynamic quantization targets ONNX Runtime's CPU provider; on "
                                f"{ctx.device} prefer int8 (static, TensorRT placement) or fp16")
        ops = Counter(n.op_type for n in out.graph.node)
        report.metrics.update({
            "reduce_range": rr, "per_channel": o["per_channel"], "weight_type": o["weight_type"],
            "integer_ops": {k: v for k, v in ops.items() if k in integer_ops},
            "dynamic_quantize_linear": ops.get("DynamicQuantizeLinear", 0),
            "weights_bytes": {"before": _model_bytes(model), "after": _model_bytes(out)},
        })
        if not report.quantized:
            report.decline("the whole model", f"no node of the op types {'+'.join(op_types)} could be "
                           "quantized" + ("" if not left else f" ({CONV_NOTE})") + "; returned unchanged")
            return PassResult(model, report)
        report.modified = True
        return PassResult(out, report)
