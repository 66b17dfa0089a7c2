"""``prune-channels``: remove Conv output channels from an ONNX graph, and refit the next layer.

Structured pruning changes tensor shapes, so unlike zeroing weights it makes a model smaller and
faster on every engine. The pass works on the graph itself:

1. **Channel groups.** Starting from each Conv (group=1, constant weight) it follows the output
   through ops that keep channels apart (BatchNormalization, Relu/Clip/other unary activations,
   pooling, depthwise Conv, elementwise ops with per-channel constants, Flatten of an [N,C,1,1]
   tensor) to the layers that read those channels: Conv (group=1) and Gemm/MatMul. Elementwise ops
   joining two such tensors (the residual Add) merge their groups: the channels of every Conv on a
   residual stream must go together, or not at all. A group that reaches anything else (Concat,
   Reshape to other shapes, a graph output, ...) is left alone, with the reason.
2. **Importance.** L1 or L2 norm of each output filter, scaled by |gamma| / sqrt(var + eps) of the
   BatchNormalization after it when there is one (the filter's effective scale, so the ranking
   is the same before and after ``fuse``); summed over the producers of a coupled group.
3. **Removal.** The weights of the producers (rows), BatchNormalization parameters, per-channel
   constants and depthwise filters of the group, and the inputs of every consumer (columns), are
   sliced consistently.
4. **Reconstruction** (with calibration data; as in He et al. 2017, "Channel Pruning for
   Accelerating Very Deep Neural Networks", and ThiNet, Luo et al. 2017): each consumer Conv's
   weights and bias are refit, by ridge least squares on im2col patches of its kept input
   channels at sampled positions, so that its output on the calibration images matches the
   unpruned model's. Consumers are refit in graph order, each on the inputs of the model pruned
   and refit so far, so later layers also absorb the error of earlier ones. The normal equations
   are accumulated batch by batch, so memory is bounded by (features^2), not by the data. The
   error before/after is measured on held-out calibration images (every fifth batch).

Why by hand: the structured-pruning libraries (Torch-Pruning's DepGraph, NNI, PyTorch's
``torch.nn.utils.prune``, Intel Neural Compressor, NNCF's filter pruning, ModelOpt) work on
PyTorch/TensorFlow modules, mostly inside a training loop, and need the model's source and torch
at run time; NNCF's ONNX backend quantizes but does not prune; the ONNX tools (onnxruntime's
optimizers, onnxoptimizer, onnxslim, onnxscript's rewriter) never change a tensor's channel
count. The closest, ONNXPruner (Ren et al. 2024), is a paper's research code, not a maintained
package. None prunes an existing ONNX graph with its dependency groups and refits the next layer
from calibration data without training, which a workbench that takes any exported model needs;
the graph analysis and the least squares are a few hundred lines of numpy.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ...errors import UsageError
from .base import Option, Pass, PassContext, PassReport, PassResult
from .prune import check_exclude, decline_quantized, layer_name
from .registry import register

__all__ = ["ChannelPrunePass", "find_groups", "ChannelGroup"]

_UNARY = {"Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu",
          "Softplus", "Softsign", "Gelu", "Mish", "Identity", "Dropout", "Neg", "Abs", "Erf", "Exp",
          "Celu", "ThresholdedRelu", "Sqrt", "Reciprocal"}
_POOL = {"MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"}
_BINARY = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Mean", "PRelu"}
_REDUCE = {"ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceL1", "ReduceL2"}
_MAX_LAYER_RATIO = 0.9  # global scope: no group loses more than this fraction of its channels


def _attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


@dataclass
class ChannelGroup:
    """Tensors that share one channel axis, the Convs producing it and the layers reading it."""

    tensors: list[str]
    producers: list[onnx.NodeProto]
    members: list[onnx.NodeProto]
    consumers: list[onnx.NodeProto]
    channels: int
    problems: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        first = layer_name(self.producers[0])
        return first if len(self.producers) == 1 else f"{first} (+{len(self.producers) - 1} coupled)"

    @property
    def coupled(self) -> bool:
        return len(self.producers) > 1

    def nodes(self) -> list[onnx.NodeProto]:
        return self.producers + self.members + self.consumers


def _shapes(model: onnx.ModelProto) -> tuple[dict[str, tuple | None], dict[str, int]]:
    """Inferred shapes (dims as int or None) and element types of every tensor we can."""
    shapes: dict[str, tuple | None] = {}
    types: dict[str, int] = {}
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # noqa: BLE001  (unknown shapes: the checks that need them decline)
        inferred = model
    g = inferred.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        t = vi.type.tensor_type
        types[vi.name] = t.elem_type
        if t.HasField("shape"):
            shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
    return shapes, types


def find_groups(model: onnx.ModelProto) -> list[ChannelGroup]:
    """The channel groups of ``model`` (see the module docstring), in graph order."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    shapes, _ = _shapes(model)
    consumers_of: dict[str, list[tuple[onnx.NodeProto, int]]] = defaultdict(list)
    for n in g.node:
        for k, i in enumerate(n.input):
            if i:
                consumers_of[i].append((n, k))
    graph_outputs = {o.name for o in g.output}
    scalars = {n.output[0] for n in g.node if n.op_type == "Constant" and any(
        a.name in ("value_float", "value_int") or (a.name == "value" and math.prod(a.t.dims) == 1)
        for a in n.attribute)}

    def conv_ok(n: onnx.NodeProto) -> bool:
        return (n.op_type == "Conv" and _attr(n, "group", 1) == 1 and len(n.input) > 1
                and n.input[1] in inits and (len(n.input) < 3 or not n.input[2] or n.input[2] in inits))

    def depthwise(n: onnx.NodeProto) -> bool:
        if n.op_type != "Conv" or len(n.input) < 2 or n.input[1] not in inits:
            return False
        dims = inits[n.input[1]].dims
        return _attr(n, "group", 1) == dims[0] and dims[1] == 1 and dims[0] > 1

    uf = _UnionFind()
    rank: dict[str, int] = {}
    problems: dict[str, list[str]] = defaultdict(list)
    members: dict[str, onnx.NodeProto] = {}
    consumers: dict[str, tuple[onnx.NodeProto, str]] = {}
    roots = [n for n in g.node if conv_ok(n)]
    frontier = []
    for n in roots:
        rank[n.output[0]] = len(inits[n.input[1]].dims)
        uf.find(n.output[0])
        frontier.append(n.output[0])
    seen = set(frontier)

    def add_member(node: onnx.NodeProto, t: str, out_rank: int) -> None:
        members[node.name or node.output[0]] = node
        out = node.output[0]
        uf.union(t, out)
        rank.setdefault(out, out_rank)
        if out not in seen:
            seen.add(out)
            frontier.append(out)

    while frontier:
        t = frontier.pop()
        r = rank[t]
        if t in graph_outputs:
            problems[t].append(f"{t} is a graph output")
        for node, k in consumers_of[t]:
            op, name = node.op_type, layer_name(node)
            if op == "Conv" and k == 0 and conv_ok(node):
                consumers[name] = (node, t)
            elif op == "Conv" and k == 0 and depthwise(node):
                add_member(node, t, r)
            elif op in ("Gemm", "MatMul") and k == 0 and r == 2 and len(node.input) > 1 \
                    and node.input[1] in inits and len(inits[node.input[1]].dims) == 2 \
                    and not _attr(node, "transA", 0):
                consumers[name] = (node, t)
            elif op == "BatchNormalization" and k == 0:
                if all(i in inits for i in node.input[1:5]):
                    add_member(node, t, r)
                else:
                    problems[t].append(f"BatchNormalization {name}'s parameters are not constant initializers")
            elif (op in _UNARY or op in _POOL) and k == 0:
                add_member(node, t, r)
            elif op in _BINARY:
                add_member(node, t, r)
            elif op in _REDUCE and k == 0:
                axes = _attr(node, "axes")
                if axes is None and len(node.input) > 1 and node.input[1] in inits:
                    axes = numpy_helper.to_array(inits[node.input[1]]).tolist()
                keep = _attr(node, "keepdims", 1)
                axes = None if axes is None else [a % r for a in axes]
                if axes is None or 1 in axes or (not keep and 0 in axes):
                    problems[t].append(f"{op} {name} reduces over the channel axis (or its axes are unknown)")
                else:
                    add_member(node, t, r if keep else r - len(axes))
            elif op in ("Flatten", "Reshape") and k == 0:
                s_in, s_out = shapes.get(t), shapes.get(node.output[0])
                flat = (s_in is not None and len(s_in) >= 2 and all(d == 1 for d in s_in[2:])
                        and s_out is not None and len(s_out) == 2 and s_out[1] in (None, s_in[1]))
                if op == "Flatten" and _attr(node, "axis", 1) != 1:
                    flat = False
                if flat:
                    add_member(node, t, 2)
                else:
                    problems[t].append(f"{op} {name} mixes the channel axis with others (only [N,C,1,1] -> "
                                       "[N,C] is followed)")
            else:
                problems[t].append(f"{t} feeds {op} {name}, which this pass does not follow")

    # Binary ops: every other input is a channel tensor (merge) or a broadcastable constant.
    for node in members.values():
        if node.op_type not in _BINARY:
            continue
        ins = [i for i in node.input if i]
        group_ins = [i for i in ins if i in seen]
        for i in ins:
            if i in seen:
                uf.union(group_ins[0], i)
            elif i not in inits and i not in scalars:
                problems[group_ins[0]].append(
                    f"{node.op_type} {layer_name(node)} also takes {i}, whose channels come from outside "
                    "(a graph input or an op this pass does not follow)")
    groups: dict[str, ChannelGroup] = {}
    for t in seen:
        root = uf.find(t)
        grp = groups.setdefault(root, ChannelGroup([], [], [], [], 0))
        grp.tensors.append(t)
        grp.problems.extend(problems.get(t, []))
    for n in roots:
        groups[uf.find(n.output[0])].producers.append(n)
    for n in members.values():
        groups[uf.find(n.output[0])].members.append(n)
    for node, t in consumers.values():
        groups[uf.find(t)].consumers.append(node)
    order = {id(n): i for i, n in enumerate(g.node)}
    out = []
    for grp in groups.values():
        for lst in (grp.producers, grp.members, grp.consumers):
            lst.sort(key=lambda n: order[id(n)])
        counts = {int(inits[p.input[1]].dims[0]) for p in grp.producers}
        grp.channels = max(counts)
        if len(counts) > 1:
            grp.problems.append(f"its producers have different channel counts {sorted(counts)}")
        for m in grp.members:  # per-channel constants must broadcast over the channel axis
            if m.op_type in _BINARY:
                r = rank[m.output[0]]
                for i in m.input:
                    if i in inits and _const_axis(inits[i], r, grp.channels) == -2:
                        grp.problems.append(f"{m.op_type} {layer_name(m)}: constant {i} {list(inits[i].dims)} "
                                            "does not broadcast per channel")
            if m.op_type == "Conv" and inits[m.input[1]].dims[0] != grp.channels:
                grp.problems.append(f"depthwise Conv {layer_name(m)} does not match the channel count")
        grp.tensors.sort()
        out.append(grp)
    out.sort(key=lambda grp: order[id(grp.producers[0])])
    return out


def _const_axis(init: onnx.TensorProto, rank: int, channels: int) -> int:
    """Axis of a broadcast constant that runs along the channels; -1: it broadcasts over them
    (size 1 there, or too few dims to reach them); -2: it does not fit."""
    dims = list(init.dims)
    ax = len(dims) - rank + 1  # right-aligned broadcasting: the constant's axis under axis 1
    if len(dims) > rank:
        return -2
    if ax < 0:
        return -1
    if dims[ax] == channels:
        return ax
    return -1 if dims[ax] == 1 else -2


class _Weights:
    """Current values of the initializers, written back once; shared ones are copied, not cut."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.graph = model.graph
        self.inits = {i.name: i for i in model.graph.initializer}
        self.values: dict[str, np.ndarray] = {}
        self.uses: dict[str, int] = defaultdict(int)
        for n in model.graph.node:
            for i in n.input:
                self.uses[i] += 1
        self.dirty: set[str] = set()

    def get(self, name: str) -> np.ndarray:
        if name not in self.values:
            self.values[name] = numpy_helper.to_array(self.inits[name])
        return self.values[name]

    def set(self, node: onnx.NodeProto, index: int, value: np.ndarray) -> None:
        name = node.input[index]
        if self.uses[name] > 1:  # shared with another node: give this node its own copy
            self.uses[name] -= 1
            new = f"{name}__{layer_name(node)}"
            while new in self.inits:
                new += "_"
            self.inits[new] = self._new_initializer(new)
            self.uses[new] = 1
            node.input[index] = name = new
        self.values[name] = value
        self.dirty.add(name)

    def add(self, node: onnx.NodeProto, value: np.ndarray, stem: str) -> None:
        new = stem
        while new in self.inits:
            new += "_"
        self.inits[new] = self._new_initializer(new)
        self.uses[new] = 1
        node.input.append(new)
        self.values[new] = value
        self.dirty.add(new)

    def _new_initializer(self, name: str) -> onnx.TensorProto:
        # ``add()`` returns the message inside the graph; ``append(t)`` would store a copy of t,
        # and later writes to t would never reach the graph.
        t = self.graph.initializer.add()
        t.name = name
        return t

    def flush(self) -> None:
        for name in self.dirty:
            self.inits[name].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(self.values[name]), name))
        self.dirty.clear()


def _importance(grp: ChannelGroup, w: _Weights, norm: str, bn_scale: bool,
                members_by_input: dict[str, onnx.NodeProto]) -> np.ndarray:
    score = np.zeros(grp.channels, np.float64)
    for p in grp.producers:
        filt = w.get(p.input[1]).astype(np.float64).reshape(grp.channels, -1)
        s = np.abs(filt).sum(1) if norm == "l1" else np.sqrt((filt ** 2).sum(1))
        bn = members_by_input.get(p.output[0])
        if bn_scale and bn is not None and bn.op_type == "BatchNormalization":
            gamma, var = w.get(bn.input[1]), w.get(bn.input[4])
            s = s * np.abs(gamma) / np.sqrt(var + _attr(bn, "epsilon", 1e-5))
        score += s
    return score


def _apply(grp: ChannelGroup, keep: np.ndarray, w: _Weights, shapes_rank: dict[str, int]) -> None:
    c = grp.channels
    for p in grp.producers:
        w.set(p, 1, w.get(p.input[1])[keep])
        if len(p.input) > 2 and p.input[2]:
            w.set(p, 2, w.get(p.input[2])[keep])
    for m in grp.members:
        if m.op_type == "BatchNormalization":
            for k in range(1, 5):
                w.set(m, k, w.get(m.input[k])[keep])
        elif m.op_type == "Conv":  # depthwise
            w.set(m, 1, w.get(m.input[1])[keep])
            if len(m.input) > 2 and m.input[2]:
                w.set(m, 2, w.get(m.input[2])[keep])
            for a in m.attribute:
                if a.name == "group":
                    a.i = len(keep)
        elif m.op_type in _BINARY:
            for k, i in enumerate(m.input):
                if i in w.inits:
                    ax = _const_axis(w.inits[i], shapes_rank[m.output[0]], c)
                    if ax >= 0:
                        w.set(m, k, np.take(w.get(i), keep, axis=ax))
        elif m.op_type == "Reshape":  # [N,C,1,1] -> [N,C]: a Flatten, whose output follows C
            m.op_type = "Flatten"
            del m.input[1:]
            del m.attribute[:]
            m.attribute.append(helper.make_attribute("axis", 1))
    for n in grp.consumers:
        wt = w.get(n.input[1])
        if n.op_type == "Conv":
            w.set(n, 1, wt[:, keep])
        elif n.op_type == "Gemm" and _attr(n, "transB", 0):
            w.set(n, 1, wt[:, keep])
        else:
            w.set(n, 1, wt[keep])


def _dead(model: onnx.ModelProto) -> tuple[set[str], set[str]]:
    """Nodes (by first output) whose outputs nothing reads, and initializers no node reads."""
    g = model.graph
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    return ({n.output[0] for n in g.node if n.output and not any(o in used for o in n.output if o)},
            {i.name for i in g.initializer if i.name not in used})


def _remove_dead(model: onnx.ModelProto, before: tuple[set[str], set[str]]) -> None:
    """Remove what pruning left unused (e.g. the shape arithmetic of a Reshape that became a
    Flatten); what was unused before stays, as it was."""
    g = model.graph
    while True:
        nodes, inits = _dead(model)
        dead = [k for k, n in enumerate(g.node) if n.output and n.output[0] in nodes - before[0]]
        if not dead:
            break
        for k in reversed(dead):
            del g.node[k]
    gone = inits - before[1]
    keep = [i for i in g.initializer if i.name not in gone]
    del g.initializer[:]
    g.initializer.extend(keep)


@register
class ChannelPrunePass(Pass):
    name = "prune-channels"
    uses_calibration = True
    summary = ("structured pruning: remove Conv output channels by filter norm (BN-scaled), keep "
               "BatchNorm and residual groups consistent, refit the next layer from calibration data")
    options = (
        Option("ratio", float, 0.3, "fraction of the prunable channels to remove, 0 <= ratio < 1"),
        Option("scope", str, "layer", "layer: remove ratio of each group's channels; global: rank "
                                      "channels of all groups together (scores normalized per group)",
               ("layer", "global")),
        Option("importance", str, "l1", "filter norm that ranks channels", ("l1", "l2")),
        Option("bn_scale", bool, True, "scale filter norms by the following BatchNorm's |gamma|/sqrt(var+eps)"),
        Option("protect_first_last", bool, True, "leave the first Conv and the last layer untouched"),
        Option("prune_residual", bool, False,
               "also prune channel groups coupled through residual Adds, consistently across every "
               "producer and consumer (default: leave them, with the reason)"),
        Option("exclude", list, [], "node names to leave untouched, with every group they belong to"),
        Option("multiple", int, 1, "round each group's kept channel count to a multiple of this (8 suits "
                                   "ONNX Runtime's AVX2 kernels and tensor cores; the ratio is then approximate)"),
        Option("reconstruct", bool, None, "refit each consumer Conv from calibration data (default: "
                                          "on when calibration data is given)"),
        Option("samples", int, 256, "calibration images used for reconstruction"),
        Option("positions", int, 48, "output positions sampled per image for reconstruction"),
        Option("ridge", float, 1e-3, "ridge penalty, relative to the mean input energy"),
    )

    def validate(self) -> None:
        o = self.opts
        if not 0 <= o["ratio"] < 1:
            raise UsageError(f"prune-channels: ratio must be in [0, 1), got {o['ratio']}",
                             "e.g. ratio=0.3 removes 30% of the prunable channels")
        for k in ("multiple", "samples", "positions"):
            if o[k] < 1:
                raise UsageError(f"prune-channels: {k} must be >= 1, got {o[k]}")
        if o["ridge"] < 0:
            raise UsageError(f"prune-channels: ridge must be >= 0, got {o['ridge']}")

    def preview(self) -> dict[str, Any] | None:
        # Reconstruction changes weight values (and may add a bias), never which channels go.
        return None if self.opts["reconstruct"] is False else {"reconstruct": False}

    def call(self, model: onnx.ModelProto, ctx: PassContext) -> PassResult:
        o = self.opts
        reconstruct = o["reconstruct"] if o["reconstruct"] is not None else ctx.calibration is not None
        if reconstruct and ctx.calibration is None:
            raise UsageError("prune-channels: reconstruct=true needs calibration data",
                             "give --calib DATA, or reconstruct=false")
        report = self.new_report({**o, "reconstruct": reconstruct})
        if decline_quantized(model, report):
            return PassResult(model, report)
        original = onnx.ModelProto()
        original.CopyFrom(model)
        exclude = check_exclude(model, o["exclude"], report)
        groups = find_groups(model)
        if not groups:
            report.decline("the whole model", "no Conv output channels to prune (structured pruning "
                           "removes Conv filters and follows their consumers)")
            return PassResult(model, report)
        init_names = {i.name for i in model.graph.initializer}
        weighted = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")
                    and len(n.input) > 1 and n.input[1] in init_names]
        dead_before = _dead(model)
        first = layer_name(weighted[0]) if weighted else None
        last = layer_name(weighted[-1]) if weighted else None
        for e in sorted(exclude):
            if e in {layer_name(n) for n in model.graph.node}:
                report.exclude(e, "listed in exclude")

        prunable: list[ChannelGroup] = []
        for grp in groups:
            names = [layer_name(n) for n in grp.nodes()]
            what = f"channels of {grp.label}"
            if grp.problems:
                report.decline(what, "; ".join(dict.fromkeys(grp.problems)))
            elif excluded := [n for n in names if n in exclude]:
                report.decline(what, f"holds excluded node(s) {', '.join(excluded)}")
            elif o["protect_first_last"] and first in names:
                report.decline(what, f"produced by the first layer {first} (protect_first_last)")
            elif o["protect_first_last"] and last in names:
                report.decline(what, f"read or produced by the last layer {last} (protect_first_last)")
            elif grp.coupled and not o["prune_residual"]:
                report.decline(what, f"coupled across {len(grp.producers)} Convs by residual/elementwise "
                                     f"joins ({', '.join(layer_name(p) for p in grp.producers)}); "
                                     "prune_residual=true prunes them together")
            elif grp.channels < 2:
                report.decline(what, "a single channel")
            else:
                prunable.append(grp)

        w = _Weights(model)
        by_input = {}
        for grp in groups:
            for m in grp.members:
                by_input.setdefault(m.input[0], m)
        scores = [_importance(grp, w, o["importance"], o["bn_scale"], by_input) for grp in prunable]
        counts = self._keep_counts(prunable, scores)
        shapes_rank = _ranks(model, groups)
        keeps: dict[str, np.ndarray] = {}
        for grp, s, k in zip(prunable, scores, counts):
            if k >= grp.channels:
                continue
            keep = np.sort(np.argsort(-s, kind="stable")[:k])
            keeps[grp.label] = keep
            _apply(grp, keep, w, shapes_rank)
            crit = o["importance"].upper() + (" x |gamma|/sqrt(var+eps)" if o["bn_scale"] and any(
                by_input.get(p.output[0]) is not None and by_input[p.output[0]].op_type == "BatchNormalization"
                for p in grp.producers) else "")
            report.pruned[grp.label] = {
                "channels_before": grp.channels, "channels_after": int(k),
                "ratio": round(1 - k / grp.channels, 4), "importance": crit,
                "producers": [layer_name(p) for p in grp.producers],
                "consumers": [layer_name(c) for c in grp.consumers],
                "coupled": grp.coupled,
            }
        w.flush()
        total = sum(g.channels for g in prunable)
        removed = sum(g.channels - len(keeps[g.label]) for g in prunable if g.label in keeps)
        report.metrics.update({"groups": len(groups), "groups_prunable": len(prunable),
                               "groups_pruned": len(keeps), "channels_prunable": total,
                               "channels_removed": removed,
                               "removed_fraction": round(removed / total, 4) if total else 0.0})
        if keeps and reconstruct:
            self._reconstruct(original, model, prunable, keeps, w, ctx, report)
        _remove_dead(model, dead_before)
        del model.graph.value_info[:]  # shapes changed; consumers re-infer
        report.modified = bool(keeps)
        self._size_metrics(original, model, report)
        report.notes.append(
            "importance ranks each output filter by its norm"
            + (", scaled by the BatchNorm after it (the same ranking as after fuse)" if o["bn_scale"] else "")
            + f"; scope={o['scope']}" + (f" (no group loses more than {_MAX_LAYER_RATIO:.0%})"
                                         if o["scope"] == "global" else ""))
        odd = [g.label for g in prunable if g.label in keeps and len(keeps[g.label]) % 8]
        if odd and o["multiple"] == 1:
            report.notes.append(f"{len(odd)} group(s) keep a channel count that is not a multiple of 8 "
                                f"({', '.join(odd[:3])}{', ...' if len(odd) > 3 else ''}): ONNX Runtime's "
                                "blocked CPU kernels run those slower; multiple=8 measured 1.47x instead of "
                                "1.24x on ResNet-50 at ratio 0.3 (benchmarks/results/passes_prune.md)")
        if not reconstruct and keeps:
            report.notes.append("no reconstruction: accuracy drops more; give calibration data "
                                "(reconstruct refits the next layers) or fine-tune")
        return PassResult(model, report)

    def _keep_counts(self, groups: list[ChannelGroup], scores: list[np.ndarray]) -> list[int]:
        ratio, m = self.opts["ratio"], self.opts["multiple"]
        if self.opts["scope"] == "layer":
            keep = [g.channels - int(round(ratio * g.channels)) for g in groups]
        else:
            total = sum(g.channels for g in groups)
            quota = int(round(ratio * total))
            cands = np.concatenate([s / max(s.mean(), 1e-12) for s in scores]) if scores else np.zeros(0)
            owner = np.concatenate([np.full(g.channels, k) for k, g in enumerate(groups)]) if groups \
                else np.zeros(0, int)
            keep = [g.channels for g in groups]
            floor = [max(1, math.ceil((1 - _MAX_LAYER_RATIO) * g.channels)) for g in groups]
            for idx in np.argsort(cands, kind="stable"):
                if quota <= 0:
                    break
                k = owner[idx]
                if keep[k] > floor[k]:
                    keep[k] -= 1
                    quota -= 1
        out = []
        for g, k in zip(groups, keep):
            k = max(1, k)
            if m > 1:
                k = min(g.channels, max(m, int(round(k / m)) * m))
            out.append(k)
        return out

    def _size_metrics(self, original: onnx.ModelProto, model: onnx.ModelProto, report: PassReport) -> None:
        from ..model import load_model  # noqa: PLC0415  (the model layer imports nothing from passes)
        from ..summary import summarize  # noqa: PLC0415

        try:
            a = summarize(load_model(original, check=False))
            b = summarize(load_model(model, check=False))
        except Exception as e:  # noqa: BLE001  (the counts are a convenience; the model is fine)
            report.notes.append(f"params/FLOPs not counted: {e}")
            return
        report.metrics.update({
            "params_before": a.params, "params_after": b.params,
            "flops_before": a.flops, "flops_after": b.flops,
            "macs_before": a.macs, "macs_after": b.macs,
            "flops_ratio": round(b.flops / a.flops, 4) if a.flops else None,
            "params_ratio": round(b.params / a.params, 4) if a.params else None,
        })

    def _reconstruct(self, original: onnx.ModelProto, model: onnx.ModelProto, groups: list[ChannelGroup],
                     keeps: dict[str, np.ndarray], w: _Weights, ctx: PassContext, report: PassReport) -> None:
        o = self.opts
        out_keep: dict[str, np.ndarray] = {}
        in_keep: dict[str, tuple[np.ndarray, ChannelGroup]] = {}
        for grp in groups:
            if grp.label not in keeps:
                continue
            for p in grp.producers:
                out_keep[layer_name(p)] = keeps[grp.label]
            for c in grp.consumers:
                in_keep[layer_name(c)] = (keeps[grp.label], grp)
        order = {layer_name(n): k for k, n in enumerate(model.graph.node)}
        todo = []
        for name, (_keep, grp) in sorted(in_keep.items(), key=lambda kv: order[kv[0]]):
            node = next(c for c in grp.consumers if layer_name(c) == name)
            if node.op_type != "Conv":
                report.decline(f"reconstruct {name}", f"{node.op_type} consumers are sliced, not refit")
            elif _attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"", ""):
                report.decline(f"reconstruct {name}", "auto_pad is set (explicit pads only)")
            else:
                todo.append((node, grp))
        orig_out = {layer_name(n): n.output[0] for n in original.graph.node}
        ds = ctx.calibration
        per_sample = sum(int(np.prod(v.shape[1:])) for v in ds.inputs.values()) if ds.inputs else 1
        batch = int(max(1, min(200, 2**22 // max(per_sample, 1))))
        batches = [f for f, _ in ds.batches(batch, o["samples"])]
        rng = np.random.default_rng(ctx.seed)
        # Targets: the unpruned model's outputs of every consumer at sampled positions, from one
        # pass per chunk of consumers (chunks bound the memory the targets take).
        targets: dict[str, list[tuple[np.ndarray, tuple, np.ndarray]]] = {}
        chunk: list[onnx.NodeProto] = []
        budget = 0
        for k, (node, _grp) in enumerate(todo):
            chunk.append(node)
            budget += o["samples"] * o["positions"] * w.get(node.input[1]).shape[0] * 4
            if budget > 2**28 or k == len(todo) - 1:
                sess = _session(original, [orig_out[layer_name(n)] for n in chunk])
                for feeds in batches:
                    ys = sess.run({kk: v for kk, v in feeds.items() if kk in sess.inputs})
                    for n, y in zip(chunk, ys):
                        keep_out = out_keep.get(layer_name(n))
                        b_idx, coords = _positions(y.shape[0], y.shape[2:], o["positions"], rng)
                        t = y[(b_idx, slice(None), *coords)]
                        t = t[:, keep_out] if keep_out is not None else t
                        targets.setdefault(layer_name(n), []).append((b_idx, coords, t.astype(np.float32)))
                chunk, budget = [], 0
        ctx.report_progress("reconstruct", 0, len(todo))
        inferred = onnx.shape_inference.infer_shapes(original)  # element types: pruning keeps them
        forward = _Forward(model, batches, {v.name: v.type.tensor_type.elem_type for v in (
            *inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input)})
        for step, (node, grp) in enumerate(todo):
            name = layer_name(node)
            w0 = w.get(node.input[1])  # already cut: [kept out, kept in, kh, kw]
            b0 = w.get(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros(w0.shape[0], w0.dtype)
            stats = _Stats(w0.size // w0.shape[0] + 1, w0.shape[0])
            held_every = 5 if len(batches) >= 2 else 0
            xs = forward.compute(node.input[0])
            for b, (x, (b_idx, coords, target)) in enumerate(zip(xs, targets.pop(name))):
                patches = _patches(node, w0.shape[2:], x, b_idx, coords)
                stats.add(patches, target, holdout=bool(held_every) and b % held_every == held_every - 1)
            theta0 = np.concatenate([_channels_last(w0).reshape(w0.shape[0], -1).T, b0[None]], 0).astype(np.float64)
            theta = stats.solve(o["ridge"])
            e0, e1 = stats.error(theta0), stats.error(theta)
            entry = {"rel_error_before": round(e0, 5), "rel_error_after": round(e1, 5),
                     "rows": stats.rows, "features": stats.features - 1,
                     "measured_on": "held-out calibration batches" if stats.held_rows else "fitting rows"}
            if e1 < e0:
                cl = theta[:-1].T.reshape(_channels_last(w0).shape)
                w.set(node, 1, np.ascontiguousarray(np.moveaxis(cl, -1, 1)).astype(w0.dtype))
                bias = theta[-1].astype(w0.dtype)
                if len(node.input) > 2 and node.input[2]:
                    w.set(node, 2, bias)
                else:
                    w.add(node, bias, f"{name}.bias")
                w.flush()
            else:
                entry["kept"] = "the cut weights (the fit did not lower the held-out error)"
            report.pruned[grp.label].setdefault("reconstruction", {})[name] = entry
            ctx.report_progress("reconstruct", step + 1, len(todo))
        report.notes.append(
            f"reconstruction: {len(todo)} consumer Conv(s) refit by ridge least squares (ridge={o['ridge']:g} "
            f"x mean input energy) on up to {o['samples']} calibration images x {o['positions']} positions; "
            "rel_error = squared error / variance of the unpruned output, on held-out calibration batches")


def _ranks(model: onnx.ModelProto, groups: list[ChannelGroup]) -> dict[str, int]:
    shapes, _ = _shapes(model)
    out = {}
    for grp in groups:
        for m in grp.members:
            s = shapes.get(m.output[0])
            out[m.output[0]] = len(s) if s is not None else 4
    return out


class _Stats:
    """Normal equations of [patches, 1] @ theta ~ target, for fitting and for held-out rows."""

    def __init__(self, features: int, outputs: int) -> None:
        self.features = features
        self.fit = [np.zeros((features, features)), np.zeros((features, outputs)), np.zeros(outputs),
                    np.zeros(outputs), 0]
        self.held = [np.zeros((features, features)), np.zeros((features, outputs)), np.zeros(outputs),
                     np.zeros(outputs), 0]

    @property
    def rows(self) -> int:
        return int(self.fit[4])

    @property
    def held_rows(self) -> int:
        return int(self.held[4])

    def add(self, patches: np.ndarray, target: np.ndarray, holdout: bool) -> None:
        s = self.held if holdout else self.fit
        f = self.features - 1
        s[0][:f, :f] += patches.T @ patches
        colsum = patches.sum(0, dtype=np.float64)
        s[0][:f, f] += colsum
        s[0][f, :f] += colsum
        s[0][f, f] += len(patches)
        s[1][:f] += patches.T @ target
        s[1][f] += target.sum(0, dtype=np.float64)
        s[2] += (target.astype(np.float64) ** 2).sum(0)
        s[3] += target.sum(0, dtype=np.float64)
        s[4] += len(target)

    def solve(self, ridge: float) -> np.ndarray:
        a, b = self.fit[0].copy(), self.fit[1]
        f = self.features - 1
        lam = ridge * np.trace(a[:f, :f]) / max(f, 1)
        a[np.arange(f), np.arange(f)] += lam
        try:
            return np.linalg.solve(a, b)
        except np.linalg.LinAlgError:
            return np.linalg.lstsq(a, b, rcond=None)[0]

    def error(self, theta: np.ndarray) -> float:
        a, b, yy, ys, n = self.held if self.held[4] else self.fit
        err = float(((a @ theta) * theta).sum() - 2 * (b * theta).sum() + yy.sum())
        var = float((yy - ys ** 2 / max(n, 1)).sum())
        return max(err, 0.0) / var if var > 0 else 0.0


def _positions(n: int, out_sp: tuple[int, ...], positions: int, rng: np.random.Generator
               ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Up to ``positions`` distinct output positions per image: (image index, coordinates)."""
    total = int(np.prod(out_sp))
    per = min(positions, total)
    if per == total:
        flat = np.tile(np.arange(total), (n, 1))
    else:
        flat = np.argsort(rng.random((n, total)), axis=1)[:, :per]
    return np.repeat(np.arange(n), per), np.unravel_index(flat.ravel(), out_sp)


def _patches(node: onnx.NodeProto, kernel: tuple[int, ...], x: np.ndarray, b_idx: np.ndarray,
             coords: tuple[np.ndarray, ...]) -> np.ndarray:
    """im2col rows of ``x`` at the given output positions of ``node``, laid out like
    ``_channels_last(W).reshape(out, -1)`` (kernel offsets, then input channel): gathering whole
    channel vectors from a channels-last copy is several times faster than element gathers."""
    spatial = x.ndim - 2
    strides = _attr(node, "strides", [1] * spatial)
    dil = _attr(node, "dilations", [1] * spatial)
    pads = _attr(node, "pads", [0] * 2 * spatial)
    xt = np.pad(np.moveaxis(x, 1, -1), [(0, 0)] + [(pads[i], pads[i + spatial]) for i in range(spatial)]
                + [(0, 0)])
    c = x.shape[1]
    out = np.empty((len(b_idx), int(np.prod(kernel)) * c), np.float32)
    for k, off in enumerate(itertools.product(*(range(kd) for kd in kernel))):
        index = tuple(coords[d] * strides[d] + off[d] * dil[d] for d in range(spatial))
        out[:, k * c:(k + 1) * c] = xt[(b_idx, *index)]
    return out


def _channels_last(w: np.ndarray) -> np.ndarray:
    """Conv weights [out, in, *kernel] -> [out, *kernel, in], the column order of ``_patches``."""
    return np.moveaxis(w, 1, -1)


class _Forward:
    """Inputs of the consumers being refit, computed on the current (pruned, partly refit) model
    step by step: each step runs only the nodes between tensors already computed and the next
    consumer's input, so a whole reconstruction costs about one forward pass instead of one per
    consumer. Call ``compute`` in topological order, after refitting the consumers before it:
    every kept tensor is an ancestor of an earlier consumer's input, so later refits never
    change it."""

    def __init__(self, model: onnx.ModelProto, batches: list[dict[str, np.ndarray]],
                 types: dict[str, int]) -> None:
        self.model = model
        self.have: list[dict[str, np.ndarray]] = [dict(f) for f in batches]
        self.covered: set[int] = set()  # indices of nodes already run
        self.types = types

    def compute(self, tensor: str) -> list[np.ndarray]:
        g = self.model.graph
        producer = {o: k for k, n in enumerate(g.node) for o in n.output if o}
        inits = {i.name for i in g.initializer}
        known = self.have[0].keys() if self.have else set()
        sub: set[int] = set()
        stack = [tensor]
        while stack:
            t = stack.pop()
            if not t or t in known or t in inits or t not in producer or producer[t] in sub:
                continue
            sub.add(producer[t])
            stack.extend(g.node[producer[t]].input)
        if not sub:
            return [h[tensor] for h in self.have]
        self.covered |= sub
        # Keep every tensor the step computes that a node not yet run will read.
        later = {i for k, n in enumerate(g.node) if k not in self.covered for i in n.input}
        outs = [tensor] + sorted({o for k in sub for o in g.node[k].output if o in later and o != tensor})
        given = {k: helper.np_dtype_to_tensor_dtype(v.dtype) for k, v in self.have[0].items()}
        sess = _session(self.model, outs, given=given, types=self.types)
        for h in self.have:
            for name, v in zip(outs, sess.run({k: v for k, v in h.items() if k in sess.inputs})):
                h[name] = v
            for name in [k for k in h if k not in later and k != tensor]:
                del h[name]
        return [h[tensor] for h in self.have]


class _Session:
    def __init__(self, sess: Any) -> None:
        self.sess = sess
        self.inputs = {i.name for i in sess.get_inputs()}

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.sess.run(None, feeds)


def _session(model: onnx.ModelProto, tensors: list[str], given: dict[str, int] | None = None,
             types: dict[str, int] | None = None) -> _Session:
    """An ONNX Runtime session computing only ``tensors`` (the nodes they need, nothing after),
    from the graph inputs, or from the tensors in ``given`` (name -> element type) fed as inputs;
    ``types`` gives the outputs' element types (default: the graph's float type)."""
    import onnxruntime as ort  # noqa: PLC0415

    g = model.graph
    given = given or {}
    need, nodes = set(tensors), []
    for n in reversed(g.node):
        if any(o in need and o not in given for o in n.output):
            nodes.append(n)
            need.update(i for i in n.input if i)
    nodes.reverse()
    elem = next((i.type.tensor_type.elem_type for i in g.input if i.type.tensor_type.elem_type
                 in (onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE)), onnx.TensorProto.FLOAT)
    graph_inputs = {i.name for i in g.input}
    fed = [helper.make_tensor_value_info(t, given[t], None) for t in sorted(need & given.keys() - graph_inputs)]
    graph = helper.make_graph(
        nodes, "sub", [i for i in g.input if i.name in need] + fed,
        [helper.make_tensor_value_info(t, (types or {}).get(t, elem), None) for t in tensors],
        [i for i in g.initializer if i.name in need])
    sub = helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return _Session(ort.InferenceSession(sub.SerializeToString(), so, providers=["CPUExecutionProvider"]))
