"""Property-based tests (hypothesis) of the loader, the summary and every pass (issue 9).

Mutated model bytes: ``load_model`` and ``summarize`` either work or raise a WorkbenchError.
Random small CNN graphs: every registered pass either declines (a WorkbenchError with a reason)
or returns a model that passes ``onnx.checker`` and matches the original's outputs on ONNX
Runtime's CPU provider within the pass's tolerance (pruning changes numerics by design: only
shapes are compared). CI runs a few derandomized examples; ``WB_FUZZ_EXAMPLES=N`` runs more.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from conftest import make_model, tiny_cnn  # noqa: E402
from workbench.core.evaluation.data import random_dataset  # noqa: E402
from workbench.core.model import load_model  # noqa: E402
from workbench.core.passes.base import PassContext  # noqa: E402
from workbench.core.passes.registry import all_passes  # noqa: E402
from workbench.core.summary import summarize  # noqa: E402
from workbench.errors import WorkbenchError  # noqa: E402

SCALE = int(os.environ.get("WB_FUZZ_EXAMPLES", "0"))
BYTES_EXAMPLES = SCALE or 150
GRAPH_EXAMPLES = SCALE or 6
FUZZ = settings(deadline=None, derandomize=not SCALE, suppress_health_check=[HealthCheck.too_slow],
                print_blob=True)

# Relative L2 error allowed per pass: fold/fuse are exact up to float reassociation; fp16 has
# 11-bit mantissas; int8 on random weights and random inputs loses about 1-5% (bounded loosely).
TOLERANCE = {"fold": 1e-4, "fuse": 1e-4, "fp16": 1e-2, "bf16": 1e-6, "int8": 0.35, "int8-dynamic": 0.35}
SHAPES_ONLY = {"prune-magnitude", "prune-2:4", "prune-channels"}
GOOD = tiny_cnn().SerializeToString()


@st.composite
def mutated_bytes(draw: st.DrawFn) -> bytes:
    data = bytearray(GOOD)
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[i] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete" and data:
            del data[i:i + draw(st.integers(1, 16))]
        elif kind == "truncate":
            del data[i:]
    return bytes(data)


@given(mutated_bytes())
@settings(FUZZ, max_examples=BYTES_EXAMPLES)
def test_loader_and_summary_on_mutated_bytes(data: bytes) -> None:
    try:
        model = load_model(data)
    except WorkbenchError as e:
        assert str(e)
        return
    try:
        summarize(model)
    except WorkbenchError as e:
        assert str(e)


@st.composite
def small_cnns(draw: st.DrawFn) -> onnx.ModelProto:
    """x[N,C,H,W] -> a random chain of Conv/BatchNorm/Relu/Add/Mul/Sigmoid -> GAP -> Gemm."""
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    c = c_in = draw(st.integers(1, 8))
    hw = draw(st.sampled_from([4, 6, 8]))
    nodes, inits, cur = [], [], "x"

    def const(name: str, a: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(a.astype(np.float32), name))
        return name

    for i in range(draw(st.integers(1, 5))):
        op = draw(st.sampled_from(["conv", "conv-nobias", "bn", "relu", "add", "mul", "sigmoid"]))
        out = f"t{i}"
        if op.startswith("conv"):
            co = draw(st.integers(1, 8))
            k = draw(st.sampled_from([1, 3]))
            ins = [cur, const(f"w{i}", rng.standard_normal((co, c, k, k)) / np.sqrt(c * k * k))]
            if op == "conv":
                ins.append(const(f"b{i}", rng.standard_normal(co) * 0.1))
            nodes.append(helper.make_node("Conv", ins, [out], kernel_shape=[k, k], pads=[k // 2] * 4))
            c = co
        elif op == "bn":
            ins = [cur, const(f"s{i}", 1 + 0.1 * rng.standard_normal(c)), const(f"o{i}", 0.1 * rng.standard_normal(c)),
                   const(f"m{i}", 0.1 * rng.standard_normal(c)), const(f"v{i}", 1 + rng.random(c))]
            nodes.append(helper.make_node("BatchNormalization", ins, [out]))
        elif op in ("add", "mul"):
            k = const(f"k{i}", (1.0 if op == "mul" else 0.0) + 0.1 * rng.standard_normal((1, c, 1, 1)))
            nodes.append(helper.make_node(op.capitalize(), [cur, k], [out]))
        else:
            nodes.append(helper.make_node(op.capitalize(), [cur], [out]))
        cur = out
    classes = draw(st.integers(2, 6))
    nodes += [helper.make_node("GlobalAveragePool", [cur], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
              helper.make_node("Gemm", ["f", const("fw", rng.standard_normal((classes, c))),
                                        const("fb", rng.standard_normal(classes))], ["y"], transB=1)]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c_in, hw, hw])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", classes])], inits)


def _run(proto: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    inp = s.get_inputs()[0]
    return s.run(None, {inp.name: x.astype(np.float16 if inp.type == "tensor(float16)" else np.float32)})[0]


@given(small_cnns())
@settings(FUZZ, max_examples=GRAPH_EXAMPLES)
def test_every_pass_on_random_graphs(proto: onnx.ModelProto) -> None:
    model = load_model(proto)
    summarize(model)
    calib = random_dataset(model, 16, seed=1)
    x = random_dataset(model, 8, seed=2).inputs["x"]
    ref = _run(model.proto, x)
    for name, cls in all_passes().items():
        try:
            result = cls()(model.proto, PassContext(calibration=calib))
        except WorkbenchError as e:  # declined as a whole, with a reason
            assert str(e), name
            continue
        onnx.checker.check_model(result.model)
        for d in result.report.declined:
            assert d["reason"], (name, d)
        out = _run(result.model, x).astype(np.float32)
        assert out.shape == ref.shape, name
        if name in SHAPES_ONLY:
            continue
        err = np.linalg.norm(out - ref) / max(np.linalg.norm(ref), 1e-6)
        assert err <= TOLERANCE[name], f"{name}: relative error {err:.3g} > {TOLERANCE[name]}"
