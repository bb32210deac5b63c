"""Fold protocols as pure functions: clip metadata in, one test-fold number (1..k) per clip out.

Every clip lands in exactly one test fold. Generated folds depend only on the labels and a
seed (NumPy's PCG64 stream is identical on every platform), never on file order or machine.
"""
from __future__ import annotations

import hashlib
from typing import NamedTuple, Sequence

import numpy as np

from harness.core.errors import HarnessError


class FoldError(HarnessError, ValueError):
    """Metadata that cannot be split as the protocol says."""


def official_folds(folds: Sequence[int], k: int) -> np.ndarray:
    """Use the dataset's own fold column; every value must lie in 1..k."""
    folds = np.asarray(folds, dtype=np.int64)
    bad = np.flatnonzero((folds < 1) | (folds > k))
    if bad.size:
        raise FoldError(f"fold {folds[bad[0]]} (row {bad[0]}) is out of range 1..{k}")
    return folds


def by_index_folds(indices: Sequence[int], size: int, k: int) -> np.ndarray:
    """Fold = index // size + 1: with size 10, indices 0-9 are fold 1, 10-19 fold 2, ..."""
    return official_folds(np.asarray(indices, dtype=np.int64) // size + 1, k)


def stratified_folds(labels: Sequence[int], k: int, seed: int) -> np.ndarray:
    """Deal each class's clips, shuffled by ``(seed, class)``, round-robin over k folds.

    Each class's round-robin starts where the previous class stopped, so fold sizes differ
    by at most one overall and each class's count differs by at most one between folds.
    """
    labels = np.asarray(labels, dtype=np.int64)
    folds = np.zeros(len(labels), dtype=np.int64)
    start = 0
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        order = np.random.default_rng([seed, int(cls)]).permutation(members)
        folds[order] = (start + np.arange(len(order))) % k + 1
        start = (start + len(order)) % k
    return folds


def holdout_folds(labels: Sequence[int], test_fraction: float, seed: int) -> np.ndarray:
    """A stratified single split: fold 1 is the test part (about ``test_fraction``), the rest
    is spread over the other folds and only ever used for training."""
    return stratified_folds(labels, k=round(1 / test_fraction), seed=seed)


def validation_mask(labels: Sequence[int], fraction: float, seed: int) -> np.ndarray:
    """Carve a stratified validation part out of the *training* clips (boolean mask).

    Used for model selection and early stopping, so the test fold never takes part in them.
    """
    if fraction <= 0:
        return np.zeros(len(labels), dtype=bool)
    return stratified_folds(labels, k=max(2, round(1 / fraction)), seed=seed) == 1


class Split(NamedTuple):
    """One run's clips by role, as indices into the dataset: fit on ``train``, select on ``val``,
    score on ``test``. No clip has two roles."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def split_for(folds: np.ndarray, labels: np.ndarray, test_fold: int, val_fraction: float, seed: int) -> Split:
    """The split of one run: ``test_fold`` is the test part; a stratified ``val_fraction`` of the
    other folds is held out for validation (see ``validation_mask``)."""
    rest, test = np.flatnonzero(folds != test_fold), np.flatnonzero(folds == test_fold)
    is_val = validation_mask(labels[rest], val_fraction, seed)
    split = Split(rest[~is_val], rest[is_val], test)
    if len(np.intersect1d(split.train, split.val)) or len(np.intersect1d(np.concatenate(split[:2]), split.test)):
        raise FoldError(f"fold {test_fold}: a clip is in two parts of one split")  # guards the function above
    return split


def fold_fingerprint(clip_ids: Sequence[str], folds: Sequence[int], class_names: Sequence[str] = ()) -> str:
    """sha256 over the sorted ``clip_id<TAB>fold`` lines (and the class names, when the data
    defines them rather than the catalog): equal iff the split is equal."""
    lines = sorted(f"{cid}\t{int(f)}" for cid, f in zip(clip_ids, folds)) + [f"class\t{n}" for n in class_names]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()
