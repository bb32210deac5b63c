"""Provenance: what a run's result depends on (its config and its hash), the code and machine it
ran on, and whether a result's metrics follow from its predictions. Whether a stored result
still stands is ``harness.runs.verdict``'s one rule.
"""
from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

from harness.data.audio import RESAMPLER
from harness.core.paths import PROJECT_ROOT
from harness.data.catalog import DatasetSpec
from harness.runs.records import RunRecord
from harness.runs.run import Run

if TYPE_CHECKING:
    import torch

    from harness.data.datasets import AnswerKey
    from harness.runs.described import Built, Described, Variant

PACKAGES = ("torch", "torchaudio", "torchvision", "timm", "numpy", "scikit-learn", "soundfile", "soxr")


@dataclass(frozen=True)
class Origin:
    """The code a run is from, as the driver sees it: its submission file's hash and the git state.

    The driver computes it once per submission and sends it with each run; a runner, maybe on a
    machine without ``.git``, only checks that its own copy of the submission has this hash.
    """

    source_hash: str
    git: dict[str, Any]


def origin_of(described: "Described") -> Origin:
    return Origin(described.source_hash, git_state(described.source_file))


def run_config(described: "Described", built: "Built", spec: DatasetSpec, run: Run) -> dict:
    """Everything that determines a run's outcome; its hash decides whether a stored run is reusable.

    ``built``: the submission as ``run`` trains it (its overrides and weights applied).
    """
    return {**trained_config(described.name, spec, built), **run_fields(run)}


def trained_config(name: str, spec: DatasetSpec, built: "Built") -> dict:
    """The part of a run's config that its (weights, overrides) decide: shared by its folds and trials.

    A run that resamples the dataset's audio names the resampler: another one gives other
    input, so a result computed through it is another run's result.
    """
    resamples = spec.kind == "audio" and (built.sample_rate or spec.sample_rate) != spec.sample_rate
    return {"submission": name, "params": built.params, "dataset": spec.name,
            "dataset_version": spec.version, **({"resampler": RESAMPLER} if resamples else {})}


def run_fields(run: Run) -> dict:
    return {"epochs": run.epochs, "fold": run.fold, "trial": run.trial, "seed": run.seed, "weights": run.weights,
            "precision": run.precision, "compiled": run.compiled,
            **({"protocol": run.protocol} if run.protocol != "finetune" else {})}  # as run.identity()


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def variant_of(run: Run) -> "Variant":
    from harness.runs.described import Variant

    return Variant(run.overrides, run.weights, run.checkpoint)


def metrics_problem(record: RunRecord, key: "AnswerKey | None", num_classes: int) -> str | None:
    """Why a record's metrics do not follow from its stored predictions and the dataset's labels
    (a forged or hand-edited score, whatever its seal says), or None. Each registered metric the
    record has is recomputed (one registered after the record was made is absent, not wrong), and
    its confusion matrix. Without the data here, or on another split (stale for that reason),
    there is nothing to recompute."""
    from harness.training.metrics import confusion, scores

    if key is None or record.fold_fingerprint != key.fingerprint:
        return None
    truth = key.labels[key.folds == record.run.fold]
    pred = record.predictions
    if not isinstance(pred, list) or len(pred) != len(truth) or not all(
            isinstance(p, int) and not isinstance(p, bool) and 0 <= p < num_classes for p in pred):
        return f"damaged: its {len(pred) if isinstance(pred, list) else 'unreadable'} predictions are not one class " \
               f"per clip of test fold {record.run.fold} ({len(truth)} clips)"
    for name, value in scores(truth, pred, num_classes).items():
        if name in record.metrics and abs(record.metrics[name] - value) > 1e-9:
            return f"damaged: its {name} {record.metrics[name]} does not follow from its predictions ({value:.4f} " \
                   f"against the dataset's labels)"
    if record.metrics.get("confusion") is not None and \
            record.metrics["confusion"] != confusion(truth, pred, num_classes).tolist():
        return "damaged: its confusion matrix does not follow from its predictions"
    return None


def git_state(source_file: str = "") -> dict[str, Any]:
    """The commit, and whether the code that ran differs from it: a changed tracked file, or a
    submission file git does not track (its code is in no commit)."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10)
    try:
        commit = git("rev-parse", "HEAD").stdout.strip() or None
        changed = bool(git("status", "--porcelain", "--untracked-files=no").stdout.strip())
        untracked = bool(source_file) and git("ls-files", "--error-unmatch", source_file).returncode != 0
        return {"commit": commit, "dirty": changed or untracked}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions


def hardware(device: "torch.device") -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"CPU x{torch.get_num_threads()} ({cpu})"
