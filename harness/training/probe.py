"""Evaluation protocols, and the heads the frozen ones train on embeddings.

- ``finetune``: the submission's model trained end to end by its recipe (every run before protocols).
- ``linear``: the encoder frozen; every clip embedded once (cached per dataset, encoder, weights and
  layer). A head is trained on the training folds' embeddings, standardised by their statistics, as
  HEAR's ``hear-eval-kit`` does: a linear layer or one hidden layer of 1024 units (ReLU, dropout 0.1),
  Adam, batches of 1024, at most the run's epochs with early stopping after ``PATIENCE`` epochs
  without a better validation accuracy. Which head and learning rate (``PROBE_GRID``) is chosen on
  the validation split carved from the training folds, never on the test fold.
- ``knn``: parameter-free, as X-ARES's track B: each test clip takes the majority class of its ``K``
  nearest training clips by cosine similarity of their embeddings (ties: the larger summed similarity).

A ``weighted`` encoder layer gives (clips, layers, width) embeddings: the linear probe learns a
softmax weight per layer before its head; kNN averages the layers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from harness.core.seeds import seed_everything


K = 10  # neighbours of the knn protocol
PATIENCE = 10  # epochs without a better validation accuracy before a probe stops
PROBE_BATCH = 1024
PROBE_GRID = ({"hidden": 0, "lr": 1e-3}, {"hidden": 0, "lr": 1e-2}, {"hidden": 1024, "lr": 1e-3},
              {"hidden": 1024, "lr": 1e-4})


def embedding_of(model: nn.Module):
    """The function giving a model's frozen embedding of a batch: its ``embed``, or a timm model's
    pooled features before the classifier; None for a model with neither."""
    if callable(getattr(model, "embed", None)):
        return model.embed
    if callable(getattr(model, "forward_head", None)) and callable(getattr(model, "forward_features", None)):
        return lambda x: model.forward_head(model.forward_features(x), pre_logits=True)
    return None


class Probe(nn.Module):
    """Standardised embeddings -> (a softmax weighting of layers) -> linear or one hidden layer."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, num_classes: int, hidden: int):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.layer_weights = nn.Parameter(torch.zeros(mean.shape[0])) if mean.dim() == 2 else None
        width = mean.shape[-1]
        self.head = nn.Linear(width, num_classes) if not hidden else nn.Sequential(
            nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(0.1), nn.Linear(hidden, num_classes))

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        e = (e - self.mean) / self.std
        if self.layer_weights is not None:
            e = (torch.softmax(self.layer_weights, 0)[:, None] * e).sum(1)
        return self.head(e)


@dataclass(frozen=True)
class ProbeResult:
    """The chosen probe, its settings, and the per-epoch rows of its training."""

    probe: Probe
    chosen: dict[str, Any]
    curves: list[dict[str, Any]]


def _accuracy(probe: Probe, e: torch.Tensor, y: torch.Tensor) -> float:
    probe.eval()
    with torch.no_grad():
        return float((probe(e).argmax(1) == y).float().mean())


def _train_one(e, y, e_val, y_val, num_classes: int, settings: dict, epochs: int, seed: int):
    """One probe of the grid trained with early stopping; (its best validation accuracy, the probe at
    it, its rows)."""
    generator = seed_everything(seed)
    mean, std = e.mean(0), e.std(0).clamp_min(1e-6)
    probe = Probe(mean, std, num_classes, settings["hidden"]).to(e.device)
    optimizer = torch.optim.Adam(probe.parameters(), lr=settings["lr"])
    best, best_state, since, rows = -1.0, None, 0, []
    for epoch in range(1, epochs + 1):
        probe.train()
        order, losses = torch.randperm(len(e), generator=generator).to(e.device), []
        for i in range(0, len(e), PROBE_BATCH):
            batch = order[i:i + PROBE_BATCH]
            loss = nn.functional.cross_entropy(probe(e[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        accuracy = _accuracy(probe, e_val, y_val)
        rows.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "val_acc": accuracy,
                     "lr": settings["lr"], "hidden": settings["hidden"]})
        if accuracy > best:
            best, since = accuracy, 0
            best_state = {k: v.detach().clone() for k, v in probe.state_dict().items()}
        elif (since := since + 1) >= PATIENCE:
            break
    probe.load_state_dict(best_state)
    return best, probe, rows


def fit_probe(e: torch.Tensor, y: torch.Tensor, e_val: torch.Tensor, y_val: torch.Tensor, num_classes: int,
              epochs: int, seed: int) -> ProbeResult:
    """Every probe of ``PROBE_GRID`` on the training embeddings; the best on validation (the first
    of equals, in the grid's order)."""
    best = None
    for settings in PROBE_GRID:
        accuracy, probe, rows = _train_one(e, y, e_val, y_val, num_classes, settings, epochs, seed)
        if best is None or accuracy > best[0]:
            best = (accuracy, probe, settings, rows)
    accuracy, probe, settings, rows = best
    return ProbeResult(probe, {**settings, "val_acc": accuracy, "epochs": len(rows)}, rows)


def probe_predict(probe: Probe, e: torch.Tensor) -> np.ndarray:
    probe.eval()
    with torch.no_grad():
        return probe(e).argmax(1).cpu().numpy()


def knn_predict(e_train: torch.Tensor, y_train: torch.Tensor, e_test: torch.Tensor, num_classes: int,
                k: int = K) -> np.ndarray:
    """The majority class among each test clip's ``k`` nearest training clips by cosine similarity;
    a tie goes to the class whose neighbours are the more similar in sum."""
    flat = lambda e: nn.functional.normalize(e.mean(1) if e.dim() == 3 else e, dim=1)
    similarity = flat(e_test) @ flat(e_train).T
    top, index = similarity.topk(min(k, len(e_train)), dim=1)
    votes = torch.zeros(len(e_test), num_classes, dtype=torch.float64, device=e_test.device)
    votes.scatter_add_(1, y_train[index], torch.ones_like(top, dtype=torch.float64))
    summed = torch.zeros_like(votes).scatter_add_(1, y_train[index], top.double())
    return (votes + summed / (k + 1) / 2).argmax(1).cpu().numpy()
