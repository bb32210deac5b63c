"""Chaos: a small grid killed with SIGKILL while decoding, training and writing a result, then
resumed, ends with the results of an uninterrupted grid and nothing left behind."""
import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest


from conftest import TINY_CATALOG, make_digit_folder

pytestmark = pytest.mark.slow
GRIDS = [("tiny", "1,2"), ("synthetic", "1,2")]
# (dataset, crash point, what the killed process must have left behind)
KILLS = [("tiny", "decode", "cache/*.tmp"), ("tiny", "epoch", "**/.fold1-trial1.json.claim"),
         ("tiny", "result:2", "**/.fold2-trial1.json~*.tmp"),
         ("synthetic", "epoch:3", "**/.fold2-trial1.json.claim"), ("synthetic", "result", "**/.fold2-trial1.json~*.tmp")]


def bench(home: Path, *args: str, crash: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "BENCH_DATA_ROOT": str(home / "data"), "BENCH_RESULTS": str(home / "results"),
           "BENCH_DATASETS": str(home.parent / "datasets.toml"), "OMP_NUM_THREADS": "1"}
    env.pop("BENCH_CRASH_AT", None)
    if crash:
        env["BENCH_CRASH_AT"] = crash
    return subprocess.run([sys.executable, "-c", "from harness.cli.commands import main; main()", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def run_grid(home: Path, dataset: str, folds: str, crash: str | None = None) -> subprocess.CompletedProcess:
    return bench(home, "run", "-s", "small_cnn", "-d", dataset, "--folds", folds, "--epochs", "2", "--device", "cpu",
                 crash=crash)


def outcome(results: Path) -> dict:
    """What a grid computed, without what differs between any two runs (times, hosts)."""
    keep = ("config_hash", "metrics", "predictions", "curves", "fold_fingerprint", "seed", "status")
    return {p.relative_to(results).as_posix(): {k: json.loads(p.read_text())[k] for k in keep}
            for p in sorted(results.rglob("*.json"))}


def test_a_grid_killed_anywhere_resumes_to_the_uninterrupted_result(tmp_path):
    (tmp_path / "datasets.toml").write_text(TINY_CATALOG.format(url="", sha="", fingerprint=""))  # added to the project's
    source = make_digit_folder(tmp_path / "src")
    clean, chaos = tmp_path / "clean", tmp_path / "chaos"
    with ThreadPoolExecutor(2) as pool:  # the two homes share nothing: the uninterrupted grid runs beside the kills
        assert [p.returncode for p in pool.map(lambda h: bench(h, "fetch", "tiny", "--from", str(source)),
                                               (clean, chaos))] == [0, 0]
        uninterrupted = pool.submit(lambda: [run_grid(clean, dataset, folds) for dataset, folds in GRIDS])
        for dataset, point, evidence in KILLS:
            killed = run_grid(chaos, dataset, "1,2", crash=point)
            assert killed.returncode == -signal.SIGKILL, (point, killed.stdout, killed.stderr)
            assert list(chaos.glob(f"*/{evidence}")), f"killed at {point}, yet no {evidence} was left to clean"
        for done in uninterrupted.result():
            assert done.returncode == 0, done.stderr
    for dataset, folds in GRIDS:
        resumed = run_grid(chaos, dataset, folds)
        assert resumed.returncode == 0, resumed.stderr

    assert outcome(chaos / "results") == outcome(clean / "results") and len(outcome(clean / "results")) == 4
    strays = [p for p in chaos.rglob("*") if p.name.endswith((".tmp", ".claim"))]
    assert strays == []
    doctor = bench(chaos, "doctor")
    assert "leftovers of crashed processes: 0" in doctor.stdout and "0 damaged" in doctor.stdout, doctor.stdout
