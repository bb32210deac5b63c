"""Sweep files and the result store as hostile input (issue 27): what would exhaust the machine is
refused in under a second and 200 MB, naming the file; a link out of the store is refused alike by
the planner, the board and ``bench doctor``.

The exhausting cases run in a child process whose address space is capped 1 GB above what its
imports took and which is killed after 20 s, so code without the bounds fails them quickly
instead of taking the machine."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.board.leaderboard import collect
from harness.cli.commands import main
from harness.cli.doctor import describe, examine
from harness.data.catalog import load_catalog
from harness.runs import store
from harness.runs.records import FailedRecord, RecordError
from harness.runs.run import Run
from harness.runs.sweep import SweepError, read_sweep

from conftest import submissions

ROOT = Path(__file__).resolve().parents[1]
SECOND, MB = 1.0, 200e6
ONE_POINT = "method: grid\nparameters:\n  submission: {value: small_cnn}\n  dataset: {value: synthetic}\n"

CHILD = """
import json, resource, sys, time, tracemalloc
import yaml  # imported before anything is measured, like the harness's own modules in the setup

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024

{setup}
results, hard = [], resource.getrlimit(resource.RLIMIT_AS)[1]
for name, call in CALLS:
    cap = status("VmSize:") + 2**30
    resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
    before = status("VmHWM:")
    tracemalloc.start()
    start = time.perf_counter()
    try:
        out = repr(call())
    except MemoryError:
        out = "MemoryError"
    except BaseException as err:
        out = f"{{type(err).__name__}}: {{err}}"
    seconds, traced = time.perf_counter() - start, tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
    rss = status("VmHWM:") - before  # (ru_maxrss keeps the pytest process's peak across the exec)
    results.append(dict(name=name, out=out, seconds=seconds, traced=traced, rss=rss))
print(json.dumps(results))
"""


def measured(setup: str, tmp_path: Path) -> dict[str, dict]:
    """Run ``setup`` (which defines ``CALLS``: (name, function) pairs) in a capped child; each call's
    outcome (its repr or its error), seconds, peak traced allocation and peak RSS growth, by name."""
    code = CHILD.format(setup=textwrap.dedent(setup))
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}"}
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20, env=env,
                              cwd=tmp_path)
    except subprocess.TimeoutExpired:
        pytest.fail("still running after 20 s (killed): nothing bounds this input")
    assert done.returncode == 0, done.stderr[-3000:]
    return {r["name"]: r for r in json.loads(done.stdout.splitlines()[-1])}


def cheap(result: dict) -> None:
    assert result["seconds"] < SECOND, result
    assert result["traced"] < MB and result["rss"] < MB, result


# --- sweep files ------------------------------------------------------------------------------

def bomb(levels: int = 9) -> str:
    """A sweep whose model_kwargs.width is 10**levels strings once its aliases are expanded."""
    rows = ["    - &l0 [" + ", ".join(["lol"] * 10) + "]"]
    rows += [f"    - &l{n} [" + ", ".join([f"*l{n - 1}"] * 10) + "]" for n in range(1, levels)]
    return ONE_POINT + "  model_kwargs.width:\n    value:\n" + "\n".join(rows) + "\n"


def test_a_yaml_alias_bomb_is_refused_at_once_naming_the_file(tmp_path):
    (tmp_path / "bomb.yaml").write_text(bomb())
    (tmp_path / "cycle.yaml").write_text(ONE_POINT + "  model_kwargs.width: {value: &me [1, *me]}\n")
    got = measured("""
        from harness.runs.sweep import read_sweep
        from harness.training.overrides import resolve_overrides
        from harness.training.submission import get_submission

        get_submission("small_cnn")  # imported before the cap: only the sweep is measured

        def planned(name):  # what planning does with each point: its overrides resolved and checked
            return [resolve_overrides(get_submission(p.cell.submission), p.cell.overrides)
                    for p in read_sweep(name).points] and "planned"

        CALLS = [(n, lambda n=n: planned(n)) for n in ("bomb.yaml", "cycle.yaml")]
    """, tmp_path)
    assert got["bomb.yaml"]["out"] == "SweepError: bomb.yaml: holds more than 20,000 values once its YAML aliases " \
                                     "are expanded (a real sweep file holds a few hundred; an alias counts every " \
                                     "value it stands for)", got
    assert got["cycle.yaml"]["out"] == "SweepError: cycle.yaml: a YAML alias refers to the value that holds it " \
                                      "(an endless value)", got
    cheap(got["bomb.yaml"])
    cheap(got["cycle.yaml"])
    out = CliRunner().invoke(main, ["sweep", str(tmp_path / "bomb.yaml"), "--dry-run"])
    assert out.exit_code == 1 and out.output.startswith(f"Error: {tmp_path / 'bomb.yaml'}: holds more than 20,000")
    assert out.output.count("\n") == 1, out.output  # one line
    (tmp_path / "shared.yaml").write_text(bomb(levels=2))  # an alias or two is fine: 100 values
    assert dict(read_sweep(tmp_path / "shared.yaml").points[0].cell.overrides)["model_kwargs.width"][1][9] == ["lol"] * 10


def test_bench_sweep_refuses_a_bomb_before_it_imports_torch(tmp_path):
    """The whole command, not only the parse: under a second and 200 MB (torch alone is ~600 MB). Peak
    memory is VmHWM: ru_maxrss survives exec, so a child of this test would report the test's own."""
    (tmp_path / "bomb.yaml").write_text(bomb())
    probe = ("import resource, sys, time; start = time.monotonic()\n"
             "from harness.cli.commands import main\n"
             "try:\n    main([*sys.argv[1:], '--dry-run'], 'bench')\n"
             "except SystemExit as stop:\n"
             "    print(stop.code, 'torch' in sys.modules, round(time.monotonic() - start, 2),\n"
             "          [int(line.split()[1]) // 1024 for line in open('/proc/self/status') if line.startswith('VmHWM')][0],\n"
             "          resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    done = subprocess.run([sys.executable, "-c", probe, "sweep", str(tmp_path / "bomb.yaml")], capture_output=True,
                          text=True, timeout=60)
    code, torch_imported, seconds, megabytes, children = done.stdout.split()[-5:]
    assert code == "1" and "holds more than 20,000 values" in done.stderr + done.stdout, done
    assert torch_imported == "False" and children == "0", done.stdout  # no fork server started either
    assert float(seconds) < 1 and int(megabytes) < 200, done.stdout


def test_a_grid_of_ten_million_runs_is_refused_before_it_is_expanded(tmp_path):
    params = "".join(f"  {name}: {{values: [{', '.join(map(str, range(10)))}]}}\n"
                     for name in ("n_mels", "n_fft", "hop_length", "mixup", "width", "lr", "batch_size"))
    (tmp_path / "grid.yaml").write_text(ONE_POINT + params)
    (tmp_path / "trials.yaml").write_text(ONE_POINT + "  trial: {min: 1, max: 1000000000}\n")
    got = measured("""
        from harness.runs.sweep import read_sweep

        CALLS = [(n, lambda n=n: len(read_sweep(n).points)) for n in ("grid.yaml", "trials.yaml")]
    """, tmp_path)
    assert got["grid.yaml"]["out"] == (
        "SweepError: grid.yaml: 10,000,000 runs (n_mels 10 × n_fft 10 × hop_length 10 × mixup 10 × width 10 × lr 10 "
        "× batch_size 10), over the limit of 100,000; narrow or split the sweep, or raise the limit with "
        "`bench sweep --max-runs N` (or BENCH_MAX_RUNS=N)"), got
    assert got["trials.yaml"]["out"].startswith("SweepError: trials.yaml: 1,000,000,000 runs (trial 1,000,000,000)")
    cheap(got["grid.yaml"])
    cheap(got["trials.yaml"])


def test_the_run_limit_is_overridable_on_the_command_line_and_by_environment(tmp_path, monkeypatch):
    path = tmp_path / "six.yaml"
    path.write_text(ONE_POINT + "  n_mels: {values: [16, 32, 64]}\n  fold: {values: [1, 2]}\n")
    with pytest.raises(SweepError, match=r"six.yaml: 6 runs \(n_mels 3 × fold 2\), over the limit of 5; "):
        read_sweep(path, max_runs=5)
    assert len(read_sweep(path, max_runs=6).points) == 3 and len(read_sweep(path).points) == 3
    out = CliRunner().invoke(main, ["sweep", str(path), "--dry-run", "--max-runs", "5"])
    assert out.exit_code == 1 and "6 runs (n_mels 3 × fold 2), over the limit of 5" in out.output, out.output
    monkeypatch.setenv("BENCH_MAX_RUNS", "5")
    out = CliRunner().invoke(main, ["sweep", str(path), "--dry-run"])
    assert out.exit_code == 1 and "over the limit of 5" in out.output, out.output


def test_an_oversized_or_unreadable_sweep_file_is_named(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text(ONE_POINT + "# " + "x" * 1_000_000 + "\n")
    with pytest.raises(SweepError, match=r"big.yaml: larger than 256 KB; a sweep file is a few KB of YAML"):
        read_sweep(big)
    (tmp_path / "deep.yaml").write_text(ONE_POINT + "  width: {value: " + "[" * 500 + "]" * 500 + "}\n")
    with pytest.raises(SweepError, match=r"deep.yaml: nested deeper than 32 levels; a sweep nests 5"):
        read_sweep(tmp_path / "deep.yaml")


# --- result files -----------------------------------------------------------------------------

RUN = Run("small_cnn", "synthetic", 1, 1, 1)
DEEP = "nested deeper than 32 levels (a record nests 4): refused"


def test_a_deeply_nested_result_is_reported_and_the_board_and_doctor_go_on(tmp_path):
    results = tmp_path / "results"
    brackets, nested = RUN.path(results), Run("small_cnn", "synthetic", 1, 2, 1).path(results)
    brackets.parent.mkdir(parents=True)
    brackets.write_text("[" * 200_000)
    nested.write_text('{"a": ' + "[" * 100 + "]" * 100 + "}")  # parses; 101 levels deep
    third = Run("small_cnn", "synthetic", 1, 3, 1)
    store.write_record(third.path(results), FailedRecord(third, "RuntimeError: boom"))
    _, excluded = collect(results, submissions(), load_catalog())
    assert {p.name: why for p, why in excluded} == {
        "fold1-trial1.json": DEEP, "fold2-trial1.json": DEEP, "fold3-trial1.json": "failed: RuntimeError: boom"}
    with pytest.raises(RecordError) as refused:
        store.load_record(brackets)  # as the planner reads a run's file
    assert str(refused.value) == f"{brackets}: {DEEP}"
    board = CliRunner().invoke(main, ["leaderboard"])
    assert board.exit_code == 0, board.output
    assert f"| synthetic/small_cnn/e1/scratch-fp32/fold1-trial1.json | {DEEP}" in (results / "leaderboard.md").read_text()
    doctor = CliRunner().invoke(main, ["doctor"])
    assert doctor.exit_code == 0 and f"  {brackets}: {DEEP}; it is not ranked, and the next run of its grid " \
                                      f"redoes it" in doctor.output, doctor.output


def test_a_huge_result_file_or_a_fifo_is_not_read(tmp_path):
    results = tmp_path / "results"
    huge, fifo = RUN.path(results), Run("small_cnn", "synthetic", 1, 2, 1).path(results)
    huge.parent.mkdir(parents=True)
    with open(huge, "wb") as fh:
        fh.truncate(10**9)  # sparse: 1 GB that takes no disk
    os.mkfifo(fifo)  # opened for reading the old way, it waits for a writer forever
    got = measured(f"""
        from pathlib import Path
        from harness.board.leaderboard import collect
        from harness.cli.doctor import examine
        from harness.data.catalog import load_catalog
        from conftest import submissions

        root = Path({str(results)!r})
        board = lambda: sorted((p.name, why) for p, why in collect(root, submissions(), load_catalog())[1])
        doctor = lambda: sorted((p.name, why) for p, why in examine(root / "no-data", root).damaged)
        CALLS = [("board", board), ("doctor", doctor)]
    """, tmp_path)
    expected = repr([("fold1-trial1.json", "1,000.0 MB, over the 16 MB a result file may hold: refused, not read"),
                     ("fold2-trial1.json", "not a regular file: refused, not read")])
    assert got["board"]["out"] == expected and got["doctor"]["out"] == expected, got
    cheap(got["board"])
    cheap(got["doctor"])


# --- links in the store -----------------------------------------------------------------------

def linked_store(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    """A store with a folder linked out of it, a result linked to /etc/passwd, a folder linked
    within it and a loop of links; sealed failed records where the links lead."""
    results, outside = tmp_path / "results", tmp_path / "elsewhere"
    failed = lambda run: FailedRecord(run, "RuntimeError: boom")
    passwd_run, within_run = Run("other", "synthetic", 1, 1, 1), Run("third", "synthetic", 1, 1, 1)
    archived = results / "archive" / "third" / "e1" / "scratch-fp32" / "fold1-trial1.json"
    store.write_record(RUN.path(outside), failed(RUN))
    store.write_record(archived, failed(within_run))
    (results / "synthetic").mkdir()
    (results / "synthetic" / "small_cnn").symlink_to(outside / "synthetic" / "small_cnn", target_is_directory=True)
    (results / "synthetic" / "third").symlink_to(results / "archive" / "third", target_is_directory=True)
    passwd_run.path(results).parent.mkdir(parents=True)
    passwd_run.path(results).symlink_to("/etc/passwd")
    (results / "synthetic" / "loop").symlink_to(results, target_is_directory=True)
    return results, {"folder out": results / "synthetic" / "small_cnn", "passwd": passwd_run.path(results),
                     "folder out run": RUN.path(results), "within": within_run.path(results), "archived": archived}


def test_links_out_of_the_store_are_refused_alike_by_the_planner_the_board_and_doctor(tmp_path):
    results, at = linked_store(tmp_path)
    out_why = f"a link out of the result store (to {tmp_path / 'elsewhere' / 'synthetic' / 'small_cnn'}): refused, not read"
    passwd_why = "a link out of the result store (to /etc/passwd): refused, not read"
    # the planner reads a run's file by its path (harness.runs.driver.is_finished)
    with pytest.raises(RecordError) as refused:
        store.load_record(at["folder out run"])
    assert str(refused.value) == f"{at['folder out run']}: its folder {at['folder out']} is {out_why}"
    with pytest.raises(RecordError) as refused:
        store.load_record(at["passwd"])
    assert str(refused.value) == f"{at['passwd']}: {passwd_why}"
    assert store.load_record(at["within"]).error == "RuntimeError: boom"  # a folder linked within the store: followed
    # the board: each refused link listed with why; what a link within the store leads to, read once by its own path
    _, excluded = collect(results, submissions(), load_catalog())
    assert excluded == [(at["archived"], "failed: RuntimeError: boom"), (at["passwd"], passwd_why),
                        (at["folder out"], out_why)]
    # doctor: the same two, each with what will actually happen to it
    lines = describe(examine(tmp_path / "data", results), tmp_path / "data", results)
    assert f"results {results}: 2 damaged result file(s)" in lines
    assert f"  {at['passwd']}: {passwd_why}; it is not ranked, and the next run of its grid replaces the link " \
           f"with its result (its target is left alone)" in lines
    assert f"  {at['folder out']}: {out_why}; nothing under it is read or ranked, and `bench run` and `bench sweep` " \
           f"stop before storing a run through it: remove the link, or move what it points to into the store" in lines
    assert not any("redoes it" in line for line in lines), lines


def test_a_plan_never_stores_through_a_link_out_of_the_store(tmp_path):
    results, at = linked_store(tmp_path)
    sweep = tmp_path / "one.yaml"
    sweep.write_text(ONE_POINT + "  epochs: {value: 1}\n  fold: {value: 1}\n")
    dry_run = ["--results", str(results), "sweep", str(sweep), "--dry-run", "--device", "cpu"]
    out = CliRunner().invoke(main, dry_run)
    assert out.exit_code == 1, out.output
    assert out.output == (f"Error: {at['folder out']}: a link out of the result store (to "
                          f"{tmp_path / 'elsewhere' / 'synthetic' / 'small_cnn'}), where this plan would store runs; "
                          f"nothing ran. Remove the link, or move what it points to into the store (a store "
                          f"elsewhere is one whole folder: --results or BENCH_RESULTS)\n")
    # a result file linked out of the store is a missing run, and storing it replaces the link
    target = tmp_path / "elsewhere" / "passwd"
    target.write_text("root:x:0:0\n")
    at["folder out"].unlink()
    RUN.path(results).parent.mkdir(parents=True)
    RUN.path(results).symlink_to(target)
    out = CliRunner().invoke(main, dry_run)
    assert out.exit_code == 0 and "1 run: 0 finished, 1 missing" in out.output, out.output
    store.write_record(RUN.path(results), FailedRecord(RUN, "RuntimeError: boom"))
    assert not RUN.path(results).is_symlink() and target.read_text() == "root:x:0:0\n"
