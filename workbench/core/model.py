"""Load and validate ONNX models into a :class:`Model` handle with a content fingerprint.

Loading never follows an external-data reference outside the model's folder: the paths are
checked before ONNX reads anything (ONNX's own external-data loading has had path-traversal bugs).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import onnx
from google.protobuf.message import EncodeError
from onnx import external_data_helper

from ..errors import ModelLoadError, ModelValidationError, UsageError

__all__ = ["Model", "ModelSource", "load_model", "fingerprint_of", "proto_size", "TWO_GB", "PRECISION_KEY"]

TWO_GB = 2**31 - 1  # protobuf's hard limit for one serialized message
# The precision a recipe asks of the runtime (the bf16 pass sets it; the openvino engine reads it).
PRECISION_KEY = "workbench.precision_hint"
ModelSource = Union[str, os.PathLike, bytes, onnx.ModelProto, "Model"]


@dataclass(frozen=True)
class Model:
    """An ONNX model that loaded and validated, with where it came from.

    Attributes:
        proto: the model, external data loaded into memory.
        source: what the user gave (a path, ``sample:NAME``, ``<bytes>`` or ``<ModelProto>``).
        path: the file it was read from, if any.
        fingerprint: ``sha256:`` of the model's deterministic serialization.
        size_bytes: size on disk (file plus external data), or serialized size.
    """

    proto: onnx.ModelProto = field(repr=False)
    source: str
    path: Path | None
    fingerprint: str
    size_bytes: int

    @property
    def name(self) -> str:
        if self.source.startswith("sample:"):
            return self.source
        if self.path is not None:
            return self.path.stem
        return self.proto.graph.name or "model"

    @property
    def metadata(self) -> dict[str, str]:
        return {p.key: p.value for p in self.proto.metadata_props}

    def metadata_json(self, key: str) -> Any | None:
        """A ``workbench.*`` metadata entry decoded from JSON, or None if absent or malformed."""
        raw = self.metadata.get(key)
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return None

    @property
    def conversion(self) -> dict[str, Any] | None:
        """How the model was converted from PyTorch (``workbench.conversion``), or None."""
        record = self.metadata_json("workbench.conversion")
        return record if isinstance(record, dict) else None

    @property
    def opset(self) -> int:
        return next((o.version for o in self.proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def proto_size(proto: onnx.ModelProto) -> int:
    """Serialized size of a model, or a lower bound above TWO_GB when it is too large for one
    message (protobuf's ``ByteSize`` raises EncodeError there instead of returning the size)."""
    try:
        return proto.ByteSize()
    except EncodeError:
        raw = sum(len(t.raw_data) for t in external_data_helper._get_all_tensors(proto))  # noqa: SLF001
        return max(raw, TWO_GB + 1)


def fingerprint_of(proto: onnx.ModelProto) -> str:
    """Content hash of a model: same graph, weights and metadata give the same fingerprint."""
    h = hashlib.sha256()
    if proto_size(proto) <= TWO_GB:
        h.update(proto.SerializeToString(deterministic=True))
    else:  # too large for one message: hash the structure, then each tensor's bytes
        stripped = onnx.ModelProto()
        stripped.CopyFrom(proto)
        for t in external_data_helper._get_all_tensors(stripped):  # noqa: SLF001
            t.ClearField("raw_data")
        h.update(stripped.SerializeToString(deterministic=True))
        for t in external_data_helper._get_all_tensors(proto):  # noqa: SLF001
            h.update(t.raw_data)
    return "sha256:" + h.hexdigest()


def _tensor_bytes(tensor: onnx.TensorProto) -> int:
    """Bytes a tensor's dims and element type call for (0 when the type has no fixed size)."""
    try:
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    except (KeyError, ValueError, TypeError):
        return 0
    n = 1
    for d in tensor.dims:
        n *= max(int(d), 0)
    return n * itemsize


def _check_external_paths(proto: onnx.ModelProto, base_dir: Path) -> int:
    """Reject external-data locations that leave ``base_dir``; return the external bytes' size."""
    base = base_dir.resolve()
    total = 0
    seen: set[Path] = set()
    for tensor in external_data_helper._get_all_tensors(proto):  # noqa: SLF001
        if not external_data_helper.uses_external_data(tensor):
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        rel = Path(location)
        if not location or rel.is_absolute() or ".." in rel.parts:
            raise ModelLoadError(
                f"tensor {tensor.name!r} points its external data at {location!r}, outside the "
                "model's folder",
                "external data must be a relative path inside the model's folder",
            )
        target = (base / rel).resolve()
        if base not in target.parents:
            raise ModelLoadError(
                f"tensor {tensor.name!r}: external data {location!r} resolves to {target}, "
                "outside the model's folder (a symbolic link?)",
                "copy the data file into the model's folder",
            )
        if not target.is_file():
            raise ModelLoadError(
                f"tensor {tensor.name!r}: external data file {location!r} is missing",
                f"put {location!r} next to the model",
            )
        try:
            offset = int(info.get("offset", 0) or 0)
            length = int(info.get("length", 0) or 0)
        except ValueError as e:
            raise ModelLoadError(f"tensor {tensor.name!r}: external data offset/length are not "
                                 "integers", "fix or re-export the model") from e
        if offset < 0 or length < 0:
            raise ModelLoadError(f"tensor {tensor.name!r}: negative external data offset/length",
                                 "fix or re-export the model")
        if not length:  # no length recorded: the tensor's dims and type say how much it reads
            length = _tensor_bytes(tensor)
        if offset + length > target.stat().st_size:
            raise ModelLoadError(
                f"tensor {tensor.name!r}: external data file {location!r} is shorter than the "
                f"{offset + length} bytes the model expects (truncated copy?)",
                "copy the complete data file again",
            )
        if target not in seen:
            seen.add(target)
            total += target.stat().st_size
    return total


def _parse(data: bytes, what: str) -> onnx.ModelProto:
    if not data:
        raise ModelLoadError(f"{what} is empty", "give an .onnx model file")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception as e:  # protobuf raises DecodeError or RuntimeWarning-like errors
        raise ModelLoadError(
            f"{what} is not an ONNX model (it does not parse as ONNX protobuf: {e})",
            "give an .onnx model file",
        ) from e
    if proto.ir_version <= 0 or not proto.HasField("graph") or not proto.opset_import:
        raise ModelLoadError(
            f"{what} is not an ONNX model (no IR version, graph or opset in it)",
            "give an .onnx model file",
        )
    return proto


def validate(proto: onnx.ModelProto, what: str, path: Path | None = None) -> None:
    """Run ONNX's checker and strict shape inference; raise ModelValidationError on failure."""
    try:
        if proto_size(proto) > TWO_GB and path is not None:
            onnx.checker.check_model(str(path))
        else:
            onnx.checker.check_model(proto)
    except Exception as e:  # onnx.checker.ValidationError, or errors from the C++ checker
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelValidationError(
            f"{what} is not a valid ONNX model: {first}",
            "fix or re-export the model (onnx.checker.check_model shows the details)",
        ) from e
    if not proto.graph.output:
        raise ModelValidationError(f"{what} has no graph outputs, so it computes nothing",
                                   "re-export the model with its outputs")
    known = onnx.defs.onnx_opset_version()
    for o in proto.opset_import:
        if o.domain in ("", "ai.onnx") and o.version > known:
            raise ModelValidationError(
                f"{what} needs ONNX opset {o.version}; this onnx {onnx.__version__} knows up to {known}",
                "upgrade onnx and onnxruntime, or re-export the model at a lower opset")
    custom = {o.domain for o in proto.opset_import} - {"", "ai.onnx", "ai.onnx.ml"}
    if custom or proto_size(proto) > TWO_GB:
        return  # strict inference cannot know custom ops; large models are checked above
    try:
        onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    except Exception as e:  # InferenceError
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelValidationError(
            f"{what} fails ONNX shape inference: {first}",
            "the graph's shapes or types are inconsistent; fix or re-export the model",
        ) from e


def load_model(source: ModelSource, *, check: bool = True, example_inputs: Any = None,
               dynamic_axes: dict[str, dict[int, str]] | None = None, **convert_options: Any) -> Model:
    """Load a model from a path, ``sample:NAME``, bytes, an ``onnx.ModelProto``, or convert a
    ``torch.nn.Module`` (with ``example_inputs``; see :func:`workbench.core.convert.convert_torch`
    for ``dynamic_axes`` and the other options).

    Example:
        >>> m = load_model("sample:resnet-fashion")
        >>> m.fingerprint[:7]
        'sha256:'

    Raises:
        ModelLoadError: the file is missing, unreadable, not ONNX, or its external data is unsafe.
        ModelValidationError: the graph fails ONNX's checker or shape inference.
        ConversionError: a torch module that cannot be converted.
    """
    torch = sys.modules.get("torch")  # a module can only exist if torch was imported
    if torch is not None and isinstance(source, torch.nn.Module):
        if example_inputs is None:
            raise UsageError(f"converting a {type(source).__name__} to ONNX needs example inputs",
                             "pass example_inputs=(torch.randn(1, 3, 224, 224),) or similar")
        from .convert import convert_torch  # noqa: PLC0415  (convert imports this module)

        return convert_torch(source, example_inputs, dynamic_axes=dynamic_axes, check=check,
                             **convert_options)
    if example_inputs is not None or dynamic_axes is not None or convert_options:
        raise UsageError("example_inputs, dynamic_axes and conversion options apply to a "
                         f"torch.nn.Module only, not a {type(source).__name__}")
    if isinstance(source, Model):
        return source
    if isinstance(source, onnx.ModelProto):
        proto = onnx.ModelProto()
        proto.CopyFrom(source)
        if check:
            validate(proto, "the model")
        return Model(proto, "<ModelProto>", None, fingerprint_of(proto), proto_size(proto))
    if isinstance(source, (bytes, bytearray, memoryview)):
        proto = _parse(bytes(source), "the given bytes")
        if any(external_data_helper.uses_external_data(t)
               for t in external_data_helper._get_all_tensors(proto)):  # noqa: SLF001
            raise ModelLoadError("a model given as bytes refers to external data files",
                                 "load it from its path so the data files can be found")
        if check:
            validate(proto, "the given bytes")
        return Model(proto, "<bytes>", None, fingerprint_of(proto), len(source))
    text = os.fspath(source)
    if isinstance(text, str) and text.startswith("sample:"):
        from .samples import sample_path  # noqa: PLC0415  (samples import this module)

        path = sample_path(text)
        model = load_model(path, check=check)
        return Model(model.proto, text, model.path, model.fingerprint, model.size_bytes)
    path = Path(text).expanduser()
    if not path.exists():
        raise ModelLoadError(f"no such file: {text}",
                             "give a path to an .onnx file or a sample name (see `workbench samples`)")
    if path.is_dir():
        raise ModelLoadError(f"{text} is a directory, not a model file", "give the .onnx file inside it")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ModelLoadError(f"cannot read {text}: {e.strerror}", "check the file's permissions") from e
    proto = _parse(data, text)
    external = _check_external_paths(proto, path.parent)
    if external:
        try:
            external_data_helper.load_external_data_for_model(proto, str(path.parent))
        except Exception as e:  # OSError, or ValueError from a short read
            raise ModelLoadError(f"cannot read the external data of {text}: {e}",
                                 "check the data files next to the model") from e
        # The data is in memory now: drop the explicit DEFAULT marker ONNX leaves behind, so a
        # model's fingerprint does not depend on how its file stored the weights.
        for t in external_data_helper._get_all_tensors(proto):  # noqa: SLF001
            if t.HasField("data_location") and t.data_location == onnx.TensorProto.DEFAULT:
                t.ClearField("data_location")
    if check:
        validate(proto, text, path)
    return Model(proto, text, path, fingerprint_of(proto), len(data) + external)
