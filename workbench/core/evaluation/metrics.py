"""Accuracy on labeled data and fidelity of one model's outputs to another's.

All functions take plain arrays so that they are tested against hand-computed values.
Fidelity conventions: ``cosine`` is the mean over samples of the per-sample cosine similarity of
the flattened outputs; ``max_abs``/``mean_abs`` are over every element; ``sqnr_db`` is
``10 log10(sum(ref^2) / sum((ref - test)^2))`` over every element (inf when identical).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ...errors import DataError, UsageError

__all__ = ["AccuracyResult", "FidelityResult", "topk_correct", "FidelityAccumulator", "call_metric"]


def call_metric(metric: Any, name: str, outputs: dict[str, np.ndarray], labels: np.ndarray | None) -> float:
    """The user's ``metric(outputs, labels)`` as a float; its failures are the user's, named."""
    try:
        value = metric(outputs, labels)
    except Exception as e:  # noqa: BLE001  (the user's code: name it, keep the cause)
        raise UsageError(f"the metric {name!r} failed: {type(e).__name__}: {e}",
                         "it is called as metric(outputs: dict[str, np.ndarray], labels)") from e
    try:
        return float(value)
    except (TypeError, ValueError) as e:
        raise UsageError(f"the metric {name!r} returned {type(value).__name__}, not a number",
                         "return one float, higher is better") from e


@dataclass(frozen=True)
class AccuracyResult:
    top1: float
    top5: float
    samples: int
    correct_top1: int
    correct_top5: int

    def to_dict(self) -> dict:
        return asdict(self)


def topk_correct(logits: np.ndarray, labels: np.ndarray, k: int) -> int:
    """How many rows have their label among the k highest scores (ties broken by index)."""
    if logits.ndim != 2:
        raise DataError(f"top-k needs [batch, classes] outputs, the model gives {list(logits.shape)}",
                        "evaluate a classifier, or compare with --reference")
    if len(labels) and (labels.max() >= logits.shape[1]):
        raise DataError(f"label {int(labels.max())} is out of range for {logits.shape[1]} classes",
                        f"labels must be 0..{logits.shape[1] - 1}")
    k = min(k, logits.shape[1])
    top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return int((top == labels[:, None]).any(axis=1).sum())


@dataclass(frozen=True)
class FidelityResult:
    top1_agreement: float | None  # None when the outputs are not [batch, classes]
    cosine: float
    min_cosine: float
    max_abs: float
    mean_abs: float
    sqnr_db: float
    samples: int
    output: str

    def to_dict(self) -> dict:
        return asdict(self)


class FidelityAccumulator:
    """Accumulates fidelity statistics batch by batch (outputs need not fit in memory)."""

    def __init__(self, output: str) -> None:
        self.output = output
        self.samples = 0
        self.agree = 0
        self.classifier = True
        self.cos_sum = 0.0
        self.cos_min = 1.0
        self.max_abs = 0.0
        self.abs_sum = 0.0
        self.elements = 0
        self.signal = 0.0
        self.noise = 0.0

    def update(self, ref: np.ndarray, test: np.ndarray) -> None:
        if ref.shape != test.shape:
            raise DataError(f"output {self.output!r}: reference shape {list(ref.shape)} differs from "
                            f"{list(test.shape)}", "compare models with the same outputs")
        r = np.asarray(ref, np.float64)
        t = np.asarray(test, np.float64)
        rows = r.reshape(len(r), -1) if r.ndim > 1 else r.reshape(1, -1)
        trows = t.reshape(rows.shape)
        if r.ndim == 2 and r.shape[1] > 1:
            self.agree += int((r.argmax(1) == t.argmax(1)).sum())
        else:
            self.classifier = False
        dot = (rows * trows).sum(1)
        norms = np.linalg.norm(rows, axis=1) * np.linalg.norm(trows, axis=1)
        both_zero = norms == 0
        cos = np.where(both_zero, np.where((rows == trows).all(1), 1.0, 0.0),
                       dot / np.where(both_zero, 1.0, norms))
        self.cos_sum += float(cos.sum())
        self.cos_min = min(self.cos_min, float(cos.min()))
        diff = np.abs(r - t)
        self.max_abs = max(self.max_abs, float(diff.max()) if diff.size else 0.0)
        self.abs_sum += float(diff.sum())
        self.elements += diff.size
        self.signal += float((r * r).sum())
        self.noise += float(((r - t) ** 2).sum())
        self.samples += len(rows)

    def result(self) -> FidelityResult:
        if self.samples == 0:
            raise DataError("no samples were compared", "give at least one sample")
        if self.noise == 0:
            sqnr = float("inf")
        elif self.signal == 0:
            sqnr = float("-inf")
        else:
            sqnr = 10 * np.log10(self.signal / self.noise)
        return FidelityResult(
            top1_agreement=self.agree / self.samples if self.classifier else None,
            cosine=self.cos_sum / self.samples, min_cosine=self.cos_min, max_abs=self.max_abs,
            mean_abs=self.abs_sum / max(self.elements, 1), sqnr_db=float(sqnr),
            samples=self.samples, output=self.output,
        )
