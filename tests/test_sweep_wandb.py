"""Our grid expansion against Weights & Biases' own sweep engine, the `sweeps` package (what
`wandb[sweeps]` installs; a test extra): every shipped sweep file, and the edge cases where the two
once disagreed, expand to the same points, each as often, with the same values (1 and 1.0 told
apart), or both refuse the file."""
import itertools
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.runs.sweep import ALIASES, MAX_RUNS, SweepError, read_sweep

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "sweeps").rglob("*.yaml")) + [ROOT / "leaderboard" / "grid.yaml"]
BASE = "method: grid\nparameters:\n  submission: {value: small_cnn}\n  dataset: {value: synthetic}\n"


def engine() -> Any:
    """The `sweeps` package, imported when a test needs it (sweeps 0.2's pydantic-1 config warns on import)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import sweeps
    return sweeps


def key(point: dict[str, Any]) -> str:
    """A point as text that tells 1, 1.0, True and '1' apart (Python's == does not)."""
    return yaml.safe_dump(point, sort_keys=True, default_flow_style=True)


def wandb_points(document: dict) -> Counter:
    """Every run W&B's grid suggests for one sweep document, until it has none left."""
    runs = engine().next_runs(document, [], validate=True, n=MAX_RUNS + 1)
    assert runs[-1] is None, "W&B's grid was not exhausted"
    points: Counter = Counter()
    for run in runs[:-1]:
        point = {ALIASES.get(name, name): spec["value"] for name, spec in run.config.items()}
        if "fold" in point:
            point["fold"] = str(point["fold"])  # a cell holds its folds as text: "1,2"
        points[key(point)] += 1
    return points


def our_points(path: Path, document: int, names: set[str]) -> Counter:
    """Our points of one document, each cell spread over the folds and trials it names (as W&B's points)."""
    points: Counter = Counter()
    for point in (p for p in read_sweep(path).points if p.document == document):
        folds = point.cell.folds.split(",") if "fold" in names else [None]
        trials = point.cell.trials if "trial" in names else [None]
        for fold, trial in itertools.product(folds, trials):
            spread = {k: v for k, v in (("fold", fold), ("trial", trial)) if k in names}
            points[key({**dict(point.setting), **spread})] += 1
    return points


def assert_same_grid(path: Path) -> None:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    for n, document in enumerate(documents, 1):
        names = {ALIASES.get(name, name) for name in document["parameters"]}
        ours, theirs = our_points(path, n, names), wandb_points(document)
        assert ours == theirs, (f"{path.name}, document {n}: only ours {sorted(ours - theirs)[:5]}, "
                                f"only W&B's {sorted(theirs - ours)[:5]}")


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_shipped_sweep_file_expands_as_wandbs_grid_does(path):
    assert_same_grid(path)


AGREED = {
    "a repeated value is one point": "  width: {values: [32, 32, 64]}\n",
    "1 and 1.0 are one point": "  width: {values: [16, 1, 1.0]}\n",
    "true and 1 are two": "  width: {values: [true, 1]}\n",
    "'1' and 1 are two": "  width: {values: ['1', 1]}\n",
    "a repeated list is one point": "  width: {values: [[1, 2], [1, 2], [2]]}\n",
    "a repeated trial and fold": "  trial_num: {values: [1, 1, 2]}\n  fold: {values: [1, 2, 1]}\n",
    "an integer range": "  width: {min: 28, max: 30}\n  mixup: {values: [0.0, 0.4], distribution: categorical}\n",
    "a constant": "  width: {value: 8, distribution: constant}\n",
    "q_uniform, max excluded": "  mixup: {distribution: q_uniform, min: 0, max: 1, q: 0.25}\n",
    "q_uniform on integers": "  width: {distribution: q_uniform, min: 0, max: 10, q: 3}\n",
    "q_uniform's default q of 1.0": "  width: {distribution: q_uniform, min: 2, max: 5}\n",
    "q_uniform's float steps as numpy makes them": "  mixup: {distribution: q_uniform, min: 1, max: 1.3, q: 0.1}\n"
                                                   "  lr: {distribution: q_uniform, min: 0.1, max: 0.7, q: 0.1}\n",
}


@pytest.mark.parametrize("case", AGREED)
def test_edge_cases_expand_as_wandbs_grid_does(tmp_path, case):
    if case == "1 and 1.0 are one point" and tuple(map(int, engine().__version__.split(".")[:2])) < (0, 3):
        pytest.skip(f"sweeps {engine().__version__} (the lock's: 0.3 requires numpy<2) makes 1 and 1.0 two points; "
                    f"W&B's current engine, 0.3.0, makes them one, as we do")
    path = tmp_path / "edge.yaml"
    path.write_text(BASE + AGREED[case])
    assert_same_grid(path)


REFUSED = {
    "a range of one value": "  width: {min: 30, max: 30}\n",
    "a range upside down": "  width: {min: 3, max: 1}\n",
    "a float range (W&B: uniform)": "  lr: {min: 0.001, max: 0.1}\n",
    "a uniform distribution": "  lr: {distribution: uniform, min: 0, max: 1}\n",
    "a q_uniform range of no width": "  width: {distribution: q_uniform, min: 1, max: 1}\n",
    "a q_uniform step of 0": "  mixup: {distribution: q_uniform, min: 0, max: 1, q: 0}\n",
    "values with int_uniform": "  width: {values: [1, 2], distribution: int_uniform}\n",
    "value and values both": "  width: {value: 1, values: [1, 2]}\n",
    "no values": "  width: {values: []}\n",
}


@pytest.mark.parametrize("case", REFUSED)
def test_what_wandbs_grid_refuses_is_refused_saying_so(tmp_path, case):
    import jsonschema

    path = tmp_path / "edge.yaml"
    path.write_text(BASE + REFUSED[case])
    with pytest.raises((ValueError, jsonschema.ValidationError)):
        wandb_points(yaml.safe_load(path.read_text()))
    with pytest.raises(SweepError, match=r"^.*edge.yaml, parameter '\w+': .*W&B"):
        read_sweep(path)
