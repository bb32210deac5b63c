"""The real pipeline end to end on the synthetic dataset: run, resume, render."""
import json

import pytest
import torch
from click.testing import CliRunner

from harness.runs import execute as runner
from harness.training import device, loop
from harness.data.catalog import load_catalog
from harness.cli.commands import main
from harness.runs.described import Built
from harness.runs.provenance import trained_config
from harness.runs.sandboxed import WorkerError
from harness.runs.store import iter_results
from harness.runs.run import Run

from conftest import ThreadWorker, copy_submission, grid_named, run_named, runs, submissions

SYNTH = load_catalog().get("synthetic")


def grid(results, folds=(1, 2), epochs=1, subs=None):
    return grid_named(SYNTH, runs("small_cnn", folds=folds, epochs=epochs), results, subs=subs)


def test_cli_run_then_leaderboard(tmp_path):
    cli = CliRunner()
    out = cli.invoke(main, ["run", "-s", "small_cnn", "-d", "synthetic", "--folds", "1,2", "--epochs", "2"])
    assert out.exit_code == 0, out.output
    records = [r for _, r in iter_results(tmp_path / "results")]
    assert len(records) == 2 and all(r["status"] == "ok" for r in records)
    rec = records[0]
    for key in ("config_hash", "source_hash", "fold_fingerprint", "git", "versions", "hardware", "curves", "seed"):
        assert key in rec
    assert len(rec["curves"]) == 2 and rec["seed"] == 1000 * rec["trial"] + rec["fold"]
    assert sum(map(sum, rec["metrics"]["confusion"])) == rec["n_test"] == 24
    board = tmp_path / "board.md"
    out = cli.invoke(main, ["leaderboard", "--output", str(board)])
    assert out.exit_code == 0, out.output
    text = board.read_text()
    assert "### synthetic, 2 epochs" in text and "small_cnn" in text and "2 (2 folds × 1 trial)" in text
    assert "standard deviation" in text and "fold 2" in text
    assert "](figures/synthetic-e2-curves.png)" in text  # the curves the board links to
    assert (tmp_path / "figures" / "synthetic-e2-curves.png").read_bytes().startswith(b"\x89PNG")


def test_resume_skips_finished_runs_and_redoes_interrupted_ones(tmp_path, monkeypatch):
    results = tmp_path / "results"
    first = grid(results)
    assert len(first.done) == 2
    first.done[1].unlink()  # as if the grid was killed before the second run was written
    calls = []
    real = runner.run_one
    monkeypatch.setattr(runner, "run_one", lambda *a, **k: calls.append(a[2].fold) or real(*a, **k))
    second = grid(results)
    assert calls == [2] and len(second.skipped) == 1 and len(second.done) == 1


def test_interrupt_keeps_finished_runs_and_writes_no_partial_one(tmp_path, monkeypatch):
    results = tmp_path / "results"
    real = runner.run_one

    def interrupted(*args, **kwargs):
        if args[2].fold == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "run_one", interrupted)
    with pytest.raises(KeyboardInterrupt):
        grid(results)
    files = sorted(p.name for p in results.rglob("*") if p.is_file())
    assert files == ["fold1-trial1.json"]
    monkeypatch.setattr(runner, "run_one", real)
    assert len(grid(results).skipped) == 1


def test_changed_config_is_not_skipped(tmp_path):
    results = tmp_path / "results"
    grid(results, folds=(1,))
    edited = copy_submission("small_cnn", tmp_path / "edited", lambda text: text.replace("lr=5e-3", "lr=1e-4"))
    report = grid(results, folds=(1,), subs=submissions(edited.parent, project=False))
    assert len(report.done) == 1 and not report.skipped


def test_same_seed_gives_identical_predictions_on_cpu():
    a = run_named(Run("small_cnn", "synthetic", 2, 3, 1), SYNTH)
    b = run_named(Run("small_cnn", "synthetic", 2, 3, 1), SYNTH)
    assert a.predictions == b.predictions and a.curves[-1]["train_loss"] == b.curves[-1]["train_loss"]


def test_failed_run_is_recorded_and_the_grid_goes_on(tmp_path, monkeypatch):
    results = tmp_path / "results"
    real = runner.run_one

    def flaky(*args, **kwargs):
        if args[2].fold == 1:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "run_one", flaky)
    report = grid(results)
    assert len(report.done) == 1 and report.failed[0][1] == "RuntimeError: boom"
    failed = json.loads(report.failed[0][0].read_text())
    assert failed["status"] == "failed"


def test_edited_submission_file_is_run_again(tmp_path):
    """Resume skips finished work of the current code only: a run of an edited file is stale."""
    results, copy = tmp_path / "results", copy_submission("small_cnn", tmp_path / "mine")
    assert len(grid(results, folds=(1,), subs=submissions(copy.parent, project=False)).done) == 1
    copy.write_text(copy.read_text() + "\n# an edit that changes no setting\n")
    report = grid(results, folds=(1,), subs=submissions(copy.parent, project=False))
    assert len(report.done) == 1 and not report.skipped


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_precision_is_recorded_and_each_is_deterministic_on_cpu(precision):
    run = Run("small_cnn", "synthetic", 1, 3, 1, precision=precision)
    a, b = run_named(run, SYNTH), run_named(run, SYNTH)
    assert a.run.precision == precision and a.to_json()["precision"] == precision and a.predictions == b.predictions
    assert a.curves[-1]["train_loss"] == b.curves[-1]["train_loss"]


def test_auto_precision_is_fp32_on_every_cpu_and_bf16_only_on_request(monkeypatch):
    cpu = torch.device("cpu")
    assert device.resolve_precision("auto", cpu) == "fp32"
    assert device.resolve_precision("bf16", cpu) == "bf16" and device.resolve_precision("fp32", cpu) == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert device.resolve_precision("auto", torch.device("cuda")) == "bf16"
    out = CliRunner().invoke(main, ["run", "-s", "small_cnn", "--precision", "fp16"])  # checked where it is made
    assert out.exit_code == 2 and "'fp16' is not one of 'auto', 'bf16', 'fp32'" in out.output


def test_a_nan_loss_in_bf16_says_that_fp32_is_the_fix(monkeypatch):
    real = loop.soft_cross_entropy
    monkeypatch.setattr(loop, "soft_cross_entropy", lambda logits, target: real(logits, target) * float("nan"))
    monkeypatch.setattr(runner, "Worker", ThreadWorker)  # the NaN is this process's doing, so train here
    with pytest.raises(WorkerError, match=r"NonFiniteLossError: non-finite .* epoch 1 in bf16.*--precision fp32"):
        run_named(Run("small_cnn", "synthetic", 1, 1, 1, precision="bf16"), SYNTH)
    with pytest.raises(WorkerError, match=r"NonFiniteLossError: non-finite training loss at epoch 1$"):
        run_named(Run("small_cnn", "synthetic", 1, 1, 1), SYNTH)


def test_runs_of_two_precisions_are_two_leaderboard_rows_each_showing_its_precision(tmp_path):
    cli = CliRunner()
    for fold, precision in ((1, "fp32"), (2, "bf16")):
        out = cli.invoke(main, ["run", "-s", "small_cnn", "--folds", str(fold), "--epochs", "1", "--precision", precision])
        assert out.exit_code == 0, out.output
    out = cli.invoke(main, ["leaderboard", "--output", str(tmp_path / "board.md")])
    assert out.exit_code == 0, out.output
    rows = [line for line in (tmp_path / "board.md").read_text().splitlines()
            if line.startswith("|") and "small_cnn (" in line and "CPU" in line]
    assert len(rows) == 2
    assert any("small_cnn (scratch-bf16)" in r and ", bf16 |" in r and ", fp32" not in r for r in rows)
    assert any("small_cnn (scratch-fp32)" in r and ", fp32 |" in r and ", bf16" not in r for r in rows)


@pytest.mark.parametrize("command", ["run", "speed", "sweep", "verify", "leaderboard"])
def test_every_commands_help_exits_cleanly(command):
    out = CliRunner().invoke(main, [command, "--help"])
    assert out.exit_code == 0 and "Usage:" in out.output and "Error" not in out.output


def test_the_files_that_cannot_be_imported_are_held_by_the_folder_that_tried_them(tmp_path, capsys):
    from harness.training import submission

    (tmp_path / "typo.py").write_text("from harness import Submission\n\ndef oops(:\n    pass\n")
    folder = submission.SubmissionFolder(tmp_path)
    folder.load(), folder.load()
    assert list(folder.broken) == [str(tmp_path / "typo.py")]
    assert capsys.readouterr().err.count("skipped a broken submission file") == 1  # said once, tried once
    with pytest.raises(submission.SubmissionError, match="it may be in a file that cannot be imported: .*typo.py"):
        folder.get("oops")
    assert not submission.SubmissionFolder(tmp_path).broken and not hasattr(submission, "BROKEN")  # no process state


def test_the_help_names_the_result_store_the_code_uses(tmp_path, monkeypatch):
    from harness.runs.store import results_root

    monkeypatch.delenv("BENCH_RESULTS")
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    default = results_root()  # what a command stores into without --results or BENCH_RESULTS
    said = " ".join(CliRunner().invoke(main, ["--help"]).output.split())
    assert f"~/{default.relative_to(tmp_path).as_posix()}" in said and "in the project" not in said


def test_a_run_that_resamples_names_the_resampler_in_its_config(tmp_path, tiny_catalog):
    from harness.data import audio

    spec = load_catalog(tiny_catalog()).get("tiny")  # 8 kHz audio
    at = lambda rate: Built((), {"recipe": {}}, "resnet18", False, 1, {"name": "LogMel", "sample_rate": rate}, "", True)
    assert trained_config("x", spec, at(16000))["resampler"] == audio.RESAMPLER
    assert "resampler" not in trained_config("x", spec, at(8000))
    assert "resampler" not in trained_config("x", SYNTH, at(16000))  # generated at the rate asked for


def test_a_cpu_runs_default_time_limit_counts_its_models_flops():
    """A 1-epoch densenet161 run on FSDD took 725 s on 2 cores (fine-tuned: 2 epochs trained); the old CPU
    default of 0.1 s per training clip and epoch killed it at 360 s. Plans size models on every device now."""
    from harness.data.catalog import load_catalog
    from harness.runs.cells import Cell
    from harness.runs.sandboxed import time_limit_for

    from conftest import submissions

    spec = load_catalog().get("fsdd")
    built = Cell("fastaudio_densenet161", "fsdd", epochs=1, random_init=True).trained(submissions(), spec)
    assert built.gflop is not None and time_limit_for(1, 2400, built.gflop, "cpu") > 4 * 725
