"""Sweeps: overrides of a submission's settings by name, W&B grid files expanded into runs that
resume like `bench run`, and the sweep report's tables and charts."""
import json
import os
import signal
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness import LogMel, Submission
from harness.cli.commands import main
from harness.data.catalog import load_catalog
from harness.runs.cells import Cell
from harness.runs.sweep import SweepError, read_sweep
from harness.training.overrides import OverrideError, apply_overrides, parse_value, resolve_overrides, settings
from harness.training.submission import get_submission

ROOT = Path(__file__).resolve().parents[1]


def sweep_file(tmp_path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- overrides -------------------------------------------------------------------------------

def test_overrides_by_full_and_short_names_rebuild_the_submission():
    sub = get_submission("small_cnn")
    resolved = resolve_overrides(sub, {"n_fft": 2048, "recipe.mixup": 1, "model_kwargs.width": 8})
    assert resolved == (("frontend.n_fft", 2048), ("model_kwargs.width", 8), ("recipe.mixup", 1.0))
    changed = apply_overrides(sub, resolved)
    assert changed.frontend.n_fft == 2048 and changed.frontend.mel.n_fft == 2048  # rebuilt, not patched
    assert changed.recipe.mixup == 1.0 and changed.model_kwargs["width"] == 8
    assert sub.frontend.n_fft != 2048 and changed.frontend.n_mels == sub.frontend.n_mels  # the rest as written
    assert changed.params()["frontend"]["n_fft"] == 2048


def test_an_override_equal_to_the_submissions_own_value_is_the_same_run():
    sub = get_submission("small_cnn")
    assert resolve_overrides(sub, {"n_mels": sub.frontend.n_mels, "lr": float(sub.recipe.lr)}) == ()


def test_unknown_ambiguous_and_budget_names_are_refused_with_the_valid_ones():
    sub = get_submission("small_cnn")
    with pytest.raises(OverrideError, match=r"no setting 'n_mel'; settings: .*frontend.n_mels.*Did you mean 'n_mels'"):
        resolve_overrides(sub, {"n_mel": 32})
    both = Submission(frontend=LogMel(8000), model="resnet18", model_kwargs={"n_mels": 3}, name="both")
    with pytest.raises(OverrideError, match=r"'n_mels' is ambiguous \(frontend.n_mels, model_kwargs.n_mels\)"):
        resolve_overrides(both, {"n_mels": 32})
    assert resolve_overrides(both, {"frontend.n_mels": 32}) == (("frontend.n_mels", 32),)
    with pytest.raises(OverrideError, match="epoch budget is a run's own setting"):
        resolve_overrides(sub, {"epochs": 3})
    assert "recipe.epochs" not in settings(sub)


def test_an_override_that_makes_an_invalid_frontend_fails_as_the_constructor_would():
    sub = get_submission("small_cnn")
    with pytest.raises(OverrideError, match=r"LogMel\(win_length=512\): must not exceed n_fft=256"):
        resolve_overrides(sub, {"n_fft": 256, "win_length": 512})
    with pytest.raises(OverrideError, match=r"Recipe\(optimizer='adamm'\).*Did you mean 'adam'"):
        resolve_overrides(sub, {"optimizer": "adamm"})
    out = CliRunner().invoke(main, ["run", "-s", "small_cnn", "--set", "hop_length=0"])
    assert out.exit_code == 2 and "Invalid value for '--set'" in out.output and "hop_length=0" in out.output
    out = CliRunner().invoke(main, ["run", "-s", "small_cnn", "--set", "n_mels"])
    assert out.exit_code == 2 and "write NAME=VALUE" in out.output


def test_command_line_values_are_read_as_json_then_as_text():
    assert [parse_value(v) for v in ("2048", "1e-2", "true", "False", "null", "[1, 2]", "resnet34", "global")] == \
        [2048, 0.01, True, False, None, [1, 2], "resnet34", "global"]


def test_a_variant_is_its_own_run_whose_record_lists_its_overrides(tmp_path):
    out = CliRunner().invoke(main, ["--results", str(tmp_path), "run", "-s", "small_cnn", "--folds", "1",
                                    "--epochs", "1", "--device", "cpu", "--set", "n_mels=16", "--set", "mixup=0.2"])
    assert out.exit_code == 0, out.output
    files = list(tmp_path.rglob("*.json"))
    assert len(files) == 1 and "-o" in files[0].parent.name  # beside, never over, the plain run's result
    record = json.loads(files[0].read_text())
    assert record["run"]["overrides"] == [["frontend.n_mels", 16], ["recipe.mixup", 0.2]]
    assert record["config"]["params"]["frontend"]["n_mels"] == 16 and "16@8kHz" in record["frontend"]
    again = CliRunner().invoke(main, ["--results", str(tmp_path), "run", "-s", "small_cnn", "--folds", "1",
                                      "--epochs", "1", "--device", "cpu", "--set", "recipe.mixup=0.2",
                                      "--set", "frontend.n_mels=16.0"])
    assert "0 runs, 1 already finished" in again.output  # the same setting by another spelling is the same run
    board = CliRunner().invoke(main, ["--results", str(tmp_path), "leaderboard"])
    text = (tmp_path / "leaderboard.md").read_text()
    assert board.exit_code == 0 and "1 result of sweep variants" in text and "| 1 |" not in text


# --- sweep files ----------------------------------------------------------------------------

def test_wandb_grids_expand_value_values_and_integer_ranges(tmp_path):
    path = sweep_file(tmp_path, "program: train.py\nmethod: grid\nproject: p\nparameters:\n"
                                "  submission: {value: small_cnn}\n  dataset: {value: synthetic}\n"
                                "  n_mels: {values: [16, 32]}\n  width: {min: 4, max: 6}\n"
                                "  fold: {values: [1, 2]}\n  trial_num: {values: [1, 2, 3]}\n  epochs: {value: 2}\n")
    sweep = read_sweep(path)
    assert len(sweep.points) == 2 * 3 and sweep.swept == ("n_mels", "width")
    first = sweep.points[0].cell
    assert first == Cell("small_cnn", "synthetic", folds="1,2", trials=(1, 2, 3), epochs=2,
                         overrides=(("n_mels", 16), ("width", 4)))
    assert [dict(p.cell.overrides)["width"] for p in sweep.points] == [4, 5, 6, 4, 5, 6]
    assert sweep.points[1].label(list(sweep.swept)) == "n_mels=16 width=5"


def test_unsupported_methods_and_malformed_sweeps_say_what_to_write(tmp_path):
    base = "parameters:\n  submission: {value: small_cnn}\n  dataset: {value: synthetic}\n"
    for text, message in [
            ("method: random\n" + base, r"method 'random' is not supported, use grid"),
            ("method: bayes\n" + base, r"method 'bayes' is not supported, use grid"),
            ("method: grid\nparamters: {}\n", r"unknown key 'paramters'.*Did you mean 'parameters'"),
            ("method: grid\nparameters:\n  dataset: {value: synthetic}\n", r"name the submission"),
            ("method: grid\n" + base + "  lr: {min: 0.001, max: 0.1}\n", r"parameter 'lr': a grid expands only whole"),
            ("method: grid\n" + base + "  lr: 0.1\n", r"parameter 'lr': write \{value: V\}"),
            ("method: grid\n" + base + "  trial_num: {values: [0]}\n", r"parameter 'trial'"),
            ("method: grid\n" + base + "  fold: {values: [all, 1]}\n", r"'all' already names every fold"),
            ("method: grid\n" + base + "  trial: {value: 1}\n  trial_num: {value: 2}\n", r"given twice"),
            ("method: grid\nparameters: [\n", r"not valid YAML")]:
        with pytest.raises(SweepError, match=message):
            read_sweep(sweep_file(tmp_path, text))


def test_a_repeated_value_is_one_point_as_in_wandbs_grid(tmp_path):
    """W&B's grid tells values apart by their YAML, a whole float as its int: [32, 32, 64] is 2 points, 16 and
    16.0 one (its last spelling, as W&B's run is given it), true and 1 two (tests/test_sweep_wandb.py checks
    all of this against W&B's own engine)."""
    path = sweep_file(tmp_path, "method: grid\nparameters:\n  submission: {value: small_cnn}\n"
                                "  dataset: {value: synthetic}\n  width: {values: [32, 32, 64]}\n"
                                "  n_mels: {values: [16, 1, 16.0]}\n  random_init: {values: [true, 1]}\n"
                                "  trial_num: {values: [1, 1, 2]}\n  fold: {values: [2, 1, 2]}\n")
    sweep = read_sweep(path)
    assert [(dict(p.setting)["width"], dict(p.setting)["n_mels"]) for p in sweep.points][::2] == \
        [(32, 16.0), (32, 1), (64, 16.0), (64, 1)]
    assert [type(dict(p.setting)["n_mels"]) for p in sweep.points[:4:2]] == [float, int]
    assert [dict(p.setting)["random_init"] for p in sweep.points[:2]] == [True, 1] and len(sweep.points) == 8
    assert {(p.cell.folds, p.cell.trials) for p in sweep.points} == {("2,1", (1, 2))}
    out = CliRunner().invoke(main, ["--results", str(tmp_path), "sweep", str(path), "--dry-run"])
    # was 18 points, 162 runs; random_init true and 1 are two W&B points but the same runs, planned once
    assert "8 points, 16 runs" in out.output, out.output


def test_q_uniform_steps_exclude_max_and_a_range_of_one_value_is_refused_as_in_wandbs_grid(tmp_path):
    base = "method: grid\nparameters:\n  submission: {value: small_cnn}\n  dataset: {value: synthetic}\n"
    sweep = read_sweep(sweep_file(tmp_path, base + "  mixup: {distribution: q_uniform, min: 0, max: 1, q: 0.25}\n"
                                                   "  width: {distribution: q_uniform, min: 0, max: 10, q: 5}\n"))
    assert [tuple(v for _, v in p.cell.overrides) for p in sweep.points] == \
        [(0.0, 0), (0.0, 5), (0.25, 0), (0.25, 5), (0.5, 0), (0.5, 5), (0.75, 0), (0.75, 5)]
    for spec, message in [
            ("{min: 30, max: 30}", r"min 30 is not less than max 30, which W&B's grid refuses; write \{value: 30\}"),
            ("{distribution: q_uniform, min: 0, max: 1, q: 0}", r"q_uniform takes numbers min < max and a step q > 0"),
            ("{distribution: uniform, min: 0, max: 1}",
             r"a grid expands `min` as int_uniform or q_uniform, not distribution 'uniform'; W&B's grid refuses it too"),
            ("{min: 1, max: 3, q: 1}", r"`q` goes only with `distribution: q_uniform`"),
            ("{value: 1, values: [1, 2]}", r"write \{value: V\}.*W&B's grid expands no other form"),
            ("{min: 1, max: 100000000000000000000}", r"100,000,000,000,000,000,000 values, more than any sweep")]:
        with pytest.raises(SweepError, match=r"s.yaml, parameter 'width': " + message):
            read_sweep(sweep_file(tmp_path, base + f"  width: {spec}\n"))


def test_a_sweep_file_holds_several_grids_and_the_leaderboard_grid_is_one():
    sweep = read_sweep(ROOT / "leaderboard" / "grid.yaml")
    cells = [p.cell for p in sweep.points]
    assert Cell("small_cnn", "fsdd", epochs=5) in cells
    assert Cell("voice_resnet18", "fsdd_speaker_images_holdout", epochs=5, random_init=True) in cells
    assert all(not c.overrides for c in cells)  # the board ranks submissions as written


SEED_000 = {"hop_length": 240, "win_length": 135, "n_mels": 210, "n_fft": 75, "f_max": 225, "normalize": 30,
            "mixup": 150, "batch_size": 120, "epochs": 100, "arch": 45, "final_resnet18": 75,
            "final_densenet161": 25}


def test_seed_000s_sweeps_expand_to_the_reports_run_counts():
    catalog = load_catalog()
    counts = {name: sum(len(p.cell.fold_list(catalog.get(p.cell.dataset))) * len(p.cell.trials)
                        for p in read_sweep(ROOT / "sweeps" / "seed000" / f"{name}.yaml").points) for name in SEED_000}
    assert counts == SEED_000 and sum(counts.values()) == 1430


def test_a_dry_run_counts_a_sweeps_runs_as_it_expands():
    """The planner's count, as `bench sweep --dry-run` prints it (each point described in a worker:
    one file here, the smallest of seed 000's; the count of every file is checked above)."""
    out = CliRunner().invoke(main, ["sweep", str(ROOT / "sweeps" / "seed000" / "final_densenet161.yaml"), "--dry-run"])
    assert f"{SEED_000['final_densenet161']} runs" in out.output, out.output


def test_seed_000s_sweep_points_build_valid_submissions():
    from harness.runs.described import Variant

    from conftest import submissions

    subs = submissions()
    for name in SEED_000:
        points = read_sweep(ROOT / "sweeps" / "seed000" / f"{name}.yaml").points
        for submission in {p.cell.submission for p in points}:  # each submission's points in one worker
            subs.describe(submission, [Variant(p.cell.overrides, resolve=True) for p in points
                                       if p.cell.submission == submission])
        for point in points:
            point.cell.trained(subs)  # every override resolves and every rebuilt front-end passes its checks


# --- running, resuming and reporting --------------------------------------------------------

SMALL = ("method: grid\nparameters:\n  submission: {value: small_cnn}\n  dataset: {value: synthetic}\n"
         "  epochs: {value: 2}\n  n_mels: {values: [16, 32]}\n  mixup: {values: [0.0, 0.4]}\n"
         "  fold: {values: [1, 2]}\n")


def bench(home: Path, *args: str, crash: str = "") -> subprocess.Popen:
    env = {**os.environ, "BENCH_RESULTS": str(home / "results"), "BENCH_DATA_ROOT": str(home / "data"),
           "OMP_NUM_THREADS": "1", "BENCH_CRASH_AT": crash}
    # a child inherits an ignored SIGINT (something earlier in the suite ignores it in this process),
    # and Python then installs no KeyboardInterrupt handler: give the child Ctrl-C as a shell would
    return subprocess.Popen([sys.executable, "-c", "from harness.cli.commands import main; main()", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=home,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def outcome(results: Path) -> dict:
    keep = ("config_hash", "metrics", "predictions", "curves", "run")
    return {p.relative_to(results).as_posix(): {k: json.loads(p.read_text())[k] for k in keep}
            for p in sorted(results.rglob("fold*.json"))}


@pytest.mark.slow
def test_a_sweep_interrupted_with_ctrl_c_resumes_to_the_uninterrupted_result(tmp_path):
    clean, broken = tmp_path / "clean", tmp_path / "broken"
    for home in (clean, broken):
        home.mkdir()
        sweep_file(home, SMALL)
    uninterrupted = bench(clean, "sweep", "s.yaml", "--device", "cpu")  # beside the interrupted one: they share nothing

    # Ctrl-C in the third run's first epoch (two epochs a run): two runs are finished by then
    proc = bench(broken, "sweep", "s.yaml", "--device", "cpu", crash="epoch:5:INT")
    _, err = proc.communicate(timeout=300)
    _, clean_err = uninterrupted.communicate(timeout=300)
    assert uninterrupted.returncode == 0, clean_err
    assert proc.returncode == 130 and "interrupted: finished runs are kept" in err, err
    assert len(list((broken / "results").rglob("fold*.json"))) == 2
    assert not list(broken.rglob("*.claim")) and not list(broken.rglob("*.tmp"))  # released and cleaned

    resumed = bench(broken, "sweep", "s.yaml", "--device", "cpu")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert "2 finished, 6 missing" in out and "6 runs done now" in out, out
    assert outcome(broken / "results") == outcome(clean / "results") and len(outcome(clean / "results")) == 8


def test_the_report_tables_hold_the_means_and_stds_of_the_stored_runs(tmp_path):
    path = sweep_file(tmp_path, SMALL.replace("epochs: {value: 2}", "epochs: {value: 1}"))
    cli = ["--results", str(tmp_path / "results")]
    assert CliRunner().invoke(main, cli + ["sweep", str(path), "--device", "cpu"]).exit_code == 0
    out = CliRunner().invoke(main, cli + ["sweep", str(path), "--report", "--device", "cpu"])
    assert out.exit_code == 0, out.output
    folder = tmp_path / "results" / "sweeps" / "s"
    text = (folder / "README.md").read_text()
    assert "Tuned on test folds" in text and "test folds 1, 2 of synthetic" in text
    records = [json.loads(p.read_text()) for p in (tmp_path / "results").rglob("fold*.json")]
    for n_mels in (16, 32):
        for mixup in (0.0, 0.4):
            accs = [100 * r["metrics"]["accuracy"] for r in records
                    if ["frontend.n_mels", n_mels] in r["run"]["overrides"]
                    and (["recipe.mixup", mixup] in r["run"]["overrides"] or (mixup == 0.0 and not any(
                        k == "recipe.mixup" for k, _ in r["run"]["overrides"])))]
            assert len(accs) == 2
            row = f"| {mixup:<7} | {n_mels:<8} | 2/2    | {statistics.mean(accs):.2f} ± {statistics.stdev(accs):.2f}"
            assert row in text, (row, text)
    assert sorted(p.name for p in folder.glob("*.png")) == ["mixup.png", "n_mels.png"]
    first = (folder / "n_mels.png").read_bytes()
    CliRunner().invoke(main, cli + ["sweep", str(path), "--report", "--device", "cpu"])
    assert (folder / "n_mels.png").read_bytes() == first and first.startswith(b"\x89PNG")  # byte-stable


def test_report_statistics_by_hand():
    from harness.board.sweep_report import stats

    assert stats([0.5, 0.7]) == pytest.approx((60.0, 14.142135623730951))
    assert stats([0.9]) == (pytest.approx(90.0), None)


def test_a_run_named_by_two_documents_is_planned_once(tmp_path):
    """W&B has no multi-document files; here two documents (or two points) naming one run plan it once,
    so it is neither counted twice nor reported busy, claimed by this very process."""
    doc = "method: grid\nparameters:\n  submission: {value: small_cnn}\n  dataset: {value: synthetic}\n  epochs: {value: 1}\n"
    path = sweep_file(tmp_path, doc + "---\n" + doc)
    out = CliRunner().invoke(main, ["--results", str(tmp_path), "sweep", str(path), "--dry-run"])
    assert "2 points, 5 runs: 0 finished, 5 missing" in out.output, out.output
