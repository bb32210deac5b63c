"""A page per leaderboard entry, its model card: what it is (the submission's docstring: seed,
published figures, deviations), the command that reproduces it, its metrics per fold and
trial and per class, every setting it ran with, and its figures.
"""
from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from harness.board.aggregate import Entry
from harness.board.plots import short_names
from harness.board.sweep_report import shown
from harness.data.catalog import DEFAULT_CATALOG, DatasetSpec
from harness.runs.described import SUBMISSIONS_DIR, Described
from harness.runs.records import RunRecord
from harness.training.metrics import registered
from harness.training.overrides import parse_value

TABLE_NAME_CHARACTERS = 40  # the most of a class name the per-class table shows


def card_path(dataset: str, epochs: int, entry: Entry) -> str:
    return f"entries/{dataset}-e{epochs}-{entry.slug}.md"


def reproduce_command(entry: Entry, spec: DatasetSpec | None = None, sub: Described | None = None) -> str:
    """The ``bench run`` that trains exactly the entry's runs: its identity (weights, precision, compile,
    overrides) and every option it depends on (a catalog or submissions folder of one's own); what a
    command cannot hold, a checkpoint's file, is said after it."""
    run, folds, trials = entry.first.run, entry.folds, entry.trials
    folder = Path(sub.source_file).parent if sub else SUBMISSIONS_DIR
    before = f" --submissions {_shown(folder)}" if not _same(folder, SUBMISSIONS_DIR) else ""
    catalog = [f"--datasets {_shown(spec.origin)}"] if spec and not _same(spec.origin, DEFAULT_CATALOG) else []
    args = [f"bench{before} run -s {run.submission} -d {run.dataset} --epochs {run.epochs}", *catalog,
            f"--folds {','.join(map(str, folds))}", f"--trials {max(trials)}", f"--device {entry.first.device}",
            f"--precision {run.precision}", f"--compile {'on' if run.compiled else 'off'}",
            *(f"--set {shlex.quote(f'{name}={_value(value)}')}" for name, value in run.overrides),
            *([f"--protocol {run.protocol}"] if run.protocol != "finetune" else [])]
    notes = [] if trials == list(range(1, max(trials) + 1)) else [f"# the board holds trials {trials} of these"]
    if run.weights == "random":
        args.append("--random-init")
    elif run.weights.startswith("sha256:"):
        args.append("--weights CHECKPOINT")
        notes.append(f"# CHECKPOINT: the file (or a hub encoder's folder) whose {run.weights[:23]}…")
    return "\n".join([" \\\n    ".join(args), *notes])


def _same(path: str | Path, project: Path) -> bool:
    return Path(path).resolve() == project.resolve()


def _shown(path: str | Path) -> str:
    """A file or folder as the command names it: relative to here, never a path of this machine (``shown``)."""
    return shlex.quote(shown(Path(path)))


def _value(value: Any) -> str:
    """An override's value as ``--set`` reads it back (``parse_value``): a plain string bare, else JSON."""
    return value if isinstance(value, str) and parse_value(value) == value else json.dumps(value)


def _flat(params: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    rows = []
    for key, value in params.items():
        if isinstance(value, dict) and value:
            rows += _flat(value, f"{prefix}{key}.")
        else:
            rows.append((f"{prefix}{key}", f"`{value}`"))
    return rows


def _settings(record: RunRecord) -> list[tuple[str, str]]:
    """Every setting as recorded, the recipe's epochs as the run's budget (beside the recipe's default)."""
    default = record.config.get("params", {}).get("recipe", {}).get("epochs")
    budget = f"`{record.run.epochs}`" + (f" (the table's budget; the recipe's default: `{default}`)"
                                        if default != record.run.epochs else "")
    return [(key, budget if key == "recipe.epochs" else value) for key, value in _flat(record.config.get("params", {}))]


def _per_class(entry: Entry) -> list[str]:
    """Per-class F1 (mean over runs) and test clips (summed over runs) by class name, where every run has them."""
    if not entry.has("per_class_f1"):
        return []
    f1, names = entry.per_class_f1(), short_names(entry.class_names, TABLE_NAME_CHARACTERS)
    confusion = [r.metrics.get("confusion") for r in entry.records]
    clips = np.sum(confusion, axis=0).sum(axis=1).tolist() if all(confusion) else [""] * len(f1)
    rows = [[name.replace("|", r"\|"), score, count] for name, score, count in zip(names, f1, clips)]
    return ["## Per class", "", tabulate(rows, ["class", "F1 % (mean over runs)", "test clips (all runs)"],
                                         tablefmt="github", floatfmt=".2f", disable_numparse=[0]), ""]


def _percent(record: RunRecord, metric: str) -> str:
    return f"{100 * record.metrics[metric]:.2f}" if metric in record.metrics else "–"


def model_card(entry: Entry, sub: Described | None, spec: DatasetSpec | None, place: str,
               figures: dict[str, str]) -> str:
    """The card's markdown. ``place``: its rank and how it compares with #1; ``figures``: caption -> path
    relative to the board (the card lies one folder down)."""
    run, accs = entry.first.run, [100 * r.accuracy for r in entry.records]
    runs = [[r.run.fold, r.run.trial, r.run.seed, *(_percent(r, m.name) for m in registered()), r.n_test,
             f"{r.wall_time_s:.1f}", r.hardware, (r.git.get("commit") or "?")[:10]]
            for r in sorted(entry.records, key=lambda r: (r.run.fold, r.run.trial))]
    lines = [f"# {entry.label}: {run.dataset}, {run.epochs} epoch{'s' if run.epochs != 1 else ''}", "",
             f"[Leaderboard](../) · {place} · accuracy {np.mean(accs):.2f} % over {len(accs)} runs "
             f"({run.variant})", "", sub.doc if sub and sub.doc else "(the submission has no docstring)", "",
             "## Reproduce", "", "```bash", reproduce_command(entry, spec, sub), "```", "",
             "## Every run", "",
             tabulate(runs, ["fold", "trial", "seed", *(m.label for m in registered()), "test clips", "s",
                             "hardware", "commit"], tablefmt="github"), "", *_per_class(entry),
             "## Hyperparameters", "", f"As recorded with its runs (config hash `{entry.first.config_hash}`).", "",
             tabulate(_settings(entry.first), ["setting", "value"], tablefmt="github"), ""]
    if figures:
        lines += ["## Figures", "", *[f"![{caption}](../{path})\n" for caption, path in figures.items()]]
    return "\n".join(lines)
