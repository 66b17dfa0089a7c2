"""A corpus of small "third-party" models, generated locally and seeded: the shapes other projects
ship (old IR versions and opsets, already-quantized graphs, control flow, non-float inputs,
several outputs, dynamic widths) without downloading anything.

``build_zoo(root)`` writes every model under ``root`` and returns what it wrote. Used by
``tests/test_pass_safety.py`` and ``benchmarks/pass_safety.py``.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["ZooModel", "build_zoo"]


@dataclass(frozen=True)
class ZooModel:
    name: str
    path: Path
    represents: str


def _init(rng: np.random.Generator, name: str, *shape: int, scale: float = 0.3) -> onnx.TensorProto:
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def _vi(name: str, elem: int, shape: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def _model(nodes: list, inputs: list, outputs: list, inits: list, opset: int, ir: int,
           inits_as_inputs: bool = False) -> onnx.ModelProto:
    if inits_as_inputs:  # IR 3: every initializer is also a graph input
        inputs = inputs + [_vi(t.name, t.data_type, list(t.dims)) for t in inits]
    g = helper.make_graph(nodes, "zoo", inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="zoo")
    m.ir_version = ir
    onnx.checker.check_model(m)
    return m


# --- onnx.helper models -------------------------------------------------------------------------


def old_cnn(opset: int, ir: int) -> onnx.ModelProto:
    """Conv -> BatchNormalization (old attributes) -> Relu -> MaxPool -> Reshape (shape input, no
    allowzero) -> Gemm -> Softmax; fixed 3x16x16 input, dynamic batch."""
    rng = np.random.default_rng(opset)
    inits = [_init(rng, "w", 8, 3, 3, 3), _init(rng, "b", 8),
             numpy_helper.from_array(rng.uniform(0.5, 1.5, 8).astype(np.float32), "g"),
             _init(rng, "beta", 8), _init(rng, "mean", 8),
             numpy_helper.from_array(rng.uniform(0.5, 1.5, 8).astype(np.float32), "var"),
             numpy_helper.from_array(np.array([0, -1], np.int64), "shape"),
             _init(rng, "fw", 8 * 8 * 8, 10, scale=0.05), _init(rng, "fb", 10)]
    bn_attrs = {"epsilon": 1e-5, "momentum": 0.9}
    if opset < 9:
        bn_attrs["spatial"] = 1  # removed in opset 9
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1] * 4),
        helper.make_node("BatchNormalization", ["c", "g", "beta", "mean", "var"], ["bn"], name="bn", **bn_attrs),
        helper.make_node("Relu", ["bn"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Reshape", ["p", "shape"], ["f"], name="reshape"),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["logits"], name="fc"),
        helper.make_node("Softmax", ["logits"], ["prob"], name="softmax", axis=1),
    ]
    return _model(nodes, [_vi("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
                  [_vi("prob", TensorProto.FLOAT, ["N", 10])], inits, opset, ir, inits_as_inputs=ir < 4)


def if_model() -> onnx.ModelProto:
    """If on a data-dependent condition: one branch MatMuls, the other negates."""
    rng = np.random.default_rng(3)
    w = _init(rng, "w", 16, 16)
    then_g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["t"])], "then", [],
                               [_vi("t", TensorProto.FLOAT, ["N", 16])])
    else_g = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [],
                               [_vi("e", TensorProto.FLOAT, ["N", 16])])
    nodes = [helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
             helper.make_node("Greater", ["s", "zero"], ["cond"]),
             helper.make_node("If", ["cond"], ["y"], name="branch", then_branch=then_g, else_branch=else_g)]
    zero = numpy_helper.from_array(np.array(0, np.float32), "zero")
    return _model(nodes, [_vi("x", TensorProto.FLOAT, ["N", 16])], [_vi("y", TensorProto.FLOAT, ["N", 16])],
                  [w, zero], 13, 7)


def loop_model() -> onnx.ModelProto:
    """Loop three times: h = tanh(h @ W)."""
    rng = np.random.default_rng(4)
    w = _init(rng, "w", 16, 16)
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("MatMul", ["h_in", "w"], ["hw"]),
         helper.make_node("Tanh", ["hw"], ["h_out"])],
        "body", [_vi("i", TensorProto.INT64, []), _vi("cond_in", TensorProto.BOOL, []),
                 _vi("h_in", TensorProto.FLOAT, ["N", 16])],
        [_vi("cond_out", TensorProto.BOOL, []), _vi("h_out", TensorProto.FLOAT, ["N", 16])])
    inits = [w, numpy_helper.from_array(np.array(3, np.int64), "trips"),
             numpy_helper.from_array(np.array(True), "true")]
    nodes = [helper.make_node("Loop", ["trips", "true", "x"], ["y"], name="loop", body=body)]
    return _model(nodes, [_vi("x", TensorProto.FLOAT, ["N", 16])], [_vi("y", TensorProto.FLOAT, ["N", 16])],
                  inits, 13, 7)


def embedding_model() -> onnx.ModelProto:
    """int64 token ids and a bool mask: Gather -> masked mean -> MatMul -> logits (opset 13)."""
    rng = np.random.default_rng(5)
    inits = [_init(rng, "emb", 50, 32), _init(rng, "proj", 32, 64), _init(rng, "head", 64, 4),
             numpy_helper.from_array(np.array([1], np.int64), "axis1"),
             numpy_helper.from_array(np.array([-1], np.int64), "axis_last")]
    nodes = [
        helper.make_node("Gather", ["emb", "input_ids"], ["e"], name="embed"),
        helper.make_node("Cast", ["mask"], ["mf"], name="mask_cast", to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mf", "axis_last"], ["mu"], name="mask_unsq"),
        helper.make_node("Mul", ["e", "mu"], ["em"], name="mask_mul"),
        helper.make_node("ReduceSum", ["em", "axis1"], ["s"], name="pool", keepdims=0),
        helper.make_node("MatMul", ["s", "proj"], ["h"], name="proj"),
        helper.make_node("Relu", ["h"], ["hr"], name="relu"),
        helper.make_node("MatMul", ["hr", "head"], ["logits"], name="head"),
    ]
    return _model(nodes, [_vi("input_ids", TensorProto.INT64, ["batch", "seq"]),
                          _vi("mask", TensorProto.BOOL, ["batch", "seq"])],
                  [_vi("logits", TensorProto.FLOAT, ["batch", 4])], inits, 13, 7)


# --- torch exports ------------------------------------------------------------------------------


def _export(module, args: tuple, names: tuple[list[str], list[str]], axes: dict, opset: int) -> onnx.ModelProto:
    import torch  # noqa: PLC0415

    buf = io.BytesIO()
    module.eval()
    torch.backends.mha.set_fastpath_enabled(False)  # the fused encoder kernel has no ONNX export
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # RNN batch-size advice, TorchScript deprecation
        torch.onnx.export(module, args, buf, dynamo=False, opset_version=opset, input_names=names[0],
                          output_names=names[1], dynamic_axes=axes)
    m = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(m)
    return m


def _torch_models() -> dict[str, tuple[Callable[[], onnx.ModelProto], str]]:
    import torch  # noqa: PLC0415
    from torch import nn  # noqa: PLC0415

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(50, 32)
            layer = nn.TransformerEncoderLayer(32, 2, 64, dropout=0.0, batch_first=True)
            self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
            self.head = nn.Linear(32, 3)

        def forward(self, ids):
            return self.head(self.enc(self.emb(ids)).mean(1))

    class Detector(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(),
                                          nn.Conv2d(8, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU())
            self.boxes = nn.Conv2d(16, 4 * 2, 1)
            self.scores = nn.Conv2d(16, 3 * 2, 1)

        def forward(self, x):
            f = self.backbone(x)
            n = x.shape[0]
            boxes = self.boxes(f).permute(0, 2, 3, 1).reshape(n, -1, 4)
            scores = torch.sigmoid(self.scores(f).permute(0, 2, 3, 1).reshape(n, -1, 3))
            return boxes, scores

    class CRNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cnn = nn.Sequential(nn.Conv2d(1, 8, 3, 1, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                                     nn.Conv2d(8, 16, 3, 1, 1), nn.ReLU(), nn.MaxPool2d((4, 1)))
            self.rnn = nn.LSTM(16 * 2, 32, batch_first=True, bidirectional=True)
            self.fc = nn.Linear(64, 11)

        def forward(self, x):  # x [N, 1, 16, W]
            f = self.cnn(x)  # [N, 16, 2, W/2]
            n, c, h, w = f.shape
            f = f.permute(0, 3, 1, 2).reshape(n, w, c * h)
            y, _ = self.rnn(f)
            return self.fc(y).log_softmax(-1)

    class Audio(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Sequential(nn.Conv1d(1, 16, 9, 4, 4), nn.ReLU(), nn.Conv1d(16, 16, 5, 2, 2), nn.ReLU())
            self.gru = nn.GRU(16, 24, batch_first=True)
            self.fc = nn.Linear(24, 5)

        def forward(self, wave):  # wave [N, samples]
            f = self.conv(wave.unsqueeze(1)).transpose(1, 2)
            y, _ = self.gru(f)
            return self.fc(y[:, -1])

    ids = torch.randint(0, 50, (1, 16))  # the trace bakes batch and length into Reshapes: fixed
    return {
        "transformer-opset14": (lambda: _export(Encoder(), (ids,), (["input_ids"], ["logits"]),
                                                {}, 14),
                                "nn.TransformerEncoder (2 layers) on int64 token ids [1, 16] (fixed: the trace bakes them), opset 14"),
        "transformer-opset17": (lambda: _export(Encoder(), (ids,), (["input_ids"], ["logits"]),
                                                {}, 17),
                                "the same encoder at opset 17 (LayerNormalization op)"),
        "detector-opset11": (lambda: _export(Detector(), (torch.randn(1, 3, 32, 32),), (["image"], ["boxes", "scores"]),
                                             {"image": {0: "N"}, "boxes": {0: "N"}, "scores": {0: "N"}}, 11),
                             "tiny detector: conv backbone + box and score heads (two outputs), opset 11"),
        "crnn-lstm-opset13": (lambda: _export(CRNN(), (torch.randn(1, 1, 16, 32),), (["image"], ["logits"]),
                                              {"image": {0: "N", 3: "width"}, "logits": {0: "N", 1: "steps"}}, 13),
                              "CRNN text recognizer: Conv + bidirectional LSTM, width axis dynamic, opset 13"),
        "audio-gru-opset17": (lambda: _export(Audio(), (torch.randn(1, 400),), (["waveform"], ["logits"]),
                                              {"waveform": {0: "N", 1: "samples"}, "logits": {0: "N"}}, 17),
                              "audio classifier: Conv1d + GRU on a raw waveform, samples axis dynamic, opset 17"),
    }


# --- ONNX Runtime's quantizers ------------------------------------------------------------------


class _RandomReader:
    """A CalibrationDataReader of seeded random batches for one float input."""

    def __init__(self, name: str, shape: tuple[int, ...], n: int = 4) -> None:
        rng = np.random.default_rng(7)
        self._data = iter([{name: rng.standard_normal(shape).astype(np.float32)} for _ in range(n)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._data, None)


def _quantized(src: Path, dst: Path, kind: str) -> None:
    from onnxruntime.quantization import QuantFormat, quantize_dynamic, quantize_static  # noqa: PLC0415

    if kind == "dynamic":
        quantize_dynamic(str(src), str(dst))
    else:
        fmt = QuantFormat.QDQ if kind == "qdq" else QuantFormat.QOperator
        quantize_static(str(src), str(dst), _RandomReader("x", (1, 3, 16, 16)), quant_format=fmt)


def build_zoo(root: str | Path) -> list[ZooModel]:
    """Write every model of the corpus under ``root``; returns them in a fixed order."""
    import logging  # noqa: PLC0415

    import torch  # noqa: PLC0415

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    out: list[ZooModel] = []

    def save(name: str, proto: onnx.ModelProto, represents: str) -> Path:
        p = root / f"{name}.onnx"
        onnx.save(proto, str(p))
        out.append(ZooModel(name, p, represents))
        return p

    save("cnn-ir3-opset7", old_cnn(7, 3), "IR 3 / opset 7 CNN: initializers listed as graph inputs, "
         "BatchNormalization with spatial, Reshape without allowzero")
    save("cnn-ir4-opset9", old_cnn(9, 4), "IR 4 / opset 9 CNN (old BatchNormalization and Reshape)")
    save("if-opset13", if_model(), "control flow: If with MatMul/Neg branches")
    save("loop-opset13", loop_model(), "control flow: Loop of MatMul+Tanh")
    save("embedding-int64-bool", embedding_model(), "int64 token ids + bool mask inputs, Gather embedding")
    for name, (make, what) in _torch_models().items():
        torch.manual_seed(len(out))
        save(name, make(), what)
    # Already-quantized models, as ORT's own tools write them.
    logging.disable(logging.WARNING)
    try:
        crnn = root / "crnn-lstm-opset13.onnx"
        _quantized(crnn, root / "crnn-dynamic-quant.onnx", "dynamic")
        out.append(ZooModel("crnn-dynamic-quant", root / "crnn-dynamic-quant.onnx",
                            "the CRNN after quantize_dynamic (DynamicQuantizeLinear, ConvInteger, "
                            "DynamicQuantizeLSTM, MatMulInteger): the reported failure"))
        cnn13 = root / "cnn-opset13-float.onnx"
        onnx.save(old_cnn(13, 7), str(cnn13))
        for kind, what in (("qdq", "quantize_static QDQ (QuantizeLinear/DequantizeLinear pairs)"),
                           ("qoperator", "quantize_static QOperator (QLinearConv, QLinearMatMul/QGemm)")):
            p = root / f"cnn-static-{kind}.onnx"
            _quantized(cnn13, p, kind)
            out.append(ZooModel(f"cnn-static-{kind}", p, f"opset 13 CNN after {what}"))
    finally:
        logging.disable(logging.NOTSET)
    return out


# --- the safety check ---------------------------------------------------------------------------

PASSES = ("fold", "fuse", "int8", "int8-dynamic", "fp16", "prune-magnitude", "prune-2:4", "prune-channels")
CALIBRATED = {"int8", "fp16", "prune-channels"}  # passes given random calibration data


def _feeds(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    from workbench.core.shapes import random_feeds, resolve_inputs, tensor_specs  # noqa: PLC0415

    ins, _ = tensor_specs(model.graph)
    return random_feeds(resolve_inputs(ins, batch=1), seed=0)


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    import onnxruntime as ort  # noqa: PLC0415

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return list(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def check_pass(zm: ZooModel, pass_name: str) -> dict:
    """Run one pass on one zoo model and classify the outcome: ``built`` (ONNX Runtime loads and
    runs the result; output names and shapes match the baseline's, finite where it is finite),
    ``declined`` (a reason, and the model unchanged) or ``failed`` (with what went wrong)."""
    from workbench.core.build import optimize  # noqa: PLC0415
    from workbench.core.cache import BuildCache  # noqa: PLC0415
    from workbench.core.evaluation.data import random_dataset  # noqa: PLC0415
    from workbench.core.model import load_model  # noqa: PLC0415

    src = load_model(zm.path)
    feeds = _feeds(src.proto)
    base = _run(src.proto, feeds)
    calib = random_dataset(src, 8) if pass_name in CALIBRATED else None
    row: dict = {"model": zm.name, "pass": pass_name}
    try:
        res = optimize(src, pass_name, calibration=calib, cache=BuildCache(enabled=False))
    except Exception as e:  # noqa: BLE001
        return {**row, "outcome": "failed", "why": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}
    rep = res.reports[0]
    reasons = [f"{d['what']}: {d['reason']}" for d in rep.declined]
    row["declined"] = reasons
    out = res.model.proto
    same = out.graph.SerializeToString() == src.proto.graph.SerializeToString()
    if not rep.modified or same:
        if rep.modified:
            return {**row, "outcome": "failed", "why": "modified=True but the graph is unchanged"}
        if not same and rep.declined and any(d["what"] == "the whole model" for d in rep.declined):
            return {**row, "outcome": "failed", "why": "declined the whole model but changed the graph"}
        if not reasons:
            reasons = ["(nothing to do: modified=False)"]
        return {**row, "outcome": "declined", "why": "; ".join(reasons)[:400]}
    try:
        got = _run(out, feeds)
    except Exception as e:  # noqa: BLE001
        return {**row, "outcome": "failed", "why": f"ONNX Runtime: {type(e).__name__}: {str(e).splitlines()[0][:300]}"}
    problems = []
    if [n for n, _ in got] != [n for n, _ in base]:
        problems.append(f"outputs {[n for n, _ in got]} != {[n for n, _ in base]}")
    for (name, a), (_, b) in zip(base, got):
        if np.shape(a) != np.shape(b):
            problems.append(f"{name}: shape {np.shape(b)} != {np.shape(a)}")
        elif np.asarray(a).dtype.kind == "f" and not np.all(np.isfinite(b[np.isfinite(a)])):
            problems.append(f"{name}: not finite where the baseline is")
    if problems:
        return {**row, "outcome": "failed", "why": "; ".join(problems)}
    return {**row, "outcome": "built", "why": "; ".join(reasons)[:400]}
