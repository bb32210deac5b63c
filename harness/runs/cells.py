"""Cells: what ``bench run`` and a line of ``grid.toml`` ask for, as values checked when made.

A cell is a submission on a dataset over some test folds and trials with one set of options
(epoch budget, weights, precision, compile); ``Cell.runs`` expands it into the runs it names.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError
from harness.core.registry import did_you_mean
from harness.data.catalog import DatasetSpec
from harness.runs.run import Run, grid, weights_for


class CellError(HarnessError):
    """An option of ``bench run`` or an entry of a grid file that names no valid set of runs.

    ``option`` is the command-line option at fault, when there is one.
    """

    def __init__(self, message: str, option: str | None = None):
        super().__init__(message)
        self.option = option


@dataclass(frozen=True)
class Cell:
    """Args:
        submission, dataset: registered names.
        folds: ``all`` (the dataset's evaluation folds) or comma-separated fold numbers.
        trials: trials per fold (1-based seeds). epochs: the budget; None is the recipe's.
        weights: a local checkpoint for a pretrained model. random_init: a pretrained model from random weights.
        precision: ``auto`` | ``bf16`` | ``fp32``. compile: ``auto`` (on for CUDA where it works) | ``on`` | ``off``.
    """

    submission: str
    dataset: str
    folds: str = "all"
    trials: int = 1
    epochs: int | None = None
    weights: Path | None = None
    random_init: bool = False
    precision: str = "auto"
    compile: str = "auto"

    def __post_init__(self):
        for name in ("trials", "epochs"):
            value = getattr(self, name)
            if not (value is None and name == "epochs") and (
                    isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise CellError(f"{value!r}: use a whole number of at least 1", f"--{name}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise CellError(f"{self.precision!r}: use auto, bf16 or fp32", "--precision")
        if self.compile not in ("auto", "on", "off"):
            raise CellError(f"{self.compile!r}: use auto, on or off", "--compile")

    def fold_list(self, spec: DatasetSpec) -> list[int]:
        if self.folds == "all":
            return spec.eval_folds
        try:
            folds = [int(f) for f in self.folds.split(",")]
        except ValueError:
            raise CellError(f"{self.folds!r}: use 'all' or fold numbers such as 1,2", "--folds") from None
        if bad := [f for f in folds if not 1 <= f <= spec.num_folds]:
            raise CellError(f"fold(s) {bad} out of range 1..{spec.num_folds} for {spec.name}", "--folds")
        return folds

    def runs(self, model_name: str, pretrained: bool | str, recipe_epochs: int, spec: DatasetSpec,
             precision: str, compiled: bool) -> list[Run]:
        """The runs this cell names, for a submission with these defaults; precision and compile resolved."""
        weights, checkpoint = weights_for(model_name, pretrained, self.weights, self.random_init)
        return grid(self.submission, self.dataset, self.fold_list(spec), self.trials, self.epochs or recipe_epochs,
                    weights=weights, precision=precision, compiled=compiled, checkpoint=checkpoint)


GRID_KEYS = ("submission", "dataset", "folds", "trials", "epochs", "random_init", "compile")


def read_grid_file(path: Path) -> list[Cell]:
    """The ``[[run]]`` entries of a grid file, each checked: unknown keys say "did you mean"."""
    try:
        entries = tomllib.loads(path.read_text()).get("run", [])
    except tomllib.TOMLDecodeError as err:
        raise CellError(f"{path}: not valid TOML ({err})") from None
    return [_cell(path, number, entry) for number, entry in enumerate(entries, 1)]


def _cell(path: Path, number: int, entry: dict[str, Any]) -> Cell:
    where = f"{path}, [[run]] number {number}"
    if unknown := sorted(set(entry) - set(GRID_KEYS)):
        raise CellError(f"{where}: unknown key {unknown[0]!r}; use {', '.join(GRID_KEYS)}."
                        f"{did_you_mean(unknown[0], list(GRID_KEYS))}")
    if missing := [k for k in ("submission", "dataset") if k not in entry]:
        raise CellError(f"{where}: missing {', '.join(missing)}")
    try:
        return Cell(**{**entry, "folds": _folds_text(entry.get("folds", "all"))})
    except CellError as err:
        raise CellError(f"{where}: {err.option + ' ' if err.option else ''}{err}") from None


def _folds_text(folds: Any) -> str:
    """A grid file may write folds as "all", "1,2", 3 or [1, 2]."""
    return ",".join(map(str, folds)) if isinstance(folds, list) else str(folds)
