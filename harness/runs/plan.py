"""A plan: the points of a sweep (``bench run`` is a sweep of one point) resolved into runs for this
machine, split into finished and missing, then executed under one progress bar.

``bench run``, ``bench sweep`` and ``make leaderboard`` all go through here, so a run is planned,
skipped, claimed and stored the same way whichever command asked for it.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from harness.core.errors import DatasetError, HarnessError
from harness.core.registry import Registry
from harness.data.catalog import DatasetSpec
from harness.data.datasets import load_dataset, verified_folder
from harness.runs.described import Built, Submissions
from harness.runs.executors import Executor, InProcess
from harness.runs.driver import GridReport, Work, drive, plan
from harness.runs.verdict import Judged, Splits
from harness.runs import store
from harness.runs.flops import SIDE_BY_SIDE, is_small
from harness.runs.records import RunRecord
from harness.runs.run import Run
from harness.runs.slots import Placement
from harness.runs.sweep import Point
from harness.training.device import resolve_compile, resolve_precision


class PlanError(HarnessError):
    """A plan that cannot run as asked; the message names the file and the fix."""


@dataclass
class Planned:
    """A point resolved for this machine: its submission as the point changes it, its runs, which are missing."""

    point: Point
    built: Built
    spec: DatasetSpec
    runs: list[Run]
    missing: list[Run]
    per_device: int  # how many of its runs share one device: runs per GPU, or CPU workers
    unavailable: str = ""  # why its runs cannot run here (its dataset is not imported), else ""
    own: dict[str, Any] = field(default_factory=dict)  # the submission's own settings, before the point's overrides


@dataclass
class Plan:
    planned: list[Planned] = field(default_factory=list)

    @property
    def runs(self) -> list[Run]:
        """Every run of the plan, once (two points, e.g. of two documents, may name the same run)."""
        return list(dict.fromkeys(run for p in self.planned for run in p.runs))

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


def make_plan(points: list[Point], subs: Submissions, catalog: Registry[DatasetSpec], data_root: Path,
              results_root: Path, device: torch.device, placement: Placement = Placement(),
              skip_unavailable: bool = True, say: Callable[[str], None] = print) -> Plan:
    """Resolve every point (precision, compile, runs per device for ``device``) and find its missing runs.

    A point whose dataset is not in the data root is planned (its runs are counted) but marked
    unavailable with the reason, or, with ``skip_unavailable=False`` (``bench run``), stops the
    plan before anything runs. Each submission is described in one sandboxed worker, every point's
    overrides at once.
    """
    placement.check_device(device.type)
    result = Plan()
    _describe_all(points, subs, catalog)  # with each model's FLOPs: a run's default time limit, auto on a GPU
    against, seen = Judged(subs, catalog, Splits(data_root)), set()
    for point in points:
        cell, spec, unavailable = point.cell, catalog.get(point.cell.dataset), ""
        try:
            if spec.kind != "synthetic":
                verified_folder(spec, data_root)
        except DatasetError as err:
            if not skip_unavailable:
                raise
            unavailable = str(err)
        built = cell.trained(subs, spec)
        tiny = device.type == "cuda" and (placement.runs_per_gpu is None or cell.compile == "auto") and \
            is_small(built.gflop)
        runs = cell.runs(built, spec, resolve_precision(cell.precision, device),
                         resolve_compile(cell.compile, device, say, tiny))
        missing, _ = plan(runs, results_root, against)
        missing = [run for run in missing if run not in seen]  # another point (document) already plans it
        seen.update(runs)
        _stored_inside(missing, results_root)
        per_gpu = placement.runs_per_gpu or (SIDE_BY_SIDE if tiny else 1)
        per_device = per_gpu if device.type == "cuda" else placement.workers or 1
        result.planned.append(Planned(point, built, spec, runs, missing, per_device, unavailable,
                                      subs.describe(cell.submission).registered.params))
    return result


def _stored_inside(runs: list[Run], results_root: Path) -> None:
    """Stop before a run would be stored through a link out of the store (``store.link_out``): its
    result would land outside it, and no reader of the store would read it back."""
    for folder in dict.fromkeys(run.path(results_root).parent for run in runs):
        if link := store.link_out(results_root, folder):
            raise PlanError(f"{link}: a link out of the result store (to {os.path.realpath(link)}), where this plan "
                            f"would store runs; nothing ran. Remove the link, or move what it points to into the "
                            f"store (a store elsewhere is one whole folder: --results or BENCH_RESULTS)")


def _describe_all(points: list[Point], subs: Submissions, catalog: Registry[DatasetSpec]) -> None:
    """Every point's variant of each submission described at once: one worker per submission
    (with its model's FLOPs on the point's dataset)."""
    from harness.runs.described import Variant

    by_name: dict[str, list[Variant]] = {}
    for point in points:
        cell = point.cell
        spec = catalog.get(cell.dataset)
        by_name.setdefault(cell.submission, []).append(Variant(cell.overrides, resolve=True, spec=spec))
    for name, variants in by_name.items():
        if name in subs:
            try:
                subs.describe(name, variants)
            except HarnessError:
                pass  # said again, naming the point, when the point is planned


def execute_plan(plan: Plan, subs: Submissions, device: torch.device, results_root: Path, data_root: Path | None,
                 title: str,
                 labels: Callable[[Planned], str] = lambda p: "", placement: Placement = Placement(),
                 log: Callable[[RunRecord], None] | None = None) -> list[GridReport]:
    """Run every missing run of ``plan`` under one progress bar (with ETA); one report per point.

    Points that share devices alike (runs per GPU) run together, one executor each; an executor
    that packs runs itself (Ray: ``ExecutorKind.together``) gets every point's runs at once. No
    executor is made when nothing is left to run. Finished runs are kept on Ctrl-C. ``log`` is
    called with each finished run's record (``harness.runs.tracking``).
    """
    from tqdm import tqdm

    reports = {id(p): GridReport() for p in plan.planned}
    todo = [p for p in plan.planned if p.missing and not p.unavailable]
    groups = ([todo] if todo else []) if placement.kind.together else \
        [[p for p in todo if p.per_device == k] for k in dict.fromkeys(p.per_device for p in todo)]
    with tqdm(total=len(plan.runnable), desc=title, unit="run", disable=not plan.runnable) as bar:
        for group in groups:
            executor = _executor(group, device, placement, subs.settings)
            if not isinstance(executor, InProcess):
                _prepare_data(group, data_root, bar)
            work = [Work(p.point.cell.submission, p.spec, p.missing, labels(p), p.per_device) for p in group]
            for p, report in zip(group, drive(work, executor, subs, device, results_root, data_root, bar, log)):
                reports[id(p)] = report
    return [reports[id(p)] for p in plan.planned]


def _executor(group: list[Planned], device: torch.device, placement: Placement, settings) -> Executor:
    """The placement's executor (its factory in ``harness.runs.slots.EXECUTORS``) for the runs of
    ``group``, points whose runs share devices alike."""
    module, _, name = placement.kind.factory.partition(":")
    factory = getattr(importlib.import_module(module), name)
    return factory(placement, device, sum(len(p.missing) for p in group), group[0].per_device, settings)


def _prepare_data(group: list[Planned], data_root: Path | None, bar) -> None:
    """Decode each dataset into its cache once, before workers start, instead of each worker
    waiting on the first one's lock (or, on a node of its own, decoding it again)."""
    rates = {(p.spec.name, p.built.sample_rate): p.spec for p in group if p.spec.kind != "synthetic"}
    for (name, rate), spec in rates.items():
        bar.set_postfix_str(f"decoding {name} at {rate or spec.sample_rate} Hz for the workers")
        load_dataset(spec, data_root, rate)
