"""Provenance: what a run's result depends on (its config and its hash), and why a stored
result may no longer stand. The runner, the leaderboard and the locks all ask here.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from harness.audio import RESAMPLER
from harness.catalog import DatasetSpec
from harness.registry import Registry
from harness.run import Run, RunError
from harness.submission import Submission, config_hash, get_submission


def with_weights(sub: Submission, run: Run) -> Submission:
    """The submission as ``run`` trains it: from its pretrained weights, a checkpoint, or random ones."""
    kind = run.weights.partition(":")[0]
    if kind == "sha256" and not run.checkpoint:
        raise RunError(f"{run.weights[:19]}…: name the checkpoint file of this run with `--weights FILE`")
    pretrained = {"scratch": sub.pretrained, "random": False, "pretrained": True, "sha256": run.checkpoint}[kind]
    return dataclasses.replace(sub, pretrained=pretrained)


def run_config(sub: Submission, spec: DatasetSpec, run: Run) -> dict:
    """Everything that determines a run's outcome; its hash decides whether a stored run is reusable.

    A run that resamples the dataset's audio names the resampler: another one gives other
    input, so a result computed through it is another run's result.
    """
    resamples = spec.kind == "audio" and (sub.frontend.sample_rate or spec.sample_rate) != spec.sample_rate
    return {"submission": sub.name, "params": with_weights(sub, run).params(), "dataset": spec.name,
            "dataset_version": spec.version, "epochs": run.epochs, "fold": run.fold, "trial": run.trial,
            "seed": run.seed, "weights": run.weights, "precision": run.precision, "compiled": run.compiled,
            **({"resampler": RESAMPLER} if resamples else {})}


def provenance_problem(record: dict[str, Any], submissions: Registry, specs: Registry[DatasetSpec],
                       current: dict[str, Any]) -> str | None:
    """Why a stored result may not be ranked any more, or None when it still stands."""
    for key in ("submission", "dataset", "config_hash", "source_hash", "fold_fingerprint", "metrics"):
        if key not in record:
            return f"no provenance ({key} missing)"
    if "run" not in record:
        return "stored before runs had identities (weights, precision, compile); run `bench migrate`"
    name, dataset = record["submission"], record["dataset"]
    if name not in submissions:
        return f"submission {name!r} no longer exists"
    if dataset not in specs:
        return f"dataset {dataset!r} no longer declared"
    if name not in current:  # each submission is built once per render
        current[name] = build_submission(name)
    sub = current[name]
    if isinstance(sub, str):
        return sub
    run = Run.from_identity(record["run"], checkpoint="(recorded)")  # a checkpoint's digest is its identity
    spec = specs.get(dataset)
    if record.get("dataset_version") != spec.version:
        return f"dataset version {record.get('dataset_version')} != current {spec.version}"
    if record["source_hash"] != sub.source_hash():
        return "submission source changed since this run"
    now = run_config(sub, spec, run)
    if record["config_hash"] != config_hash(now):
        old = record.get("config", {})
        changed = ", ".join(sorted(k for k in set(old) | set(now) if old.get(k) != now.get(k)))
        return "config changed since this run" + (f" ({changed})" if changed else "")
    fingerprint = current.get(("folds", dataset))
    if fingerprint and record["fold_fingerprint"] != fingerprint:
        return "fold split changed since this run"
    return None


def build_submission(name: str) -> Submission | str:
    """The current submission, or why it cannot be built (a broken file makes its results stale)."""
    try:
        return get_submission(name)
    except Exception as err:  # a broken submission makes its results stale, not the renderer crash
        return f"submission cannot be built ({err})"
