"""``workbench convert REF --example DIMS --out model.onnx``: a PyTorch module to ONNX.

REF is ``package.module:factory`` or ``path/to/file.py:factory``; the factory is an
``nn.Module`` instance, or a class or function called with no arguments that returns one.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .common import print_json

__all__ = ["add_parser", "cmd_convert", "register", "resolve_ref"]

_DTYPES = ("float32", "float16", "float64", "bfloat16", "int64", "int32", "int8", "uint8", "bool")


def _import(where: str, ref: str) -> Any:
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where).expanduser()
        if not path.is_file():
            raise UsageError(f"{ref}: no such file {where}", "give path/to/file.py:factory")
        spec = importlib.util.spec_from_file_location(f"_workbench_convert_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise UsageError(f"{ref}: cannot import {where}")
        module = importlib.util.module_from_spec(spec)
        loader = spec.loader
    else:
        try:
            return importlib.import_module(where)
        except ModuleNotFoundError as e:
            if e.name and where.startswith(e.name):
                raise UsageError(f"{ref}: no module named {e.name!r}",
                                 "give an importable package.module:factory, or path/to/file.py:factory"
                                 ) from e
            raise UsageError(f"{ref}: importing {where} failed: {e}") from e
        except Exception as e:  # the user's module raised while importing
            raise UsageError(f"{ref}: importing {where} failed: {type(e).__name__}: {e}") from e
    try:
        loader.exec_module(module)
    except Exception as e:
        raise UsageError(f"{ref}: importing {where} failed: {type(e).__name__}: {e}") from e
    return module


def resolve_ref(ref: str) -> Any:
    """The ``torch.nn.Module`` that ``module:factory`` names (an instance, or made by calling it)."""
    where, colon, attr = ref.rpartition(":")
    if not colon or not where or not attr:
        raise UsageError(f"{ref!r} is not a module reference",
                         "give package.module:factory or path/to/file.py:factory")
    obj = _import(where, ref)
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UsageError(f"{ref}: {where} has no attribute {attr!r}")
        obj = getattr(obj, part)
    torch = sys.modules["torch"] if "torch" in sys.modules else None
    if torch is None or not isinstance(obj, torch.nn.Module):
        if not callable(obj):
            raise UsageError(f"{ref}: {attr} is a {type(obj).__name__}, not a module or a factory")
        try:
            obj = obj()
        except Exception as e:
            raise UsageError(f"{ref}: calling {attr}() failed: {type(e).__name__}: {e}") from e
        torch = sys.modules.get("torch")
    if torch is None or not isinstance(obj, torch.nn.Module):
        raise UsageError(f"{ref}: {attr} gave a {type(obj).__name__}, not a torch.nn.Module")
    return obj


def parse_example(text: str, index: int) -> Any:
    """``1x3x224x224`` or ``1x10:int64`` (integers drawn from [0, 10)) as a seeded tensor."""
    from ..core.convert import _torch  # noqa: PLC0415

    torch = _torch()
    dims_text, _, dtype = text.partition(":")
    dtype = dtype or "float32"
    try:
        dims = [int(d) for d in dims_text.lower().split("x")]
    except ValueError:
        dims = []
    if not dims or any(d < 1 for d in dims) or dtype not in _DTYPES:
        raise UsageError(f"--example {text!r} is not DIMS[:DTYPE]",
                         f"e.g. 1x3x224x224 or 1x10:int64; dtypes: {', '.join(_DTYPES)}")
    g = torch.Generator().manual_seed(index)
    dt = getattr(torch, dtype)
    if dt == torch.bool:
        return torch.randint(0, 2, dims, generator=g).bool()
    if dt.is_floating_point:
        return torch.randn(dims, generator=g).to(dt)
    return torch.randint(0, 10, dims, generator=g, dtype=dt)


def cmd_convert(args: argparse.Namespace) -> int:
    from ..core.convert import convert_torch  # noqa: PLC0415
    from ..core.paths import atomic_write  # noqa: PLC0415

    examples = [parse_example(e, i) for i, e in enumerate(args.example)]
    module = resolve_ref(args.ref)
    model = convert_torch(module, tuple(examples), dynamic_axes={} if args.dynamic_axes == "none" else None,
                          opset=args.opset, exporter=args.exporter)
    out = Path(args.out).expanduser()
    if out.is_dir():
        raise UsageError(f"--out {args.out} is a directory", "give the .onnx file to write")
    atomic_write(out, model.proto.SerializeToString())
    c = model.conversion or {}
    if args.json:
        print_json({"model": str(out), "fingerprint": model.fingerprint, **c})
        return 0
    f = c["fidelity"]
    print(f"{args.ref} -> {out}  ({c['exporter']}, opset {c['opset']}, {c['wall_s']:.1f} s)")
    if c.get("fallback_reason"):
        print(f"  dynamo failed, so TorchScript: {c['fallback_reason']}")
    for name, e in c["example_inputs"].items():
        dyn = ", ".join(f"axis {a}={n}" for a, n in (c["dynamic_axes"].get(name) or {}).items())
        print(f"  input {name}: {e['shape']} {e['dtype']}, dynamic: {dyn or 'none'}")
    print(f"  fidelity vs PyTorch ({f['samples']} inputs): max |diff| {f['max_abs']:.3e}, "
          f"cosine {f['cosine']:.6f}")
    for n in c.get("notes", []):
        print(f"  note: {n}")
    return 0


def add_parser(sub: Any) -> None:
    s = sub.add_parser("convert", help="convert a PyTorch module to ONNX, with its fidelity")
    s.add_argument("ref", metavar="REF", help="package.module:factory or path/to/file.py:factory")
    s.add_argument("--example", action="append", required=True, metavar="DIMS[:DTYPE]",
                   help="an example input, e.g. 1x3x224x224 or 1x10:int64 (repeat per input, in order)")
    s.add_argument("--out", required=True, metavar="FILE.onnx")
    s.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    s.add_argument("--exporter", default="auto", choices=["auto", "dynamo", "torchscript"],
                   help="auto: dynamo, then TorchScript if dynamo fails")
    s.add_argument("--dynamic-axes", default="batch", choices=["none", "batch"],
                   help="batch: axis 0 of every input and output is dynamic (default)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_convert)


register = add_parser  # the name workbench.commands.EXTRA modules provide
