"""The driver: plan which runs are missing (a pure function of the runs and the store), then
drive them through an executor (``harness.runs.executors``), storing each record as it comes back.

The driver is the only writer: it claims a run (``harness.core.owners``) just before an
executor takes it, so two processes sharing a store never train the same run, and it writes
each record atomically, once; Ctrl-C or SIGTERM keeps every finished result.
"""
from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from harness.core import owners
from harness.core.registry import Registry
from harness.data.catalog import DatasetSpec
from harness.runs import store
from harness.runs.described import Submissions
from harness.runs.execute import task_for
from harness.runs.executors import Executor, Job
from harness.runs.provenance import origin_of
from harness.runs.records import Record, RecordError, RunRecord
from harness.runs.run import Run
from harness.runs.verdict import Current, Judged, Splits, verdict


class GridInterrupted(KeyboardInterrupt):
    """SIGTERM during a grid: handled like Ctrl-C, finished runs stay, the current one is dropped."""


@dataclass
class GridReport:
    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    busy: list[tuple[Path, str]] = field(default_factory=list)  # claimed by another live process: (path, who)
    accuracies: list[float] = field(default_factory=list)  # of the runs done, in their order
    stages: list[tuple[int, ...]] = field(default_factory=list)  # of the runs done: epochs trained per stage


def epochs_per_stage(record: RunRecord) -> tuple[int, ...]:
    """The epochs a run trained, per stage of its recipe (one stage: the budget, for most recipes;
    none for a frozen protocol, whose probe's epochs ``probe_of`` says)."""
    if record.run.protocol != "finetune":
        return ()
    stages = [row.get("stage", 1) for row in record.curves or ()]
    return tuple(stages.count(stage) for stage in dict.fromkeys(stages))


def probe_of(record: RunRecord) -> str:
    """The linear probe a run chose on validation, as a clause ('' for other runs)."""
    if record.run.protocol != "linear" or not record.curves:
        return ""
    last = record.curves[-1]
    head = "linear" if not last.get("hidden") else f"{last.get('hidden')} hidden units"
    return f", probe {head} at lr {last.get('lr')}, {len(record.curves)} epochs"


def is_finished(run: Run, results_root: Path, against: Judged) -> bool:
    """A sealed, successful record of this run that still stands (``harness.runs.verdict``)."""
    try:
        record = store.load_record(run.path(results_root))
    except RecordError:
        return False
    return isinstance(record, RunRecord) and record.run == run and isinstance(verdict(record, against), Current)


def plan(runs: list[Run], results_root: Path, against: Judged) -> tuple[list[Run], list[Run]]:
    """(missing, finished): a stale result (an edited submission file, another split) is missing."""
    finished = {run for run in runs if is_finished(run, results_root, against)}
    return [run for run in runs if run not in finished], [run for run in runs if run in finished]


def judged(subs: Submissions, specs: list[DatasetSpec], data_root: Path | None) -> Judged:
    """The verdict's context for runs on ``specs``, their splits read from ``data_root``."""
    datasets: Registry[DatasetSpec] = Registry("dataset")
    for spec in {spec.name: spec for spec in specs}.values():
        datasets.add(spec.name, spec)
    return Judged(subs, datasets, Splits(data_root))


@dataclass
class Work:
    """The runs of one submission on one dataset that a plan point gives the driver.

    ``label`` starts each line printed of its runs (a sweep point's values); ``runs_per_gpu``
    is how many of its runs share one GPU (for an executor that packs them).
    """

    submission: str
    spec: DatasetSpec
    runs: list[Run]
    label: str = ""
    runs_per_gpu: int = 1


def drive(work: list[Work], executor: Executor, subs: Submissions, device: torch.device, results_root: Path,
          data_root: Path | None, bar: Any, log: Callable[[RunRecord], None] | None = None) -> list[GridReport]:
    """Give every missing run of ``work`` to ``executor`` and store each record as it comes back;
    finished runs are skipped, failures recorded and listed, one report per item of ``work``.

    ``bar``: a tqdm progress bar over the runs (each run moves it once, finished or skipped).
    ``log``: also called with each finished run's record once it is stored (experiment tracking).
    """
    def on_sigterm(signum, frame):
        raise GridInterrupted("terminated (SIGTERM); finished runs are kept, re-run to resume")

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    against = judged(subs, [item.spec for item in work], data_root)
    driver = _Driver(subs, against, results_root, device, data_root, bar, [GridReport() for _ in work], log)
    try:
        for job, record in executor.results(driver.jobs(work), driver.status):
            driver.store(job, record)
    finally:
        for path in driver.claimed:  # runs given out and not finished: free for the next attempt
            owners.release(path)
        signal.signal(signal.SIGTERM, previous)
    return driver.reports


@dataclass
class _Driver:
    """The driver's state: the runs it claimed and gave out, its reports and its progress bar."""

    subs: Submissions
    against: Judged
    results_root: Path
    device: torch.device
    data_root: Path | None
    bar: Any
    reports: list[GridReport]
    log: Callable[[RunRecord], None] | None = None
    given: dict[Run, tuple[int, str]] = field(default_factory=dict)  # run -> (its work's index, its label)
    claimed: set[Path] = field(default_factory=set)
    shown: float = 0.0

    def jobs(self, work: list[Work]) -> Iterator[Job]:
        """Each missing run as a job, claimed only when an executor asks for it."""
        for index, item in enumerate(work):
            owners.clean(self.results_root / item.spec.name / item.submission)  # leftovers of crashed runs
            source = origin_of(self.subs.describe(item.submission))
            missing, finished = plan(item.runs, self.results_root, self.against)
            self.reports[index].skipped += [run.path(self.results_root) for run in finished]
            for run in missing:
                if self.take(index, run):
                    self.given[run] = (index, f"{item.label + ' ' if item.label else ''}fold {run.fold} "
                                              f"trial {run.trial}")
                    yield Job(task_for(self.subs, run, item.spec, source), item.spec, run, self.device.type,
                              self.data_root, item.runs_per_gpu)

    def take(self, index: int, run: Run) -> bool:
        """Claim a run; False when another live process holds it or has finished it meanwhile."""
        path = run.path(self.results_root)
        if holder := owners.claim(path):
            self.reports[index].busy.append((path, holder))
        elif is_finished(run, self.results_root, self.against):
            owners.release(path)
            self.reports[index].skipped.append(path)
        else:
            self.claimed.add(path)
            return True
        self.bar.update()
        return False

    def status(self, job: Job, text: str) -> None:
        """What a run is doing, on the progress bar (at most twice a second: a slow epoch still moves)."""
        if time.monotonic() - self.shown >= 0.5:
            self.shown = time.monotonic()
            self.bar.set_postfix_str(f"{self.given[job.run][1]}: {text}")

    def store(self, job: Job, record: Record) -> None:
        path = job.run.path(self.results_root)
        store.write_record(path, record)
        owners.release(path)
        self.claimed.discard(path)
        index, where = self.given.pop(job.run)
        report = self.reports[index]
        if isinstance(record, RunRecord):
            report.done.append(path)
            report.accuracies.append(record.accuracy)
            report.stages.append(epochs_per_stage(record))
            first = (record.phases or {}).get("first_step_s")
            self.bar.write(f"  {where}: accuracy {record.accuracy:.4f} macro-F1 {record.macro_f1:.4f} "
                           f"({record.wall_time_s:.1f} s" + (f", first step after {first:.1f} s" if first is not None else "")
                           + probe_of(record) + ")")
            self.track(record, where)
        else:
            report.failed.append((path, record.error))
            self.bar.write(f"  {where}: FAILED {record.error}")
        self.bar.update()  # after the line above, so the bar is drawn once, below it

    def track(self, record: RunRecord, where: str) -> None:
        """Log a stored run to the tracker; a tracker's failure is reported, never fatal (the result is kept)."""
        if self.log is None:
            return
        try:
            self.log(record)
        except Exception as err:  # a tracking service down must not stop a sweep
            self.bar.write(f"  {where}: not logged ({type(err).__name__}: {err}); the result is stored")
