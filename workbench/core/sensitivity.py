"""Which layers lose the accuracy when a model is quantized (int8) or converted (fp16).

Two views, both against the float model on calibration data:

* **Per tensor** (``tensor_errors``): every float activation of the build is compared with the same
  tensor of the float reference (SQNR, cosine, max abs error), with ONNX Runtime's QDQ debugging
  tools (``onnxruntime.quantization.qdq_loss_debug``) doing the instrumentation and matching. This
  says where the error *shows*; error accumulates downstream, so it is not a ranking of causes.
* **Per layer** (``layer_ranking``): leave-one-out from the full build. Each candidate layer (every
  node the pass quantized or converted) is kept in float on its own, through the pass's ``exclude``
  option (a real build through the cache, the same one a user gets), and scored by the fraction of
  the model's output error that leaving it out removes. Leave-one-out, rather than quantizing one
  layer at a time, because it measures exactly the action a user can take (exclude this layer
  from the build they have) with the rest of the network quantized around it, so interactions and
  accumulated error count; one-at-a-time measures each layer in an otherwise float network and
  underrates layers whose error only matters downstream of other quantized layers.

``auto_mixed_precision`` then excludes the fewest top-ranked layers that bring the top-1 drop on
labeled data within a budget.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..errors import UsageError
from .build import BuildResult, optimize
from .cache import BuildCache
from .evaluation.data import Dataset, load_dataset
from .evaluation.run import make_runner
from .model import Model, ModelSource, load_model
from .passes.base import Progress
from .passes.recipe import PassSpec, Recipe

__all__ = ["TensorError", "LayerScore", "SensitivityResult", "MixedPrecisionResult", "analyze",
           "tensor_errors", "layer_ranking", "with_exclusions", "auto_mixed_precision",
           "model_logits", "output_error", "quant_pass_index", "QUANT_PASSES"]

QUANT_PASSES = ("int8", "int8-dynamic", "fp16")


@dataclass(frozen=True)
class TensorError:
    """One activation of the build against the same tensor of the float reference."""

    tensor: str
    node: str | None  # the node that writes it
    sqnr_db: float
    cosine: float
    max_abs: float


@dataclass(frozen=True)
class LayerScore:
    """Leave-one-out: the build with ``node`` kept in float."""

    node: str
    op_type: str
    score: float  # fraction of the output error removed by keeping this node in float
    output_sqnr_db: float  # SQNR of the logits of the leave-one-out build
    top1_agreement: float  # with the float model, on the same inputs


@dataclass
class SensitivityResult:
    model: str
    recipe: str
    pass_name: str
    device: str
    samples: int
    output_sqnr_db: float  # the full build's logits against the float model
    output_error: float  # relative squared error of the logits (||q - f||^2 / ||f||^2)
    top1_agreement: float
    layers: list[LayerScore] = field(default_factory=list)  # most sensitive first
    tensors: list[TensorError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def ranking(self) -> list[str]:
        return [s.node for s in self.layers]

    def heat(self, kind: str = "layer") -> dict[str, float]:
        """Per node score for the graph's heat overlay: ``layer`` (leave-one-out score) or
        ``tensor`` (output-tensor SQNR turned into error: higher is worse)."""
        if kind == "layer":
            return {s.node: s.score for s in self.layers}
        if kind == "tensor":
            return {t.node: -t.sqnr_db for t in self.tensors if t.node and math.isfinite(t.sqnr_db)}
        raise UsageError(f"unknown heat kind {kind!r}", "use layer or tensor")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class MixedPrecisionResult:
    """The fewest top-ranked layers kept in float that bring the top-1 drop within the budget."""

    recipe: str  # the recipe with the exclusions, in the CLI form
    excluded: list[str]
    budget_points: float
    baseline_top1: float
    top1: float
    samples: int
    within_budget: bool
    tried: list[dict[str, Any]] = field(default_factory=list)  # k, top1, drop_points, recipe

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- recipes ------------------------------------------------------------------------------------


def quant_pass_index(recipe: Recipe) -> int:
    """Index of the last int8/fp16 pass of ``recipe`` (the one whose exclusions matter)."""
    idx = [i for i, s in enumerate(recipe.passes) if s.name in QUANT_PASSES]
    if not idx:
        raise UsageError(f"the recipe {recipe.label()!r} has no quantization pass",
                         f"include one of {', '.join(QUANT_PASSES)}, e.g. --passes int8")
    return idx[-1]


def with_exclusions(recipe: Recipe | str, names: Sequence[str]) -> Recipe:
    """``recipe`` with ``names`` added to its (last) quantization pass's ``exclude`` list."""
    recipe = Recipe.parse(recipe) if isinstance(recipe, str) else recipe
    i = quant_pass_index(recipe)
    spec = recipe.passes[i]
    have = [str(x) for x in (spec.options.get("exclude") or [])]
    if isinstance(spec.options.get("exclude"), str):
        have = [x for x in spec.options["exclude"].split("+") if x]
    merged = have + [n for n in names if n not in have]
    opts = {**spec.options, "exclude": merged} if merged else {k: v for k, v in spec.options.items()
                                                                if k != "exclude"}
    new = Recipe(recipe.passes[:i] + (PassSpec(spec.name, opts),) + recipe.passes[i + 1:])
    new.instantiate()
    return new


# --- measuring ----------------------------------------------------------------------------------


def model_logits(model: Model, data: Dataset, samples: int, device: str = "cpu",
                 threads: int | None = None, batch: int = 64) -> tuple[np.ndarray, np.ndarray | None]:
    """The first output of ``model`` on the first ``samples`` inputs, and their labels."""
    opts = {"threads": threads} if threads else {}
    outs, labels = [], []
    with make_runner(model, device, **opts) as runner:
        for feeds, lab in data.batches(batch, samples):
            outs.append(np.asarray(next(iter(runner.infer(feeds).values())), np.float64))
            if lab is not None:
                labels.append(lab)
    return np.concatenate(outs), (np.concatenate(labels) if labels else None)


def output_error(ref: np.ndarray, got: np.ndarray) -> float:
    """Relative squared error ``||got - ref||^2 / ||ref||^2`` (SQNR = -10 log10 of it)."""
    return float(np.sum((got - ref) ** 2) / max(float(np.sum(ref ** 2)), 1e-30))


def _sqnr(err: float) -> float:
    return float("inf") if err <= 0 else -10.0 * math.log10(err)


def _agreement(ref: np.ndarray, got: np.ndarray) -> float:
    return float(np.mean(ref.argmax(-1) == got.argmax(-1)))


def _cosine(x: Sequence[np.ndarray], y: Sequence[np.ndarray]) -> float:
    a = np.concatenate([np.ravel(v) for v in x]).astype(np.float64)
    b = np.concatenate([np.ravel(v) for v in y]).astype(np.float64)
    den = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / den) if den else 1.0


def _max_abs(x: Sequence[np.ndarray], y: Sequence[np.ndarray]) -> float:
    return max(float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)), initial=0.0))
               for a, b in zip(x, y))


class _Reader:
    """A CalibrationDataReader over fixed batches (ONNX Runtime's tools iterate it)."""

    def __init__(self, data: Dataset, samples: int, batch: int) -> None:
        self._batches = [f for f, _ in data.batches(batch, samples)]

    def get_next(self) -> dict[str, np.ndarray] | None:
        return self._batches.pop(0) if self._batches else None

    def __iter__(self):  # noqa: ANN204
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        f = self.get_next()
        if f is None:
            raise StopIteration
        return f


def tensor_errors(reference: Model, build: Model, data: Dataset, samples: int = 32,
                  batch: int = 16) -> list[TensorError]:
    """SQNR, cosine and max abs error of every float activation of ``build`` that ``reference``
    also has (matched by tensor name), worst SQNR first."""
    from onnxruntime.quantization.qdq_loss_debug import (  # noqa: PLC0415
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    from .passes.quantize import _quiet  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="workbench-sens-") as d, _quiet():
        acts = {}
        for tag, m in (("float", reference), ("build", build)):
            src, aug = Path(d) / f"{tag}.onnx", Path(d) / f"{tag}_aug.onnx"
            onnx.save_model(m.proto, str(src))
            modify_model_output_intermediate_tensors(str(src), str(aug))
            acts[tag] = collect_activations(str(aug), _Reader(data, samples, batch))
    match = create_activation_matching(acts["build"], acts["float"])
    # tensors of the build that the reference has (ONNX Runtime's matching keys Q/DQ'd tensors
    # by their original name and leaves "float" empty for the rest)
    for name, vals in acts["build"].items():
        if name in acts["float"] and name not in match:
            match[name] = {"pre_qdq": vals, "post_qdq": vals, "float": acts["float"][name]}
    match = {k: v for k, v in match.items() if v.get("float") is not None and len(v["float"])
             and v.get("post_qdq") is not None}
    errs = {f.__name__: compute_activation_error(match, f) for f in (_cosine, _max_abs)}
    sqnr = compute_activation_error(match)
    writer = {o: n.name for n in build.proto.graph.node for o in n.output}
    ref_writer = {o: n.name for n in reference.proto.graph.node for o in n.output}
    out = [TensorError(name, ref_writer.get(name) or writer.get(name), float(sqnr[name]["xmodel_err"]),
                       float(errs["_cosine"][name]["xmodel_err"]), float(errs["_max_abs"][name]["xmodel_err"]))
           for name in match]
    return sorted(out, key=lambda t: t.sqnr_db)


def _reference(prefix: BuildResult | Model, spec: PassSpec) -> Model:
    """The float model the quantized build should be compared with, tensor by tensor: for int8,
    the model after ONNX Runtime's quant_pre_process (BatchNorm folded), which the pass quantizes."""
    model = prefix.model if isinstance(prefix, BuildResult) else prefix
    if not spec.name.startswith("int8") or spec.options.get("preprocess") is False:
        return model
    from onnxruntime.quantization.shape_inference import quant_pre_process  # noqa: PLC0415

    from .passes.quantize import _quiet  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="workbench-sens-") as d, _quiet():
        src, dst = Path(d) / "m.onnx", Path(d) / "pre.onnx"
        onnx.save_model(model.proto, str(src))
        try:
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
        except Exception:  # noqa: BLE001  (as the int8 pass: fall back to ONNX shape inference)
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
        return load_model(onnx.load(str(dst)), check=False)


def _candidates(result: BuildResult, spec: PassSpec) -> list[str]:
    report = result.reports[-1] if result.reports else None
    for r in result.reports:
        if r.name == spec.name:
            report = r
    if report is None:
        return []
    names = report.quantized or report.converted
    return list(dict.fromkeys(names))


def layer_ranking(model: ModelSource, recipe: Recipe | str, *, device: str = "cpu",
                  data: Dataset | None = None, samples: int = 256, calibration: str | Dataset | None = None,
                  candidates: Sequence[str] | None = None, op_types: Sequence[str] | None = None,
                  cache: BuildCache | None = None, threads: int | None = None,
                  progress: Progress | None = None) -> tuple[list[LayerScore], dict[str, Any]]:
    """Leave-one-out ranking of the quantized (or converted) layers, most sensitive first.

    ``candidates`` (default: every node the pass quantized or converted) may be narrowed to
    ``op_types``. Returns the scores and the full build's output error, SQNR and top-1 agreement.
    """
    src = load_model(model)
    recipe = Recipe.parse(recipe) if isinstance(recipe, str) else recipe
    spec = recipe.passes[quant_pass_index(recipe)]
    cache = cache if cache is not None else BuildCache()
    data = data if data is not None else _calibration(src, calibration)
    n = min(samples, len(data))
    ref, _ = model_logits(src, data, n, device, threads)
    full = optimize(src, recipe, device=device, calibration=calibration, cache=cache)
    got, _ = model_logits(full.model, data, n, device, threads)
    e_full = output_error(ref, got)
    names = list(candidates) if candidates is not None else _candidates(full, spec)
    ops = {nd.name: nd.op_type for nd in full.model.proto.graph.node}
    if op_types:
        names = [n for n in names if ops.get(n) in set(op_types)]
    scores = []
    for i, name in enumerate(names):
        if progress:
            progress("leave-one-out", i, len(names))
        loo = optimize(src, with_exclusions(recipe, [name]), device=device, calibration=calibration,
                       cache=cache)
        out, _ = model_logits(loo.model, data, n, device, threads)
        e = output_error(ref, out)
        scores.append(LayerScore(name, ops.get(name, "?"), (e_full - e) / e_full if e_full > 0 else 0.0,
                                 _sqnr(e), _agreement(ref, out)))
    if progress:
        progress("leave-one-out", len(names), len(names))
    scores.sort(key=lambda s: (-s.score, s.node))
    return scores, {"output_error": e_full, "output_sqnr_db": _sqnr(e_full),
                    "top1_agreement": _agreement(ref, got), "samples": n, "build": full}


def _calibration(src: Model, calibration: str | Dataset | None) -> Dataset:
    from .build import _calibration_for  # noqa: PLC0415

    ds = _calibration_for(src, Recipe(()), calibration, True, True)
    assert ds is not None  # needs=True raises instead of returning None
    return ds


def analyze(model: ModelSource, passes: Recipe | str, *, device: str = "cpu",
            calibration: str | Dataset | None = None, samples: int = 256, tensor_samples: int = 32,
            cache: BuildCache | None = None, threads: int | None = None, op_types: Sequence[str] | None = None,
            tensors: bool = True, progress: Progress | None = None) -> SensitivityResult:
    """Per-tensor errors and the leave-one-out layer ranking of ``passes`` on ``model``.

    Example:
        >>> r = analyze("sample:resnet-fashion", "int8")
        >>> r.ranking()[:3]  # the three layers whose exclusion removes most output error
    """
    src = load_model(model)
    recipe = Recipe.parse(passes) if isinstance(passes, str) else passes
    qi = quant_pass_index(recipe)
    cache = cache if cache is not None else BuildCache()
    data = _calibration(src, calibration)
    if samples < 1 or tensor_samples < 1:
        raise UsageError("samples must be >= 1")
    layers, full = layer_ranking(src, recipe, device=device, data=data, samples=samples,
                                 calibration=calibration, op_types=op_types, cache=cache, threads=threads,
                                 progress=progress)
    build: BuildResult = full["build"]
    res = SensitivityResult(src.name, build.recipe.label(), recipe.passes[qi].name, device, full["samples"],
                            full["output_sqnr_db"], full["output_error"], full["top1_agreement"], layers)
    res.notes.append(f"layers: leave-one-out from the full build, each kept in float through the "
                     f"pass's exclude option, scored by the fraction of the logits' squared error it "
                     f"removes, on {full['samples']} samples of {data.source}")
    if tensors:
        prefix: BuildResult | Model = src
        if qi:
            prefix = optimize(src, Recipe(recipe.passes[:qi]), device=device, calibration=calibration,
                              cache=cache)
        ref = _reference(prefix, recipe.passes[qi])
        res.tensors = tensor_errors(ref, build.model, data, min(tensor_samples, len(data)))
        res.notes.append(f"tensors: each float activation of the build against the same tensor of "
                         f"the float model{' after quant_pre_process' if ref is not src else ''}, on "
                         f"{min(tensor_samples, len(data))} samples (ONNX Runtime qdq_loss_debug)")
    return res


def auto_mixed_precision(model: ModelSource, passes: Recipe | str, budget_points: float, *,
                         ranking: Sequence[str], data: str | Dataset | None = None, samples: int = 2000,
                         max_layers: int | None = None, device: str = "cpu",
                         calibration: str | Dataset | None = None, cache: BuildCache | None = None,
                         threads: int | None = None, progress: Progress | None = None
                         ) -> MixedPrecisionResult:
    """Keep the top-``k`` ranked layers in float for k = 0, 1, ... and stop at the first build
    whose top-1 on labeled data is within ``budget_points`` of the float model's."""
    src = load_model(model)
    recipe = Recipe.parse(passes) if isinstance(passes, str) else passes
    ds = data if isinstance(data, Dataset) else load_dataset(data, src)
    if ds.labels is None:
        raise UsageError(f"{ds.source} has no labels", "give labeled data to measure the top-1 drop")
    cache = cache if cache is not None else BuildCache()
    n = min(samples, len(ds))
    ref, labels = model_logits(src, ds, n, device, threads)
    assert labels is not None
    base = float(np.mean(ref.argmax(-1) == labels))
    limit = len(ranking) if max_layers is None else min(max_layers, len(ranking))
    tried: list[dict[str, Any]] = []
    for k in range(limit + 1):
        if progress:
            progress("mixed precision", k, limit)
        r = with_exclusions(recipe, list(ranking[:k]))
        b = optimize(src, r, device=device, calibration=calibration, cache=cache)
        got, _ = model_logits(b.model, ds, n, device, threads)
        top1 = float(np.mean(got.argmax(-1) == labels))
        drop = (base - top1) * 100
        tried.append({"k": k, "top1": top1, "drop_points": drop, "recipe": r.label()})
        if drop <= budget_points:
            return MixedPrecisionResult(r.label(), list(ranking[:k]), budget_points, base, top1, n, True, tried)
    best = max(tried, key=lambda t: t["top1"])
    return MixedPrecisionResult(best["recipe"], list(ranking[:best["k"]]), budget_points, base, best["top1"],
                                n, False, tried)
