"""``bf16``: run the model in bfloat16 on OpenVINO's CPU plugin (CPUs with AVX-512 BF16 or AMX).

bfloat16 keeps float32's exponent range (no overflow, unlike float16) with an 8-bit mantissa. On
the CPU its speed comes from the runtime's kernels, not from the file: OpenVINO's CPU plugin runs
a float32 graph in bf16 when compiled with ``INFERENCE_PRECISION_HINT=bf16`` (the way it handles
bf16 by default on such CPUs). So this pass leaves the weights in float32 and records the hint in
the model's metadata (``workbench.precision_hint``); the openvino engine compiles with it, and the
session measures its accuracy against the FP32 baseline like any other build. ONNX Runtime's CPU
provider has no bf16 kernels for convolutions and matrix products, so the pass declines other
devices, and CPUs without bf16 instructions, with the reason.
"""

from __future__ import annotations

import onnx

from ..machine import cpu_isa
from ..model import PRECISION_KEY
from .base import Pass, PassContext, PassResult
from .registry import register
from .safety import already_quantized

__all__ = ["Bf16Pass", "PRECISION_KEY", "BF16_ISA"]

BF16_ISA = ("AVX-512 BF16", "AMX-BF16")


def _openvino_cpu(device: str) -> bool:
    head, _, tail = (device or "cpu").partition(":")
    return head.lower() == "openvino" and tail.upper() in ("", "CPU")


@register
class Bf16Pass(Pass):
    name = "bf16"
    summary = ("bfloat16 inference on OpenVINO's CPU plugin (AVX-512 BF16 / AMX CPUs): float32 "
               "weights, the engine computes in bf16; accuracy measured against FP32")
    options = ()

    def call(self, model: onnx.ModelProto, ctx: PassContext) -> PassResult:
        report = self.new_report()
        report.nodes_before = report.nodes_after = len(model.graph.node)
        isa = cpu_isa()
        if not _openvino_cpu(ctx.device):
            report.decline("the whole model", f"bf16 runs on OpenVINO's CPU plugin (device openvino); "
                           f"ONNX Runtime's CPU provider has no bf16 kernels for Conv/MatMul, and "
                           f"{ctx.device!r} is not openvino: pick the openvino device")
            return PassResult(model, report)
        have = [x for x in BF16_ISA if x in isa]
        if not have:
            report.decline("the whole model", f"this CPU has no bf16 instructions (AVX-512 BF16 or AMX; "
                           f"it has {', '.join(isa) or 'none read'}): OpenVINO would run f32 anyway")
            return PassResult(model, report)
        props = {p.key: p for p in model.metadata_props}
        if PRECISION_KEY in props:
            props[PRECISION_KEY].value = "bf16"
        else:
            model.metadata_props.add(key=PRECISION_KEY, value="bf16")
        report.modified = True
        report.notes.append(f"INFERENCE_PRECISION_HINT=bf16 on OpenVINO's CPU plugin ({', '.join(have)}); "
                            "weights stay float32 in the file")
        if already_quantized(model):
            report.notes.append("the model has int8 layers: they stay int8, the float layers between "
                                "them run in bf16")
        return PassResult(model, report)
