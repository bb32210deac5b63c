"""Metrics stored with every run: accuracy, macro-F1, per-class F1, confusion matrix; and the
validation metrics of each epoch, computed where the model's outputs are (no host sync per metric)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> dict:
    """Metrics over all ``num_classes`` labels; a class absent from both sides scores F1 0."""
    # imported here: scikit-learn takes about a second to import, which would delay the first step
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    labels = list(range(num_classes))
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "per_class_f1": [float(v) for v in f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)],
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def validation_metrics(logits: torch.Tensor, y: torch.Tensor, num_classes: int) -> dict[str, float]:
    """Loss, accuracy and macro-F1 of ``logits`` (items, classes) for labels ``y`` (items,), on
    their device, fetched to the host once. Macro-F1 as ``classification_metrics`` computes it:
    over all ``num_classes`` labels, 0 for a class absent from both labels and predictions."""
    pred = logits.argmax(1)
    counts = torch.bincount(y * num_classes + pred, minlength=num_classes * num_classes).view(num_classes, num_classes)
    true_pos = counts.diagonal().float()
    support = (counts.sum(0) + counts.sum(1)).float()  # predicted + actual: 2 tp + fp + fn
    f1 = torch.where(support > 0, 2 * true_pos / support.clamp(min=1), torch.zeros_like(true_pos)).mean()
    loss, accuracy, macro_f1 = torch.stack([F.cross_entropy(logits.float(), y), (pred == y).float().mean(), f1]).tolist()
    return {"val_loss": loss, "val_accuracy": accuracy, "val_macro_f1": macro_f1}
