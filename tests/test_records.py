"""Typed values checked when they are made or read: records, cells of a grid, published figures,
splits, and the process-wide switches a run sets and gives back."""
import dataclasses

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from harness.cli.commands import main
from harness.data.catalog import load_catalog
from harness.data.folds import split_for
from harness.runs import store
from harness.runs.cells import Cell, CellError
from harness.runs.described import Variant
from harness.runs.records import FailedRecord, RecordError, RunRecord, from_json, seal
from harness.runs.provenance import config_hash, run_config
from harness.runs.run import Run, RunError
from harness.training.device import switches
from harness.training.submission import Published, Submission, SubmissionError, get_submission

from conftest import run_named, submissions

SYNTH = load_catalog().get("synthetic")
RUN = Run("small_cnn", "synthetic", 1, 2, 1)


@pytest.fixture(scope="module")
def record() -> RunRecord:
    return run_named(RUN, SYNTH)


def test_a_record_survives_its_file_unchanged(tmp_path, record):
    store.write_record(RUN.path(tmp_path), record)
    back = store.load_record(RUN.path(tmp_path))
    assert back == record and back.run == RUN and back.to_json() == record.to_json()
    failed = FailedRecord(RUN, "RuntimeError: boom", "Traceback ...")
    assert from_json(seal(failed.to_json())) == failed


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(schema=3), "schema 3, this harness reads schema 2; run `bench migrate`"),
    (lambda d: d.update(fold=5), "its fields disagree with its run identity"),
    (lambda d: d.pop("config_hash"), r"no provenance \(missing config_hash\)"),
    (lambda d: d.pop("run"), "stored before runs had identities"),
    (lambda d: d["run"].update(precision="fp16"), "no readable run identity"),
    (lambda d: d["metrics"].pop("macro_f1"), "has no macro_f1"),
    (lambda d: d.update(class_names=["tone", 3]), "has class names that are not a list of names"),
    (lambda d: d.update(class_names="tone"), "has class names that are not a list of names"),
])
def test_a_record_that_is_not_one_is_refused_when_read(record, change, message):
    data = record.to_json()
    data["run"], data["metrics"] = dict(data["run"]), dict(data["metrics"])
    change(data)
    with pytest.raises(RecordError, match=message):
        from_json(seal(data))
    with pytest.raises(RecordError, match="checksum mismatch"):
        from_json({**seal(record.to_json()), "n_test": 1})


def test_a_record_names_its_classes_and_one_from_before_it_did_still_reads(record):
    assert record.class_names == list(SYNTH.class_names) and record.to_json()["class_names"] == record.class_names
    older = {key: value for key, value in record.to_json().items() if key != "class_names"}
    back = from_json(seal(older))
    assert back.class_names is None and back == dataclasses.replace(record, class_names=None)
    assert "class_names" not in back.to_json()  # written back as it was


def test_cells_check_their_values(tmp_path):
    for fields, message in [({"epochs": 0}, "'--epochs'"), ({"trials": -1}, "'--trials'"),
                            ({"precision": "fp16"}, "'--precision'")]:
        with pytest.raises(CellError) as err:
            Cell("small_cnn", "synthetic", **fields)
        assert f"'{err.value.option}'" == message
    assert Cell("small_cnn", "synthetic", folds="1,3").fold_list(SYNTH) == [1, 3]
    assert Cell("small_cnn", "synthetic", trials=[2, 3]).trials == (2, 3)
    out = CliRunner().invoke(main, ["run", "-s", "small_cnn", "--epochs", "0"])
    assert out.exit_code == 2 and "Invalid value for '--epochs': 0: use a whole number of at least 1" in out.output


def test_published_figures_have_one_typed_shape():
    sub = get_submission("small_cnn")
    made = dataclasses.replace(sub, published={"fsdd": {"epochs": 5, "accuracy": 97.0},
                                               "esc50": [{"epochs": 80, "accuracy": 89.5, "protocol": "5-fold"}]})
    assert made.published == {"fsdd": (Published(5, 97.0),), "esc50": (Published(80, 89.5, protocol="5-fold"),)}
    assert made.published_for("esc50", 80).protocol == "5-fold" and made.published_for("esc50", 20) is None
    with pytest.raises(SubmissionError, match="unknown acuracy.*Did you mean 'accuracy'"):
        dataclasses.replace(sub, published={"fsdd": {"epochs": 5, "acuracy": 97.0}})
    with pytest.raises(SubmissionError, match="a percentage from 0 to 100"):
        Published(5, 0.97 * 1000)
    with pytest.raises(SubmissionError, match=r"Submission\(frontend='logmel'\)"):
        Submission(frontend="logmel", model="resnet18")


def test_a_split_gives_each_clip_one_role():
    folds, labels = np.repeat(np.arange(1, 6), 12), np.tile(np.arange(3), 20)
    split = split_for(folds, labels, test_fold=2, val_fraction=0.25, seed=7)
    assert sorted(np.concatenate(split).tolist()) == list(range(60))
    assert set(folds[split.test]) == {2} and len(split.val) == 12 and 2 not in set(folds[split.train])


def test_a_run_gives_back_the_process_wide_switches_it_sets():
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.benchmark = False
    with switches(torch.device("cpu")):
        assert torch.are_deterministic_algorithms_enabled()
    assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.benchmark
    run_named(RUN, SYNTH)
    assert not torch.are_deterministic_algorithms_enabled()


def test_a_runs_overrides_are_part_of_its_identity_and_of_what_it_trains(tmp_path):
    subs = submissions()
    described = subs.describe("small_cnn")
    config = lambda run: config_hash(run_config(described, subs.built("small_cnn", Variant(run.overrides)), SYNTH, run))
    built = lambda overrides: subs.built("small_cnn", Variant(tuple(overrides.items())))
    changed = dataclasses.replace(RUN, overrides={"recipe.lr": 0.05, "recipe.batch_size": 8})
    assert changed.overrides == (("recipe.batch_size", 8), ("recipe.lr", 0.05))
    assert changed.path(tmp_path) != RUN.path(tmp_path) and changed.variant.startswith("scratch-fp32-o")
    assert RUN.identity() == {k: v for k, v in changed.identity().items() if k != "overrides"}
    assert Run.from_identity(changed.identity()) == changed
    assert config(changed) != config(RUN)
    recipe = subs.built("small_cnn", Variant(changed.overrides)).recipe
    assert recipe["lr"] == 0.05 and recipe["batch_size"] == 8
    with pytest.raises(SubmissionError, match="no setting 'recipe.learning_rate'.*Did you mean 'recipe.lr'"):
        built({"recipe.learning_rate": 0.1})
    with pytest.raises(SubmissionError, match="Did you mean 'global'"):
        built({"recipe.normalize": "globl"})
    with pytest.raises(RunError, match="override 'n_mels': use a full setting name"):
        dataclasses.replace(RUN, overrides={"n_mels": 32})  # a run holds full names; short ones are resolved before


def test_a_record_says_when_its_data_features_and_first_step_were_ready(record):
    phases = record.phases
    assert 0 <= phases["data_s"] <= phases["features_s"] <= phases["first_step_s"] <= record.wall_time_s
    assert phases["process_s"] > 0  # the process ran (imports, this test session) before the run began


def test_a_process_knows_its_age():
    import subprocess
    import sys
    code = "import time; time.sleep(0.5); from harness.core.owners import process_age; print(process_age())"
    age = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert 0.5 <= age < 30  # counted from the command, not from an import


def test_a_gpu_run_leaves_determinism_alone_and_does_not_pay_for_importing_inductor():
    import subprocess
    import sys
    code = ("import sys, torch; from harness.training.device import switches\n"
            "with switches(torch.device('cuda')): assert torch.backends.cudnn.benchmark\n"
            "print('torch._inductor.config' in sys.modules, torch.backends.cudnn.benchmark)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]  # an eager GPU run starts about a second sooner
