"""A plan: the points of a sweep (``bench run`` is a sweep of one point) resolved into runs for this
machine, split into finished and missing, then executed under one progress bar.

``bench run``, ``bench sweep`` and ``make leaderboard`` all go through here, so a run is planned,
skipped, claimed and stored the same way whichever command asked for it.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from harness.core.errors import DatasetError
from harness.core.registry import Registry
from harness.data.catalog import DatasetSpec
from harness.data.datasets import verified_folder
from harness.runs.grid import GridReport, plan, run_grid
from harness.runs.limit import SIDE_BY_SIDE, is_small
from harness.runs.run import Run
from harness.runs.sweep import Point
from harness.training.device import resolve_compile, resolve_precision
from harness.training.submission import Submission, get_submission


@dataclass
class Planned:
    """A point resolved for this machine: its submission as registered, its runs, which are missing."""

    point: Point
    sub: Submission
    spec: DatasetSpec
    runs: list[Run]
    missing: list[Run]
    workers: int
    unavailable: str = ""  # why its runs cannot run here (its dataset is not imported), else ""


@dataclass
class Plan:
    planned: list[Planned] = field(default_factory=list)

    @property
    def runs(self) -> list[Run]:
        return [run for p in self.planned for run in p.runs]

    @property
    def missing(self) -> list[Run]:
        return [run for p in self.planned for run in p.missing]

    @property
    def runnable(self) -> list[Run]:
        return [run for p in self.planned if not p.unavailable for run in p.missing]

    @property
    def unavailable(self) -> dict[str, int]:
        """Why some missing runs cannot run here -> how many."""
        reasons: dict[str, int] = {}
        for p in self.planned:
            if p.unavailable and p.missing:
                reasons[p.unavailable] = reasons.get(p.unavailable, 0) + len(p.missing)
        return reasons


def make_plan(points: list[Point], catalog: Registry[DatasetSpec], data_root: Path, results_root: Path,
              device: torch.device, workers: str = "auto", skip_unavailable: bool = True,
              say: Callable[[str], None] = print) -> Plan:
    """Resolve every point (precision, compile, workers for ``device``) and find its missing runs.

    A point whose dataset is not in the data root is planned (its runs are counted) but marked
    unavailable with the reason, or, with ``skip_unavailable=False`` (``bench run``), stops the
    plan before anything runs.
    """
    result = Plan()
    build = functools.cache(get_submission)
    for point in points:
        cell, spec, unavailable = point.cell, catalog.get(point.cell.dataset), ""
        try:
            if spec.kind != "synthetic":
                verified_folder(spec, data_root)
        except DatasetError as err:
            if not skip_unavailable:
                raise
            unavailable = str(err)
        sub = build(cell.submission)
        tiny = device.type == "cuda" and "auto" in (workers, cell.compile) and is_small(cell.trained(sub)[0], spec)
        runs = cell.runs(sub, spec, resolve_precision(cell.precision, device),
                         resolve_compile(cell.compile, device, say, tiny))
        missing, _ = plan(sub, spec, runs, results_root)
        count = (SIDE_BY_SIDE if tiny else 1) if workers == "auto" else int(workers)
        result.planned.append(Planned(point, sub, spec, runs, missing, count, unavailable))
    return result


def execute_plan(plan: Plan, device: torch.device, results_root: Path, data_root: Path | None, title: str,
                 labels: Callable[[Planned], str] = lambda p: "") -> list[GridReport]:
    """Run every missing run of ``plan`` under one progress bar (with ETA); finished runs are kept on Ctrl-C."""
    from tqdm import tqdm

    reports = []
    runnable = len(plan.runnable)
    with tqdm(total=runnable, desc=title, unit="run", disable=not runnable) as bar:
        for planned in plan.planned:
            if planned.missing and not planned.unavailable:
                reports.append(run_grid(planned.sub, planned.spec, planned.missing, device, results_root, data_root,
                                        planned.workers, bar=bar, label=labels(planned)))
            else:
                reports.append(GridReport())
    return reports
