"""Sweeps: a plan of runs written in Weights & Biases' sweep format, expanded into cells.

    method: grid
    parameters:
      submission: {value: small_cnn}
      dataset:    {value: fsdd}
      n_mels:     {values: [32, 64]}       # a setting of the submission (training.overrides)
      mixup:      {values: [0.0, 0.4]}
      trial_num:  {values: [1, 2, 3]}     # W&B's name for `trial`, as seed 000 wrote it

Every combination of the values is one point; a point is a ``Cell`` (its folds and trials are
the ``fold`` and ``trial`` values), so a sweep runs, resumes and stores exactly like ``bench
run``. A file may hold several sweeps as YAML documents separated by ``---`` (the leaderboard's
grid is one such file). Only ``method: grid`` exists here: random and Bayesian search choose
runs from results as they come in, which a reproducible plan cannot.

A sweep file is input from anyone, so it is bounded before anything is built from it: at most
``MAX_SWEEP_BYTES``, ``MAX_DEPTH`` levels of nesting, ``MAX_VALUES`` YAML values once its aliases
are expanded (anchors and aliases are valid YAML and allowed, but nine nested aliases of ten make
10^9 values: the "billion laughs"), and ``max_runs`` runs, counted as the product of the value
counts before any point is made.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from harness.core.errors import HarnessError
from harness.core.registry import did_you_mean
from harness.runs.cells import Cell, CellError

AXES = ("submission", "dataset", "epochs", "fold", "trial")
ALIASES = {"trial_num": "trial"}  # seed 000's sweep files
OPTIONS = ("random_init", "precision", "compile")  # a cell's options, settable per sweep
WANDB_KEYS = ("method", "parameters", "program", "project", "entity", "name", "description", "metric",
              "command", "early_terminate", "run_cap")  # accepted; only method and parameters mean anything here
SPEC_KEYS = ("value", "values", "min", "max", "distribution")
MAX_SWEEP_BYTES = 256_000    # the largest real sweep file (leaderboard/grid.yaml) is 2 KB
MAX_VALUES = 20_000          # YAML values once aliases are expanded; the largest real file holds a few hundred
MAX_DEPTH = 32               # lists and mappings within each other; a sweep nests 5
MAX_RUNS = 100_000           # runs a sweep may expand to (`bench sweep --max-runs`); seed 000's study is 1,430


class SweepError(HarnessError):
    """A sweep file that names no valid plan; the message names the file and the parameter."""


@dataclass(frozen=True)
class Point:
    """One combination of a sweep's values: its settings as written (fold and trial aside) and its cell."""

    setting: tuple[tuple[str, Any], ...]
    cell: Cell
    document: int = 1

    def label(self, swept: list[str]) -> str:
        """The values of the swept parameters, as a reader scans a list of runs: ``n_mels=64 mixup=0.4``."""
        return " ".join(f"{k}={v}" for k, v in self.setting if k in swept)


@dataclass(frozen=True)
class Sweep:
    path: Path
    points: tuple[Point, ...]
    swept: tuple[str, ...]          # parameters with more than one value, fold and trial aside
    folds: tuple[str, ...]          # the fold values named, or ("all",)

    @property
    def name(self) -> str:
        return self.path.stem


def read_sweep(path: Path, max_runs: int = MAX_RUNS) -> Sweep:
    """Parse and expand a sweep file; every error names the file, the document and the parameter.

    A file that would expand to more than ``max_runs`` runs is refused before any is made.
    """
    documents = _documents(Path(path))
    if not documents:
        raise SweepError(f"{path}: no sweep in the file")
    grids = [_parameters(path if len(documents) == 1 else f"{path}, document {n}", doc)
             for n, doc in enumerate(documents, 1)]
    _check_size(path, grids, max_runs)
    points = tuple(p for n, grid in enumerate(grids, 1) for p in _points(path, n, grid))
    swept = tuple(dict.fromkeys(k for grid in grids for k, v in grid.items() if len(v) > 1 and k not in ("fold", "trial")))
    folds = tuple(dict.fromkeys(str(f) for grid in grids for f in grid.get("fold", ["all"])))
    return Sweep(Path(path), points, swept, folds)


def _documents(path: Path) -> list[Any]:
    """The file's YAML documents (empty ones left out), refused beyond the size, depth and value bounds."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: 256 KB parse in 0.1 s, not 6 s
    try:
        with open(path, "rb") as fh:
            text = fh.read(MAX_SWEEP_BYTES + 1)
    except OSError as err:
        raise SweepError(f"{path}: cannot be read ({err.strerror})") from None
    if len(text) > MAX_SWEEP_BYTES:
        raise SweepError(f"{path}: larger than {MAX_SWEEP_BYTES // 1000} KB; a sweep file is a few KB of YAML")
    try:
        _check_shape(yaml.parse(text, Loader=loader))
        return [d for d in yaml.load_all(text, Loader=loader) if d is not None]
    except _Refused as err:
        raise SweepError(f"{path}: {err}") from None
    except yaml.YAMLError as err:
        raise SweepError(f"{path}: not valid YAML ({err})") from None


class _Refused(Exception):
    """YAML nested too deep, or holding too many values once its aliases are expanded."""


def _check_shape(events: Iterable[Any]) -> None:
    """Refuse YAML nested deeper than ``MAX_DEPTH`` or holding more than ``MAX_VALUES`` values once
    its aliases are expanded, from its parse events, before anything is built: an alias adds the
    count of the value it names, so a "billion laughs" is refused within its first hundred events."""
    import yaml

    sizes: dict[str, int] = {}                    # anchor -> how many values it stands for
    reading: list[list[Any]] = [[0, None]]        # the collections open: [values so far, anchor]
    total = 0
    for event in events:
        if isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            count, anchor = reading.pop()
            reading[-1][0] += count
            if anchor is not None:
                sizes[anchor] = count
            continue
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            if len(reading) > MAX_DEPTH:
                raise _Refused(f"nested deeper than {MAX_DEPTH} levels; a sweep nests 5")
            reading.append([0, event.anchor])
            count = 1
        elif isinstance(event, yaml.ScalarEvent):
            count = 1
            if event.anchor is not None:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.AliasEvent):
            count = _aliased(event.anchor, sizes, reading)
        else:
            continue
        reading[-1][0] += count
        if (total := total + count) > MAX_VALUES:
            raise _Refused(f"holds more than {MAX_VALUES:,} values once its YAML aliases are expanded (a real sweep "
                           f"file holds a few hundred; an alias counts every value it stands for)")


def _aliased(anchor: str, sizes: dict[str, int], reading: list[list[Any]]) -> int:
    """How many values an alias stands for; one naming a collection still open is an endless value."""
    if any(open_anchor == anchor for _, open_anchor in reading):
        raise _Refused("a YAML alias refers to the value that holds it (an endless value)")
    return sizes.get(anchor, 0)  # an undefined alias: the loader says so


def _check_size(path: Path, grids: list[dict[str, Sequence[Any]]], max_runs: int) -> None:
    """Refuse a sweep of more than ``max_runs`` runs, counted from the value counts (nothing expanded);
    a fold value ``all`` counts once."""
    sizes = [math.prod(len(v) for v in grid.values()) for grid in grids]
    if (total := sum(sizes)) <= max_runs:
        return
    largest = grids[sizes.index(max(sizes))]
    factors = " × ".join(f"{k} {len(v):,}" for k, v in largest.items() if len(v) > 1) or "1"
    made = factors if len(grids) == 1 else f"{len(grids)} documents, the largest {factors}"
    raise SweepError(f"{path}: {total:,} runs ({made}), over the limit of {max_runs:,}; narrow or split the "
                     f"sweep, or raise the limit with `bench sweep --max-runs N` (or BENCH_MAX_RUNS=N)")


def _parameters(where: str, doc: Any) -> dict[str, Sequence[Any]]:
    """A document's parameters, each expanded to its list of values (W&B's grid semantics)."""
    if not isinstance(doc, dict):
        raise SweepError(f"{where}: a sweep is a mapping with `method` and `parameters`")
    if unknown := sorted(set(doc) - set(WANDB_KEYS)):
        raise SweepError(f"{where}: unknown key {unknown[0]!r}; a sweep has {', '.join(WANDB_KEYS)}."
                         f"{did_you_mean(unknown[0], list(WANDB_KEYS))}")
    if doc.get("method") != "grid":
        raise SweepError(f"{where}: method {doc.get('method')!r} is not supported, use grid "
                         f"(random and bayes pick runs from results as they arrive: no fixed, resumable plan)")
    if not isinstance(doc.get("parameters"), dict) or not doc["parameters"]:
        raise SweepError(f"{where}: `parameters` must map each parameter to {{value: ...}} or {{values: [...]}}")
    grid = {}
    for name, spec in doc["parameters"].items():
        key = ALIASES.get(name, name)
        if key in grid:
            raise SweepError(f"{where}: {name!r} is given twice (as {key!r})")
        grid[key] = _values(f"{where}, parameter {name!r}", spec)
    if missing := [k for k in ("submission", "dataset") if k not in grid]:
        raise SweepError(f"{where}: name the {' and the '.join(missing)} (e.g. `{missing[0]}: {{value: ...}}`)")
    return grid


def _values(where: str, spec: Any) -> Sequence[Any]:
    if not isinstance(spec, dict) or set(spec) - set(SPEC_KEYS) or not set(spec) & {"value", "values", "min"}:
        raise SweepError(f"{where}: write {{value: V}}, {{values: [V, ...]}} or {{min: A, max: B}} (whole numbers)")
    if "value" in spec:
        return [spec["value"]]
    if "values" in spec:
        if not isinstance(spec["values"], list) or not spec["values"]:
            raise SweepError(f"{where}: `values` must be a non-empty list")
        return list(spec["values"])
    low, high = spec.get("min"), spec.get("max")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high)) or low > high \
            or spec.get("distribution", "int_uniform") != "int_uniform":
        raise SweepError(f"{where}: a grid expands only whole-number ranges (min <= max, both integers); "
                         f"list float values with `values`")
    return range(low, high + 1)  # counted by the size check before anything is expanded


def _points(path: Path, document: int, grid: dict[str, Sequence[Any]]) -> list[Point]:
    """Every combination of the non-fold, non-trial values, each a cell over the fold and trial values."""
    folds, trials = grid.get("fold", ["all"]), grid.get("trial", [1])
    where = f"{path}" + (f", document {document}" if document > 1 else "")
    if "all" in folds and len(folds) > 1:
        raise SweepError(f"{where}, parameter 'fold': 'all' already names every fold")
    rest = {k: v for k, v in grid.items() if k not in ("fold", "trial")}
    points = []
    for combination in itertools.product(*rest.values()):
        setting = dict(zip(rest, combination))
        try:
            cell = Cell(str(setting["submission"]), str(setting["dataset"]), folds=",".join(map(str, folds)),
                        trials=tuple(trials), epochs=setting.get("epochs"),
                        **{k: setting[k] for k in OPTIONS if k in setting},
                        overrides=tuple((k, v) for k, v in setting.items() if k not in AXES + OPTIONS))
        except CellError as err:
            name = {"--trials": "trial", "--epochs": "epochs"}.get(err.option, err.option or "")
            raise SweepError(f"{where}, parameter {name.lstrip('-')!r}: {err}") from None
        points.append(Point(tuple(setting.items()), cell, document))
    return points
