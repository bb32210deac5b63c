"""Aggregation: ranked records grouped into leaderboard entries, as pure functions of the records.

A table is one (dataset, epoch budget); an entry is one submission and run variant (weights,
precision, compile) in it, never mixed: its mean and standard deviation are over its own runs.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from harness.runs.records import RunRecord
from harness.training.metrics import METRICS


@dataclass(frozen=True)
class Entry:
    """One row of a table: the runs of one submission and variant, with their summaries."""

    label: str
    records: tuple[RunRecord, ...]

    @property
    def first(self) -> RunRecord:
        return self.records[0]

    @property
    def submission(self) -> str:
        return self.first.run.submission

    def has(self, metric: str) -> bool:
        """Whether every run has the metric (one recorded before the metric was registered may not)."""
        return all(metric in r.metrics for r in self.records)

    def mean(self, metric: str = "accuracy") -> float:
        """The metric in % over the entry's runs, aggregated as its ``MetricSpec`` says."""
        return stats([r.metrics[metric] for r in self.records], metric)[0]

    def std(self, metric: str = "accuracy") -> float | None:
        """Sample standard deviation in % (ddof = 1) over folds x trials; None for a single run."""
        return stats([r.metrics[metric] for r in self.records], metric)[1]

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


def ranked(entries: list[Entry]) -> list[Entry]:
    """Best mean accuracy first; ties keep their order."""
    return sorted(entries, key=lambda e: -e.mean())
