"""One verdict on every stored result: what the board calls stale, the planner runs again, and
what the planner calls finished, the board ranks (``harness.runs.verdict``)."""
import json

import pytest
from click.testing import CliRunner

from harness.cli.commands import main
from harness.data.catalog import load_catalog
from harness.data.datasets import AnswerKey, answer_key
from harness.runs import store
from harness.runs.records import seal
from harness.runs.verdict import Current, Judged, Splits, Stale, verdict

from conftest import copy_submission, grid_named, make_digit_folder, runs, submissions

SYNTH = load_catalog().get("synthetic")


@pytest.fixture
def record(tmp_path):
    path = grid_named(SYNTH, runs("small_cnn", folds=(1,)), tmp_path / "results").done[0]
    return path, store.load_record(path)


def judged(**splits) -> Judged:
    return Judged(submissions(), load_catalog(), Splits(known=splits))


def test_a_fresh_result_stands(record):
    assert verdict(record[1], judged()) == Current()


def test_another_split_makes_it_stale(record):
    now = answer_key(SYNTH)
    found = verdict(record[1], judged(synthetic=AnswerKey(now.labels, now.folds, "another split")))
    assert isinstance(found, Stale) and found.reason.startswith("fold split changed")


def test_absent_data_is_not_a_changed_split(record):
    assert verdict(record[1], judged(synthetic=None)) == Current()


@pytest.mark.parametrize("edit, reason", [
    (lambda r: {**r, "source_hash": "0" * 64}, "submission source changed"),
    (lambda r: {**r, "dataset_version": "0"}, "dataset version 0 != current"),
    (lambda r: {**r, "config_hash": "0" * 16}, "config changed since this run"),
])
def test_planner_and_board_agree_on_each_reason(tmp_path, record, edit, reason):
    path, _ = record
    store.write_json_atomic(path, seal(edit(json.loads(path.read_text()))))
    found = verdict(store.load_record(path), judged())
    assert isinstance(found, Stale) and found.reason.startswith(reason)
    again = grid_named(SYNTH, runs("small_cnn", folds=(1,)), tmp_path / "results")
    assert again.done == [path] and not again.skipped  # the planner redid it


def test_an_edited_submission_is_stale_for_both(tmp_path, record):
    folder = tmp_path / "subs"
    copy_submission("small_cnn", folder, lambda text: text + "\n# edited\n")
    subs = submissions(folder, project=False)
    found = verdict(record[1], Judged(subs, load_catalog(), Splits()))
    assert found == Stale("submission source changed since this run")


def bench(tmp_path, *args):
    out = CliRunner().invoke(main, ["--datasets", str(tmp_path / "datasets.toml"), "--data-root", str(tmp_path / "data"),
                                    *args], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    return out.output


def test_a_result_made_before_skip_bad_is_rerun_and_then_ranked(tmp_path, tiny_catalog):
    """The issue's case end to end: after ``bench fetch --skip-bad`` leaves a clip out, the stored
    run is of another split; the planner used to skip it as finished while the board called it
    stale, so it was never re-run and never ranked."""
    tiny_catalog()
    src = make_digit_folder(tmp_path / "src")
    results = str(tmp_path / "results")
    bench(tmp_path, "fetch", "tiny", "--from", str(src))
    run = ["run", "-s", "small_cnn", "-d", "tiny", "--folds", "1", "--epochs", "1", "--results", results]
    assert "1 run, 0 already finished" in bench(tmp_path, *run)
    assert "0 runs, 1 already finished" in bench(tmp_path, *run)
    (src / "1_bob_3.wav").write_bytes(b"not audio")
    bench(tmp_path, "fetch", "tiny", "--from", str(src), "--skip-bad", "--force")
    board = tmp_path / "board.md"
    bench(tmp_path, "leaderboard", "--results", results, "--output", str(board))
    assert "fold split changed" in board.read_text()
    assert "1 stale result(s)" in bench(tmp_path, "doctor", "--results", results)
    assert "1 run, 0 already finished" in bench(tmp_path, *run)  # re-run, not skipped as finished
    bench(tmp_path, "leaderboard", "--results", results, "--output", str(board))
    text = board.read_text()
    assert "0 stale result(s)" in bench(tmp_path, "doctor", "--results", results)
    assert "fold split changed" not in text and "small_cnn" in text.split("## tiny", 1)[1]
