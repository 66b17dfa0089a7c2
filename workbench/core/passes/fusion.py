"""``fold`` and ``fuse``: graph cleanup and operator fusion on onnxscript's rewriter and onnx-ir.

Both passes apply rewrite rules one pattern at a time, so the report counts what each pattern
did, and they record the rewriter's own reasons when a pattern matched but its check failed (for
example "not a constant initializer"). Numerics: outputs match the input within float32
rounding (tests check 1e-4 relative on real data).

ONNX Runtime applies much of this itself at session creation (``ORT_ENABLE_BASIC`` and above), so
offline fusion pays mostly for other engines, for ORT's lower optimization levels, for exported
models and their node counts; ``benchmarks/`` measures where it does and does not.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from typing import Any

import onnx
import onnx_ir as ir
from onnx_ir.passes.common import IdentityEliminationPass, RemoveUnusedNodesPass
from onnxscript import optimizer
from onnxscript.rewriter import MatchingTracer, RewriteRuleSet
from onnxscript.rewriter._basics import MatchStatus
from onnxscript.rewriter.rules import common as R

from ..model import proto_size
from .base import Option, Pass, PassContext, PassReport, PassResult, decline_control_flow, default_opset
from .registry import register
from .safety import upgrade_ir

__all__ = ["FoldPass", "FusePass"]

_FOLD_RULES: dict[str, list[Any]] = {
    "dropout-elimination": [R.dropout_inference_rule, R.dropout_zero_rule],
    "no-op arithmetic (x+0, x*1, x/1, x-0)": [R.add_0_rule, R.mul_by_1_rule, R.div_by_1_rule, R.sub_0_rule],
    "no-op cast/expand/transpose": [R.no_op_cast_rule, R.no_op_expand_rule, R.no_op_transpose_rule,
                                    R.cast_cast_rule],
    "reshape-reshape": [R.reshape_reshape_rule],
    "transpose-transpose": [R.transpose_transpose_rule],
    "unsqueeze-unsqueeze": [R.unsqueeze_unsqueeze_rule],
    "squeeze-reshape-1d": [R.squeeze_reshape_1d_rule],
    "materialize-reshape-shape": [R.materialize_reshape_shape_rule],
    "slice-collapse": [R.collapse_slice_rule, R.collapse_slice2_rule],
}

_FUSE_RULES: dict[str, list[Any]] = {
    "Conv+BatchNormalization": [R.fuse_batchnorm_into_conv_rule],
    "ConvTranspose+BatchNormalization": [R.fuse_batchnorm_into_conv_transpose_rule],
    "Gemm+BatchNormalization": [R.fuse_batchnorm_into_gemm_rule],
    "MatMul+Add->Gemm": [R.matmul_add_to_gemm_rule, R.transpose_a_matmul_add_to_gemm_rule,
                         R.transpose_b_matmul_add_to_gemm_rule, R.transpose_ab_matmul_add_to_gemm_rule],
    "Pad+Conv": [R.fuse_pad_into_conv_rule],
    "Relu/Clip chains": [R.successive_relu_rule, R.successive_clip_rule, R.successive_clip_relu_rule,
                         R.successive_relu_clip_rule],
    "Min/Max->Clip": [R.min_max_rule, R.max_min_rule, R.min_min_rule, R.max_max_rule],
    "HardSwish": list(R.fuse_hardswish_rules().rules),
}
# A fused op must exist in the model's opset: HardSwish came in opset 14, Clip's min/max inputs in 11.
_MIN_OPSET = {"HardSwish": 14, "Min/Max->Clip": 11, "Relu/Clip chains": 11}


def _to_ir(model: onnx.ModelProto) -> ir.Model:
    """To onnx-ir, with inferred shapes: several rules check ranks (e.g. MatMul+Add -> Gemm)."""
    if proto_size(model) < 2**31 - 1:
        try:
            model = onnx.shape_inference.infer_shapes(model, data_prop=True)
        except Exception:  # noqa: BLE001  (rules that need shapes then decline, with their reason)
            pass
    return ir.serde.deserialize_model(model)


def _to_proto(model: ir.Model, like: onnx.ModelProto) -> onnx.ModelProto:
    out = ir.serde.serialize_model(model)
    del out.graph.value_info[:]  # inferred for the rules; later passes may change shapes
    if not out.metadata_props and like.metadata_props:
        out.metadata_props.extend(like.metadata_props)
    return out


def _apply(model: ir.Model, rules: dict[str, list[Any]], report: PassReport) -> None:
    for pattern, rule_list in rules.items():
        rule_set = RewriteRuleSet(rule_list)
        # With a tracer the rewriter only matches (a dry run that records why checks failed);
        # the second call rewrites.
        tracer = MatchingTracer()
        rule_set.apply_to_model(model, tracer=tracer)
        count = rule_set.apply_to_model(model)
        if count:
            report.fused[pattern] = report.fused.get(pattern, 0) + count
        for infos in tracer.best_matches_map.values():
            for info in infos:
                if info.status in (MatchStatus.CONDITION_FAILED, MatchStatus.REPLACEMENT_FAILED):
                    node = info.root_node.name or info.root_node.op_type
                    report.decline(f"{pattern} at {node}",
                                   info.match_result.reason or info.status.name.lower())


@register
class FoldPass(Pass):
    name = "fold"
    summary = ("constant folding, identity/dropout elimination, no-op and shape-op cleanup "
               "(onnxscript optimizer + rewriter, onnx-ir passes)")
    options = (
        Option("slim", bool, False, "also run onnxslim's graph simplification afterwards"),
    )

    def call(self, model: onnx.ModelProto, ctx: PassContext) -> PassResult:
        report = self.new_report()
        if decline_control_flow(model, report):
            return PassResult(model, report)
        ir_note = upgrade_ir(model)  # IR 3 initializers are graph inputs: the rewriter sees no constants
        if ir_note:
            report.notes.append(ir_note)
        before = Counter(n.op_type for n in model.graph.node)
        m = _to_ir(model)
        optimizer.fold_constants(m)
        folded = len(model.graph.node) - len(list(m.graph))
        IdentityEliminationPass()(m)
        _apply(m, _FOLD_RULES, report)
        RemoveUnusedNodesPass()(m)
        out = _to_proto(m, model)
        if self.opts["slim"]:
            import onnxslim  # noqa: PLC0415

            out = onnxslim.slim(out)
        after = Counter(n.op_type for n in out.graph.node)
        removed = {op: before[op] - after.get(op, 0) for op in before if before[op] > after.get(op, 0)}
        if folded > 0:
            report.fused["constant-folding (nodes removed)"] = folded
        gone = sum(before.get(op, 0) - after.get(op, 0) for op in ("Identity", "Dropout"))
        if gone > 0:
            report.fused["identity/dropout elimination"] = gone
        report.metrics["ops_removed"] = removed
        report.modified = removed != {} or after != before
        return PassResult(out, report)


@register
class FusePass(Pass):
    name = "fuse"
    summary = ("fold BatchNorm into Conv/Gemm, MatMul+Add into Gemm, Pad into Conv, activation "
               "chains; optionally ONNX Runtime's Conv+activation fusions for ORT on CPU")
    options = (
        Option("fold_first", bool, True, "run the fold pass's cleanup first"),
        Option("ort_fusions", bool, False,
               "also apply ONNX Runtime's extended fusions offline (FusedConv, FusedGemm, ...): the "
               "model then runs only on ONNX Runtime's CPU engine"),
    )

    def call(self, model: onnx.ModelProto, ctx: PassContext) -> PassResult:
        report = self.new_report()
        if self.opts["fold_first"]:
            folded = FoldPass()(model, ctx)
            model = folded.model
            report.fused.update(folded.report.fused)
            report.declined.extend(folded.report.declined)
            report.notes.extend(folded.report.notes)
        if decline_control_flow(model, report):
            return PassResult(model, report)
        ir_note = upgrade_ir(model)
        if ir_note:
            report.notes.append(ir_note)
        opset = default_opset(model)
        rules = {k: v for k, v in _FUSE_RULES.items() if opset >= _MIN_OPSET.get(k, 0)}
        for k in _FUSE_RULES.keys() - rules.keys():
            report.decline(k, f"the model's opset {opset} is below {_MIN_OPSET[k]}, where the fused op "
                              "exists (convert the model to a newer opset to allow it)")
        m = _to_ir(model)
        _apply(m, rules, report)
        RemoveUnusedNodesPass()(m)
        out = _to_proto(m, model)
        for node in out.graph.node:  # every BatchNorm left is one we could not fold: say why
            if node.op_type == "BatchNormalization":
                report.decline(f"BatchNormalization {node.name}", _why_bn_stays(out, node))
        if self.opts["ort_fusions"]:
            if ctx.device.split(":")[0] != "cpu":
                report.decline("ort_fusions", f"ONNX Runtime's CPU fusions do not run on {ctx.device}")
            else:
                out = _ort_extended(out, report)
        report.modified = bool(report.fused)
        return PassResult(out, report)


def _why_bn_stays(model: onnx.ModelProto, bn: onnx.NodeProto) -> str:
    producers = {o: n for n in model.graph.node for o in n.output}
    consumers = Counter(i for n in model.graph.node for i in n.input)
    inits = {i.name for i in model.graph.initializer}
    src = producers.get(bn.input[0])
    if src is None or src.op_type not in ("Conv", "ConvTranspose", "Gemm"):
        return f"its input comes from {src.op_type if src else 'a graph input'}, not Conv/ConvTranspose/Gemm"
    if consumers[bn.input[0]] > 1:
        return f"{src.op_type} {src.name}'s output also feeds other nodes"
    if not all(i in inits for i in bn.input[1:]):
        return "its scale, bias, mean or variance is not a constant initializer"
    if len(src.input) < 2 or src.input[1] not in inits:
        return f"{src.op_type} {src.name}'s weight is not a constant initializer"
    return "the rewriter declined it (see the other declined entries)"


def _ort_extended(model: onnx.ModelProto, report: PassReport) -> onnx.ModelProto:
    """Let ONNX Runtime fuse at ORT_ENABLE_EXTENDED and save the result (CPU provider)."""
    import onnxruntime as ort  # noqa: PLC0415

    before = Counter(n.op_type for n in model.graph.node)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "opt.onnx")
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        so.optimized_model_filepath = path
        so.log_severity_level = 4
        ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        out = onnx.load(path)
    after = Counter(n.op_type for n in out.graph.node)
    for op in sorted(set(after) - set(before)):
        report.fused[f"onnxruntime {op}"] = after[op]
    report.notes.append("ort_fusions: contrib ops (com.microsoft) now in the graph; runs on ONNX "
                        "Runtime's CPU engine only")
    return out
