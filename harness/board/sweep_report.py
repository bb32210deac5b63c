"""A sweep's report: per swept parameter, mean ± std of every registered metric per value over folds
and trials, as a table, and of accuracy as a bar chart with std bars from zero (seed 000's figures),
the submission's own value of the parameter marked where the plan shows it, from stored results
only; a metric some of a row's runs were recorded without shows "–".

The report says which test folds the sweep scored on: a value chosen because it scores best there
is tuned on those folds, so its figures are optimistic (seed 000 tuned on fold 1 and reported all
five). Sweep variants are never ranked on the leaderboard; a chosen setting is registered as a
submission first.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tabulate import tabulate

from harness.board.aggregate import stats
from harness.board.plots import bar_chart_png
from harness.core import disk, owners
from harness.runs import store
from harness.runs.plan import Plan, Planned
from harness.runs.records import RecordError, RunRecord
from harness.runs.sweep import AXES, OPTIONS, Sweep
from harness.training.metrics import registered


def shown(path: Path) -> str:
    """The sweep file as the reader would type it: relative to here, never a path of this machine."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return Path(path).name


def _records(planned: Planned, results_root: Path) -> list[RunRecord]:
    """The records of the point's finished runs: what the plan found current, nothing stale."""
    found, missing = [], set(planned.missing)
    for run in (run for run in planned.runs if run not in missing):
        try:
            record = store.load_record(run.path(results_root))
        except RecordError:
            continue
        if isinstance(record, RunRecord) and record.run == run:
            found.append(record)
    return found


def _cell(values: list[float | None], metric: str) -> str:
    if not values or None in values:
        return "–"
    mean, std = stats(values, metric)
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def parameter_table(param: str, sweep: Sweep, rows: list[tuple[Planned, list[RunRecord]]]) -> list[dict[str, Any]]:
    """One row per (other swept values, value of ``param``), in the file's order, pooled over folds × trials."""
    others = [p for p in sweep.swept if p != param]
    groups: dict[tuple, dict[str, Any]] = {}
    for planned, records in rows:
        setting = dict(planned.point.setting)
        key = tuple(repr(setting.get(p)) for p in others) + (repr(setting.get(param)),)
        row = groups.setdefault(key, {**{p: setting.get(p) for p in others}, param: setting.get(param),
                                      "runs": [0, 0], **{spec.name: [] for spec in registered()}})
        row["runs"][0] += len(records)
        row["runs"][1] += len(planned.runs)
        for spec in registered():
            row[spec.name] += [r.metrics.get(spec.name) for r in records]
    order = {p: list(dict.fromkeys(repr(dict(pl.point.setting).get(p)) for pl, _ in rows)) for p in others + [param]}
    return sorted(groups.values(), key=lambda row: [order[p].index(repr(row[p])) for p in others + [param]])


def _markdown_rows(param: str, table: list[dict[str, Any]], others: list[str]) -> str:
    body = [[row[p] for p in others] + [row[param], f"{row['runs'][0]}/{row['runs'][1]}"]
            + [_cell(row[spec.name], spec.name) for spec in registered()] for row in table]
    return tabulate(body, others + [param, "runs"] + [spec.label for spec in registered()], tablefmt="github",
                    disable_numparse=True)


def _own_value(param: str, rows: list[tuple[Planned, list[RunRecord]]]) -> tuple[str, Any] | None:
    """(the submission, its own value of ``param``) where the plan says it, else None: the epoch
    budget its recipe sets, or a setting's value at a point that leaves it as the submission has it
    (an override equal to the submission's own value is dropped, so such a point overrides nothing
    of that name). None for a sweep of several submissions, and for an axis or an option."""
    submissions = {planned.point.cell.submission for planned, _ in rows}
    if len(submissions) != 1 or param in AXES + OPTIONS and param != "epochs":
        return None
    if param == "epochs":
        found = [planned.built.epochs for planned, _ in rows]
    else:
        found = [dict(planned.point.setting)[param] for planned, _ in rows if param in dict(planned.point.setting)
                 and not any(name == param or name.endswith(f".{param}") for name, _ in planned.built.overrides)]
        found = found or [value for planned, _ in rows for name, value in _flat(planned.own)
                          if name == param or name.endswith(f".{param}")]  # every point overrides it: as written
    distinct = {repr(value): value for value in found}
    return (submissions.pop(), *distinct.values()) if len(distinct) == 1 else None


def _flat(params: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """A submission's settings by dotted name (``frontend.n_mels``)."""
    return [pair for key, value in params.items() for pair in
            (_flat(value, f"{prefix}{key}.") if isinstance(value, dict) and value else [(f"{prefix}{key}", value)])]


def _place(value: Any, values: list[Any]) -> float | None:
    """Where ``value`` stands on a chart whose bars are ``values`` (bar i at i): at its own bar,
    between its neighbours' (beyond the last or before the first) when the values are numbers in
    ascending order; None where it has no place."""
    import numpy as np

    if str(value) in map(str, values):
        return float([str(v) for v in values].index(str(value)))
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in [value, *values])
    if not numbers or sorted(values) != values or not np.isfinite([value, *values]).all():
        return None
    return float(np.interp(value, values, range(len(values)), left=-0.75, right=len(values) - 0.25))


def _chart(param: str, table: list[dict[str, Any]], others: list[str], own: tuple[str, Any] | None) -> tuple:
    """The arguments of ``param``'s bar chart (``bar_chart_png``): accuracy per value, one series
    per combination of the other swept values, and the submission's own value of ``param`` (``own``)
    as a reference line."""
    values: dict[str, Any] = {}  # each value as the chart shows it -> as written
    for row in table:
        values.setdefault(str(row[param]), row[param])
    series: dict[str, dict[str, tuple[float, float]]] = {}
    for row in table:
        if row["accuracy"]:
            mean, std = stats(row["accuracy"])
            name = ", ".join(f"{p}={row[p]}" for p in others) or "mean ± std over folds × trials"
            series.setdefault(name, {})[str(row[param])] = (mean, std or 0.0)
    reference = (_place(own[1], list(values.values())), f"{own[0]}'s own {param} = {own[1]}") if own else None
    return (f"{param}: test accuracy, mean ± std over folds × trials", param, "accuracy %", list(values), series,
            reference)


def _header(sweep: Sweep, plan: Plan, rows, command: str) -> list[str]:
    tuned = [p for p in sweep.swept if p not in AXES + OPTIONS]
    fixed = {k: v for p in plan.planned for k, v in p.point.setting if k not in sweep.swept}
    datasets = sorted({p.spec.name for p in plan.planned})
    folds = sorted({run.fold for p in plan.planned for run in p.runs})
    trials = sorted({run.trial for p in plan.planned for run in p.runs})
    done = sum(len(records) for _, records in rows)
    lines = [f"# Sweep `{sweep.name}`", "", f"Generated by `{command}` from stored results; do not edit by hand.", ""]
    where = f"test fold{'s' if len(folds) > 1 else ''} {', '.join(map(str, folds))} of {', '.join(datasets)}"
    if tuned:
        lines += [f"> **Tuned on test folds.** Every run is scored on {where}, the folds a leaderboard entry is "
                  f"scored on. A value of {', '.join(tuned)} chosen because it scores best here is tuned on them, "
                  f"so its figures here are optimistic; seed 000 tuned on fold 1, then reported all five. Sweep "
                  f"variants are not ranked on the leaderboard: register a chosen setting as a submission, then "
                  f"run it on every fold.", ""]
    else:
        lines += [f"Scored on {where}. No setting of a submission is changed here: these are the submissions' "
                  f"own runs, ranked on the leaderboard like any other.", ""]
    lines += [f"- sweep file: `{shown(sweep.path)}`",
              f"- fixed: {', '.join(f'{k}={v}' for k, v in fixed.items()) or 'nothing'}",
              f"- swept: {', '.join(sweep.swept) or 'nothing'}; trials {', '.join(map(str, trials))}",
              f"- runs: {done} of {len(plan.runs)} finished" + (" (missing runs are left out of the figures)"
                                                                 if done < len(plan.runs) else ""), ""]
    return lines


def render_report(sweep: Sweep, plan: Plan, results_root: Path, command: str) -> tuple[str, dict[str, bytes]]:
    """The report's markdown and its charts (file name -> PNG bytes)."""
    rows = [(planned, _records(planned, results_root)) for planned in plan.planned]
    lines, charts = _header(sweep, plan, rows, command), {}
    for param in sweep.swept:
        others = [p for p in sweep.swept if p != param]
        table = parameter_table(param, sweep, rows)
        name = re.sub(r"[^\w.\-]", "_", param) + ".png"
        charts[name] = bar_chart_png(*_chart(param, table, others, _own_value(param, rows)))
        lines += [f"## {param}", "", _markdown_rows(param, table, others), "", f"![{param}]({name})", ""]
    if not sweep.swept:
        lines += ["Nothing is swept: one point.", ""]
    return "\n".join(lines), charts


def write_report(sweep: Sweep, plan: Plan, results_root: Path) -> Path:
    """Write ``<results>/sweeps/<sweep name>/README.md`` and its charts; charts it no longer draws go.
    Each file is written whole and renamed into place (utf-8), the page after its charts: a report
    that cannot be written (``disk.DiskError``) leaves the last one as it was."""
    folder = results_root / "sweeps" / sweep.name
    text, charts = render_report(sweep, plan, results_root, f"bench sweep {shown(sweep.path)} --report")
    with disk.writing(folder, disk.RESULTS, lambda: len(text.encode("utf-8")) + sum(map(len, charts.values()))):
        for name, png in charts.items():
            owners.write_atomic(folder / name, png)
        owners.write_atomic(folder / "README.md", text.encode("utf-8"))
        for old in folder.glob("*.png"):
            if old.name not in charts:
                old.unlink()
    return folder / "README.md"
