"""What a new user hits in their first hour: a missing dataset, a broken plug-in beside working
ones, an untracked submission file (an offline download: tests/test_fetch.py; an undocumented
submission: tests/test_reproducibility.py)."""
import re

import pytest
from click.testing import CliRunner

from harness.cli.commands import main
from harness.core.paths import PROJECT_ROOT
from harness.runs.provenance import git_state


def test_a_dataset_not_fetched_stops_the_run_before_it_starts_and_writes_nothing(tmp_path):
    out = CliRunner().invoke(main, ["--data-root", str(tmp_path / "data"), "--results", str(tmp_path / "results"),
                                    "run", "-s", "small_cnn", "-d", "esc50", "--epochs", "1"])
    assert out.exit_code == 1 and "Run `bench fetch esc50`" in out.output
    assert not (tmp_path / "results").exists()


@pytest.fixture
def broken_plugin(tmp_path, monkeypatch):
    folder = tmp_path / "submissions"
    folder.mkdir()
    (folder / "typo.py").write_text("from harness import Submission\n\ndef oops(:\n    pass\n")
    monkeypatch.setenv("BENCH_SUBMISSIONS", str(folder))
    return folder / "typo.py"


def test_a_broken_submission_file_is_reported_and_skipped(broken_plugin):
    out = CliRunner().invoke(main, ["list"])
    assert out.exit_code == 0 and "small_cnn" in out.stdout
    assert f"skipped a broken submission file: {broken_plugin}" in out.stderr and "SyntaxError" in out.stderr
    out = CliRunner().invoke(main, ["run", "-s", "small_cnn", "--folds", "1", "--epochs", "1", "--device", "cpu"])
    assert out.exit_code == 0, out.output
    out = CliRunner().invoke(main, ["check", str(broken_plugin)])
    assert out.exit_code == 1 and "cannot be read as Python (" in out.output and "SyntaxError" in out.output
    out = CliRunner().invoke(main, ["run", "-s", "oops"])
    assert out.exit_code == 1 and "it may be in a file that cannot be read" in out.output


def test_a_result_of_an_untracked_submission_file_says_its_code_is_in_no_commit(tmp_path):
    untracked = tmp_path / "mine.py"
    untracked.write_text("")
    assert git_state(str(untracked))["dirty"] is True
    tracked = str(PROJECT_ROOT / "submissions" / "small_cnn.py")
    assert git_state(tracked)["dirty"] == git_state()["dirty"]


def test_store_options_work_after_the_subcommand_and_a_users_runs_have_their_own_home(tmp_path, monkeypatch):
    out = CliRunner().invoke(main, ["run", "-s", "small_cnn", "--folds", "1", "--epochs", "1", "--device", "cpu",
                                    "--results", str(tmp_path / "mine"), "--data-root", str(tmp_path / "d")])
    assert out.exit_code == 0, out.output
    assert len(list((tmp_path / "mine").rglob("fold1-trial1.json"))) == 1
    monkeypatch.delenv("BENCH_RESULTS")
    from harness.runs.store import PUBLISHED_RESULTS, results_root

    assert results_root() != PUBLISHED_RESULTS and results_root().name == "results"


def test_the_leaderboard_touches_only_the_figures_it_wrote(tmp_path):
    board = tmp_path / "mine" / "board.md"
    board.parent.mkdir()
    theirs = board.parent / "curves-theirs.svg"
    theirs.write_text("<svg/>")
    old = board.parent / "curves-synthetic-e1.svg"  # a curve an older board linked beside itself
    old.write_text("<svg/>")
    board.write_text(f"![training loss per epoch]({old.name})")
    run = ["run", "-s", "small_cnn", "--folds", "1", "--device", "cpu", "--results", str(tmp_path / "r")]
    assert CliRunner().invoke(main, run + ["--epochs", "1"]).exit_code == 0
    assert CliRunner().invoke(main, ["leaderboard", "--results", str(tmp_path / "r"), "--output", str(board)]).exit_code == 0
    assert (board.parent / "figures" / "synthetic-e1-curves.png").exists() and not old.exists()
    (tmp_path / "r" / "synthetic" / "small_cnn" / "e1" / "scratch-fp32" / "fold1-trial1.json").unlink()
    assert CliRunner().invoke(main, run + ["--epochs", "2"]).exit_code == 0
    assert CliRunner().invoke(main, ["leaderboard", "--results", str(tmp_path / "r"), "--output", str(board)]).exit_code == 0
    assert not (board.parent / "figures" / "synthetic-e1-curves.png").exists()  # its own old figure, gone
    assert (board.parent / "figures" / "synthetic-e2-curves.png").exists() and theirs.exists()


def test_a_users_board_reads_plainly(tmp_path):
    results = tmp_path / "r"
    out = CliRunner().invoke(main, ["run", "-s", "small_cnn", "--folds", "1", "--epochs", "1", "--device", "cpu",
                                    "--results", str(results)])
    assert "(scratch-fp32, 1 epoch): 1 run, 0 already finished, 0 failed; accuracy " in out.output
    assert CliRunner().invoke(main, ["leaderboard", "--results", str(results)]).exit_code == 0
    text = (results / "leaderboard.md").read_text()
    assert "### synthetic, 1 epoch\n" in text and " (1 run) " in text and "1 (1 fold × 1 trial)" in text
    assert re.search(r"\| 1 \(1 fold × 1 trial\) +\| +24 \|", text)  # every row says how many clips it was tested on
    assert "± 0.00" not in text and "## esc50" not in text  # no seed-only tables on a user's own board
    assert (results / "figures" / "synthetic-e1-curves.png").exists()  # one epoch: drawn as a point


def test_list_says_which_datasets_are_imported(tmp_path):
    out = CliRunner().invoke(main, ["list", "--data-root", str(tmp_path / "data")])
    lines = {line.split("|")[1].strip(): line for line in out.output.splitlines() if line.startswith("| ")}
    assert "no: bench fetch esc50" in lines["esc50"] and "generated" in lines["synthetic"]


def test_render_images_takes_a_sample_rate_and_warns_about_nothing(tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = CliRunner().invoke(main, ["render-images", "synthetic", str(tmp_path / "png"), "--size", "32",
                                        "--sample-rate", "8000"])
    assert out.exit_code == 0 and "wrote 120 images" in out.output, out.output


def test_a_run_reports_progress_inside_an_epoch():
    from harness.data.catalog import load_catalog
    from harness.runs.execute import Progress
    from harness.runs.run import Run

    from conftest import run_named

    seen = []
    run_named(Run("small_cnn", "synthetic", 1, 1, 1), load_catalog().get("synthetic"),
              progress=Progress(on_step=lambda epoch, step, steps: seen.append((epoch, step, steps))))
    assert seen and seen[0] == (1, 1, seen[0][2]) and seen[-1][1] == seen[-1][2]  # every step, up to the last
