"""One verdict on a stored result: it stands (``Current``) or it is stale (``Stale(reason)``).

Planning (``bench run``, ``bench sweep``, ``make leaderboard``), the board, ``bench verify --result``
and ``bench doctor`` all ask ``verdict``, with the same ``Judged`` context, so a result the board
calls stale is one the planner runs again, and the other way round. A result is stale when its
submission or dataset is gone, its submission's code or config changed, its dataset's version
changed, or the dataset's split changed (another set of clips, classes or folds: a folder renamed,
files left out by ``bench fetch --skip-bad``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness.core.errors import HarnessError
from harness.core.registry import Registry
from harness.data.catalog import DatasetSpec
from harness.data.datasets import AnswerKey, answer_key
from harness.runs.described import Submissions
from harness.runs.provenance import config_hash, run_config, variant_of
from harness.runs.records import RunRecord


@dataclass(frozen=True)
class Current:
    """The result stands: it may be ranked, and its run is finished."""


@dataclass(frozen=True)
class Stale:
    """The result no longer stands, for ``reason``: it is not ranked, and its run is redone."""

    reason: str


@dataclass
class Splits:
    """Each dataset's labels and split as its data is now, read once per dataset on first ask.

    ``known``: answer keys the caller already has. A dataset whose data is not here has no key
    (None): its split cannot be checked, and a result on it is judged on everything else.
    """

    data_root: Path | None = None
    known: dict[str, AnswerKey | None] = field(default_factory=dict)

    def key(self, spec: DatasetSpec) -> AnswerKey | None:
        if spec.name not in self.known:
            self.known[spec.name] = answer_key(spec, self.data_root)
        return self.known[spec.name]

    def fingerprint(self, spec: DatasetSpec) -> str | None:
        key = self.key(spec)
        return key.fingerprint if key else None


@dataclass
class Judged:
    """What a stored result is judged against: the submissions and the dataset catalog as they are
    now, and each dataset's current split."""

    submissions: Submissions
    datasets: Registry[DatasetSpec]
    splits: Splits = field(default_factory=Splits)


def verdict(record: RunRecord, against: Judged) -> Current | Stale:
    """Whether ``record`` still stands against the code, the catalog and the data as they are now."""
    run, subs = record.run, against.submissions
    if run.submission not in subs:
        return Stale(f"submission {run.submission!r} no longer exists")
    if run.dataset not in against.datasets:
        return Stale(f"dataset {run.dataset!r} no longer declared")
    if problem := subs.problem(run.submission):
        return Stale(problem)
    spec = against.datasets.get(run.dataset)
    if record.dataset_version != spec.version:
        return Stale(f"dataset version {record.dataset_version} != current {spec.version}")
    if record.source_hash != subs.describe(run.submission).source_hash:
        return Stale("submission source changed since this run")
    if changed := _config_change(record, subs, spec):
        return Stale(changed)
    fingerprint = against.splits.fingerprint(spec)
    if fingerprint and record.fold_fingerprint != fingerprint:
        return Stale("fold split changed since this run (its clips, classes or folds differ from the data's now)")
    return Current()


def _config_change(record: RunRecord, subs: Submissions, spec: DatasetSpec) -> str | None:
    """Why the config a record ran with is not its run's config now (None when it is)."""
    run = record.run
    try:
        now = run_config(subs.describe(run.submission), subs.built(run.submission, variant_of(run)), spec, run)
    except HarnessError as err:
        return f"its overrides no longer apply ({err})"
    if record.config_hash == config_hash(now):
        return None
    changed = ", ".join(sorted(k for k in set(record.config) | set(now) if record.config.get(k) != now.get(k)))
    return "config changed since this run" + (f" ({changed})" if changed else "")
