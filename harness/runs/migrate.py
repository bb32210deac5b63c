"""``bench migrate``: results stored before runs had identities, moved to their runs' paths.

Before, a result lived at ``<dataset>/<submission>/e<epochs>/fold<f>-trial<t>.json`` whatever
its weights, precision or compilation, so runs that differ in those overwrote each other. Each
such result records what it ran with; ``migrate`` reads its run identity back from it, adds the
identity to its config (and so to its config hash), seals it again and moves it to
``Run.path``. Nothing is dropped: a result whose identity cannot be told is left where it is,
with the reason, and one whose new path is taken is never written over.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from harness.runs import records
from harness.runs.provenance import config_hash
from harness.runs.run import Run, RunError
from harness.runs.store import read_result, write_json_atomic


def legacy_files(root: Path) -> list[Path]:
    return sorted(root.glob("*/*/e*/fold*-trial*.json"))


def identity_of(record: dict[str, Any], is_pretrained: Callable[[str], bool | None]) -> Run | str:
    """The run a legacy result comes from, or why that cannot be told.

    ``is_pretrained(name)``: whether the submission trains from pretrained weights today (None:
    it no longer exists); it tells a ``--random-init`` run from a model trained from scratch.
    """
    if not records.is_sealed(record):
        return "checksum mismatch: damaged or edited, left as it is"
    if record.get("status") != "ok" or "config" not in record:
        return "a failed or incomplete run: nothing to keep, its grid redoes it"
    pretrained = record["config"]["params"].get("pretrained")
    if pretrained == "checkpoint":
        return "ran from a checkpoint whose digest was not recorded; re-run it with `bench run --weights FILE`"
    default = is_pretrained(record["submission"])
    if default is None:
        return f"submission {record['submission']!r} no longer exists"
    weights = f"pretrained:{record['model']}" if pretrained else ("random" if default else "scratch")
    try:
        return Run(record["submission"], record["dataset"], int(record["epochs"]), int(record["fold"]),
                   int(record["trial"]), weights, records.precision_of(record), bool(record.get("compiled", False)))
    except (RunError, KeyError, ValueError) as err:
        return f"cannot read its run back ({err})"


def migrated(record: dict[str, Any], run: Run, origin: str) -> dict[str, Any]:
    """The record with its run identity in it and in its config, sealed again."""
    config = {**record["config"], "weights": run.weights, "precision": run.precision, "compiled": run.compiled}
    body = {k: v for k, v in record.items() if k != "checksum"}
    return records.seal({**body, "schema": records.SCHEMA, "run": run.identity(), "config": config,
                   "config_hash": config_hash(config), "migrated_from": origin})


def migrate(root: Path, is_pretrained: Callable[[str], bool | None], dry_run: bool = False) -> list[tuple[Path, str]]:
    """Move every legacy result under ``root`` to its run's path; returns (file, what happened) pairs."""
    outcome = []
    for path in legacy_files(root):
        record = read_result(path)
        run = identity_of(record, is_pretrained) if record else "unreadable JSON, left as it is"
        if isinstance(run, str):
            outcome.append((path, f"left: {run}"))
            continue
        target = run.path(root)
        if target.exists():
            outcome.append((path, f"left: {target.relative_to(root)} exists already, nothing is written over"))
            continue
        if not dry_run:
            write_json_atomic(target, migrated(record, run, path.relative_to(root).as_posix()))
            path.unlink()
        outcome.append((path, f"{'would move' if dry_run else 'moved'} to {target.relative_to(root)}"))
    return outcome
