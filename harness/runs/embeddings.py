"""A frozen protocol's embeddings (``linear``, ``knn``): every clip of a dataset through one encoder,
computed once by a sandboxed worker and cached by the driver for every fold and trial after it.

The worker gets every clip's features, no label, in an order drawn from a secret seed (clip order
often follows the class: FSDD's names begin with the digit), and answers one embedding per clip.
The cache file's name holds what could change them: the decoded audio's key, the front-end and
the submission's settings (the encoder and its layer), the submission file's hash and the harness's
encoder code, the weights' identity, the precision, torch's version and the device kind; and, for
weights drawn at random (``scratch``, ``random``), the seed the encoder is built with, which is
the trial's and not the fold's, so that all the folds of a trial share one encoder.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.core.errors import SubmissionError
from harness.core.seeds import seed_for
from harness.data.cache import cache_budget, cached_array, make_room
from harness.data.datasets import Dataset
from harness.data.folds import Split
from harness.training import encoders, probe
from harness.training.features import device_kind
from harness.runs.run import Run


def encoder_seed(run: Run) -> int:
    """The seed an encoder is built with: fold 0 of the run's trial (one encoder for all its folds)."""
    return seed_for(0, run.trial)


def embedding_path(data: Dataset, run: Run, key: dict[str, Any], device: torch.device) -> Path | None:
    """Where ``data``'s embeddings by this run's encoder are cached (``key``: the submission's settings,
    front-end and code), or None when they are not (data made in memory, the cache off)."""
    if data.cache is None or cache_budget() == 0:
        return None
    random_weights = run.weights in ("scratch", "random")
    what = {**key, "weights": run.weights, "precision": run.precision, "torch": torch.__version__,
            "device": device_kind(device), "seed": encoder_seed(run) if random_weights else None,
            "encoders": hashlib.sha256(Path(encoders.__file__).read_bytes()).hexdigest()}
    digest = hashlib.sha256(json.dumps(what, sort_keys=True, default=repr).encode()).hexdigest()[:16]
    return data.cache.parent / "embeddings" / f"{data.cache.stem}--{run.submission}-{digest}.npy"


def cached_embeddings(path: Path | None) -> np.ndarray | None:
    if path is None:
        return None
    try:
        return np.load(path, mmap_mode="r")
    except (OSError, ValueError):  # missing, or damaged: computed again
        return None


def store_embeddings(path: Path | None, embeddings: np.ndarray) -> None:
    """Keep ``embeddings`` for the next run, where the cache has room (the least recently used go first)."""
    if path is not None and make_room(path.parent, embeddings.nbytes, cache_budget()):
        cached_array(path, embeddings.shape, lambda out: out.__setitem__(..., embeddings))


def checked_embeddings(shape: Any, clips: int, max_bytes: int) -> tuple[int, ...]:
    """The shape a worker announced, if it is one embedding (or one per layer) per clip, within the limit."""
    if not (isinstance(shape, list) and len(shape) in (2, 3) and shape[0] == clips and
            all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in shape)):
        raise SubmissionError(f"the encoder's embeddings have shape {shape!r}: give one (width,) vector, or "
                              f"(layers, width), per clip ({clips} clips)")
    if 4 * int(np.prod(shape)) > max_bytes:
        raise SubmissionError(f"the encoder's embeddings {tuple(shape)} take more than the {max_bytes / 2**30:.1f} "
                              f"GiB a run may hold (a quarter of its --memory-limit)")
    return tuple(shape)


def frozen_predictions(protocol: str, e: torch.Tensor, y: np.ndarray, split: Split, num_classes: int,
                       epochs: int, seed: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The test fold's predicted classes from the embeddings ``e`` of every clip, and the probe's rows."""
    if not torch.isfinite(e).all():
        raise SubmissionError("the encoder's embeddings hold NaN or infinite values")
    labels = torch.as_tensor(y, dtype=torch.long, device=e.device)
    take = lambda idx: torch.as_tensor(idx, dtype=torch.long, device=e.device)
    if protocol == "knn":
        known = take(np.concatenate([split.train, split.val]))
        return probe.knn_predict(e[known], labels[known], e[take(split.test)], num_classes), []
    train, val = take(split.train), take(split.val)
    result = probe.fit_probe(e[train], labels[train], e[val], labels[val], num_classes, epochs, seed)
    return probe.probe_predict(result.probe, e[take(split.test)]), result.curves
