"""``prune-magnitude`` and ``prune-2:4``: zero weights in place, keeping every tensor's shape.

``prune-magnitude`` zeroes the weights of smallest magnitude (unstructured), per layer or over
all chosen layers at once. ``prune-2:4`` zeroes the 2 smallest of every 4 consecutive weights
along the reduction dimension (input channels of a Conv at each kernel position, K of a Gemm or
MatMul): the semi-structured pattern that NVIDIA's sparse tensor cores (Ampere and later) run at
up to twice the dense rate, as NVIDIA's ASP lays it out for Conv weights ([O, kh, kw, I], groups
along I).

Neither makes a model faster on a dense engine: ONNX Runtime (CPU, CUDA) multiplies the zeros
like any other number, and the ``.onnx`` file stores them densely, so it keeps its size. What
they change is how well the weights compress, and, with an engine that has sparse kernels
(TensorRT with sparse weights enabled, for 2:4), the speed. Both report the sparsity each layer
reached, and two size estimates: zlib (level 6) of the weight bytes, and the size in a sparse
format (CSR with int32 column indices for unstructured; values plus 2-bit positions for 2:4).
No fine-tuning: accuracy drops, more or less depending on the model; measure it.
"""

from __future__ import annotations

import zlib

import numpy as np
import onnx
from onnx import numpy_helper

from ...errors import UsageError
from .base import Option, Pass, PassContext, PassReport, PassResult
from .registry import register
from .safety import already_quantized

__all__ = ["MagnitudePrunePass", "SemiStructuredPrunePass", "layer_name"]

_WEIGHT_OPS = ("Conv", "Gemm", "MatMul")
_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE}
_DENSE_NOTE = ("zeros are stored densely: the .onnx file keeps its size, and dense engines (ONNX "
               "Runtime on CPU or CUDA) run this model no faster than the original")


def layer_name(node: onnx.NodeProto) -> str:
    return node.name or f"{node.op_type}({node.output[0]})"


def check_exclude(model: onnx.ModelProto, exclude: list[str], report: PassReport) -> set[str]:
    """The excluded names, with a declined entry for each name that is no node of the graph."""
    names = {layer_name(n) for n in model.graph.node}
    for e in exclude:
        if e not in names:
            report.decline(f"exclude {e}", "no node of that name in the graph")
    return set(exclude)


def decline_quantized(model: onnx.ModelProto, report: PassReport) -> bool:
    """A model that is quantized already has integer weights (or weights behind DequantizeLinear):
    decline it whole, with what was found; True when declined."""
    why = already_quantized(model)
    if why:
        report.decline("the whole model", why.split(":")[0] + ": its weights are integers (or "
                       "behind DequantizeLinear); prune the float model, then quantize")
    return why is not None


def zlib_size(arrays: list[np.ndarray]) -> int:
    return sum(len(zlib.compress(np.ascontiguousarray(a).tobytes(), 6)) for a in arrays)


class _Layer:
    """One weight tensor to prune: the node, its initializer and where its reduction axis is."""

    def __init__(self, node: onnx.NodeProto, init: onnx.TensorProto, k_axis: int) -> None:
        self.node, self.init, self.k_axis = node, init, k_axis
        self.name = layer_name(node)
        self.array = numpy_helper.to_array(init)

    def matrix_rows(self) -> int:
        """Rows of the weight as the engine's GEMM sees it (output channels / N), for CSR."""
        return int(np.prod(self.array.shape)) // int(self.array.shape[self.k_axis]) \
            if self.node.op_type != "Conv" else int(self.array.shape[0])


def _find_layers(model: onnx.ModelProto, op_types: list[str], exclude: set[str], min_size: int,
                 report: PassReport) -> list[_Layer]:
    inits = {i.name: i for i in model.graph.initializer}
    uses: dict[str, int] = {}
    for n in model.graph.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    layers, seen = [], set()
    for node in model.graph.node:
        if node.op_type not in op_types:
            continue
        name = layer_name(node)
        if name in exclude:
            report.exclude(name, "listed in exclude")
            continue
        wname = node.input[1] if len(node.input) > 1 else ""
        init = inits.get(wname)
        if init is None:
            report.decline(name, "its weight (input 1) is not a constant initializer")
            continue
        if init.data_type not in _FLOAT_TYPES:
            report.decline(name, f"its weight is {onnx.TensorProto.DataType.Name(init.data_type)}, "
                                 "not float (already quantized?)")
            continue
        if wname in seen:
            report.decline(name, f"shares weight {wname} with a layer pruned already")
            continue
        if uses.get(wname, 0) > 1:
            report.notes.append(f"{wname} is shared by {uses[wname]} nodes: pruned once, seen by all")
        size = int(np.prod(init.dims))
        if size < min_size:
            report.decline(name, f"{size} weights, fewer than min_size={min_size} (small layers cost "
                                 "little and are often the most sensitive)")
            continue
        rank = len(init.dims)
        if node.op_type == "Conv":
            if rank < 3:
                report.decline(name, f"weight of rank {rank}")
                continue
            k_axis = 1
        elif node.op_type == "Gemm":
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            k_axis = 1 if trans_b else 0
        else:  # MatMul: B is [..., K, N]
            if rank < 2:
                report.decline(name, "a 1-D MatMul weight")
                continue
            k_axis = rank - 2
        seen.add(wname)
        layers.append(_Layer(node, init, k_axis))
    return layers


def _write(layer: _Layer, pruned: np.ndarray) -> None:
    layer.init.CopyFrom(numpy_helper.from_array(pruned.astype(layer.array.dtype), layer.init.name))


def _finish(report: PassReport, layers: list[_Layer], pruned: list[np.ndarray], pattern: str,
            model: onnx.ModelProto) -> None:
    total = zeros = 0
    csr = 0
    for layer, w in zip(layers, pruned):
        n, z = w.size, int(np.count_nonzero(w == 0))
        total, zeros = total + n, zeros + z
        nnz = n - z
        item = w.dtype.itemsize
        if pattern == "2:4":
            size = nnz * item + (nnz * 2 + 7) // 8  # values + a 2-bit position for each
        else:
            size = nnz * (item + 4) + (layer.matrix_rows() + 1) * 4  # CSR, int32 indices
        csr += size
        report.pruned[layer.name] = {"op": layer.node.op_type, "weight": layer.init.name,
                                     "shape": list(w.shape), "weights": n,
                                     "sparsity": round(z / n, 4), "pattern": pattern,
                                     "sparse_bytes": size}
    dense = sum(w.nbytes for w in pruned)
    all_w = [numpy_helper.to_array(i) for i in model.graph.initializer if i.data_type in _FLOAT_TYPES]
    all_n = sum(a.size for a in all_w)
    all_z = sum(int(np.count_nonzero(a == 0)) for a in all_w)
    report.metrics.update({
        "layers_pruned": len(layers),
        "weights_pruned_layers": total,
        "sparsity": round(zeros / total, 4) if total else 0.0,
        "model_sparsity": round(all_z / all_n, 4) if all_n else 0.0,
        "size": {
            "dense_bytes": dense,
            "zlib_bytes_before": zlib_size([layer.array for layer in layers]),
            "zlib_bytes_after": zlib_size(pruned),
            ("compressed_2of4_bytes" if pattern == "2:4" else "csr_bytes_estimate"): csr,
            "how": ("weights of the pruned layers only; zlib level 6 of the raw bytes; "
                    + ("2:4: the kept values plus a 2-bit position each" if pattern == "2:4"
                       else "CSR: values + int32 column indices + int32 row pointers")),
        },
    })
    report.modified = zeros > 0
    report.notes.append(_DENSE_NOTE)


class _PrunePass(Pass):
    def validate(self) -> None:
        bad = [o for o in self.opts["op_types"] if o not in _WEIGHT_OPS]
        if bad or not self.opts["op_types"]:
            raise UsageError(f"{self.name}: op_types {bad or '(empty)'} not among {'+'.join(_WEIGHT_OPS)}",
                             "write e.g. op_types=Conv+Gemm")
        if self.opts["min_size"] < 0:
            raise UsageError(f"{self.name}: min_size must be >= 0, got {self.opts['min_size']}")

    def _layers(self, model: onnx.ModelProto, report: PassReport) -> list[_Layer]:
        why = decline_quantized(model, report)
        if why:
            return []
        exclude = check_exclude(model, self.opts["exclude"], report)
        layers = _find_layers(model, self.opts["op_types"], exclude, self.opts["min_size"], report)
        if not layers and not report.declined and not report.excluded:
            report.decline("the whole model", f"no {'/'.join(self.opts['op_types'])} node of its main "
                           "graph has a constant float weight")
        return layers


_COMMON = (
    Option("op_types", list, list(_WEIGHT_OPS), "which layers' weights to prune (Conv+Gemm+MatMul)"),
    Option("exclude", list, [], "node names to leave untouched (joined with + on the command line)"),
    Option("min_size", int, 1024, "leave layers with fewer weights than this alone"),
)


@register
class MagnitudePrunePass(_PrunePass):
    name = "prune-magnitude"
    summary = ("unstructured magnitude pruning: zero the smallest weights of Conv/Gemm/MatMul "
               "(smaller when compressed; no faster on dense engines)")
    options = (
        Option("sparsity", float, 0.5, "fraction of weights to zero, 0 <= sparsity < 1"),
        Option("scope", str, "global", "rank weights over all pruned layers at once, or in each layer",
               ("global", "layer")),
        *_COMMON,
    )

    def validate(self) -> None:
        super().validate()
        s = self.opts["sparsity"]
        if not 0 <= s < 1:
            raise UsageError(f"prune-magnitude: sparsity must be in [0, 1), got {s}",
                             "e.g. sparsity=0.5 zeroes half the weights")

    def call(self, model: onnx.ModelProto, ctx: PassContext) -> PassResult:
        report = self.new_report()
        layers = self._layers(model, report)
        s = self.opts["sparsity"]
        mags = [np.abs(layer.array.astype(np.float32)).ravel() for layer in layers]
        if self.opts["scope"] == "layer":
            masks = [_smallest_mask(m, round(s * m.size)) for m in mags]
        else:
            flat = np.concatenate(mags) if mags else np.zeros(0, np.float32)
            mask = _smallest_mask(flat, round(s * flat.size))
            masks = np.split(mask, np.cumsum([m.size for m in mags])[:-1]) if mags else []
        pruned = []
        for layer, m in zip(layers, masks):
            w = layer.array.copy()
            w.reshape(-1)[m] = 0
            pruned.append(w)
        for layer, w in zip(layers, pruned):
            _write(layer, w)
        _finish(report, layers, pruned, "unstructured", model)
        if self.opts["scope"] == "global" and layers:
            most = max(report.pruned.values(), key=lambda d: d["sparsity"])
            report.notes.append(f"global ranking: layer sparsity ranges "
                                f"{min(d['sparsity'] for d in report.pruned.values()):.0%}"
                                f"-{most['sparsity']:.0%}")
        return PassResult(model, report)


def _smallest_mask(mag: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of exactly ``k`` entries of smallest magnitude (ties broken by position)."""
    mask = np.zeros(mag.size, bool)
    if k <= 0:
        return mask
    if k >= mag.size:
        mask[:] = True
        return mask
    mask[np.argpartition(mag, k - 1, kind="introselect")[:k]] = True
    return mask


@register
class SemiStructuredPrunePass(_PrunePass):
    name = "prune-2:4"
    summary = ("2:4 semi-structured sparsity: in every 4 consecutive weights along the reduction "
               "dimension, zero the 2 smallest (NVIDIA sparse tensor cores; no faster elsewhere)")
    options = _COMMON

    def call(self, model: onnx.ModelProto, ctx: PassContext) -> PassResult:
        report = self.new_report()
        kept_layers, pruned = [], []
        for layer in self._layers(model, report):
            k = layer.array.shape[layer.k_axis]
            if k % 4:
                what = "input channels" if layer.node.op_type == "Conv" else "K"
                report.decline(layer.name, f"its reduction dimension ({what}) is {k}, not a multiple of 4")
                continue
            pruned.append(two_four(layer.array, layer.k_axis))
            kept_layers.append(layer)
        for layer, w in zip(kept_layers, pruned):
            _write(layer, w)
        _finish(report, kept_layers, pruned, "2:4", model)
        report.notes.append("2:4 runs faster only where an engine has sparse kernels and is told to "
                            "use them (TensorRT with sparse weights on Ampere or later GPUs, "
                            "cuSPARSELt); the pattern is along input channels at each kernel position "
                            "(Conv) or along K (Gemm/MatMul)")
        return PassResult(model, report)


def two_four(w: np.ndarray, k_axis: int) -> np.ndarray:
    """Zero the 2 smallest-magnitude weights of each 4 consecutive along ``k_axis``."""
    moved = np.moveaxis(w, k_axis, -1)
    groups = moved.reshape(-1, 4).copy()
    order = np.argsort(np.abs(groups.astype(np.float32)), axis=1, kind="stable")
    np.put_along_axis(groups, order[:, :2], 0, axis=1)
    return np.moveaxis(groups.reshape(moved.shape), -1, k_axis)


def two_four_holds(w: np.ndarray, k_axis: int) -> bool:
    """True when every 4 consecutive weights along ``k_axis`` hold at most 2 nonzeros."""
    moved = np.moveaxis(w, k_axis, -1)
    if moved.shape[-1] % 4:
        return False
    return bool(np.all(np.count_nonzero(moved.reshape(-1, 4), axis=1) <= 2))

