"""bench check on broken plug-ins, reproducibility locks, verify --result, provenance guards, rules."""
import json

import pytest
from click.testing import CliRunner

from harness.runs import locks
from harness.runs import execute as runner
from harness.runs import store as R
from harness.runs import worker_tasks
from harness.data.catalog import load_catalog
from harness.runs.check import check_submission
from harness.cli.commands import main
from harness.board.aggregate import aggregate
from harness.board.leaderboard import collect
from harness.runs.run import Run
from harness.training.features import FeatureTable

from conftest import ThreadWorker, copy_submission, grid_named, run_named, runs, submissions

BROKEN = '''
import numpy as np
import torch
from torch import nn
from harness import LogMel, Recipe, Submission, register_submission


class Model(nn.Module):
    def __init__(self, num_classes, outputs=None):
        super().__init__()
        self.fc = nn.Linear(1, outputs or num_classes)

    def forward(self, x):
        return {forward}


@register_submission
def {name}():
    """{doc}"""
    return Submission(frontend=LogMel(8000, n_mels=16), model={model}, recipe=Recipe(batch_size=4))
'''
GOOD_FORWARD = "self.fc(x.mean((1, 2, 3))[:, None])"


def broken(tmp_path, name, forward=GOOD_FORWARD, model="Model", doc="A test submission made to fail one check."):
    path = tmp_path / "mine" / f"{name}.py"
    path.parent.mkdir(exist_ok=True)
    path.write_text(BROKEN.format(name=name, forward=forward, model=model, doc=doc))
    return path


@pytest.mark.parametrize("name, forward, model, step, message", [
    ("no_model", GOOD_FORWARD, "None", "loads", "Submission(model=None): a timm model name or a callable"),
    ("wrong_shape", GOOD_FORWARD, "lambda num_classes: Model(num_classes, outputs=3)", "model output shape",
     "model returns shape (4, 3) for a batch of 4, expected (4, 6)"),
    ("nan_loss", GOOD_FORWARD + " * float('nan')", "Model", "forward and backward", "the loss or a gradient is not finite"),
    ("random_output", GOOD_FORWARD + " + (torch.from_numpy(np.random.default_rng().normal(size=(len(x), 6))).float()"
                      " if self.training else 0)",
     "Model", "deterministic on CPU", "two runs with the same seed gave different predictions"),
])
def test_check_fails_broken_submissions_with_a_clear_message(tmp_path, name, forward, model, step, message):
    path = broken(tmp_path, name, forward, model)
    failures = [f for f in check_submission(name, submissions(path.parent)) if not f.ok]
    assert failures and failures[0].step == step, failures
    assert message in failures[0].message and str(path) in failures[0].message


def test_check_fails_an_undocumented_submission_as_the_test_suite_would(tmp_path):
    path = broken(tmp_path, "undocumented", doc="")
    failures = [f for f in check_submission("undocumented", submissions(path.parent)) if not f.ok]
    assert [f.step for f in failures] == ["docstring"] and str(path) in failures[0].message


def test_check_command_passes_a_good_submission_and_fails_a_broken_one(tmp_path):
    path = broken(tmp_path, "wrong_shape_cli", model="lambda num_classes: Model(num_classes, outputs=2)")
    out = CliRunner().invoke(main, ["check", "small_cnn"])
    assert out.exit_code == 0 and "small_cnn: OK (9/9 checks passed)" in out.output
    out = CliRunner().invoke(main, ["--submissions", str(path.parent), "check", "wrong_shape_cli"])
    assert out.exit_code == 1 and "model output shape" in out.output


def test_lock_then_verify_passes_and_a_changed_hyperparameter_fails(tmp_path):
    locks.lock("small_cnn", submissions(), tmp_path)
    ok, lines = locks.verify("small_cnn", submissions(), tmp_path)
    assert ok, lines
    edited = copy_submission("small_cnn", tmp_path / "edited", lambda text: text.replace("lr=5e-3", "lr=1e-3"))
    ok, lines = locks.verify("small_cnn", submissions(edited.parent, project=False), tmp_path)
    text = "\n".join(lines)
    assert not ok and "config changed since the lock: recipe.lr: 0.005 -> 0.001" in text
    assert "re-lock with `bench lock small_cnn`" in text


def test_verify_without_a_lock_says_how_to_create_it(tmp_path):
    ok, lines = locks.verify("small_cnn", submissions(), tmp_path)
    assert not ok and "bench lock small_cnn" in lines[0]


def test_every_submission_has_a_committed_lock():
    missing = [n for n in submissions() if not (locks.LOCK_DIR / f"{n}.json").is_file()]
    assert not missing, f"run `bench lock NAME` for: {missing}"


def test_verify_result_reruns_a_stored_run_exactly(tmp_path):
    report = grid_named(load_catalog().get("synthetic"), runs("small_cnn", folds=(2,)), tmp_path / "results")
    out = CliRunner().invoke(main, ["verify", "--result", str(report.done[0])])
    assert out.exit_code == 0, out.output
    assert "accuracy: stored" in out.output and "difference +0.0000 (within the cpu tolerance 0.0)" in out.output
    assert "predictions identical on 24 of 24" in out.output


# --- provenance guards -----------------------------------------------------------------------

@pytest.fixture
def stored(tmp_path):
    report = grid_named(load_catalog().get("synthetic"), runs("small_cnn", folds=(1,)), tmp_path / "results")
    return report.done[0]


def reasons(tmp_path, splits=None):
    _, excluded = collect(tmp_path / "results", submissions(), load_catalog(), splits)
    return [why for _, why in excluded if "small_cnn" in str(_)]


def test_current_result_is_ranked(tmp_path, stored):
    ranked, _ = collect(tmp_path / "results", submissions(), load_catalog())
    assert len(ranked) == 1 and len(aggregate(ranked)[("synthetic", 1)]) == 1


@pytest.mark.parametrize("field, value, why", [
    ("source_hash", "0" * 64, "stale: submission source changed since this run"),
    ("config_hash", "0" * 16, "stale: config changed since this run"),
    ("dataset_version", "0", "stale: dataset version 0 != current 1"),
])
def test_changed_provenance_makes_a_result_stale(tmp_path, stored, field, value, why):
    record = json.loads(stored.read_text())
    record[field] = value
    R.write_json_atomic(stored, R.seal(record))
    assert reasons(tmp_path) == [why]


def test_verify_result_refuses_a_run_that_no_longer_matches_the_code(tmp_path, stored):
    record = json.loads(stored.read_text())
    record["source_hash"] = "0" * 64
    R.write_json_atomic(stored, R.seal(record))
    out = CliRunner().invoke(main, ["verify", "--result", str(stored)])
    assert out.exit_code == 1
    assert "cannot be re-run as recorded: submission source changed since this run" in out.output


def test_changed_fold_split_makes_a_result_stale(tmp_path, stored):
    from harness.data.datasets import AnswerKey, answer_key
    from harness.runs.verdict import Splits

    now = answer_key(load_catalog().get("synthetic"))
    other = Splits(known={"synthetic": AnswerKey(now.labels, now.folds, "another split")})
    assert [why.split(" (")[0] for why in reasons(tmp_path, other)] == ["stale: fold split changed since this run"]


def test_the_test_fold_never_reaches_training(tmp_path, monkeypatch):
    """Which clips' features the driver sends before fit returns (training in a thread here, to see it)."""
    data = runner.load_dataset(load_catalog().get("synthetic"))
    seen, fitting = [], {"done": False}
    real_take, real_fit = FeatureTable.take, worker_tasks.fit_default

    def spy_take(table, indices):  # every clip's features exist; which of them reach training is the point
        seen.append((fitting["done"], set(data.folds[indices].tolist())))
        return real_take(table, indices)

    def spy_fit(ctx):
        result = real_fit(ctx)
        fitting["done"] = True
        return result

    monkeypatch.setattr(FeatureTable, "take", spy_take)
    monkeypatch.setattr(worker_tasks, "fit_default", spy_fit)
    monkeypatch.setattr(runner, "Worker", ThreadWorker)
    run_named(Run("small_cnn", "synthetic", 1, 3, 1, overrides=(("recipe.val_fraction", 0.2),)),
              load_catalog().get("synthetic"))
    before = set().union(*[folds for done, folds in seen if not done])
    after = [folds for done, folds in seen if done]
    assert 3 not in before and after == [{3}]


def test_random_init_runs_of_pretrained_submissions_are_ranked_and_marked(tmp_path):
    grid_named(load_catalog().get("synthetic"), runs("lecture_resnet18_frozen", folds=(1,), weights="random"),
               tmp_path / "results")
    ranked, excluded = collect(tmp_path / "results", submissions(), load_catalog())
    assert [r.pretrained for r in ranked] == [False], excluded
