"""The leaderboard a researcher reads: the significance test against hand-computed values, its rank
groups, and the figures and entry pages, written, linked and byte-stable."""
import math
import re

import pytest
from click.testing import CliRunner

from harness.board.aggregate import Entry, aggregate
from harness.board.leaderboard import _rank, _versus, collect, comparisons
from harness.board.significance import compare, corrected_t_test
from harness.cli.commands import main
from harness.data.catalog import load_catalog

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
    assert _rank(2, single) == "2" and _versus(2, single) == "-60.00 (one run each: not tested)"
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


def test_an_entry_compared_with_itself_is_tied_with_p_one(results):
    records, _ = collect(results, submissions(), load_catalog())
    entry = next(e for e in aggregate(records)[("synthetic", 1)] if e.submission == "small_cnn")
    twin = Entry("small_cnn twin", entry.records)
    _, versus = comparisons([entry, twin])
    assert versus.p == 1.0 and _rank(2, versus) == "1 (tied)" and _versus(2, versus) == "+0.00, p = 1.000 (tied)"


def render(results, output):
    out = CliRunner().invoke(main, ["leaderboard", "--results", str(results), "--output", str(output)])
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
