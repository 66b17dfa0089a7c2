"""Convert a PyTorch module to an ONNX :class:`~workbench.core.model.Model` with PyTorch's exporter.

The dynamo exporter (``torch.onnx.export(..., dynamo=True)``) goes first; the TorchScript exporter
(``dynamo=False``) is the fallback. The model records which one ran and why, the versions, and the
conversion's fidelity (ONNX Runtime against the module on the example and random inputs) in its
``workbench.conversion`` metadata entry. PyTorch is imported on first use only.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import logging
import re
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..errors import ConversionError, UsageError, install_hint
from .model import Model, load_model

__all__ = ["convert_torch", "CONVERSION_KEY", "EXPORTERS"]

CONVERSION_KEY = "workbench.conversion"
EXPORTERS = ("auto", "dynamo", "torchscript")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CLASS = re.compile(r"<class '(?:[\w.]+\.)?(\w+)'>")
_OP_PATTERNS = (re.compile(r"operator '([\w:.]+)'"), re.compile(r"OpOverload\(op='([\w.]+)'"),
                re.compile(r"target=torch\.ops\.([\w.]+)"))
_DATA_DEPENDENT = ("GuardOnDataDependentSymNode", "data-dependent")


def _torch() -> Any:
    try:
        import torch  # noqa: PLC0415
    except ImportError as e:
        raise ConversionError("conversion from PyTorch needs PyTorch, which is not installed here",
                              install_hint("torch")) from e
    return torch


def _why(e: BaseException) -> str:
    """The line of an exporter error that says what went wrong (dynamo's 'Exception summary')."""
    text = _ANSI.sub("", str(e)).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if "## Exception summary" in lines:
        rest = lines[lines.index("## Exception summary") + 1:]
        if rest:
            return _CLASS.sub(r"\1", rest[0].split("Failure message:")[0]).strip()
    return lines[0] if lines else type(e).__name__


def _diagnose(*errors: BaseException | None) -> str | None:
    """The unsupported operator, or data-dependent control flow, named in the exporters' errors."""
    text = "\n".join(_ANSI.sub("", str(e)) + "\n" + str(e.__cause__ or "") for e in errors if e)
    if any(k in text for k in _DATA_DEPENDENT):
        return "data-dependent control flow (a Python `if` on a tensor's value)"
    for pattern in _OP_PATTERNS:
        if m := pattern.search(text):
            return f"operator {m.group(1)} has no ONNX conversion"
    return None


def _split_inputs(example_inputs: Any, torch: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if isinstance(example_inputs, torch.Tensor):
        args, kwargs = (example_inputs,), {}
    elif isinstance(example_inputs, (tuple, list)):
        args, kwargs = tuple(example_inputs), {}
    elif isinstance(example_inputs, Mapping):
        args, kwargs = (), dict(example_inputs)
    else:
        raise UsageError(f"example_inputs is a {type(example_inputs).__name__}",
                         "give a tensor, a tuple of tensors or a dict of keyword tensors")
    if not all(isinstance(t, torch.Tensor) for t in (*args, *kwargs.values())) or not (args or kwargs):
        raise UsageError("example_inputs must hold at least one tensor, and only tensors",
                         "e.g. example_inputs=(torch.randn(1, 3, 224, 224),)")
    return args, kwargs


def _flatten(out: Any, torch: Any) -> list[Any]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, Mapping):
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _flatten(o, torch)]
    return []  # non-tensor outputs are constants in the exported graph


def _numpy(out: Any, torch: Any) -> list[np.ndarray]:
    return [t.detach().cpu().float().numpy() if t.dtype == torch.bfloat16 else t.detach().cpu().numpy()
            for t in _flatten(out, torch)]


def _input_names(module: Any, args: tuple, kwargs: dict) -> list[str]:
    if kwargs:
        return list(kwargs)
    try:
        params = [p.name for p in inspect.signature(module.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    if len(params) >= len(args):
        return params[:len(args)]
    return ["input"] if len(args) == 1 else [f"input_{i}" for i in range(len(args))]


@contextlib.contextmanager
def _quiet() -> Iterator[list[warnings.WarningMessage]]:
    """Record the exporters' warnings and hush torch's graph dumps on failure (they are logged)."""
    log = logging.getLogger("torch")
    level = log.level
    log.setLevel(logging.CRITICAL)
    sink = io.StringIO()  # torch.export prints partial graphs to stderr when it fails
    try:
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stderr(sink), \
                contextlib.redirect_stdout(sink):
            warnings.simplefilter("always")
            yield caught
    finally:
        log.setLevel(level)


Axes = dict[str, dict[int, str]]


def _export_dynamo(torch: Any, module: Any, args: tuple, kwargs: dict, names: list[str],
                   outs: list[str], axes: Axes, opset: int | None) -> onnx.ModelProto:
    if kwargs:
        shapes: Any = {k: axes.get(k) or None for k in kwargs}
    else:
        shapes = tuple(axes.get(n) or None for n in names)
    program = torch.onnx.export(module, args, kwargs=kwargs or None, dynamo=True, verbose=False,
                                input_names=names, output_names=outs, opset_version=opset,
                                dynamic_shapes=shapes if any(axes.values()) else None)
    return program.model_proto  # weights serialized into the proto, no external data


def _export_torchscript(torch: Any, module: Any, args: tuple, kwargs: dict, names: list[str],
                        outs: list[str], axes: Axes, opset: int | None) -> onnx.ModelProto:
    with tempfile.TemporaryDirectory(prefix="workbench-convert-") as tmp:
        path = Path(tmp) / "model.onnx"
        torch.onnx.export(module, args, str(path), kwargs=kwargs or None, dynamo=False,
                          input_names=names, output_names=outs, opset_version=opset,
                          dynamic_axes={k: v for k, v in axes.items() if v} or None)
        return onnx.load(str(path), load_external_data=True)  # large models write data beside it


def _random_like(t: Any, g: Any, torch: Any) -> Any:
    if t.dtype == torch.bool:
        return torch.randint(0, 2, tuple(t.shape), generator=g).bool()
    if t.dtype.is_floating_point:
        return torch.randn(tuple(t.shape), generator=g, dtype=torch.float32).to(t.dtype)
    high = int(t.max().item()) + 1 if t.numel() else 1
    return torch.randint(0, max(high, 1), tuple(t.shape), generator=g, dtype=t.dtype)


def _compare(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(max abs error, cosine) of two outputs, in float64."""
    x, y = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    if x.shape != y.shape:
        return float("inf"), 0.0
    max_abs = float(np.max(np.abs(x - y))) if x.size else 0.0
    nx, ny = float(np.linalg.norm(x)), float(np.linalg.norm(y))
    cos = 1.0 if nx == ny == 0 else (float(x @ y) / (nx * ny) if nx and ny else 0.0)
    return max_abs, cos


def _fidelity(torch: Any, module: Any, proto: onnx.ModelProto, args: tuple, kwargs: dict,
              first: list[np.ndarray], samples: int, seed: int) -> dict[str, Any]:
    """Max abs error and cosine of ONNX Runtime (CPU) against the module, per output and worst;
    ``first`` is the module's output on the example inputs (``ref_max_abs``: the outputs' scale)."""
    import onnxruntime as ort  # noqa: PLC0415

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feeds_in = [i.name for i in sess.get_inputs()]
    g = torch.Generator().manual_seed(seed)
    cases = [(args, kwargs)] + [
        (tuple(_random_like(t, g, torch) for t in args),
         {k: _random_like(t, g, torch) for k, t in kwargs.items()}) for _ in range(samples)]
    names = [o.name for o in sess.get_outputs()]
    per = {n: {"max_abs": 0.0, "cosine": 1.0, "ref_max_abs": 0.0} for n in names}
    example: dict[str, float] = {}
    for i, (a, kw) in enumerate(cases):
        if i == 0:
            ref = first
        else:
            with torch.no_grad():
                ref = _numpy(module(*a, **kw), torch)
        flat = _numpy([*a, *kw.values()], torch)
        got = sess.run(None, dict(zip(feeds_in, flat)))
        if len(got) != len(ref):
            raise ConversionError(f"the ONNX model has {len(got)} outputs, the module {len(ref)}",
                                  "check the module's outputs (non-tensor outputs are not exported)")
        worst = (0.0, 1.0)
        for n, r, o in zip(names, ref, got):
            m, c = _compare(r, o)
            scale = float(np.max(np.abs(r))) if r.size else 0.0
            per[n] = {"max_abs": max(per[n]["max_abs"], m), "cosine": min(per[n]["cosine"], c),
                      "ref_max_abs": max(per[n]["ref_max_abs"], scale)}
            worst = (max(worst[0], m), min(worst[1], c))
        if i == 0:
            example = {"max_abs": worst[0], "cosine": worst[1]}
    return {"samples": len(cases), "seed": seed, "example": example, "outputs": per,
            "max_abs": max(v["max_abs"] for v in per.values()),
            "cosine": min(v["cosine"] for v in per.values())}


def _versions(torch: Any, exporter: str) -> dict[str, str | None]:
    v: dict[str, str | None] = {"torch": torch.__version__, "onnx": onnx.__version__}
    if exporter == "dynamo":
        try:
            import onnxscript  # noqa: PLC0415

            v["onnxscript"] = onnxscript.__version__
        except ImportError:
            v["onnxscript"] = None
    return v


def _finite(x: Any) -> Any:
    if isinstance(x, float) and not np.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    return [_finite(v) for v in x] if isinstance(x, list) else x


def _faithful(fid: dict[str, Any]) -> bool:
    return fid["cosine"] >= 0.999 and fid["max_abs"] <= 1e-2


def convert_torch(
    module: Any,
    example_inputs: Any,
    *,
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    opset: int | None = None,
    exporter: str = "auto",
    fidelity_samples: int = 3,
    seed: int = 0,
    check: bool = True,
) -> Model:
    """Export ``module`` to ONNX and measure how faithfully the ONNX model reproduces it.

    Example:
        >>> m = convert_torch(torchvision.models.resnet18(), (torch.randn(1, 3, 224, 224),))
        >>> m.conversion["fidelity"]["max_abs"] < 1e-4
        True

    Args:
        dynamic_axes: ``{name: {axis: "axis_name"}}`` for inputs and outputs; default: axis 0 of
            every input and output is ``"batch"``; ``{}`` exports static shapes.
        exporter: ``"auto"`` (dynamo, then TorchScript), ``"dynamo"`` or ``"torchscript"``.

    Raises:
        ConversionError: PyTorch is missing, or neither exporter converts the module (naming the
            operator or the data-dependent control flow when the errors say it).
    """
    torch = _torch()
    if exporter not in EXPORTERS:
        raise UsageError(f"unknown exporter {exporter!r}", f"use one of {', '.join(EXPORTERS)}")
    if not isinstance(module, torch.nn.Module):
        raise UsageError(f"{type(module).__name__} is not a torch.nn.Module")
    args, kwargs = _split_inputs(example_inputs, torch)
    what = type(module).__name__
    notes: list[str] = []
    was_training = module.training
    if was_training:
        notes.append("the module was in training mode: exported in eval mode, its mode restored after")
    module.eval()
    try:
        t0 = time.perf_counter()
        with torch.no_grad():
            first = _numpy(module(*args, **kwargs), torch)
        n_out = len(first)
        names = list(input_names) if input_names else _input_names(module, args, kwargs)
        outs = list(output_names) if output_names else (
            ["output"] if n_out == 1 else [f"output_{i}" for i in range(n_out)])
        flat_in = [*args, *kwargs.values()]
        if dynamic_axes is None:
            axes = {n: {0: "batch"} for n, t in zip(names, flat_in) if t.dim() >= 1}
            axes.update({n: {0: "batch"} for n in outs})
        else:
            axes = {k: {int(a): str(v) for a, v in d.items()} for k, d in dynamic_axes.items()}
        order = ["dynamo", "torchscript"] if exporter == "auto" else [exporter]
        errors: dict[str, BaseException] = {}
        proto, used, caught = None, None, []
        for name in order:
            fn = _export_dynamo if name == "dynamo" else _export_torchscript
            try:
                with _quiet() as caught:
                    proto = fn(torch, module, args, kwargs, names, outs, axes, opset)
                used = name
                break
            except Exception as e:  # the exporters raise anything from RuntimeError to AssertionError
                errors[name] = e
        if proto is None or used is None:
            last = errors[order[-1]]
            found = _diagnose(*errors.values())
            tried = "; ".join(f"{k}: {_why(e)}" for k, e in errors.items())
            raise ConversionError(f"cannot convert {what} to ONNX" + (f": {found}" if found else "")
                                  + f" ({tried})",
                                  "replace the operator or the data-dependent branch, or export "
                                  "with torch.onnx.export yourself and load the .onnx file") from last
        wall = time.perf_counter() - t0
        tracer = sorted({str(w.message).split(".")[0] for w in caught
                         if type(w.message).__name__ == "TracerWarning"
                         or getattr(w.category, "__name__", "") == "TracerWarning"})
        fid = _fidelity(torch, module, proto, args, kwargs, first, fidelity_samples, seed)
    finally:
        module.train(was_training)
    fallback = _why(errors["dynamo"]) if used == "torchscript" and "dynamo" in errors else None
    if tracer and not _faithful(fid):
        found = _diagnose(*errors.values()) or "a value-dependent Python branch or conversion"
        raise ConversionError(
            f"cannot convert {what} to ONNX faithfully: the TorchScript trace baked in {found} "
            f"(TracerWarning: {tracer[0]}); on random inputs the ONNX model differs from PyTorch by "
            f"up to {fid['max_abs']:.3g} (cosine {fid['cosine']:.4f})"
            + (f"; dynamo: {fallback}" if fallback else ""),
            "make the branch tensor-valued (torch.where, torch.cond) so it can be exported")
    notes += [f"TorchScript tracer: {t}" for t in tracer]
    if not _faithful(fid):
        notes.append(f"the ONNX model differs from PyTorch by up to {fid['max_abs']:.3g} "
                     f"(cosine {fid['cosine']:.4f}): check the conversion before using it")
    record = {
        "exporter": used, "fallback_reason": fallback, **_versions(torch, used),
        "opset": next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None),
        "module": what, "input_names": names, "output_names": outs, "dynamic_axes": axes,
        "example_inputs": {n: {"shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", "")}
                           for n, t in zip(names, [*args, *kwargs.values()])},
        "wall_s": round(wall, 3), "fidelity": fid, "notes": notes,
    }
    for p in [p for p in proto.metadata_props if p.key == CONVERSION_KEY]:
        proto.metadata_props.remove(p)
    text = json.dumps(_finite(record), allow_nan=False, default=str)
    proto.metadata_props.add(key=CONVERSION_KEY, value=text)
    if not proto.graph.name or proto.graph.name in ("main_graph", "main_graph_0", "torch_jit"):
        proto.graph.name = what
    model = load_model(proto, check=check)
    return Model(model.proto, f"torch:{what}", None, model.fingerprint, model.size_bytes)
