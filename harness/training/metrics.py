"""Metrics, as one registry: each ``MetricSpec`` says how it is computed from a run's labels and
predictions, how the board heads its column, whether higher is better and how runs aggregate.

Every reader lists the registry rather than naming metrics: a new run's record stores each
registered metric (``classification_metrics``), each epoch's validation row has ``val_<name>``
(``validation_metrics``), and the record check, the recomputation from stored predictions, the
board's columns, entry pages and curves, the sweep report and W&B follow. Adding a metric is one
``register_metric`` call here (the README's "A metric" shows one).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from harness.core.registry import Registry, defined_at

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class MetricSpec:
    """One metric of a run's test (or validation) predictions.

    ``compute(labels, predictions, num_classes)``: a float from 0 to 1, over integer class arrays;
    ``label``: the board's column heading (values are shown in %); ``aggregate``: how the values of
    an entry's runs combine into the figure shown before its ± std.
    """

    name: str
    label: str
    compute: Callable[[np.ndarray, np.ndarray, int], float]
    higher_is_better: bool = True
    aggregate: Callable[[np.ndarray], float] = np.mean


METRICS: Registry[MetricSpec] = Registry("metric", lambda spec: defined_at(spec.compute))


def register_metric(spec: MetricSpec) -> MetricSpec:
    """Register ``spec`` under its name; a second metric of that name is an error naming both."""
    return METRICS.add(spec.name, spec)


def registered() -> list[MetricSpec]:
    """Every registered metric, by name: the order of the board's columns."""
    return [METRICS.get(name) for name in METRICS]


def confusion(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts of (true class, predicted class): true classes down, predicted across."""
    flat = np.asarray(labels, dtype=np.int64) * num_classes + np.asarray(predictions, dtype=np.int64)
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _per_class_f1(matrix: np.ndarray) -> np.ndarray:
    """F1 of each class; 0 for a class absent from both labels and predictions."""
    hits, support = matrix.diagonal(), matrix.sum(0) + matrix.sum(1)  # predicted + actual: 2 tp + fp + fn
    return np.divide(2 * hits, support, out=np.zeros(len(matrix)), where=support > 0)


def accuracy(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> float:
    """The fraction of clips predicted right."""
    return float(np.trace(confusion(labels, predictions, num_classes)) / max(1, len(labels)))


def macro_f1(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> float:
    """F1 averaged over all ``num_classes`` classes, a class absent from both sides scoring 0."""
    return float(_per_class_f1(confusion(labels, predictions, num_classes)).mean())


def balanced_accuracy(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> float:
    """Recall averaged over the classes present in ``labels`` (scikit-learn's balanced_accuracy_score)."""
    matrix = confusion(labels, predictions, num_classes)
    present = matrix.sum(1) > 0
    return float((matrix.diagonal()[present] / matrix.sum(1)[present]).mean())


register_metric(MetricSpec("accuracy", "accuracy %", accuracy))
register_metric(MetricSpec("balanced_accuracy", "balanced accuracy %", balanced_accuracy))
register_metric(MetricSpec("macro_f1", "macro-F1 %", macro_f1))


def scores(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> dict[str, float]:
    """Every registered metric of ``predictions`` against ``labels``."""
    return {spec.name: spec.compute(labels, predictions, num_classes) for spec in registered()}


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> dict:
    """What a run's record stores: every registered metric, per-class F1 and the confusion matrix,
    over all ``num_classes`` labels."""
    matrix = confusion(y_true, y_pred, num_classes)
    return {**scores(y_true, y_pred, num_classes), "per_class_f1": _per_class_f1(matrix).tolist(),
            "confusion": matrix.tolist()}


def validation_metrics(logits: "torch.Tensor", y: "torch.Tensor", num_classes: int) -> dict[str, float]:
    """The loss of ``logits`` (items, classes) for labels ``y`` (items,) and every registered metric
    as ``val_<name>``. The loss and the predictions are computed on their device; predictions and
    labels come to the host in one copy (no sync per metric), the registered metrics are computed there."""
    import torch
    import torch.nn.functional as F

    loss = F.cross_entropy(logits.float(), y)
    pred, labels = torch.stack([logits.argmax(1), y.to(torch.int64)]).cpu().numpy()
    return {"val_loss": loss.item(), **{f"val_{name}": v for name, v in scores(labels, pred, num_classes).items()}}
