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
run``. The points are those of W&B's own grid engine (the ``sweeps`` package, which
tests/test_sweep_wandb.py compares with this): a value repeated in ``values`` is one point (1 and
1.0 too; true and 1 are two), a ``min``/``max`` range is of whole numbers, max included, with min
< max, and ``distribution: q_uniform`` is ``np.arange(min, max, q)``, max excluded; what W&B's
grid refuses is refused. A file may hold several sweeps as YAML documents separated by ``---``
(the leaderboard's grid is one such file). Only ``method: grid`` exists here: random and Bayesian
search choose runs from results as they come in, which a reproducible plan cannot.

A sweep file is input from anyone, so it is bounded before anything is built from it: at most
``MAX_SWEEP_BYTES``, ``MAX_DEPTH`` levels of nesting, ``MAX_VALUES`` YAML values once its aliases
are expanded (anchors and aliases are valid YAML and allowed, but nine nested aliases of ten make
10^9 values: the "billion laughs"), and ``max_runs`` runs, counted as the product of the value
counts before any point is made.
"""
from __future__ import annotations

import collections.abc
import functools
import itertools
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from harness.core.errors import HarnessError
from harness.core.registry import did_you_mean
from harness.runs.cells import PACKAGED, Cell, CellError

AXES = ("submission", "dataset", "epochs", "fold", "trial")
ALIASES = {"trial_num": "trial"}  # seed 000's sweep files
OPTIONS = ("random_init", "weights", "precision", "compile", "protocol")  # a cell's options, settable per sweep
WANDB_KEYS = ("method", "parameters", "program", "project", "entity", "name", "description", "metric",
              "command", "early_terminate", "run_cap")  # accepted; only method and parameters mean anything here
SPEC_KEYS = ("value", "values", "min", "max", "q", "distribution")
FORMS = {"value": ("constant",), "values": ("categorical",), "min": ("int_uniform", "q_uniform")}  # W&B's grid's
WRITE = ("write {value: V}, {values: [V, ...]}, {min: A, max: B} (whole numbers, A < B) or "
         "{distribution: q_uniform, min: A, max: B, q: STEP}; W&B's grid expands no other form")
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
    """A parameter's values as W&B's grid expands them."""
    form = _form(where, spec)
    if form == "value":
        return [spec["value"]]
    if form == "values":
        return _distinct(where, spec["values"])
    return _steps(where, spec) if spec.get("distribution") == "q_uniform" else _whole_range(where, spec)


def _form(where: str, spec: Any) -> str:
    """Which of ``value``, ``values`` and ``min`` a spec is, refused where W&B's grid has no such form."""
    forms = [k for k in FORMS if k in spec] if isinstance(spec, dict) else []
    if len(forms) != 1 or set(spec) - set(SPEC_KEYS):
        raise SweepError(f"{where}: {WRITE}")
    form, distribution = forms[0], spec.get("distribution")
    if extra := sorted(set(spec) - {form, "distribution"} - ({"max", "q"} if form == "min" else set())):
        raise SweepError(f"{where}: `{extra[0]}` does not go with `{form}` (W&B's grid refuses the pair); {WRITE}")
    if distribution is not None and distribution not in FORMS[form]:
        instead = "list the values with `values`" if form == "min" else "leave `distribution` out"
        raise SweepError(f"{where}: a grid expands `{form}` as {' or '.join(FORMS[form])}, not distribution "
                         f"{distribution!r}; W&B's grid refuses it too: {instead}")
    if "q" in spec and distribution != "q_uniform":
        raise SweepError(f"{where}: `q` goes only with `distribution: q_uniform` (W&B's grid refuses it otherwise)")
    return form


def _distinct(where: str, values: Any) -> list[Any]:
    """``values`` with a repeated value once, as W&B's grid has it: in the order first written, each value as
    last written (what W&B's run is given: 1.0 of ``[1, 1.0]``)."""
    if not isinstance(values, list) or not values:
        raise SweepError(f"{where}: `values` must be a non-empty list (W&B's grid refuses an empty one too)")
    return list({_identity(v): v for v in values}.values())


def _identity(value: Any) -> Any:
    """What W&B's grid tells values apart by: their YAML (its ``yaml_hash``), a whole float as its int (sweeps
    0.3), so 1 and 1.0 are one value but true and 1, or '1' and 1, are two."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return type(value).__name__, "nan" if value != value else value  # YAML writes every NaN as .nan
    import yaml

    return yaml.dump(value, Dumper=getattr(yaml, "CDumper", yaml.Dumper), default_flow_style=True, sort_keys=True)


def _whole_range(where: str, spec: dict) -> range:
    """``{min: A, max: B}``: A..B, B included (W&B's int_uniform)."""
    low, high = spec.get("min"), spec.get("max")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high)):
        raise SweepError(f"{where}: a grid expands only whole-number ranges (min < max, both integers) and q_uniform "
                         f"steps; W&B's grid refuses this one too (a float range is its `uniform`): list float "
                         f"values with `values`")
    _check_order(where, low, high)
    if high - low >= sys.maxsize:  # a range this long has no len()
        raise SweepError(f"{where}: {high - low + 1:,} values, more than any sweep can run; narrow the range")
    return range(low, high + 1)  # counted by the size check before anything is expanded


def _steps(where: str, spec: dict) -> Sequence[Any]:
    """``{distribution: q_uniform, min: A, max: B, q: STEP}``: W&B's ``np.arange(A, B, STEP)``, B excluded."""
    low, high, q = spec.get("min"), spec.get("max"), spec.get("q", 1.0)  # W&B's default q
    number = lambda v: isinstance(v, float) and math.isfinite(v) or \
        isinstance(v, int) and not isinstance(v, bool) and -2 ** 63 <= v < 2 ** 63  # what numpy can make
    if not all(map(number, (low, high, q))) or q <= 0 or not math.isfinite((high - low) / q):
        raise SweepError(f"{where}: q_uniform takes numbers min < max and a step q > 0, as W&B's grid does")
    _check_order(where, low, high)
    return _Steps(where, low, high, q)


def _check_order(where: str, low: float, high: float) -> None:
    if low >= high:
        one = f"; write {{value: {low}}} for that one value" if low == high else ""
        raise SweepError(f"{where}: min {low} is not less than max {high}, which W&B's grid refuses{one}")


class _Steps(collections.abc.Sequence):
    """A q_uniform parameter's values, counted as numpy counts them (ceil((max - min) / q)) so that the size
    check refuses a huge one before any is made, and made by numpy, as W&B makes them."""

    def __init__(self, where: str, low: float, high: float, q: float):
        self.where, self.bounds, self.count = where, (low, high, q), math.ceil((high - low) / q)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: Any) -> Any:
        return self.values[index]

    def __iter__(self) -> Any:
        return iter(self.values)

    @functools.cached_property
    def values(self) -> list[Any]:
        import numpy as np

        try:
            return np.arange(*self.bounds).tolist()
        except (ValueError, OverflowError) as err:  # integers past int64
            raise SweepError(f"{self.where}: q_uniform cannot make these values ({err})") from None


def _points(path: Path, document: int, grid: dict[str, Sequence[Any]]) -> list[Point]:
    """Every combination of the non-fold, non-trial values, each a cell over the fold and trial values."""
    folds, trials = grid.get("fold", ["all"]), grid.get("trial", [1])
    where = f"{path}" + (f", document {document}" if document > 1 else "")
    if "all" in folds and len(folds) > 1:
        raise SweepError(f"{where}, parameter 'fold': 'all' already names every fold")
    rest = {k: v for k, v in grid.items() if k not in ("fold", "trial")}
    if any(not str(value).startswith(PACKAGED) for value in grid.get("weights", ())):
        raise SweepError(f"{where}, parameter 'weights': a sweep file names weights as {PACKAGED}DIST/PATH only (a "
                         f"file an installed package ships): the worker may read the file it names, and a file of "
                         f"a data root or a result store holds labels or predictions. Your own checkpoint: "
                         f"`bench run --weights FILE`")
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
