"""The recipes a search explores, as Optuna parameters, and the recipe each parameter set means.

Every parameter is categorical or a small integer range, so a parameter set maps to exactly one
recipe and one cache key. Conditional parameters (calibration only with int8, the multiple only
with pruning) keep the space small.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..passes.recipe import PassSpec, Recipe

__all__ = ["SearchSpace", "GPU_DEVICES", "cpu_engines"]

GPU_DEVICES = ("cuda", "gpu", "ort-cuda", "tensorrt", "trt", "ort-tensorrt")


@dataclass(frozen=True)
class SearchSpace:
    """What the search may choose.

    Attributes:
        precisions: ``fp32``, ``int8`` and, on GPUs, ``fp16``.
        calibrations: int8 calibration methods.
        prune_ratios: channel-pruning ratios (0: no pruning).
        prune_multiples: channel counts kept are rounded to a multiple of one of these.
        exclusions: the sensitivity ranking; int8 trials keep its first ``k`` layers in float,
            ``k`` from 0 to ``len(exclusions)``.
        fuse: whether float trials may try the ``fuse`` pass (int8 folds BatchNorm itself).
        engines: the runtimes a trial may run on (device strings, e.g. ``cpu`` and ``openvino``);
            empty: the search's own device. The baseline stays on the search's device.
    """

    precisions: tuple[str, ...] = ("fp32", "int8")
    calibrations: tuple[str, ...] = ("minmax", "entropy", "percentile")
    prune_ratios: tuple[float, ...] = (0.0, 0.25, 0.375, 0.5, 0.625)
    prune_multiples: tuple[int, ...] = (8, 16)
    exclusions: tuple[str, ...] = field(default_factory=tuple)
    fuse: bool = True
    engines: tuple[str, ...] = ()

    @classmethod
    def for_device(cls, device: str, exclusions: Sequence[str] = ()) -> SearchSpace:
        """The default space: on the CPU, every CPU runtime available here is a dimension."""
        gpu = device.split(":")[0].lower() in GPU_DEVICES
        return cls(precisions=("fp32", "fp16", "int8") if gpu else ("fp32", "int8"),
                   exclusions=tuple(exclusions), engines=() if gpu else cpu_engines(device))

    def device_for(self, params: dict[str, Any], default: str) -> str:
        """The device a parameter set runs on (its ``engine``, else the search's device)."""
        return str(params.get("engine") or default)

    def anchors(self, n: int) -> list[dict[str, Any]]:
        """Known-good starting points asked first (Optuna ``enqueue_trial``): int8 without
        exclusions on its own and after each pruning ratio, middle ratios first. With few
        trials and noisy latencies, TPE alone can miss the shape a hand-made recipe finds."""
        if "int8" not in self.precisions:
            return []
        cal = "entropy" if "entropy" in self.calibrations else self.calibrations[0]
        pruned = sorted((r for r in self.prune_ratios if r > 0), key=lambda r: abs(r - 0.5))
        order = pruned[:1] + [r for r in self.prune_ratios if r == 0][:1] + pruned[1:]
        out = []
        for r in order[:n]:
            p: dict[str, Any] = {"precision": "int8", "prune_ratio": r, "calibration": cal}
            if r > 0:
                p["prune_multiple"] = self.prune_multiples[0]
            if self.exclusions:
                p["exclude_top"] = 0
            out.append(p)
        return out

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Draw one parameter set from an Optuna trial (define-by-run)."""
        p: dict[str, Any] = {"precision": trial.suggest_categorical("precision", list(self.precisions))}
        if len(self.engines) > 1:
            p["engine"] = trial.suggest_categorical("engine", list(self.engines))
        p["prune_ratio"] = trial.suggest_categorical("prune_ratio", list(self.prune_ratios))
        if p["prune_ratio"] > 0:
            p["prune_multiple"] = trial.suggest_categorical("prune_multiple", list(self.prune_multiples))
        if p["precision"] == "int8":
            p["calibration"] = trial.suggest_categorical("calibration", list(self.calibrations))
            if self.exclusions:
                p["exclude_top"] = trial.suggest_int("exclude_top", 0, len(self.exclusions))
        elif self.fuse:
            p["fuse"] = trial.suggest_categorical("fuse", [False, True])
        return p

    def recipe(self, params: dict[str, Any]) -> Recipe:
        """The recipe a parameter set stands for (pruning first, then fusion or precision)."""
        specs: list[PassSpec] = []
        if params.get("prune_ratio", 0) > 0:
            specs.append(PassSpec("prune-channels", {"ratio": params["prune_ratio"],
                                                     "multiple": params["prune_multiple"]}))
        if params.get("fuse"):
            specs.append(PassSpec("fuse", {}))
        if params["precision"] == "int8":
            opts: dict[str, Any] = {"calibration": params["calibration"]}
            k = params.get("exclude_top", 0)
            if k:
                opts["exclude"] = list(self.exclusions[:k])
            specs.append(PassSpec("int8", opts))
        elif params["precision"] == "fp16":
            specs.append(PassSpec("fp16", {}))
        return Recipe(tuple(specs))

    def to_dict(self) -> dict[str, Any]:
        return {"precisions": list(self.precisions), "calibrations": list(self.calibrations),
                "prune_ratios": list(self.prune_ratios), "prune_multiples": list(self.prune_multiples),
                "exclusions": list(self.exclusions), "fuse": self.fuse, "engines": list(self.engines)}


def cpu_engines(device: str = "cpu") -> tuple[str, ...]:
    """``("cpu", "openvino")`` where OpenVINO's CPU plugin is available and ``device`` is the CPU
    (ONNX Runtime's), else ``()``: a search on one runtime only."""
    if device.split(":")[0].lower() not in ("cpu", "ort-cpu"):
        return ()
    from ..engines.registry import list_engines  # noqa: PLC0415

    ready = {e.name for e in list_engines() if e.available}
    return (device, "openvino") if "openvino" in ready else ()
