"""The seeds' way of training, kept as the reference the engine is measured against: a
``DataLoader`` decodes every item from its WAV file every epoch, the front-end runs per batch,
in fp32 with PyTorch's default memory layout (none of the four seeds uses mixed precision).

``harness.speed.benchmark`` times it; ``plain_loop_accuracy`` trains a submission with it on a real
fold (``bench speed-accuracy``), so the engine's accuracy can be checked against it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
import torch

from harness.core.errors import HarnessError
from harness.core.seeds import seed_everything, seed_for
from harness.data.audio import fit_length
from harness.data.catalog import DatasetSpec
from harness.data.datasets import data_root as resolve_root
from harness.data.datasets import list_clips, verified_folder
from harness.runs.models import build_model
from harness.runs.records import Record, RecordError, RunRecord
from harness.runs.store import load_record, result_files
from harness.training.device import switches
from harness.training.loop import augment_batch, make_optimizer, make_schedule, predict, soft_cross_entropy
from harness.training.submission import Recipe, Submission


class WavItems(torch.utils.data.Dataset):
    """The seeds' pattern: each item read and decoded from its file when asked for."""

    def __init__(self, paths: list[Path], labels: np.ndarray, num_samples: int):
        self.paths, self.labels, self.num_samples = paths, labels, num_samples

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        wave, _ = sf.read(str(self.paths[i]), dtype="float32")
        return torch.from_numpy(fit_length(wave, self.num_samples, "pad")), int(self.labels[i])


def plain_step(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                recipe: Recipe, num_classes: int, generator: torch.Generator) -> None:
    """One training step of the seeds' loop on a batch its loader and front-end just produced."""
    x, target = augment_batch(x, y, recipe, num_classes, generator)
    loss = soft_cross_entropy(model(x), target)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def plain_loop_accuracy(sub: Submission, spec: DatasetSpec, fold: int, epochs: int, data_root: Path | None = None) -> float:
    """Train ``sub`` on every fold but ``fold`` with the seeds' plain loop, return test accuracy.

    Same model, recipe, seed, optimiser and schedule as the engine; the difference is the data
    path: items decoded from their files every epoch, the front-end run per batch, global
    statistics from one pass over the training files.
    """
    device = torch.device("cpu")
    with switches(device):
        return _plain_loop(sub, spec, fold, epochs, resolve_root(data_root), seed_everything(seed_for(fold, 1)))


def _plain_loop(sub: Submission, spec: DatasetSpec, fold: int, epochs: int, root: Path, generator: torch.Generator) -> float:
    device = torch.device("cpu")
    folder = verified_folder(spec, root)
    table = list_clips(spec, folder)
    paths = [folder / f for f in table.files]
    num_samples = round(spec.sample_rate * spec.clip_seconds)
    loader = lambda idx, shuffle: torch.utils.data.DataLoader(
        WavItems([paths[i] for i in idx], table.labels[idx], num_samples), batch_size=sub.recipe.batch_size,
        shuffle=shuffle, drop_last=shuffle, generator=generator)
    train, test = np.flatnonzero(table.folds != fold), np.flatnonzero(table.folds == fold)
    with torch.no_grad():
        feats = torch.cat([sub.frontend(w) for w, _ in loader(train, False)])
        mean, std = feats.mean().item(), feats.std().item()
    model = build_model(sub, spec.num_classes, tuple(feats.shape[1:]))
    del feats
    opt = make_optimizer(model.parameters(), sub.recipe)
    schedule = make_schedule(opt, sub.recipe, epochs * (len(train) // sub.recipe.batch_size))
    for _ in range(epochs):
        model.train()
        for wave, y in loader(train, True):
            with torch.no_grad():
                x = (sub.frontend(wave) - mean) / (std + 1e-8)
            plain_step(model, opt, x, y, sub.recipe, spec.num_classes, generator)
            schedule.step()
    correct = 0
    for wave, y in loader(test, False):
        with torch.no_grad():
            correct += int((predict(model, (sub.frontend(wave) - mean) / (std + 1e-8), device).argmax(1) == y).sum())
    return correct / len(test)


def engine_vs_plain_loop(sub: Submission, spec: DatasetSpec, epochs: int, results_root: Path,
                         data_root: Path | None) -> Iterator[str]:
    """Lines comparing the engine's stored trial-1 runs with the plain loop on every evaluation fold."""
    stored = [r for r in map(_loaded, result_files(results_root / spec.name)) if isinstance(r, RunRecord)
              and (r.run.submission, r.run.epochs, r.run.trial) == (sub.name, epochs, 1)]
    variants = {v: {r.run.fold: r for r in stored if r.run.variant == v} for v in sorted({r.run.variant for r in stored})}
    complete = [v for v, by_fold in variants.items() if sorted(by_fold) == spec.eval_folds]
    if not complete:
        raise HarnessError(f"run the engine first: bench run -s {sub.name} -d {spec.name} --epochs {epochs}")
    engine = {fold: r.accuracy for fold, r in variants[complete[0]].items()}
    yield f"engine runs: {complete[0]} on {variants[complete[0]][spec.eval_folds[0]].device}; plain loop: cpu fp32 (the seeds' way)"
    plain = {}
    for fold in spec.eval_folds:
        plain[fold] = plain_loop_accuracy(sub, spec, fold, epochs, data_root)
        yield f"fold {fold}: plain loop {plain[fold]:.4f}, engine {engine[fold]:.4f}"
    p, e = np.array(list(plain.values())), np.array([engine[f] for f in plain])
    within = abs(e.mean() - p.mean()) <= p.std(ddof=1)
    yield (f"plain loop {100 * p.mean():.2f} ± {100 * p.std(ddof=1):.2f} %, engine {100 * e.mean():.2f} ± "
           f"{100 * e.std(ddof=1):.2f} % (std over folds): engine mean {'within' if within else 'OUTSIDE'} one std "
           f"of the plain loop's")


def _loaded(path: Path) -> Record | None:
    try:
        return load_record(path)
    except RecordError:
        return None
