"""The pass contract (after onnx-ir's pass infrastructure).

A pass is a small object: options validated at construction, a public ``__call__`` that checks the
model before and after and fills in the bookkeeping, and a ``call`` that does the work and says
exactly what it did, what it declined to touch, and why.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import onnx

from ...errors import DataError, UsageError
from ..model import proto_size
from .safety import scrub_new_attributes, validation_error

__all__ = ["Option", "PassContext", "PassReport", "PassResult", "Pass"]

_log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True)
class Option:
    """One option of a pass: its type, default and the values it accepts."""

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None

    def coerce(self, value: Any, pass_name: str) -> Any:
        """Turn a CLI string (or JSON value) into the option's type, or raise UsageError."""
        if value is None:
            return None
        try:
            if self.type is bool and isinstance(value, str):
                low = value.lower()
                if low not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                    raise ValueError(value)
                value = low in ("true", "1", "yes", "on")
            elif self.type is list:
                if isinstance(value, str):
                    value = [v for v in value.split("+") if v]
                value = [str(v) for v in value]
            elif self.type in (int, float) and isinstance(value, bool):
                raise ValueError(value)
            else:
                value = self.type(value)
        except (TypeError, ValueError) as e:
            raise UsageError(f"{pass_name}: option {self.name}={value!r} is not a {self.type.__name__}",
                             self.help) from e
        if self.choices is not None and value not in self.choices:
            raise UsageError(f"{pass_name}: option {self.name}={value!r} is not one of "
                             f"{', '.join(map(str, self.choices))}", self.help)
        return value

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type.__name__, "default": self.default,
                "help": self.help, "choices": list(self.choices) if self.choices else None}


@dataclass
class PassContext:
    """What a pass may need beyond the model: the target device, calibration data, progress."""

    device: str = "cpu"
    calibration: Any = None  # workbench.core.evaluation.data.Dataset
    progress: Progress | None = None
    seed: int = 0

    def report_progress(self, stage: str, done: int, total: int) -> None:
        if self.progress:
            self.progress(stage, done, total)


@dataclass
class PassReport:
    """What one pass did. Every list says which nodes; ``declined`` says why not."""

    name: str
    options: dict[str, Any]
    nodes_before: int = 0
    nodes_after: int = 0
    modified: bool = False
    fused: dict[str, int] = field(default_factory=dict)  # pattern -> count
    quantized: list[str] = field(default_factory=list)
    converted: list[str] = field(default_factory=list)  # e.g. nodes now in float16
    excluded: list[dict[str, str]] = field(default_factory=list)  # {"node", "reason"}
    pruned: dict[str, dict[str, Any]] = field(default_factory=dict)  # layer -> details
    declined: list[dict[str, str]] = field(default_factory=list)  # {"what", "reason"}
    metrics: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    def decline(self, what: str, reason: str) -> None:
        self.declined.append({"what": what, "reason": reason})

    def exclude(self, node: str, reason: str) -> None:
        self.excluded.append({"node": node, "reason": reason})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_opset(model: onnx.ModelProto) -> int:
    """The model's opset of the default ONNX domain (0 if it imports none)."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def control_flow(model: onnx.ModelProto) -> list[str]:
    """Nodes with subgraphs (If, Loop, Scan, ...): the passes that rewrite the graph decline them."""
    return [f"{n.op_type} {n.name or '(unnamed)'}" for n in model.graph.node
            if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in n.attribute)]


def decline_control_flow(model: onnx.ModelProto, report: PassReport) -> bool:
    """Record why a pass leaves a model with control flow unchanged; True if it must."""
    nodes = control_flow(model)
    if nodes and not any(d["what"] == "the whole model" for d in report.declined):
        report.decline("the whole model", f"it has control flow with subgraphs ({', '.join(nodes[:3])}"
                       f"{', ...' if len(nodes) > 3 else ''}), which this pass does not rewrite yet; "
                       "the model is returned unchanged")
    return bool(nodes)


@dataclass
class PassResult:
    model: onnx.ModelProto
    report: PassReport


class Pass(ABC):
    """Base class: subclasses set ``name``, ``summary``, ``options`` and implement ``call``."""

    name: ClassVar[str]
    summary: ClassVar[str]
    options: ClassVar[tuple[Option, ...]] = ()
    needs_calibration: ClassVar[bool] = False
    uses_calibration: ClassVar[bool] = False  # optional: better with it (prune-channels, fp16)

    def __init__(self, **opts: Any) -> None:
        known = {o.name: o for o in self.options}
        unknown = set(opts) - set(known)
        if unknown:
            raise UsageError(f"{self.name}: unknown option {sorted(unknown)[0]!r}",
                             f"options are: {', '.join(known) or 'none'} (see `workbench passes`)")
        self.opts: dict[str, Any] = {
            name: o.coerce(opts[name], self.name) if name in opts else o.default
            for name, o in known.items()
        }
        self.validate()

    def validate(self) -> None:  # noqa: B027  (optional hook, not abstract)
        """Cross-option checks; raise UsageError."""

    def preview(self) -> dict[str, Any] | None:
        """Option changes that give a graph of the same structure (ops and shapes) much faster,
        for a first look at latency and size while the real build runs; None: no faster way."""
        return None

    def new_report(self, resolved: dict[str, Any] | None = None) -> PassReport:
        return PassReport(self.name, dict(resolved or self.opts))

    def __call__(self, model: onnx.ModelProto, ctx: PassContext | None = None) -> PassResult:
        ctx = ctx or PassContext()
        if self.needs_calibration and ctx.calibration is None:
            raise UsageError(f"{self.name} needs calibration data",
                             "give --calib DATA (a .npz, an image folder or sample:NAME:calib)")
        before = len(model.graph.node)
        work = onnx.ModelProto()
        work.CopyFrom(model)  # a pass never modifies its input
        t0 = time.perf_counter()
        try:
            result = self.call(work, ctx)
        except (UsageError, DataError):  # the user's options or data: theirs to fix
            raise
        except Exception as e:  # noqa: BLE001  (a library failed on this model: decline, keep the cause)
            _log.warning("%s failed on this model", self.name, exc_info=True)
            first = (str(e).strip().splitlines() or [""])[0][:300]
            return self._unchanged(model, before, t0, f"{self.name} failed on this model "
                                   f"({type(e).__name__}: {first}); returned unchanged")
        scrubbed = scrub_new_attributes(result.model) if result.report.modified else []
        if scrubbed:
            result.report.notes.append(f"dropped attributes newer than the model's opset (at their "
                                       f"default values): {', '.join(sorted(set(scrubbed)))}")
        result.report.wall_s = time.perf_counter() - t0
        result.report.nodes_before = before
        result.report.nodes_after = len(result.model.graph.node)
        if result.report.modified and proto_size(result.model) < 2**31 - 1:
            problem = validation_error(result.model)
            if problem is not None:
                _log.warning("%s produced an invalid model: %s", self.name, problem)
                return self._unchanged(model, before, t0, f"{self.name} would have produced an invalid "
                                       f"model ({problem}); returned unchanged")
        return result

    def _unchanged(self, model: onnx.ModelProto, before: int, t0: float, reason: str) -> PassResult:
        """The input model, unchanged, with a report that declines the whole model."""
        report = self.new_report()
        report.decline("the whole model", reason)
        report.nodes_before = report.nodes_after = before
        report.wall_s = time.perf_counter() - t0
        same = onnx.ModelProto()
        same.CopyFrom(model)
        return PassResult(same, report)

    @abstractmethod
    def call(self, model: onnx.ModelProto, ctx: PassContext) -> PassResult:
        """Transform ``model`` (a private copy) and report what was done."""

    @classmethod
    def describe(cls) -> dict[str, Any]:
        return {"name": cls.name, "summary": cls.summary, "needs_calibration": cls.needs_calibration,
                "uses_calibration": cls.uses_calibration or cls.needs_calibration,
                "options": [o.to_dict() for o in cls.options]}
