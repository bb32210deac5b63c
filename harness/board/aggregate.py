"""Aggregation: ranked records grouped into leaderboard entries, as pure functions of the records.

A table is one (dataset, epoch budget); an entry is one submission and run variant (weights,
precision, compile) in it, never mixed: its mean and standard deviation are over its own runs.
"""
from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from harness.board.significance import mean_interval
from harness.data.datasets import AnswerKey
from harness.runs.records import RunRecord
from harness.training.metrics import METRICS


@dataclass(frozen=True)
class Entry:
    """One row of a table: the runs of one submission and variant, with their summaries."""

    label: str
    records: tuple[RunRecord, ...]
    key: AnswerKey | None = field(default=None, compare=False, repr=False)  # its dataset's labels, where here

    @property
    def first(self) -> RunRecord:
        return self.records[0]

    @property
    def submission(self) -> str:
        return self.first.run.submission

    @property
    def slug(self) -> str:
        """Its label as a file name ("name (variant)" -> name-variant): its page's and its figures'."""
        return re.sub(r"[^\w.]+", "-", self.label).strip("-")

    @property
    def class_names(self) -> list[str]:
        """Its classes' names, index by index, as its runs recorded them (or the board filled in for
        older ones); their indices where there are none for as many classes as its scores have."""
        count = len(self.first.metrics.get("per_class_f1") or self.first.metrics.get("confusion") or [])
        names = self.first.class_names or []
        return list(names) if len(names) == count else [str(i) for i in range(count)]

    def has(self, metric: str) -> bool:
        """Whether every run has the metric (one recorded before the metric was registered may not)."""
        return all(metric in r.metrics for r in self.records)

    def mean(self, metric: str = "accuracy") -> float:
        """The metric in % over the entry's runs, aggregated as its ``MetricSpec`` says."""
        return stats([r.metrics[metric] for r in self.records], metric)[0]

    def std(self, metric: str = "accuracy") -> float | None:
        """Sample standard deviation in % (ddof = 1) over folds x trials; None for a single run."""
        return stats([r.metrics[metric] for r in self.records], metric)[1]

    def per_class_f1(self) -> list[float]:
        """F1 in % of each class, mean over its runs (where every run has it: ``has("per_class_f1")``)."""
        return (100 * np.mean([r.metrics["per_class_f1"] for r in self.records], axis=0)).tolist()

    @property
    def folds(self) -> list[int]:
        return sorted({r.run.fold for r in self.records})

    @property
    def trials(self) -> list[int]:
        return sorted({r.run.trial for r in self.records})

    def fold_mean(self, fold: int) -> float | None:
        """Accuracy in % on one test fold, averaged over trials."""
        values = [r.accuracy * 100 for r in self.records if r.run.fold == fold]
        return float(np.mean(values)) if values else None

    def accuracies(self) -> dict[tuple[int, int], float]:
        """(fold, trial) -> test accuracy in %."""
        return {(r.run.fold, r.run.trial): 100 * r.accuracy for r in self.records}

    @property
    def test_train_ratio(self) -> float:
        """n_test / n_train of its runs (mean over them), the training side counting the validation
        split a recipe carves from the training folds: the clips a run could have trained on."""
        return float(np.mean([r.n_test / max(1, r.n_train + r.n_val) for r in self.records]))

    def interval(self, metric: str = "accuracy") -> tuple[float, float] | None:
        """The 95% interval in % on its mean from the t-test's corrected variance
        (``significance.mean_interval``), within 0-100; None for a single run, and for a metric
        whose ``MetricSpec`` does not aggregate runs by their mean."""
        if METRICS.get(metric).aggregate is not np.mean:
            return None
        found = mean_interval([100 * r.metrics[metric] for r in self.records], self.test_train_ratio)
        return (max(0.0, found[0]), min(100.0, found[1])) if found else None

    def outcomes(self) -> dict[tuple[int, int], tuple[str, np.ndarray]] | None:
        """(fold, trial) -> (the fold's fingerprint, whether each test clip was predicted right, in
        clip order); None where the dataset's labels are not here or a run's split is not theirs."""
        key = self.key
        if key is None or any(r.fold_fingerprint != key.fingerprint for r in self.records):
            return None
        found = {}
        for r in self.records:
            labels = key.labels[key.folds == r.run.fold]
            if len(labels) != len(r.predictions):
                return None
            found[(r.run.fold, r.run.trial)] = (r.fold_fingerprint, np.asarray(r.predictions) == labels)
        return found


def stats(values: list[float], metric: str = "accuracy") -> tuple[float, float | None]:
    """A metric's values over runs (fractions) in %: aggregated as its ``MetricSpec`` says (a mean),
    and their sample std (ddof = 1), None for a single run."""
    pct = 100 * np.asarray(values, dtype=float)
    return float(METRICS.get(metric).aggregate(pct)), (float(pct.std(ddof=1)) if len(pct) > 1 else None)


Table = tuple[str, int]  # (dataset, epoch budget)


def aggregate(records: list[RunRecord]) -> dict[Table, list[Entry]]:
    """Every table's entries, in the order of their first records (result paths sort by submission).
    An entry is named by its submission, with the variant where one submission has several in a table."""
    groups: dict[Table, dict[tuple[str, str], list[RunRecord]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        run = record.run
        groups[(run.dataset, run.epochs)][(run.submission, run.variant)].append(record)
    tables = {}
    for table, by_variant in groups.items():
        names = [name for name, _ in by_variant]
        entries = [Entry(name if names.count(name) == 1 else f"{name} ({variant})", tuple(recs))
                   for (name, variant), recs in by_variant.items()]
        tables[table] = entries
    return tables


def with_keys(tables: dict[Table, list[Entry]], keys: Mapping[str, AnswerKey | None]) -> dict[Table, list[Entry]]:
    """The tables with each entry given its dataset's answer key (``keys``: dataset -> key, None or
    absent where its labels are not here), so that its runs' clips can be scored right or wrong."""
    return {table: [replace(e, key=keys.get(table[0])) for e in entries] for table, entries in tables.items()}


def ranked(entries: list[Entry]) -> list[Entry]:
    """Best mean accuracy first; ties keep their order."""
    return sorted(entries, key=lambda e: -e.mean())
