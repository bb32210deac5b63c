"""A run is a value: weights, precision and compilation are part of its identity, so runs of one
cell that could give different numbers are kept apart, never overwritten, and ranked as rows of
their own; results stored before identities existed are migrated, not dropped."""
import dataclasses
import json

import pytest
import timm
import torch
from click.testing import CliRunner

from harness.runs import store as R
from harness.data.catalog import load_catalog
from harness.cli.commands import main
from harness.board.aggregate import aggregate
from harness.board.leaderboard import collect, render
from harness.runs.provenance import run_config
from harness.data.fetch import sha256_file
from harness.runs.run import Run, RunError, weights_for
from harness.runs.provenance import config_hash

from conftest import grid_named, runs, submissions

SYNTH = load_catalog().get("synthetic")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Two different resnet18 ImageNet-shaped checkpoints made here."""
    folder = tmp_path_factory.mktemp("ckpt")
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        paths.append(folder / f"resnet18-{seed}.pth")
        torch.save(timm.create_model("resnet18", num_classes=1000).state_dict(), paths[-1])
    return paths


def test_every_identity_of_one_cell_is_its_own_result_and_its_own_row(tmp_path, checkpoints):
    a, b = checkpoints
    base = ["run", "-s", "lecture_resnet18_frozen", "--folds", "1", "--epochs", "1", "--device", "cpu"]
    # fp32 only: this model's bf16 loss is NaN on AMX CPUs; bf16 vs fp32 rows are tested with small_cnn
    variants = [["--random-init"], ["--weights", str(a)], ["--weights", str(b)]]
    for extra in variants:
        out = CliRunner().invoke(main, base + extra)
        assert out.exit_code == 0 and ": 1 run, 0 already finished" in out.output, out.output
    expected = {"random-fp32", f"ckpt-{sha256_file(a)[:12]}-fp32", f"ckpt-{sha256_file(b)[:12]}-fp32"}
    assert {p.parent.name for p in (tmp_path / "results").rglob("*.json")} == expected
    for extra in variants:  # each is finished now, and only itself
        assert ": 0 runs, 1 already finished" in CliRunner().invoke(main, base + extra).output
    ranked, excluded = collect(tmp_path / "results", submissions(), load_catalog())
    assert not excluded and len(aggregate(ranked)[("synthetic", 1)]) == 3
    text, _ = render(tmp_path / "results", submissions(), load_catalog())
    rows = [line for line in text.splitlines() if line.startswith("|") and "lecture_resnet18_frozen (" in line]
    assert len(rows) == 6  # three ranked rows, three per-fold rows
    for variant in expected:
        assert sum(f"lecture_resnet18_frozen ({variant})" in row for row in rows) == 2  # ranked (a link to its page) and per fold


def test_weights_precision_and_compile_each_change_the_path_and_the_config_hash(tmp_path):
    subs, base = submissions(), Run("small_cnn", "synthetic", 1, 1, 1)
    described, built = subs.describe("small_cnn"), subs.built("small_cnn")
    variants = [base, dataclasses.replace(base, precision="bf16"), dataclasses.replace(base, compiled=True),
                dataclasses.replace(base, precision="bf16", compiled=True)]
    assert len({run.path(tmp_path) for run in variants}) == len(variants)
    assert len({config_hash(run_config(described, built, SYNTH, run)) for run in variants}) == len(variants)
    assert base.path(tmp_path).relative_to(tmp_path).as_posix() == "synthetic/small_cnn/e1/scratch-fp32/fold1-trial1.json"


def test_weights_are_read_from_what_was_asked(tmp_path, checkpoints):
    assert weights_for("small_cnn", False) == ("scratch", "")
    assert weights_for("resnet18.tv_in1k", True) == ("pretrained:resnet18.tv_in1k", "")
    assert weights_for("resnet18.tv_in1k", True, random_init=True) == ("random", "")
    assert weights_for("resnet18.tv_in1k", True, checkpoints[0]) == (f"sha256:{sha256_file(checkpoints[0])}",
                                                                      str(checkpoints[0]))
    with pytest.raises(RunError, match="--weights does not apply"):
        weights_for("small_cnn", False, checkpoints[0])


@pytest.mark.parametrize("fields, message", [
    ({"epochs": 0}, "epochs must be a whole number of at least 1"), ({"fold": -1}, "fold must be"),
    ({"weights": "imagenet"}, "weights 'imagenet'"), ({"precision": "auto"}, "resolve 'auto'"),
])
def test_an_impossible_run_fails_when_it_is_made(fields, message):
    with pytest.raises(RunError, match=message):
        Run(**{"submission": "small_cnn", "dataset": "synthetic", "epochs": 1, "fold": 1, "trial": 1, **fields})


def as_legacy(record: dict) -> dict:
    """A record as the harness stored it before runs had identities."""
    config = {k: v for k, v in record["config"].items() if k not in ("weights", "precision", "compiled")}
    body = {k: v for k, v in record.items() if k not in ("run", "checksum")}
    return R.seal({**body, "config": config, "config_hash": config_hash(config)})


def test_migrate_moves_legacy_results_and_the_board_ranks_them_as_before(tmp_path):
    results = tmp_path / "results"
    report = grid_named(SYNTH, runs("small_cnn", folds=(1, 2)), results)
    before, _ = render(results, submissions(), load_catalog())
    for path in report.done:
        record = json.loads(path.read_text())
        R.write_json_atomic(results / "synthetic" / "small_cnn" / "e1" / path.name, as_legacy(record))
        path.unlink()
    _, excluded = collect(results, submissions(), load_catalog())
    assert len(excluded) == 2 and all("run `bench migrate`" in why for _, why in excluded)

    out = CliRunner().invoke(main, ["migrate"])
    assert out.exit_code == 0 and "2 of 2 result file(s) moved" in out.output, out.output
    assert sorted(p.relative_to(results).as_posix() for p in results.rglob("*.json")) == [
        f"synthetic/small_cnn/e1/scratch-fp32/fold{f}-trial1.json" for f in (1, 2)]
    after, _ = render(results, submissions(), load_catalog())
    assert after == before


def test_migrate_never_writes_over_a_result_and_says_what_it_left(tmp_path):
    results = tmp_path / "results"
    done = grid_named(SYNTH, runs("small_cnn", folds=(1,)), results).done[0]
    legacy = results / "synthetic" / "small_cnn" / "e1" / done.name
    R.write_json_atomic(legacy, as_legacy(json.loads(done.read_text())))
    failed = results / "synthetic" / "small_cnn" / "e1" / "fold2-trial1.json"
    R.write_json_atomic(failed, R.seal({"status": "failed", "submission": "small_cnn", "error": "boom"}))
    kept = done.read_bytes()
    out = CliRunner().invoke(main, ["migrate"])
    assert "scratch-fp32/fold1-trial1.json exists already, nothing is written over" in out.output
    assert "fold2-trial1.json: left: a failed or incomplete run" in out.output and "0 of 2" in out.output
    assert done.read_bytes() == kept and legacy.exists() and failed.exists()
