"""The leaderboard a researcher reads: the significance test against hand-computed values, its rank
groups (equal scores share a rank, one-run entries tested on their clips, Holm-adjusted p), the
intervals in its cells, and the figures and entry pages, written, linked and byte-stable."""
import dataclasses
import json
import math
import re
import shlex
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.stats import binomtest
from statsmodels.stats.multitest import multipletests

from harness.board import figures
from harness.board.aggregate import Entry, aggregate, ranked
from harness.board.cards import reproduce_command
from harness.board.leaderboard import _p, _rank, _ranked_rows, _versus, collect, comparisons
from harness.board.plots import short_names
from harness.board.significance import REPLICATES, compare, corrected_t_test, judge
from harness.cli.commands import main
from harness.data.catalog import load_catalog
from harness.runs.verdict import Splits

from conftest import submissions


def test_the_corrected_t_test_matches_a_hand_computation():
    # d = 2, 2, -1, 5, 3 points over 5 folds: mean 2.2, var (ddof 1) = 18.8 / 4 = 4.7; 5 folds -> n_test/n_train = 1/4
    # t = 2.2 / sqrt((1/5 + 1/4) * 4.7) = 2.2 / sqrt(2.115) = 1.51275; two-sided p with 4 df = 0.2049
    result = corrected_t_test([2, 2, -1, 5, 3], 0.25)
    assert result.t == pytest.approx(1.51275, abs=1e-5) and result.p == pytest.approx(0.2049, abs=1e-4)
    assert not result.distinguishable
    # the plain paired t-test on the same numbers, t = 2.2 / sqrt(4.7 / 5) = 2.269, p = 0.086: it overstates
    assert corrected_t_test([2, 2, -1, 5, 3], 0.0).p == pytest.approx(0.0858, abs=1e-4)


def test_identical_entries_are_tied_and_other_protocols_are_not_compared():
    same = corrected_t_test([0.0, 0.0, 0.0], 0.25)
    assert same.p == 1.0 and same.t == 0.0 and not same.distinguishable
    always = corrected_t_test([1.0, 1.0, 1.0], 0.25)
    assert always.p == 0.0 and math.isinf(always.t) and always.distinguishable
    assert compare({(1, 1): 90.0, (2, 1): 91.0}, {(1, 1): 80.0, (3, 1): 81.0}, 0.25) is None
    single = compare({(1, 1): 90.0}, {(1, 1): 30.0}, 0.25)
    assert single.pairs == 1 and not single.distinguishable and not single.tied
    untested = judge([None, (single, None)])[1]  # one run each and no clips to pair: not tested
    assert _rank(2, untested) == "2"
    assert _versus(2, untested) == "-60.00 (one run each, and no labels here for McNemar: not tested)"
    with pytest.raises(ValueError, match="at least two"):
        corrected_t_test([1.0], 0.25)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Two submissions on synthetic, 3 folds, 1 epoch: a real, small board."""
    results = tmp_path_factory.mktemp("board") / "results"
    for name in ("small_cnn", "specaug_cnn"):
        out = CliRunner().invoke(main, ["run", "-s", name, "--folds", "1,2,3", "--epochs", "1", "--device", "cpu",
                                        "--results", str(results)])
        assert out.exit_code == 0, out.output
    return results


@pytest.fixture(scope="module")
def entries(results):
    """The board's synthetic entries by submission, each with the dataset's labels."""
    records, _ = collect(results, submissions(), load_catalog())
    key = Splits().key(load_catalog().get("synthetic"))
    return {e.submission: dataclasses.replace(e, key=key) for e in aggregate(records)[("synthetic", 1)]}


def test_an_entry_compared_with_itself_is_tied_with_p_one(entries):
    entry = entries["small_cnn"]
    twin = Entry("small_cnn twin", entry.records, entry.key)
    _, versus = comparisons([entry, twin])
    assert versus.p == 1.0 and versus.mcnemar.best_only == versus.mcnemar.other_only == 0
    assert _rank(2, versus) == "1 (tied)"
    assert _versus(2, versus) == "+0.00, t-test p = 1.000, Holm p = 1.000; McNemar p = 1.000 (tied)"


def one_run(entry: Entry, fold: int = 1, accuracy: float | None = None, key: bool = True) -> Entry:
    """The entry's run on ``fold`` alone, its accuracy set to ``accuracy`` where given."""
    records = tuple(r if accuracy is None else dataclasses.replace(r, metrics={**r.metrics, "accuracy": accuracy})
                    for r in entry.records if r.run.fold == fold)
    return Entry(entry.label, records, entry.key if key else None)


def test_entries_with_one_run_each_are_tested_by_mcnemar_on_their_clips(entries):
    best, other = ranked([one_run(e) for e in entries.values()])
    labels = best.key.labels[best.key.folds == 1]
    right = [np.asarray(e.first.predictions) == labels for e in (best, other)]
    b, c = int(np.sum(right[0] & ~right[1])), int(np.sum(~right[0] & right[1]))
    assert b + c > 0  # the two submissions disagree on some clip: the test below is not vacuous
    _, versus = comparisons([best, other])
    assert versus.decided_by == "McNemar" and (versus.mcnemar.best_only, versus.mcnemar.other_only) == (b, c)
    assert versus.p == pytest.approx(binomtest(b, b + c, 0.5).pvalue) and versus.adjusted_p == versus.p
    assert f"McNemar {_p(versus.p)}, Holm {_p(versus.p)}" in _versus(2, versus)
    # the same pair without the dataset's labels: not tested, and the cell says why
    _, bare = comparisons([dataclasses.replace(e, key=None) for e in (best, other)])
    assert bare.decided_by is None and _versus(2, bare).endswith("no labels here for McNemar: not tested)")
    # runs on other folds are other clips: never paired
    assert comparisons([best, one_run(entries[other.submission], fold=2)])[1] is None


def test_equal_scores_share_a_rank(entries):
    spec, top = load_catalog().get("synthetic"), entries["small_cnn"]
    # one run each at the same accuracy, no labels to test them with (issue 29: they were #1 and #2)
    table = [one_run(top, accuracy=0.5, key=False), dataclasses.replace(one_run(top, accuracy=0.5, key=False),
             label="twin"), dataclasses.replace(one_run(top, accuracy=0.25, key=False), label="lower")]
    rows = _ranked_rows("synthetic", 1, table, {}, {}, spec)
    assert [r["#"] for r in rows] == ["1", "1", "3"] and {r["rank interval"] for r in rows} == {"– (1 run)"}
    # with the labels, the twin's same predictions are McNemar p = 1: tied
    twin = dataclasses.replace(one_run(top), label="twin")
    assert [r["#"] for r in _ranked_rows("synthetic", 1, [one_run(top), twin], {}, {}, spec)] == ["1", "1 (tied)"]


def test_the_column_shows_the_holm_adjusted_p_and_ties_by_it(entries):
    runs = sorted(entries["small_cnn"].records, key=lambda r: r.run.fold)
    at = lambda label, accuracies: Entry(label, tuple(dataclasses.replace(r, metrics={**r.metrics, "accuracy": a})
                                                      for r, a in zip(runs, accuracies)))
    table = [at("best", [0.90, 0.92, 0.94]), at("b", [0.86, 0.89, 0.89]), at("c", [0.86, 0.88, 0.915])]
    verdicts = comparisons(table)
    raw = [v.p for v in verdicts[1:]]
    adjusted = multipletests(raw, method="holm")[1]
    assert [v.adjusted_p for v in verdicts[1:]] == pytest.approx(adjusted.tolist(), abs=1e-15)
    assert min(raw) < 0.05 <= min(adjusted)  # the correction turns a 5% difference into a tie here
    for position, (v, p) in enumerate(zip(verdicts[1:], adjusted), 2):
        assert f"Holm {_p(p)}" in _versus(position, v) and _rank(position, v) == "1 (tied)"


def test_the_board_shows_intervals_rank_intervals_and_every_test(results, tmp_path, entries):
    text = render(results, tmp_path / "board.md")["board.md"].decode()
    assert re.search(r"\|\s+#\s+\|\s+rank interval\s+\|", text)
    rows = {name: next(line for line in text.splitlines() if f"[{name}]" in line) for name in entries}
    for name, entry in entries.items():
        for metric in ("accuracy", "macro_f1"):
            low, high = entry.interval(metric)
            assert f"{entry.mean(metric):.2f} ± {entry.std(metric):.2f} [{low:.2f}, {high:.2f}]" in rows[name]
    first, second = ranked(list(entries.values()))
    assert re.search(r"\|\s+1\s+\|\s+1–[123]\s+\|", rows[first.submission])
    assert re.search(r"t-test p [=<] [\d.]+, Holm p [=<] [\d.]+; McNemar p [=<] [\d.]+", rows[second.submission])
    assert f"{REPLICATES:,} bootstrap" in text and "Holm" in text  # the rules say what the columns are


def render(results, output, *options):
    out = CliRunner().invoke(main, ["leaderboard", "--results", str(results), "--output", str(output), *options])
    assert out.exit_code == 0, out.output
    return {p.relative_to(output.parent).as_posix(): p.read_bytes() for p in sorted(output.parent.rglob("*"))
            if p.is_file()}


def test_figures_and_entry_pages_are_written_linked_and_byte_stable(results, tmp_path):
    first = render(results, tmp_path / "a" / "board.md")
    second = render(results, tmp_path / "b" / "board.md")
    assert first == second  # two renders of the same results: the same bytes, figures included
    text = first["board.md"].decode()
    for kind in ("folds", "curves", "confusion", "per-class-f1"):
        path = f"figures/synthetic-e1-{kind}.png"
        assert first[path].startswith(b"\x89PNG") and f"]({path})" in text
    card = first["entries/synthetic-e1-small_cnn.md"].decode()
    assert "[small_cnn](entries/synthetic-e1-small_cnn.md)" in text
    assert "bench run -s small_cnn -d synthetic --epochs 1" in card and "--folds 1,2,3" in card
    assert re.search(r"\|\s+fold \|\s+trial \|", card) and "frontend.n_mels" in card and "](../figures/synthetic-e1-folds.png)" in card
    assert "Small CNN" in card  # the submission's docstring
    assert "vs #1" in text and "Nadeau & Bengio 2003" in text


def test_the_board_owns_its_figures_folder_and_nothing_else(results, tmp_path):
    board = tmp_path / "mine" / "board.md"
    files = render(results, board)
    stale = board.parent / "figures" / "synthetic-e9-folds.png"
    stale.write_bytes(b"old")  # a figure of a table that is gone
    mine = board.parent / "notes.txt"
    mine.write_text("mine")
    assert render(results, board).keys() == files.keys() | {"notes.txt"} and not stale.exists()

    theirs = tmp_path / "theirs" / "board.md"
    (theirs.parent / "figures").mkdir(parents=True)
    (theirs.parent / "figures" / "plot.png").write_bytes(b"their own")
    out = CliRunner().invoke(main, ["leaderboard", "--results", str(results), "--output", str(theirs)])
    assert out.exit_code == 1 and "holds files bench leaderboard did not write" in out.output
    assert (theirs.parent / "figures" / "plot.png").read_bytes() == b"their own"


def test_a_critical_difference_diagram_is_drawn_the_same_twice():
    from harness.board.plots import critical_difference_png

    results = {name: {(fold, 1): base + fold * spread for fold in range(1, 6)}
               for name, base, spread in (("a", 90, 0.5), ("b", 85, 1.0), ("c", 80, 0.2))}
    png = critical_difference_png("synthetic, 5 epochs", results)
    assert png.startswith(b"\x89PNG") and png == critical_difference_png("synthetic, 5 epochs", results)


def test_a_run_made_with_another_torch_than_the_locks_says_so(results, tmp_path):
    import dataclasses
    import shutil

    from harness.runs import environment, store

    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    path = next(p for p in store.result_files(copy) if "specaug_cnn" in p.parts)
    record = store.load_record(path)
    store.write_record(path, dataclasses.replace(record, versions={**record.versions, "torch": "2.99.0"}))
    text = render(copy, tmp_path / "board" / "board.md")["board.md"].decode()
    row = next(line for line in text.splitlines() if "[specaug_cnn]" in line)
    assert f"torch 2.99.0 (lock: {environment.locked_versions()['torch']})" in row
    assert "(lock:" not in next(line for line in text.splitlines() if "[small_cnn]" in line)


def test_an_entry_page_shows_its_own_figures_its_classes_and_the_budget_it_ran(results, tmp_path):
    files = render(results, tmp_path / "board.md")
    for name in ("small_cnn", "specaug_cnn"):
        card = files[f"entries/synthetic-e1-{name}.md"].decode()
        for kind in ("confusion", "per-class-f1"):
            own = f"figures/synthetic-e1-{name}-{kind}.png"
            assert f"](../{own})" in card and files[own].startswith(b"\x89PNG")
        assert "figures/synthetic-e1-confusion.png" not in card and "synthetic-e1-per-class-f1.png" not in card
        assert "](../figures/synthetic-e1-folds.png)" in card  # the table's figures of every entry, still
        assert re.search(r"\| recipe\.epochs +\| `1` \(the table's budget; the recipe's default: `\d+`\)", card)
        assert all(re.search(rf"^\| {c} +\| +\d+\.\d\d \| +\d+ +\|$", card, re.M) for c in ("tone", "am_tone"))


def test_a_record_from_before_class_names_is_ranked_and_named_by_its_dataset(results, tmp_path, monkeypatch):
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    from harness.runs import store

    for path in store.result_files(copy):  # written as records were before they named their classes
        store.write_record(path, dataclasses.replace(store.load_record(path), class_names=None))
        assert "class_names" not in json.loads(path.read_text())
    records, excluded = collect(copy, submissions(), load_catalog())
    assert len(records) == 6 and not excluded
    names = list(load_catalog().get("synthetic").class_names)
    drawn = []
    monkeypatch.setattr(figures, "confusion_png", lambda title, matrix, classes: drawn.append(classes) or b"")
    monkeypatch.setattr(figures, "per_class_png", lambda title, classes, series, x: drawn.append(classes) or b"")
    figures.table_figures("synthetic", 1, ranked(aggregate(records)[("synthetic", 1)]))
    assert len(drawn) == 5 and all(classes == names for classes in drawn)  # 2 entries x 2 own figures + the top 3's
    unnamed = dataclasses.replace(records[0], class_names=None)  # where the dataset's split could not be checked
    assert Entry("old", (unnamed,)).class_names == [str(i) for i in range(len(names))]


def test_class_axes_name_every_class_and_shorten_long_names_legibly(monkeypatch):
    from harness.board import plots

    made = []
    monkeypatch.setattr(plots, "_png", lambda fig: made.append(fig) or b"")
    names = [f"class_{i:02d}" for i in range(49)] + ["an_unusually_long_class_name"]
    plots.confusion_png("50 classes", np.eye(50, dtype=int).tolist(), names)
    plots.per_class_png("50 classes", names, {"a": [50.0] * 50}, "F1 %")
    try:
        shown = names[:49] + ["an_unusua…ass_name"]
        confusion, bars = made[0].axes[0], made[1].axes[0]
        assert [t.get_text() for t in confusion.get_xticklabels()] == shown
        assert [t.get_text() for t in confusion.get_yticklabels()] == shown
        assert [t.get_text() for t in bars.get_yticklabels()] == shown
    finally:
        for fig in made:
            plots._pyplot().close(fig)
    assert short_names(["speaker_01_x_recorded_room", "speaker_01_y_recorded_room"]) == \
        ["0: speaker_0…ded_room", "1: speaker_0…ded_room"]  # two that would read the same are told apart
    assert short_names(["$5 bill", "two\nlines"]) == [r"\$5 bill", "two lines"]


OWN_CATALOG = """
[mine]
version = "1"
kind = "synthetic"
sample_rate = 8000
clip_seconds = 0.5
num_classes = 2
class_names = ["tone", "chirp_up"]
per_class = 20
folds = { protocol = "holdout", k = 5, seed = 0, test_fraction = 0.2 }
"""


def test_an_entry_of_ones_own_catalog_reproduces_as_pasted_and_its_holdout_says_what_ran(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.toml").write_text(OWN_CATALOG)
    out = CliRunner().invoke(main, ["run", "-s", "small_cnn", "-d", "mine", "--epochs", "1", "--device", "cpu",
                                    "--datasets", "mine.toml"])
    assert out.exit_code == 0, out.output
    files = render(tmp_path / "results", tmp_path / "board" / "board.md", "--datasets", "mine.toml")
    assert "## mine (v1, 80/20 holdout: one test split)" in files["board.md"].decode()
    command = files["entries/mine-e1-small_cnn.md"].decode().split("```bash\n", 1)[1].split("\n```", 1)[0]
    assert "--datasets mine.toml" in command
    argv = shlex.split(command.replace("\\\n", " "), comments=True)
    assert argv[:2] == ["bench", "run"]
    again = CliRunner().invoke(main, argv[1:])  # pasted as it is: the same run, already finished
    assert again.exit_code == 0 and "0 runs, 1 already finished" in again.output, again.output


def test_a_reproduce_command_carries_a_variants_settings_and_weights(results):
    records, _ = collect(results, submissions(), load_catalog())
    record = records[0]
    variant = lambda **fields: Entry("x", (dataclasses.replace(record, run=dataclasses.replace(record.run, **fields)),))
    command = reproduce_command(variant(overrides={"recipe.lr": 0.05, "model": "resnet34", "frontend.f_max": None}))
    assert all(f"--set {option}" in command for option in ("recipe.lr=0.05", "model=resnet34", "frontend.f_max=null"))
    assert "--random-init" in reproduce_command(variant(weights="random"))
    checkpoint = reproduce_command(variant(weights="sha256:" + "ab" * 32)).splitlines()
    assert checkpoint[-2].endswith("--weights CHECKPOINT") and checkpoint[-1].startswith("# CHECKPOINT: ")
    assert not any("#" in line for line in checkpoint[:-1])  # no comment swallows a line's continuation


def test_an_older_record_gets_the_class_names_its_split_read_from_the_data(tmp_path):
    """Names read from the data (class folders, a label column) are not in the catalog: an older record
    without names takes them from the split as it is now, when it is the record's split."""
    import dataclasses

    from harness.board.leaderboard import _completed
    from harness.data.datasets import AnswerKey, answer_key
    from harness.runs import store
    from harness.runs.verdict import Judged, Splits

    from conftest import grid_named, runs

    spec = load_catalog().get("synthetic")
    path = grid_named(spec, runs("small_cnn", folds=(1,)), tmp_path / "results").done[0]
    old = dataclasses.replace(store.load_record(path), class_names=None)
    now = answer_key(spec)
    key = AnswerKey(now.labels, now.folds, now.fingerprint, tuple(f"read_{i}" for i in range(spec.num_classes)))
    judged = Judged(submissions(), load_catalog(), Splits(known={"synthetic": key}))
    assert _completed(old, judged).class_names == list(key.class_names)
