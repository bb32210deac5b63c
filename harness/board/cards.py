"""A page per leaderboard entry, its model card: what it is (the submission's docstring: seed,
published figures, deviations), the command that reproduces it, its metrics per fold and
trial, every hyperparameter, and the table's figures.
"""
from __future__ import annotations

import re
from typing import Any

import numpy as np
from tabulate import tabulate

from harness.board.aggregate import Entry
from harness.runs.described import Described
from harness.runs.records import RunRecord
from harness.training.metrics import registered


def card_path(dataset: str, epochs: int, label: str) -> str:
    slug = re.sub(r"[^\w.]+", "-", label).strip("-")  # "name (variant)" -> name-variant
    return f"entries/{dataset}-e{epochs}-{slug}.md"


def reproduce_command(entry: Entry) -> str:
    """The ``bench run`` that trains exactly the entry's runs (its identity: weights, precision, compile)."""
    run, folds, trials = entry.first.run, entry.folds, entry.trials
    args = [f"bench run -s {run.submission} -d {run.dataset} --epochs {run.epochs}",
            f"--folds {','.join(map(str, folds))}", f"--trials {max(trials)}", f"--device {entry.first.device}",
            f"--precision {run.precision}", f"--compile {'on' if run.compiled else 'off'}"]
    if run.weights == "random":
        args.append("--random-init")
    elif run.weights.startswith("sha256:"):
        args.append(f"--weights CHECKPOINT  # the file whose {run.weights[:23]}…")
    note = [] if trials == list(range(1, max(trials) + 1)) else [f"# the board holds trials {trials} of these"]
    return " \\\n    ".join(args) + ("\n" + note[0] if note else "")


def _flat(params: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    rows = []
    for key, value in params.items():
        if isinstance(value, dict) and value:
            rows += _flat(value, f"{prefix}{key}.")
        else:
            rows.append((f"{prefix}{key}", f"`{value}`"))
    return rows


def _percent(record: RunRecord, metric: str) -> str:
    return f"{100 * record.metrics[metric]:.2f}" if metric in record.metrics else "–"


def model_card(entry: Entry, sub: Described | None, place: str, figures: dict[str, str]) -> str:
    """The card's markdown. ``place``: its rank and how it compares with #1; ``figures``: caption -> path
    relative to the board (the card lies one folder down)."""
    run, accs = entry.first.run, [100 * r.accuracy for r in entry.records]
    runs = [[r.run.fold, r.run.trial, r.run.seed, *(_percent(r, spec.name) for spec in registered()), r.n_test,
             f"{r.wall_time_s:.1f}", r.hardware, (r.git.get("commit") or "?")[:10]]
            for r in sorted(entry.records, key=lambda r: (r.run.fold, r.run.trial))]
    lines = [f"# {entry.label}: {run.dataset}, {run.epochs} epoch{'s' if run.epochs != 1 else ''}", "",
             f"[Leaderboard](../) · {place} · accuracy {np.mean(accs):.2f} % over {len(accs)} runs "
             f"({run.variant})", "", sub.doc if sub and sub.doc else "(the submission has no docstring)", "",
             "## Reproduce", "", "```bash", reproduce_command(entry), "```", "",
             "## Every run", "",
             tabulate(runs, ["fold", "trial", "seed", *(spec.label for spec in registered()), "test clips", "s",
                             "hardware", "commit"], tablefmt="github"), "",
             "## Hyperparameters", "", f"As recorded with its runs (config hash `{entry.first.config_hash}`).", "",
             tabulate(_flat(entry.first.config.get("params", {})), ["setting", "value"], tablefmt="github"), ""]
    if figures:
        lines += ["## Figures", "", *[f"![{caption}](../{path})\n" for caption, path in figures.items()]]
    return "\n".join(lines)
