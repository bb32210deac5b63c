"""Suites: one score per entry over several tasks, as HEAR and X-ARES give one.

A suite is declared in ``suites.toml``: datasets, each with a protocol and an epoch budget, and a
weighting (``WEIGHTINGS``). An entry of a suite is one submission and variant (its weights,
precision, overrides; the protocol aside, which each task fixes); its score over a suite is
computed only where it has a ranked result for every task. A task it lacks is shown as missing,
never counted as zero, and it is listed below the ranked entries.

    [spoken]
    description = "FSDD's two tasks on frozen embeddings"
    weighting = "mean"
    tasks = [{ dataset = "fsdd", protocol = "linear", epochs = 100 },
             { dataset = "fsdd_speaker", protocol = "linear", epochs = 100 }]
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from harness.board.aggregate import Entry, Table
from harness.core.choices import PROTOCOLS
from harness.core.errors import HarnessError
from harness.core.paths import PROJECT_ROOT
from harness.core.registry import Registry, check_name, did_you_mean

DEFAULT_SUITES = PROJECT_ROOT / "suites.toml"


class SuiteError(HarnessError):
    """A suite file that declares no valid suite; the message names the file and the suite."""


@dataclass(frozen=True)
class Weighting:
    """How a suite's task scores make one: ``combine(accuracy % per task, test clips per task, rank per
    task) -> score``; ``higher_is_better``; ``unit`` the score's, for its column."""

    name: str
    doc: str
    combine: Callable[[list[float], list[int], list[float]], float]
    higher_is_better: bool = True
    unit: str = "%"


WEIGHTINGS: Registry[Weighting] = Registry("weighting")
for _weighting in (
        Weighting("mean", "the mean of the tasks' accuracies", lambda acc, n, rank: float(np.mean(acc))),
        Weighting("test_size", "the tasks' accuracies weighted by their test clips (X-ARES)",
                  lambda acc, n, rank: float(np.average(acc, weights=n))),
        Weighting("mean_rank", "the mean of the entry's ranks among the suite's complete entries, task by task",
                  lambda acc, n, rank: float(np.mean(rank)), higher_is_better=False, unit="rank")):
    WEIGHTINGS.add(_weighting.name, _weighting)


@dataclass(frozen=True)
class Task:
    dataset: str
    protocol: str
    epochs: int

    @property
    def label(self) -> str:
        return f"{self.dataset} ({self.protocol}, {self.epochs} ep)"


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    weighting: str
    tasks: tuple[Task, ...]


def load_suites(path: Path = DEFAULT_SUITES, datasets: set[str] | None = None) -> list[Suite]:
    """The suites ``path`` declares (none where it does not exist), each checked: a known weighting,
    datasets of the catalog (``datasets``), registered protocols, budgets of at least one epoch."""
    if not path.exists():
        return []
    try:
        tables = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise SuiteError(f"{path}: not a readable TOML file of suites ({err})") from None
    return [_suite(path, name, table, datasets) for name, table in tables.items()]


def _suite(path: Path, name: str, table: object, datasets: set[str] | None) -> Suite:
    where = f"{path} [{name}]"
    check_name("suite", name, f"in {path}")
    if not isinstance(table, dict) or set(table) - {"description", "weighting", "tasks"}:
        raise SuiteError(f"{where}: a suite has description, weighting and tasks only")
    weighting = table.get("weighting", "mean")
    if weighting not in WEIGHTINGS:
        raise SuiteError(f"{where}: weighting {weighting!r}; use {', '.join(WEIGHTINGS)}."
                         f"{did_you_mean(str(weighting), list(WEIGHTINGS))}")
    tasks = table.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise SuiteError(f"{where}: tasks = [{{ dataset = ..., protocol = ..., epochs = ... }}, ...]")
    return Suite(name, str(table.get("description", "")), weighting, tuple(_task(where, t, datasets) for t in tasks))


def _task(where: str, task: object, datasets: set[str] | None) -> Task:
    if not isinstance(task, dict) or set(task) != {"dataset", "protocol", "epochs"}:
        raise SuiteError(f"{where}: each task is {{ dataset = NAME, protocol = NAME, epochs = N }}, got {task!r}")
    dataset, protocol, epochs = task["dataset"], task["protocol"], task["epochs"]
    if datasets is not None and dataset not in datasets:
        raise SuiteError(f"{where}: no dataset {dataset!r} in the catalog.{did_you_mean(str(dataset), sorted(datasets))}")
    if protocol not in PROTOCOLS:
        raise SuiteError(f"{where}: protocol {protocol!r}; use {', '.join(PROTOCOLS)}."
                         f"{did_you_mean(str(protocol), list(PROTOCOLS))}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise SuiteError(f"{where}: epochs {epochs!r}: a whole number of at least 1")
    return Task(dataset, protocol, epochs)


@dataclass(frozen=True)
class Scored:
    """One entry of a suite: its label, its accuracy % per task (None: missing) and its score (None
    where a task is missing)."""

    label: str
    accuracies: tuple[float | None, ...]
    score: float | None


def _key(entry: Entry) -> tuple[str, str]:
    """An entry across a suite's tables: its submission and its variant without the protocol."""
    run = entry.first.run
    variant = run.variant.removeprefix(f"{run.protocol}-") if run.protocol != "finetune" else run.variant
    return run.submission, variant


def score_suite(suite: Suite, tables: dict[Table, list[Entry]]) -> list[Scored]:
    """Every entry with a result for any of the suite's tasks: the complete ones ranked by score
    (best first), then the incomplete ones, by label."""
    found: dict[tuple[str, str], dict[Task, Entry]] = {}
    for task in suite.tasks:
        for entry in tables.get((task.dataset, task.epochs), []):
            if entry.first.run.protocol == task.protocol:
                found.setdefault(_key(entry), {})[task] = entry
    complete = {key: by_task for key, by_task in found.items() if len(by_task) == len(suite.tasks)}
    ranks = _ranks(suite, complete)
    weighting, scored = WEIGHTINGS.get(suite.weighting), []
    for key, by_task in found.items():
        accuracies = tuple(by_task[t].mean() if t in by_task else None for t in suite.tasks)
        score = weighting.combine(list(accuracies), [_test_clips(by_task[t]) for t in suite.tasks],
                                  ranks[key]) if key in complete else None
        scored.append(Scored(_label(key), accuracies, score))
    sign = -1 if weighting.higher_is_better else 1
    return sorted(scored, key=lambda s: (s.score is None, sign * (s.score or 0), s.label))


def _ranks(suite: Suite, complete: dict[tuple[str, str], dict[Task, Entry]]) -> dict[tuple[str, str], list[float]]:
    """Each complete entry's rank per task among the complete ones (1 best; equal accuracies share
    the mean of their places)."""
    from scipy.stats import rankdata

    keys = list(complete)
    per_task = [rankdata([-complete[k][t].mean() for k in keys]) for t in suite.tasks] if keys else []
    return {key: [float(r[i]) for r in per_task] for i, key in enumerate(keys)}


def _test_clips(entry: Entry) -> int:
    """The clips a task tests an entry on: its test folds' clips, in one trial."""
    trial = min(entry.trials)
    return sum(r.n_test for r in entry.records if r.run.trial == trial)


def _label(key: tuple[str, str]) -> str:
    submission, variant = key
    return f"{submission} ({variant})"
