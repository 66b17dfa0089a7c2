"""Synthetic ImageNet-shaped ResNets with random weights, for latency and scale work only.

Built locally with ``onnx.helper`` in the layout torchvision exports (Conv without bias,
BatchNormalization, Relu, residual Add, GlobalAveragePool, Flatten, Gemm), input
``[batch, 3, 224, 224]`` with a dynamic batch. Weights are seeded He-normal so activations stay
finite; BatchNorm statistics are the identity. Their accuracy means nothing: every model is marked
``workbench.latency_only = true`` and the summary says so.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["build_resnet"]

_LAYOUTS = {18: ("basic", [2, 2, 2, 2]), 34: ("basic", [3, 4, 6, 3]), 50: ("bottleneck", [3, 4, 6, 3])}


class _Builder:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.n = 0

    def _name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}_{self.n}"

    def _init(self, name: str, array: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def conv_bn(self, x: str, cin: int, cout: int, k: int, stride: int, relu: bool, scope: str) -> str:
        std = np.sqrt(2.0 / (cin * k * k))
        w = self._init(f"{scope}.weight", self.rng.standard_normal((cout, cin, k, k)) * std)
        conv = self._name(f"{scope}/Conv")
        self.nodes.append(helper.make_node(
            "Conv", [x, w], [conv + ":0"], name=conv, kernel_shape=[k, k],
            strides=[stride, stride], pads=[k // 2] * 4))
        bn = self._name(f"{scope}/BatchNormalization")
        params = [self._init(f"{scope}.bn.{p}", v) for p, v in (
            ("weight", np.ones(cout)), ("bias", np.zeros(cout)),
            ("running_mean", np.zeros(cout)), ("running_var", np.ones(cout)))]
        self.nodes.append(helper.make_node("BatchNormalization", [conv + ":0", *params], [bn + ":0"],
                                           name=bn, epsilon=1e-5))
        out = bn + ":0"
        if relu:
            r = self._name(f"{scope}/Relu")
            self.nodes.append(helper.make_node("Relu", [out], [r + ":0"], name=r))
            out = r + ":0"
        return out

    def add_relu(self, a: str, b: str, scope: str) -> str:
        add = self._name(f"{scope}/Add")
        self.nodes.append(helper.make_node("Add", [a, b], [add + ":0"], name=add))
        r = self._name(f"{scope}/Relu")
        self.nodes.append(helper.make_node("Relu", [add + ":0"], [r + ":0"], name=r))
        return r + ":0"


def build_resnet(depth: int = 50, num_classes: int = 1000, seed: int = 0) -> onnx.ModelProto:
    """A torchvision-layout ResNet-18/34/50 with random weights (latency only)."""
    if depth not in _LAYOUTS:
        raise ValueError(f"depth must be one of {sorted(_LAYOUTS)}")
    kind, blocks = _LAYOUTS[depth]
    b = _Builder(seed)
    x = b.conv_bn("input", 3, 64, 7, 2, True, "conv1")
    pool = "maxpool:0"
    b.nodes.append(helper.make_node("MaxPool", [x], [pool], name="maxpool", kernel_shape=[3, 3],
                                    strides=[2, 2], pads=[1, 1, 1, 1]))
    x, cin = pool, 64
    expansion = 4 if kind == "bottleneck" else 1
    for stage, (n, width) in enumerate(zip(blocks, [64, 128, 256, 512]), start=1):
        for i in range(n):
            scope = f"layer{stage}.{i}"
            stride = 2 if (i == 0 and stage > 1) else 1
            cout = width * expansion
            if kind == "bottleneck":
                y = b.conv_bn(x, cin, width, 1, 1, True, f"{scope}.conv1")
                y = b.conv_bn(y, width, width, 3, stride, True, f"{scope}.conv2")
                y = b.conv_bn(y, width, cout, 1, 1, False, f"{scope}.conv3")
            else:
                y = b.conv_bn(x, cin, width, 3, stride, True, f"{scope}.conv1")
                y = b.conv_bn(y, width, cout, 3, 1, False, f"{scope}.conv2")
            shortcut = x
            if stride != 1 or cin != cout:
                shortcut = b.conv_bn(x, cin, cout, 1, stride, False, f"{scope}.downsample")
            x, cin = b.add_relu(y, shortcut, scope), cout
    b.nodes.append(helper.make_node("GlobalAveragePool", [x], ["avgpool:0"], name="avgpool"))
    b.nodes.append(helper.make_node("Flatten", ["avgpool:0"], ["flatten:0"], name="flatten", axis=1))
    fc_w = b._init("fc.weight", b.rng.standard_normal((num_classes, cin)) * np.sqrt(1.0 / cin))
    fc_b = b._init("fc.bias", np.zeros(num_classes))
    b.nodes.append(helper.make_node("Gemm", ["flatten:0", fc_w, fc_b], ["logits"], name="fc", transB=1))
    graph = helper.make_graph(
        b.nodes, f"resnet{depth}_synthetic",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", num_classes])],
        b.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="workbench.synthetic")
    model.ir_version = 8
    for k, v in {
        "workbench.latency_only": "true",
        "workbench.note": f"synthetic ResNet-{depth}, random weights (seed {seed}): latency only, "
                          "its accuracy means nothing",
        "workbench.task": "image-classification",
    }.items():
        model.metadata_props.add(key=k, value=v)
    return model
