"""Suites: one score per entry over several (dataset, protocol, budget) tasks, by a stated
weighting; a missing task is shown as missing, never as zero, and its entry is not ranked."""
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.board.aggregate import Entry
from harness.board.leaderboard import _suite_section
from harness.board.suites import DEFAULT_SUITES, WEIGHTINGS, Suite, SuiteError, Task, load_suites, score_suite
from harness.data.catalog import load_catalog
from harness.runs.run import Run

TASKS = (Task("fsdd", "linear", 100), Task("fsdd_speaker", "knn", 1))


def entry(submission: str, dataset: str, protocol: str, epochs: int, accuracies: list[float], n_test: int = 600,
          weights: str = "random") -> Entry:
    records = [SimpleNamespace(run=Run(submission, dataset, epochs, fold, 1, weights=weights, protocol=protocol),
                               metrics={"accuracy": a}, n_test=n_test) for fold, a in enumerate(accuracies, 1)]
    return Entry(submission, tuple(records))


def tables(*entries: Entry) -> dict:
    out = {}
    for e in entries:
        out.setdefault((e.first.run.dataset, e.first.run.epochs), []).append(e)
    return out


def test_each_weighting_scores_complete_entries_and_leaves_a_missing_task_missing():
    board = tables(entry("a", "fsdd", "linear", 100, [0.9, 0.8]), entry("a", "fsdd_speaker", "knn", 1, [0.5], 300),
                   entry("b", "fsdd", "linear", 100, [0.6]), entry("b", "fsdd_speaker", "knn", 1, [0.7], 300),
                   entry("c", "fsdd", "linear", 100, [0.99]),
                   entry("b", "fsdd", "finetune", 100, [1.0]))  # another protocol: not this suite's task
    mean = score_suite(Suite("s", "", "mean", TASKS), board)
    assert [(s.label, s.score) for s in mean] == [("a (random-fp32)", pytest.approx(67.5)),
                                                  ("b (random-fp32)", pytest.approx(65.0)), ("c (random-fp32)", None)]
    assert mean[2].accuracies == (pytest.approx(99.0), None)
    by_size = score_suite(Suite("s", "", "test_size", TASKS), board)  # a: 1200 test clips at 85, 300 at 50
    assert by_size[0].score == pytest.approx((85 * 1200 + 50 * 300) / 1500)
    ranks = score_suite(Suite("s", "", "mean_rank", TASKS), board)
    assert [s.score for s in ranks[:2]] == [1.5, 1.5] and not WEIGHTINGS.get("mean_rank").higher_is_better
    text = "\n".join(_suite_section(Suite("s", "two tasks", "mean", TASKS), board))
    assert "| missing" in text and "incomplete (1 missing)" in text and "higher is better" in text


def test_the_variant_tells_entries_apart_but_the_protocol_does_not():
    board = tables(entry("a", "fsdd", "linear", 100, [0.9]), entry("a", "fsdd_speaker", "knn", 1, [0.5]),
                   entry("a", "fsdd_speaker", "knn", 1, [0.2], weights="scratch"))
    scored = score_suite(Suite("s", "", "mean", TASKS), board)
    assert {s.label: s.score for s in scored} == {"a (random-fp32)": pytest.approx(70.0), "a (scratch-fp32)": None}


@pytest.mark.parametrize("text, message", [
    ('[s]\nweighting = "men"\ntasks = [{ dataset = "fsdd", protocol = "linear", epochs = 1 }]', "Did you mean 'mean'"),
    ('[s]\ntasks = [{ dataset = "fsd", protocol = "linear", epochs = 1 }]', "no dataset 'fsd'"),
    ('[s]\ntasks = [{ dataset = "fsdd", protocol = "probe", epochs = 1 }]', "protocol 'probe'"),
    ('[s]\ntasks = [{ dataset = "fsdd", protocol = "knn", epochs = 0 }]', "at least 1"),
    ('[s]\ntasks = [{ dataset = "fsdd" }]', "each task is"),
    ('[s]\ntaks = []', "description, weighting and tasks only"),
    ('[s', "not a readable TOML"),
])
def test_a_bad_suite_file_is_one_line_naming_the_file_and_the_suite(tmp_path, text, message):
    path = tmp_path / "suites.toml"
    path.write_text(text)
    with pytest.raises(SuiteError, match=message) as err:
        load_suites(path, set(load_catalog()))
    assert str(path) in str(err.value)


def test_the_projects_suites_name_declared_datasets():
    suites = load_suites(DEFAULT_SUITES, set(load_catalog()))
    assert suites and all(s.tasks for s in suites)
    assert load_suites(Path("no-such-suites.toml")) == []
