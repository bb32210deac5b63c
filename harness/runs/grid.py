"""A grid of runs: plan which are missing (a pure function of the runs and the store), then
execute them one by one or in worker processes, storing each record as it finishes.

A run is claimed before it starts (``harness.core.owners``), so two processes sharing a store
never train the same run; Ctrl-C or SIGTERM keeps every finished result.
"""
from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from harness.core import owners
from harness.data.catalog import DatasetSpec
from harness.runs import store
from harness.runs.execute import attempt
from harness.runs.provenance import current_check
from harness.runs.records import Record, RecordError, RunRecord
from harness.runs.run import Run
from harness.training.submission import Submission, get_submission


class GridInterrupted(KeyboardInterrupt):
    """SIGTERM during a grid: handled like Ctrl-C, finished runs stay, the current one is dropped."""


@dataclass
class GridReport:
    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    busy: list[tuple[Path, str]] = field(default_factory=list)  # claimed by another live process: (path, who)
    accuracies: list[float] = field(default_factory=list)  # of the runs done, in their order


def is_finished(sub: Submission, spec: DatasetSpec, run: Run, results_root: Path,
                check: Callable[[RunRecord], bool] | None = None) -> bool:
    """A sealed, successful record of this run, of this config and of this submission code.

    ``check``: ``current_check(sub, spec)``, shared when many runs are asked about.
    """
    try:
        record = store.load_record(run.path(results_root))
    except RecordError:
        return False
    return isinstance(record, RunRecord) and record.run == run and (check or current_check(sub, spec))(record)


def plan(sub: Submission, spec: DatasetSpec, runs: list[Run], results_root: Path,
         check: Callable[[RunRecord], bool] | None = None) -> tuple[list[Run], list[Run]]:
    """(missing, finished): an edited submission file makes its stored runs stale, so missing."""
    check = check or current_check(sub, spec)
    finished = {run for run in runs if is_finished(sub, spec, run, results_root, check)}
    return [run for run in runs if run not in finished], [run for run in runs if run in finished]


def run_grid(sub: Submission, spec: DatasetSpec, runs: list[Run], device: torch.device, results_root: Path,
             data_root: Path | None = None, workers: int = 1, bar=None, label: str = "") -> GridReport:
    """Run every missing run; finished ones are skipped, failures recorded and listed.

    ``workers`` > 1 runs that many jobs at once in worker processes sharing the device, for
    models too small to keep a GPU busy alone; results are still written one by one here.
    ``bar``: a progress bar shared with other grids (a sweep's), else one of its own;
    ``label`` starts each line this grid prints (a sweep point's values).
    """
    def on_sigterm(signum, frame):
        raise GridInterrupted("terminated (SIGTERM); finished runs are kept, re-run to resume")

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        return _Grid(sub, spec, device, results_root, data_root, label).execute(runs, workers, bar)
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class _Grid:
    """One grid's execution state: what it runs, where it stores, and its progress bar."""

    sub: Submission
    spec: DatasetSpec
    device: torch.device
    results_root: Path
    data_root: Path | None
    label: str = ""
    report: GridReport = field(default_factory=GridReport)

    def execute(self, runs: list[Run], workers: int, bar=None) -> GridReport:
        from tqdm import tqdm

        owners.clean(self.results_root / self.spec.name / self.sub.name)  # leftovers of crashed runs
        self.check = current_check(self.sub, self.spec)
        jobs, finished = plan(self.sub, self.spec, runs, self.results_root, self.check)
        self.report.skipped = [run.path(self.results_root) for run in finished]
        self.bar = bar or tqdm(total=len(jobs), desc=f"{self.sub.name} on {self.spec.name}", unit="run",
                               disable=not jobs)
        try:
            if workers <= 1:
                for run in filter(self.take, jobs):
                    self.run_here(run)
            else:
                self.run_in_workers([run for run in jobs if self.take(run)], workers)
        finally:
            if bar is None:
                self.bar.close()
        return self.report

    def where(self, run: Run) -> str:
        return f"{self.label + ' ' if self.label else ''}fold {run.fold} trial {run.trial}"

    def take(self, run: Run) -> bool:
        """Claim a run; False when another live process holds it or has finished it meanwhile."""
        path = run.path(self.results_root)
        if holder := owners.claim(path):
            self.report.busy.append((path, holder))
        elif is_finished(self.sub, self.spec, run, self.results_root, self.check):
            owners.release(path)
            self.report.skipped.append(path)
        else:
            return True
        self.bar.update()
        return False

    def store(self, run: Run, record: Record) -> None:
        path = run.path(self.results_root)
        store.write_record(path, record)
        owners.release(path)
        if isinstance(record, RunRecord):
            self.report.done.append(path)
            self.report.accuracies.append(record.accuracy)
            first = (record.phases or {}).get("first_step_s")
            self.bar.write(f"  {self.where(run)}: accuracy {record.accuracy:.4f} "
                           f"macro-F1 {record.macro_f1:.4f} ({record.wall_time_s:.1f} s"
                           + (f", first step after {first:.1f} s)" if first is not None else ")"))
        else:
            self.report.failed.append((path, record.error))
        self.bar.update()  # after the line above, so the bar is drawn once, below it

    def run_here(self, run: Run) -> None:
        where = self.where(run)
        show = lambda epoch, row: self.bar.set_postfix_str(
            f"{where} epoch {epoch} (budget {run.epochs}) loss {row['train_loss']:.3f}")
        self.bar.set_postfix_str(f"{where}: data, features, first step")
        shown = [time.monotonic()]

        def step(epoch: int, number: int, steps: int) -> None:  # at most once a second: a slow epoch still moves
            if time.monotonic() - shown[0] >= 1.0:
                shown[0] = time.monotonic()
                self.bar.set_postfix_str(f"{where} epoch {epoch} step {number}/{steps}")

        try:
            self.store(run, attempt(self.sub, self.spec, run, self.device, self.data_root, show, step))
        finally:
            owners.release(run.path(self.results_root))

    def run_in_workers(self, jobs: list[Run], workers: int) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        threads = max(1, torch.get_num_threads() // workers) if self.device.type == "cpu" else 1
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        try:
            futures = {pool.submit(_attempt_in_worker, self.sub.name, self.spec, run, str(self.device),
                                   self.data_root, threads): run for run in jobs}
            for future in as_completed(futures):
                self.store(futures[future], future.result())
        finally:  # on Ctrl-C or SIGTERM: drop queued jobs; finished ones are already stored
            pool.shutdown(wait=False, cancel_futures=True)
            for run in jobs:
                owners.release(run.path(self.results_root))


def _attempt_in_worker(name: str, spec: DatasetSpec, run: Run, device: str, data_root: Path | None,
                       threads: int) -> Record:
    torch.set_num_threads(threads)
    return attempt(get_submission(name), spec, run, torch.device(device), data_root)
