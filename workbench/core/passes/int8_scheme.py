"""The ``int8`` scheme per target device: integer types, symmetry, granularity, placement, and why.

Re-exported by :mod:`workbench.core.passes.quantize`, which applies the scheme with ONNX Runtime's
``quantize_static``. Split out of it so the device logic reads on its own.

The ``openvino`` family (``openvino``, ``openvino:CPU``, ``openvino:GPU[.N]``, ``openvino:NPU``,
``openvino-gpu``, ``openvino-npu``) follows what NNCF's ``nncf.quantize`` does by default for
OpenVINO (NNCF 3.4 sources):

* preset PERFORMANCE (``QuantizationPreset.get_params_configured_by_preset`` in
  ``nncf/common/quantization/structs.py``): symmetric weights *and* activations;
* activation sign from the data (``symmetric_range`` in ``nncf/quantization/fake_quantize.py``:
  signed only where the collected minimum is < 0): a tensor after ReLU is unsigned, [0, max] in
  256 levels (U8, zero point 0), a tensor with negative values signed symmetric (S8, zero point 0);
* weights signed, symmetric, narrow range [-127, 127], per channel (``q8_w_sym`` in
  ``nncf/common/hardware/qspaces.py``), activations per tensor (``q8_a``);
* ``OverflowFix.FIRST_LAYER`` (``ModeBasedDefaults`` in ``nncf/quantization/algorithms/min_max/
  algorithm.py``): half-range (7-bit) weights on the first convolution of each input only, against
  the u8 x s8 saturation of non-VNNI x86 CPUs (``OverflowFix`` in ``advanced_parameters.py``);
* quantizers on the inputs of the operations NNCF's CPU hardware setup lists as quantizable
  (``nncf/common/hardware/setups/cpu.py``: convolution, MatMul, Add, Multiply, average pooling,
  Concat with unified scales, Interpolate, ...), propagated through quantization-agnostic ops
  (MaxPool, Reshape, Transpose, ...), none on Softmax/Sigmoid/normalizations, and no quantizer on
  the model outputs (``quantize_outputs=False``): a Q/DQ pair only where a quantized op reads it;
* GPU and NPU: NNCF quantizes A8W8 with the CPU setup (``MinMaxQuantization._set_mode_based_params``
  switches the target device to CPU).

OpenVINO's ONNX frontend reads each QuantizeLinear/DequantizeLinear pair as a FakeQuantize
(``src/frontends/onnx/frontend/src/op/quantize_linear.cpp``), which its low-precision
transformations run as int8 kernels, so a Q/DQ file with these settings is what OpenVINO would run
from an NNCF-quantized IR, less NNCF's fast bias correction and its mean-of-batches ranges.
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass, field
from typing import Any

from ...errors import UsageError
from ..machine import cpu_isa

__all__ = ["Int8Scheme", "resolve_int8_scheme", "device_family", "AUTO_BOOL", "VNNI", "OPENVINO_OPS",
           "TRT_DEVICES", "CUDA_DEVICES", "CPU_DEVICES", "OPENVINO_DEVICES"]

AUTO_BOOL = ("auto", "true", "false")
TRT_DEVICES = {"tensorrt", "trt", "ort-tensorrt"}
CUDA_DEVICES = {"cuda", "gpu", "ort-cuda"}
CPU_DEVICES = {"cpu", "ort-cpu"}
OPENVINO_DEVICES = {"openvino", "openvino-gpu", "openvino-npu"}
VNNI = ("AVX-512 VNNI", "AVX-VNNI", "AMX-INT8")
# NNCF's CPU setup (nncf/common/hardware/setups/cpu.py) in ONNX op types: quantizable (Conv,
# MatMul, Add, Mul, pooling, ReduceMean, Concat, Resize) and quantization-agnostic (MaxPool, shape
# ops, Relu/Clip, which the U8 zero point absorbs). Left out: the ops whose constant inputs ONNX
# Runtime would quantize as weights (Sub, Div, Pow: epsilons, exponents) and the comparisons.
OPENVINO_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Mul", "AveragePool",
                "GlobalAveragePool", "ReduceMean", "Concat", "Resize", "MaxPool", "Relu", "Clip", "Reshape",
                "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Slice", "Split", "Pad")

_OPENVINO_REASONS = (
    "OpenVINO: NNCF's nncf.quantize defaults for OpenVINO (NNCF 3.4): preset PERFORMANCE, symmetric "
    "weights and activations (nncf/common/quantization/structs.py); each activation's sign from the "
    "calibration data (nncf/quantization/fake_quantize.py symmetric_range): U8 with zero point 0 where "
    "the calibrated minimum is >= 0 (after ReLU), S8 symmetric where it is negative; S8 symmetric "
    "[-127, 127] per-channel weights (q8_w_sym, nncf/common/hardware/qspaces.py), per-tensor activations",
    "7-bit weights on the first convolution only: NNCF's OverflowFix.FIRST_LAYER default against the "
    "u8 x s8 saturation of x86 CPUs without VNNI (nncf/quantization/algorithms/min_max/algorithm.py "
    "ModeBasedDefaults), where the cpu scheme narrows every weight",
    "placement openvino: Q/DQ on the inputs of the ops NNCF's CPU hardware setup quantizes "
    "(Conv, MatMul/Gemm, Add, Mul, pooling, ReduceMean, Concat, Resize; nncf/common/hardware/setups/"
    "cpu.py) and through MaxPool/shape ops, and only where a quantized op reads the tensor: none in "
    "front of Softmax, Sigmoid, normalizations or the model outputs (NNCF's quantize_outputs=False). "
    "OpenVINO's ONNX frontend reads each Q/DQ pair as a FakeQuantize, run as int8 kernels by its "
    "low-precision transformations",
    "not reproduced from NNCF: its fast bias correction, and its activation ranges as the mean of "
    "per-batch min/max (the calibration option sets the ranges here)",
    "measured on OpenVINO 2026.4's CPU plugin (AVX2 without VNNI, batch 1, 2 threads, f32 hint; "
    "benchmarks/openvino_targets.py): this scheme and the cpu scheme ran at one speed (paired "
    "alternation: 2.04x FP32 both on the sample, 2.19x and 2.18x on ResNet-50; every Conv in int8 "
    "in both) and this one stayed closer to FP32: ResNet-50 SQNR 34.8 vs 27.7 dB (cosine 0.99984 vs "
    "0.99922: 7-bit weights everywhere cost the difference); the sample's top-1 95.34% vs 95.41% "
    "(FP32 95.36%, 10,000 images: within 7 images of each other)",
)


@dataclass(frozen=True)
class Int8Scheme:
    """How ``int8`` quantizes for one target, and why."""

    target: str  # "cpu-x86-vnni", "cpu-x86", "cpu-arm", "tensorrt", "cuda", "openvino"
    activation_type: str  # "u8" | "s8"
    weight_type: str
    per_channel: bool
    reduce_range: bool
    symmetric_activations: bool
    symmetric_weights: bool
    # "all": every op ONNX Runtime can quantize; "tensorrt": inputs of weighted ops; "openvino":
    # NNCF's quantizable op types (OPENVINO_OPS)
    placement: str
    reasons: tuple[str, ...] = field(default_factory=tuple)
    # "fixed": activation_type for every activation; "per-tensor": NNCF's, U8 (zero point 0) where
    # the calibrated minimum is >= 0, else S8 symmetric
    activation_signedness: str = "fixed"
    reduce_range_first_layer: bool = False  # 7-bit weights on the first weighted op of each input
    # False (NNCF's): Q/DQ only where a quantized op reads the tensor, none on the graph outputs
    quantize_outputs: bool = True

    def short(self) -> str:
        acts = ("U8 or S8 activations by sign (symmetric), " if self.activation_signedness == "per-tensor"
                else f"{self.activation_type.upper()}")
        rr = ", reduce_range" if self.reduce_range else \
            ", 7-bit first-layer weights" if self.reduce_range_first_layer else ""
        sym = ", symmetric activations" if self.symmetric_activations and self.activation_signedness == "fixed" \
            else ""
        return (f"{acts}{self.weight_type.upper()}{' weights' if self.activation_signedness == 'per-tensor' else ''}, "
                f"{'per-channel' if self.per_channel else 'per-tensor'}{rr}{sym}, placement {self.placement}"
                f"{'' if self.quantize_outputs else ', outputs in float'}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def device_family(device: str) -> str:
    """``cpu``, ``cuda``, ``tensorrt`` or ``openvino`` for a workbench device string."""
    base = (device or "cpu").split(":")[0].lower()
    if base in TRT_DEVICES:
        return "tensorrt"
    if base in CUDA_DEVICES:
        return "cuda"
    if base in CPU_DEVICES:
        return "cpu"
    if base in OPENVINO_DEVICES:
        return "openvino"
    raise UsageError(f"int8: unknown target device {device!r}",
                     "use cpu, cuda, tensorrt, ort-tensorrt or openvino[:CPU|GPU|NPU]")


def is_arm(isa: tuple[str, ...]) -> bool:
    if any(x in isa for x in ("NEON", "NEON dot-product", "Arm I8MM")):
        return True
    return platform.machine().lower() in ("aarch64", "arm64") and not any(x.startswith("AVX") for x in isa)


def tri(value: str, default: bool) -> bool:
    return default if value == "auto" else value == "true"


def resolve_int8_scheme(device: str = "cpu", isa: tuple[str, ...] | None = None, *,
                        activation_type: str = "auto", weight_type: str = "auto",
                        per_channel: str = "auto", reduce_range: str = "auto",
                        symmetric_activations: str = "auto", symmetric_weights: str = "auto") -> Int8Scheme:
    """The ``int8`` scheme for ``device`` (and, on CPU, the instruction sets ``isa``).

    Options other than ``auto`` override the device's default; the reasons say which.
    """
    family = device_family(device)
    reasons: list[str] = []
    signedness, rr_first, q_out = "fixed", False, True
    if family in ("tensorrt", "cuda"):
        target, act, wt, pc, rr, sym_a, placement = family, "s8", "s8", True, False, True, "tensorrt"
        reasons.append(f"{'TensorRT' if family == 'tensorrt' else 'CUDA'}: symmetric signed int8 "
                       "(zero points 0), per-channel weights, per-tensor activations; Q/DQ on the "
                       "inputs of Conv/ConvTranspose/Gemm/MatMul and on residual Add inputs, outputs "
                       "of weighted ops left to TensorRT's fusions, float biases (TensorRT's "
                       "explicit-quantization placement guide)")
        if family == "cuda":
            reasons.append("ONNX Runtime's CUDA provider runs few int8 kernels: the int8 speedup on "
                           "NVIDIA GPUs comes from TensorRT (device tensorrt or ort-tensorrt)")
    elif family == "openvino":
        target, act, wt, pc, rr, sym_a, placement = "openvino", "u8", "s8", True, False, True, "openvino"
        signedness, rr_first, q_out = "per-tensor", True, False
        reasons.extend(_OPENVINO_REASONS)
        ov_dev = device.split(":", 1)[1].upper() if ":" in device else "CPU"
        if not ov_dev.startswith("CPU") or device.split(":")[0].lower() != "openvino":
            reasons.append(f"{device}: NNCF quantizes 8-bit models for GPU and NPU with its CPU setup "
                           "(MinMaxQuantization._set_mode_based_params switches the target device to "
                           "CPU); not measured by the workbench (no Intel GPU or NPU here)")
    else:
        isa = cpu_isa() if isa is None else tuple(isa)
        placement, pc = "all", True
        if is_arm(isa):
            target, act, wt, rr, sym_a = "cpu-arm", "s8", "s8", False, True
            reasons.append("Arm CPU: S8S8 with symmetric activations, per-channel weights "
                           "(ONNX Runtime's guidance for Arm; not measured by the workbench)")
        elif any(v in isa for v in VNNI):
            have = next(v for v in VNNI if v in isa)
            target, act, wt, rr, sym_a = "cpu-x86-vnni", "u8", "s8", False, False
            reasons.append(f"{have} (instruction sets: {', '.join(isa)}): U8S8, per-channel weights, full 8-bit range (VNNI accumulates "
                           "u8 x s8 products in int32, no saturation)")
        else:
            target, act, wt, rr, sym_a = "cpu-x86", "u8", "s8", True, False
            simd = "AVX2" if "AVX2" in isa else "x86 without AVX2"
            reasons.append(f"{simd} without VNNI (instruction sets: {', '.join(isa) or 'none read'}): U8S8 (MLAS's fast x86 int8 kernels; S8 activations "
                           "ran at 0.6x of U8S8's speed on ResNet-50 here), per-channel weights, reduce_range (7-bit "
                           "weights: the u8 x s8 multiply-add saturates in int16 without VNNI; "
                           "full 8-bit weights lost 0.17-0.6 top-1 points on the sample)")
    sym_w = True
    overrides = {"activation_type": activation_type, "weight_type": weight_type,
                 "per_channel": per_channel, "reduce_range": reduce_range,
                 "symmetric_activations": symmetric_activations, "symmetric_weights": symmetric_weights}
    act = act if activation_type == "auto" else activation_type
    wt = wt if weight_type == "auto" else weight_type
    pc = tri(per_channel, pc)
    rr = tri(reduce_range, rr)
    sym_a = tri(symmetric_activations, sym_a)
    sym_w = tri(symmetric_weights, sym_w)
    if activation_type != "auto" or symmetric_activations != "auto":
        signedness = "fixed"  # one type and symmetry for every activation, as given
    if reduce_range != "auto":
        rr_first = False  # true: 7-bit weights everywhere; false: nowhere
    given = [f"{k}={v}" for k, v in overrides.items() if v != "auto"]
    if given:
        reasons.append("overridden by options: " + ", ".join(given))
    if act == "s8" and wt == "u8":
        raise UsageError("int8: activation_type=s8 with weight_type=u8 is not supported by ONNX "
                         "Runtime's quantizer", "use u8 activations, or s8 weights")
    if target == "cpu-x86" and act == "s8" and activation_type != "auto":
        reasons.append("note: S8 activations on x86 without VNNI run on slower kernels")
    if target == "cpu-x86" and act == "u8" and wt == "s8" and not rr and reduce_range == "false":
        reasons.append("warning: U8S8 with full 8-bit weights can saturate on CPUs without VNNI; "
                       "check accuracy")
    return Int8Scheme(target, act, wt, pc, rr, sym_a, sym_w, placement, tuple(reasons),
                      signedness, rr_first, q_out)
