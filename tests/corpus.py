"""A generated corpus of malformed and hostile model inputs (issue 9); no binary blobs committed.

``build_corpus(root)`` writes every case into its own folder under ``root/models/`` and returns
``Case`` records. Escaping external-data references point at ``root/outside/canary.bin``, a file
that the tests check is never read (its access time is set in the past and must not move).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from conftest import make_model, text_model, tiny_cnn

__all__ = ["Case", "build_corpus", "CANARY", "CANARY_ATIME"]

CANARY = "canary.bin"
CANARY_ATIME = 1_000_000_000  # 2001: any read by the workbench would move it forward (see tests)


@dataclass(frozen=True)
class Case:
    """One corpus input.

    Attributes:
        name: short id used in test ids.
        path: what is handed to the CLI/panel (a file or a folder).
        expect: "error" (must be refused with one ``error:`` line) or "ok" (must work, or refuse
            cleanly: only commands that run the model may refuse, e.g. an unknown op at run time).
        match: a substring the error must contain, when the case has one specific cause.
    """

    name: str
    path: Path
    expect: str
    match: str = ""


def _vi(name: str, dims, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, dims)


def _relu(opset: int = 17, **kw) -> onnx.ModelProto:
    return make_model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", [1, 4])], [_vi("y", [1, 4])],
                      opset=opset, **kw)


def _external(folder: Path, location: str, *, write: bytes | None = None, length: int | None = None,
              dims=(4, 4)) -> onnx.ModelProto:
    """x[1,4] @ W[4,4] where W's data lives in ``location`` (relative to the model's folder)."""
    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=list(dims))
    w.data_location = TensorProto.EXTERNAL
    n_bytes = int(np.prod(dims)) * 4
    for k, v in (("location", location), ("offset", "0"), ("length", str(length or n_bytes))):
        e = w.external_data.add()
        e.key, e.value = k, v
    if write is not None:
        (folder / location).write_bytes(write)
    return make_model([helper.make_node("MatMul", ["x", "w"], ["y"])], [_vi("x", [1, dims[0]])],
                      [_vi("y", [1, dims[1]])], [w])


def _save(proto: onnx.ModelProto, path: Path) -> Path:
    path.write_bytes(proto.SerializeToString())
    return path


def build_corpus(root: Path, *, huge: bool = False) -> list[Case]:
    """Write the corpus under ``root`` and return its cases.

    Args:
        huge: also write a model whose external data is a sparse file just over 2 GB (cheap on
            disk, but loading it reads 2 GB into memory, so it is for the slow run only).
    """
    outside = root / "outside"
    outside.mkdir(parents=True, exist_ok=True)
    canary = outside / CANARY
    canary.write_bytes(np.arange(16, dtype=np.float32).tobytes())
    os.utime(canary, (CANARY_ATIME, CANARY_ATIME))
    models = root / "models"
    cases: list[Case] = []

    def add(name: str, expect: str, match: str, make: Callable[[Path], Path]) -> None:
        d = models / name
        d.mkdir(parents=True, exist_ok=True)
        cases.append(Case(name, make(d), expect, match))

    good = tiny_cnn().SerializeToString()
    rng = np.random.default_rng(9)

    # -- not a model at all
    add("empty", "error", "is empty", lambda d: _write(d / "m.onnx", b""))
    for frac in (0.1, 0.5, 0.97):
        add(f"truncated-{int(frac * 100)}", "error", "", lambda d, f=frac: _write(d / "m.onnx", good[: int(len(good) * f)]))
    add("random-bytes", "error", "not an ONNX model",
        lambda d: _write(d / "m.onnx", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()))
    add("text-file", "error", "not an ONNX model",
        lambda d: _write(d / "m.onnx", b"this is a README, not a model\n" * 20))
    add("directory", "error", "is a directory", lambda d: _mkdir(d / "m.onnx"))
    add("missing-file", "error", "no such file", lambda d: d / "absent.onnx")

    # -- graphs the checker or shape inference must refuse
    def cycle(d: Path) -> Path:
        nodes = [helper.make_node("Add", ["x", "b"], ["a"]), helper.make_node("Relu", ["a"], ["b"]),
                 helper.make_node("Identity", ["a"], ["y"])]
        return _save(make_model(nodes, [_vi("x", [1, 4])], [_vi("y", [1, 4])]), d / "m.onnx")
    add("cycle", "error", "not a valid ONNX model", cycle)

    def dangling(d: Path) -> Path:
        nodes = [helper.make_node("Add", ["x", "nowhere"], ["y"])]
        return _save(make_model(nodes, [_vi("x", [1, 4])], [_vi("y", [1, 4])]), d / "m.onnx")
    add("dangling-name", "error", "not a valid ONNX model", dangling)

    def duplicate(d: Path) -> Path:
        nodes = [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Neg", ["x"], ["y"])]
        return _save(make_model(nodes, [_vi("x", [1, 4])], [_vi("y", [1, 4])]), d / "m.onnx")
    add("duplicate-name", "error", "not a valid ONNX model", duplicate)

    def no_inputs(d: Path) -> Path:
        nodes = [helper.make_node("Relu", ["x"], ["y"])]
        return _save(make_model(nodes, [], [_vi("y", [1, 4])]), d / "m.onnx")
    add("missing-input", "error", "not a valid ONNX model", no_inputs)

    def no_outputs(d: Path) -> Path:
        return _save(make_model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", [1, 4])], []), d / "m.onnx")
    add("no-outputs", "error", "no graph outputs", no_outputs)

    def unknown_op(d: Path) -> Path:
        return _save(make_model([helper.make_node("FrobnicateXYZ", ["x"], ["y"])], [_vi("x", [1, 4])],
                                [_vi("y", [1, 4])]), d / "m.onnx")
    add("unknown-op", "error", "not a valid ONNX model", unknown_op)

    def unknown_domain(d: Path) -> Path:
        m = make_model([helper.make_node("Frob", ["x"], ["y"], domain="com.evil")], [_vi("x", [1, 4])],
                       [_vi("y", [1, 4])])
        m.opset_import.append(helper.make_opsetid("com.evil", 1))
        return _save(m, d / "m.onnx")
    add("unknown-domain", "ok", "", unknown_domain)  # checker allows custom domains; running fails

    add("opset-too-new", "error", "opset 999", lambda d: _save(_relu(opset=999), d / "m.onnx"))
    add("opset-too-old", "ok", "",  # loads; ORT has no Relu-1 kernel, so running refuses
        lambda d: _save(_relu(opset=1), d / "m.onnx"))
    add("ir-version-too-new", "error", "ir_version 999", lambda d: _save_ir(_relu(), d / "m.onnx", 999))

    def absurd_dims(d: Path) -> Path:
        big = 2**40
        return _save(make_model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", [big, big])],
                                [_vi("y", [big, big])]), d / "m.onnx")
    add("absurd-dims", "ok", "", absurd_dims)  # info works; running must refuse the allocation

    def negative_dims(d: Path) -> Path:
        return _save(make_model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", [-5, 4])],
                                [_vi("y", [-5, 4])]), d / "m.onnx")
    add("negative-dims", "ok", "", negative_dims)

    def nan_weights(d: Path) -> Path:
        m = tiny_cnn()
        w = numpy_helper.to_array(m.graph.initializer[0]).copy()
        w.flat[::3] = np.nan
        w.flat[1::5] = np.inf
        m.graph.initializer[0].CopyFrom(numpy_helper.from_array(w, "w"))
        return _save(m, d / "m.onnx")
    add("nan-inf-weights", "ok", "", nan_weights)

    add("int64-input", "ok", "", lambda d: _save(text_model(), d / "m.onnx"))

    def string_input(d: Path) -> Path:
        return _save(make_model([helper.make_node("Identity", ["x"], ["y"])], [_vi("x", [2], TensorProto.STRING)],
                                [_vi("y", [2], TensorProto.STRING)]), d / "m.onnx")
    add("string-input", "ok", "", string_input)

    def bool_input(d: Path) -> Path:
        return _save(make_model([helper.make_node("Not", ["x"], ["y"])], [_vi("x", [1, 4], TensorProto.BOOL)],
                                [_vi("y", [1, 4], TensorProto.BOOL)]), d / "m.onnx")
    add("bool-input", "ok", "", bool_input)

    def huge_attr(d: Path) -> Path:  # a Constant that declares 2^31 floats but carries none
        t = TensorProto(name="c", data_type=TensorProto.FLOAT, dims=[2**31])
        nodes = [helper.make_node("Constant", [], ["c"], value=t), helper.make_node("Add", ["x", "c"], ["y"])]
        return _save(make_model(nodes, [_vi("x", [1])], [_vi("y", [2**31])]), d / "m.onnx")
    add("declared-size-lie", "error", "not a valid ONNX model", huge_attr)

    # -- external data
    data = np.eye(4, dtype=np.float32).tobytes()
    add("external-ok", "ok", "", lambda d: _save(_external(d, "w.bin", write=data), d / "m.onnx"))
    add("external-dotdot", "error", "outside the model's folder",
        lambda d: _save(_external(d, "../../outside/" + CANARY), d / "m.onnx"))
    add("external-absolute", "error", "outside the model's folder",
        lambda d: _save(_external(d, str(canary)), d / "m.onnx"))

    def symlink(d: Path) -> Path:
        (d / "w.bin").symlink_to(canary)
        return _save(_external(d, "w.bin"), d / "m.onnx")
    add("external-symlink", "error", "outside the model's folder", symlink)

    def symlink_dir(d: Path) -> Path:
        (d / "sub").symlink_to(outside, target_is_directory=True)
        return _save(_external(d, "sub/" + CANARY), d / "m.onnx")
    add("external-symlink-dir", "error", "outside the model's folder", symlink_dir)
    add("external-missing", "error", "is missing", lambda d: _save(_external(d, "w.bin"), d / "m.onnx"))
    add("external-short", "error", "shorter than", lambda d: _save(_external(d, "w.bin", write=data[:20]), d / "m.onnx"))
    add("external-is-dir", "error", "is missing", lambda d: _save(_external(d, "w.bin"), _mkdir(d / "w.bin").parent / "m.onnx"))

    def declared_huge(d: Path) -> Path:  # claims 2^31 elements; its file holds 64 bytes
        return _save(_external(d, "w.bin", write=data, dims=(4, 2**29)), d / "m.onnx")
    add("external-declared-huge", "error", "shorter than", declared_huge)

    def no_length_short(d: Path) -> Path:  # no length key: the dims (4 x 4 floats) say 64 bytes
        m = _external(d, "w.bin", write=data[:16])
        del m.graph.initializer[0].external_data[2]
        return _save(m, d / "m.onnx")
    add("external-no-length-short", "error", "shorter than", no_length_short)

    if huge:
        def over_2gb(d: Path) -> Path:
            n = 2**31 // 4 + 1024  # just over 2 GiB of float32, written as a sparse file
            with open(d / "w.bin", "wb") as f:
                f.truncate(n * 4)
            return _save(_external(d, "w.bin", dims=(1, n)), d / "m.onnx")
        add("external-over-2gb", "ok", "", over_2gb)
    return cases


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _save_ir(proto: onnx.ModelProto, path: Path, ir: int) -> Path:
    proto.ir_version = ir
    return _save(proto, path)
