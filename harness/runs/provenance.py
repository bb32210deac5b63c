"""Provenance: what a run's result depends on (its config and its hash), the code and machine it
ran on, and why a stored result may no longer stand. The runner, the leaderboard and the locks
all ask here.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import subprocess
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Callable

from harness.core.errors import HarnessError
from harness.core.registry import Registry
from harness.data.audio import RESAMPLER
from harness.core.paths import PROJECT_ROOT
from harness.data.catalog import DatasetSpec
from harness.runs.records import RunRecord
from harness.runs.run import Run, RunError
from harness.training.overrides import apply_overrides
from harness.training.submission import Submission, get_submission

PACKAGES = ("torch", "torchaudio", "torchvision", "timm", "numpy", "scikit-learn", "soundfile", "soxr")


def with_weights(sub: Submission, run: Run) -> Submission:
    """The submission as ``run`` trains it: from its pretrained weights, a checkpoint, or random ones,
    with the run's overrides applied (each rebuilt part checked as the submission checks its own)."""
    kind = run.weights.partition(":")[0]
    if kind == "sha256" and not run.checkpoint:
        raise RunError(f"{run.weights[:19]}…: name the checkpoint file of this run with `--weights FILE`")
    pretrained = {"scratch": sub.pretrained, "random": False, "pretrained": True, "sha256": run.checkpoint}[kind]
    return dataclasses.replace(apply_overrides(sub, run.overrides), pretrained=pretrained)


@dataclass(frozen=True)
class Origin:
    """The code a run is from, as the driver sees it: its submission file's hash and the git state.

    The driver computes it once per submission and sends it with each run; a worker, maybe on a
    machine without ``.git``, only checks that its own copy of the submission has this hash.
    """

    source_hash: str
    git: dict[str, Any]


def origin(sub: Submission) -> Origin:
    return Origin(sub.source_hash(), git_state(sub.source_file))


def check_origin(sub: Submission, expected: Origin) -> None:
    """Refuse to run a submission whose code is not the driver's (a node with another checkout)."""
    if (here := sub.source_hash()) != expected.source_hash:
        raise RunError(f"{sub.source_file}: this worker's copy differs from the driver's (source hash {here[:12]} "
                       f"vs {expected.source_hash[:12]}); every node must run the same code: put the project "
                       f"on a shared filesystem or check out the same commit")


def run_config(sub: Submission, spec: DatasetSpec, run: Run, trained: Submission | None = None) -> dict:
    """Everything that determines a run's outcome; its hash decides whether a stored run is reusable.

    ``trained``: the submission as ``run`` trains it, when the caller has built it already.
    """
    return {**trained_config(sub, spec, trained or with_weights(sub, run)), **run_fields(run)}


def trained_config(sub: Submission, spec: DatasetSpec, trained: Submission) -> dict:
    """The part of a run's config that its (weights, overrides) decide: shared by its folds and trials.

    A run that resamples the dataset's audio names the resampler: another one gives other
    input, so a result computed through it is another run's result.
    """
    resamples = spec.kind == "audio" and (trained.frontend.sample_rate or spec.sample_rate) != spec.sample_rate
    return {"submission": sub.name, "params": trained.params(), "dataset": spec.name,
            "dataset_version": spec.version, **({"resampler": RESAMPLER} if resamples else {})}


def run_fields(run: Run) -> dict:
    return {"epochs": run.epochs, "fold": run.fold, "trial": run.trial, "seed": run.seed, "weights": run.weights,
            "precision": run.precision, "compiled": run.compiled}


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def current_check(sub: Submission, spec: DatasetSpec) -> Callable[[RunRecord], bool]:
    """Whether a record is of its run's current config and of this submission code (an edited
    file makes it stale), for many records of one submission: the submission as each (weights,
    overrides) trains it is built once and its file hashed once, not once per record (a rebuilt
    front-end computes its filterbank: 10,000 of them took 19 s)."""
    source, built = sub.source_hash(), {}

    def check(record: RunRecord) -> bool:
        run = record.run
        key = (run.weights, run.overrides, run.checkpoint)
        if key not in built:
            try:
                built[key] = trained_config(sub, spec, with_weights(sub, run))
            except HarnessError:  # its overrides no longer apply to the submission: not this run any more
                built[key] = None
        return built[key] is not None and record.source_hash == source and \
            record.config_hash == config_hash({**built[key], **run_fields(run)})
    return check


def provenance_problem(record: RunRecord, submissions: Registry, specs: Registry[DatasetSpec],
                       current: dict[str, Any]) -> str | None:
    """Why a stored result may not be ranked any more, or None when it still stands.

    ``current`` caches what is built once per render: submissions by name, and fold
    fingerprints under ``("folds", dataset)``.
    """
    run = record.run
    if run.submission not in submissions:
        return f"submission {run.submission!r} no longer exists"
    if run.dataset not in specs:
        return f"dataset {run.dataset!r} no longer declared"
    if run.submission not in current:
        current[run.submission] = build_submission(run.submission)
    sub, spec = current[run.submission], specs.get(run.dataset)
    if isinstance(sub, str):
        return sub
    if record.dataset_version != spec.version:
        return f"dataset version {record.dataset_version} != current {spec.version}"
    if record.source_hash != sub.source_hash():
        return "submission source changed since this run"
    try:
        now = run_config(sub, spec, run)
    except HarnessError as err:
        return f"its overrides no longer apply ({err})"
    if record.config_hash != config_hash(now):
        changed = ", ".join(sorted(k for k in set(record.config) | set(now) if record.config.get(k) != now.get(k)))
        return "config changed since this run" + (f" ({changed})" if changed else "")
    fingerprint = current.get(("folds", run.dataset))
    if fingerprint and record.fold_fingerprint != fingerprint:
        return "fold split changed since this run"
    return None


def build_submission(name: str) -> Submission | str:
    """The current submission, or why it cannot be built (a broken file makes its results stale)."""
    try:
        return get_submission(name)
    except Exception as err:  # a broken submission makes its results stale, not the renderer crash
        return f"submission cannot be built ({err})"


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
