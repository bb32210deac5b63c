"""Metrics as one registry: every registered metric against a reference implementation (generated
from the registry, as timm tests its models), the record check and the board reading it, and a
metric that older records lack computed from their predictions, or shown as –."""
import dataclasses
import re
import shutil
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn import metrics as sk

from harness.cli.commands import main
from harness.core.registry import BadNameError, DuplicateNameError, UnknownNameError
from harness.training.metrics import METRICS, MetricSpec, classification_metrics, register_metric, registered

from conftest import submissions

# name -> the reference a registered metric must agree with; a metric registered without one fails below
REFERENCES = {
    "accuracy": lambda y, p, n: sk.accuracy_score(y, p),
    "balanced_accuracy": lambda y, p, n: sk.balanced_accuracy_score(y, p),
    "macro_f1": lambda y, p, n: sk.f1_score(y, p, labels=range(n), average="macro", zero_division=0),
}


def random_case(seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Labels that leave the last class out and predictions that may name it: both absences occur."""
    rng = np.random.default_rng(seed)
    classes, items = int(rng.integers(3, 12)), int(rng.integers(1, 90))
    return rng.integers(0, classes - 1, items), rng.integers(0, classes, items), classes


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("name", list(METRICS))
def test_every_registered_metric_matches_its_reference(name, seed):
    assert name in REFERENCES, f"metric {name!r} is registered without a reference implementation in this test"
    labels, predictions, classes = random_case(seed)
    with np.errstate(all="raise"):
        got = METRICS.get(name).compute(labels, predictions, classes)
    with warnings.catch_warnings():  # scikit-learn warns of predicted classes absent from the labels
        warnings.simplefilter("ignore")
        want = REFERENCES[name](labels, predictions, classes)
    assert isinstance(got, float) and 0 <= got <= 1 and got == pytest.approx(want, abs=1e-12)
    assert classification_metrics(labels, predictions, classes)[name] == got  # what a new record stores


def test_metrics_match_hand_computed_values():
    m = classification_metrics(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 0]), num_classes=4)
    assert m["accuracy"] == pytest.approx(3 / 5)
    # class 0: P=1/2 R=1/2 -> 0.5; class 1: P=2/3 R=1 -> 0.8; classes 2 and 3: 0
    assert m["per_class_f1"] == pytest.approx([0.5, 0.8, 0.0, 0.0])
    assert m["macro_f1"] == pytest.approx(1.3 / 4)
    assert m["balanced_accuracy"] == pytest.approx((1 / 2 + 1 + 0) / 3)  # class 3 is not in the labels
    assert m["confusion"] == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]


def test_a_metric_is_registered_once_and_found_by_a_close_name():
    before = registered()
    with pytest.raises(DuplicateNameError, match="metric 'accuracy' is registered twice"):
        register_metric(MetricSpec("accuracy", "accuracy %", lambda y, p, n: 0.0))
    with pytest.raises(BadNameError, match="metric name 'top 5'"):
        register_metric(MetricSpec("top 5", "top-5 %", lambda y, p, n: 0.0))
    with pytest.raises(UnknownNameError, match="Did you mean 'balanced_accuracy'"):
        METRICS.get("balanced_acuracy")
    assert registered() == before and [spec.name for spec in before] == sorted(REFERENCES)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_validation_metrics_on_the_device_match_the_registry(seed):
    import torch
    import torch.nn.functional as F

    from harness.training.metrics import validation_metrics

    generator = torch.Generator().manual_seed(seed)
    logits, y = torch.randn(57, 6, generator=generator), torch.randint(0, 5, (57,), generator=generator)  # class 5 absent
    got = validation_metrics(logits, y, 6)
    pred = logits.argmax(1).numpy()
    assert set(got) == {"val_loss"} | {f"val_{name}" for name in METRICS}
    for name in METRICS:
        assert got[f"val_{name}"] == pytest.approx(REFERENCES[name](y.numpy(), pred, 6))
    assert got["val_loss"] == pytest.approx(F.cross_entropy(logits, y).item())


def test_a_run_with_a_validation_split_records_validation_metrics_per_epoch():
    from harness.data.catalog import load_catalog
    from harness.runs.run import Run

    from conftest import run_named

    run = Run("small_cnn", "synthetic", 3, 1, 1, overrides=(("recipe.val_fraction", 0.2),))
    record = run_named(run, load_catalog().get("synthetic"))
    assert [row["epoch"] for row in record.curves] == [1, 2, 3]
    for row in record.curves:
        assert all(0 <= row[f"val_{name}"] <= 1 for name in METRICS) and row["val_loss"] > 0
    assert record.n_val > 0


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A store with small_cnn's runs on two folds of synthetic, made by `bench run`."""
    results = tmp_path_factory.mktemp("metrics") / "results"
    out = CliRunner().invoke(main, ["run", "-s", "small_cnn", "--folds", "1,2", "--epochs", "1", "--device", "cpu",
                                    "--results", str(results)])
    assert out.exit_code == 0, out.output
    return results


def records_of(results):
    from harness.runs import store

    return [store.load_record(path) for path in store.result_files(results)]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1.5, -0.01, "0.9", True, None])
@pytest.mark.parametrize("name", list(METRICS))
def test_the_record_check_refuses_a_bad_value_of_any_registered_metric(stored, name, bad):
    from harness.runs.records import RecordError, from_json, seal

    data = records_of(stored)[0].to_json()
    assert from_json(seal(data)).metrics[name] == data["metrics"][name]  # a new record stores every metric
    data["metrics"] = {**data["metrics"], name: bad}
    with pytest.raises(RecordError, match=f"has {name} .*, not a number from 0 to 1"):
        from_json(seal(data))


@pytest.mark.parametrize("name", list(METRICS))
def test_a_record_without_a_metric_registered_after_it_is_read_and_without_accuracy_is_not(stored, name):
    from harness.runs.records import REQUIRED_METRICS, RecordError, from_json, seal

    data = records_of(stored)[0].to_json()
    data["metrics"] = {k: v for k, v in data["metrics"].items() if k != name}
    if name in REQUIRED_METRICS:
        with pytest.raises(RecordError, match=f"has no {name}"):
            from_json(seal(data))
    else:
        assert name not in from_json(seal(data)).metrics


def board_cells(text: str, submission: str) -> dict[str, str]:
    """The ranked table's cells of ``submission``'s row, by column heading."""
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("|") and " submission " in line)
    row = next(line for line in lines if line.startswith(f"| ") and f"[{submission}]" in line)
    split = lambda line: [cell.strip() for cell in line.strip("|").split("|")]
    return dict(zip(split(header), split(row)))


def render(results, splits=None):
    from harness.board.leaderboard import render as render_board
    from harness.data.catalog import load_catalog

    return render_board(results, submissions(), load_catalog(), splits, published=False)


def test_the_board_shows_every_registered_metric_and_computes_one_an_older_record_lacks(stored, tmp_path):
    from harness.runs import store
    from harness.runs.verdict import Splits

    text, files = render(stored)
    cells = board_cells(text, "small_cnn")
    values = {name: 100 * np.array([r.metrics[name] for r in records_of(stored)]) for name in METRICS}
    for spec in registered():
        assert cells[spec.label].startswith(f"{values[spec.name].mean():.2f} ± {values[spec.name].std(ddof=1):.2f} [")
        assert re.search(rf"\|\s+{re.escape(spec.label)}\s+\|", files["entries/synthetic-e1-small_cnn.md"])

    older = tmp_path / "results"  # as if run before balanced accuracy was registered
    shutil.copytree(stored, older)
    for path in store.result_files(older):
        record = store.load_record(path)
        metrics = {k: v for k, v in record.metrics.items() if k != "balanced_accuracy"}
        store.write_record(path, dataclasses.replace(record, metrics=metrics))
    assert board_cells(render(older)[0], "small_cnn") == cells  # its dataset's labels are here: computed
    without_data = board_cells(render(older, Splits(known={"synthetic": None}))[0], "small_cnn")
    assert without_data["balanced accuracy %"] == "–" and without_data["accuracy %"] == cells["accuracy %"]
