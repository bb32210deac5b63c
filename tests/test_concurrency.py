"""Several bench processes on one data root and one result store: each file built once, each run
trained once, nothing half-written left behind, files readable by the team."""
import multiprocessing
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.core import owners
from harness.runs import store as R
from harness.data.catalog import load_catalog
from harness.data.cache import cached_array
from harness.runs.run import Run

from conftest import grid_named, runs

SYNTH = load_catalog().get("synthetic")
fork = multiprocessing.get_context("fork")


def _build_slowly(path: str, log: str) -> None:
    def fill(out):
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        time.sleep(1.0)
        out[:] = 7.0
    assert float(cached_array(Path(path), (4, 3), fill)[0, 0]) == 7.0


def test_two_processes_build_a_cache_file_once(tmp_path):
    path, log = tmp_path / "cache" / "x.npy", tmp_path / "fills.log"
    procs = [fork.Process(target=_build_slowly, args=(str(path), str(log))) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0, 0]
    assert len(log.read_text().split()) == 1  # the second process waited and mapped the first one's array


def _hold_claim(result: str, ready) -> None:
    assert owners.claim(Path(result)) is None
    ready.set()
    time.sleep(600)  # until the test kills it


def test_a_claimed_run_is_left_to_its_owner_and_freed_when_the_owner_dies(tmp_path):
    result = Run("small_cnn", "synthetic", 1, 1, 1).path(tmp_path / "results")
    ready = fork.Event()
    holder = fork.Process(target=_hold_claim, args=(str(result), ready))
    holder.start()
    assert ready.wait(10)
    assert owners.claim(result) == f"pid {holder.pid} on {owners._host()}"
    report = grid_named(SYNTH, runs("small_cnn"), tmp_path / "results")
    assert [p for p, _ in report.busy] == [result] and not result.exists() and len(report.done) == 1
    assert owners.leftovers(result.parent) == []  # a held claim is not a leftover
    os.kill(holder.pid, signal.SIGKILL)
    holder.join()
    assert [x.path for x in owners.leftovers(result.parent)] == [owners.claim_path(result)]
    report = grid_named(SYNTH, runs("small_cnn"), tmp_path / "results")
    assert report.done == [result] and len(report.skipped) == 1 and not report.busy
    assert sorted(p.name for p in result.parent.iterdir()) == ["fold1-trial1.json", "fold2-trial1.json"]


def test_leftovers_of_dead_processes_are_removed_and_live_or_foreign_ones_kept(tmp_path):
    dead = fork.Process(target=lambda: None)
    dead.start()
    dead.join()
    host, _, _ = owners.owner_tag().split("~")
    made = {
        "dead": tmp_path / f".a.json~{host}~{dead.pid}~1~0abc.tmp",
        "mine": owners.temp_path(tmp_path / "b.json"),
        "foreign": tmp_path / ".c.json~elsewhere~1~1~0abc.tmp",
        "dead folder": tmp_path / f".fsdd~{host}~{dead.pid}~1~0abd.tmp",
    }
    for name, path in made.items():
        path.mkdir() if "folder" in name else path.write_text("x")
    assert {x.path for x in owners.clean(tmp_path)} == {made["dead"], made["dead folder"]}
    assert made["mine"].exists() and made["foreign"].exists() and not made["dead"].exists()


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_result_files_get_the_umasks_permissions(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        R.write_json_atomic(tmp_path / "r.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == mode


@pytest.mark.slow
def test_two_bench_runs_started_at_once_train_each_run_once(tmp_path):
    cmd = [sys.executable, "-c", "from harness.cli.commands import main; main()", "run", "-s", "small_cnn",
           "--folds", "1,2,3,4", "--epochs", "1", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    trained = [int(line.split("): ")[1].split(" run")[0]) for out in outs for line in out.splitlines()
               if line.startswith("small_cnn on synthetic (scratch-fp32, 1 epoch): ")]
    assert sum(trained) == 4, outs  # no run trained twice, none lost
    files = sorted(p.name for p in (tmp_path / "results" / "synthetic" / "small_cnn" / "e1" / "scratch-fp32").iterdir())
    assert files == [f"fold{f}-trial1.json" for f in (1, 2, 3, 4)]


def test_temporaries_of_earlier_harness_versions_are_leftovers_once_an_hour_old(tmp_path):
    dead = fork.Process(target=lambda: None)
    dead.start()
    dead.join()
    cache_tmp = tmp_path / "cache" / f"fsdd-v1-abc-8000hz-8000.tmp{dead.pid}.npy"
    result_tmp = tmp_path / "results" / ".fold1-trial1.json.k2j4_x9a"
    fresh = tmp_path / "results" / ".fold2-trial1.json.abcdefgh"
    for path in (cache_tmp, result_tmp, fresh):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    hour_ago = time.time() - 3700
    for path in (cache_tmp, result_tmp):
        os.utime(path, (hour_ago, hour_ago))
    assert {x.path for x in owners.leftovers(tmp_path)} == {cache_tmp, result_tmp}
