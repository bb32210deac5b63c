"""Executors: where runs go (a pure function, tested case by case), and the local and Ray
executors giving the serial executor's results, also when a worker is SIGKILLed mid-run or the
driver is interrupted. Ray is real: one local instance for the module, with 2 CPUs."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from harness.cli.commands import main
from harness.data.catalog import load_catalog
from harness.data.datasets import data_root
from harness.runs import store
from harness.runs.plan import execute_plan, make_plan
from harness.runs.slots import (Placement, PlacementError, Slot, cpu_slots, gpu_slots, parse_gpus,
                                pinned_devices)
from harness.runs.sweep import read_sweep

from conftest import submissions

CPU = torch.device("cpu")
SWEEP = """method: grid
parameters:
  submission: {value: small_cnn}
  dataset: {value: synthetic}
  epochs: {value: 2}
  n_mels: {values: [16, 32]}
  fold: {values: [1, 2, 3]}
"""


# --- where runs go ---------------------------------------------------------------------------

def test_gpu_lists_are_indices_among_the_visible_gpus():
    assert parse_gpus("all", 4) == [0, 1, 2, 3]
    assert parse_gpus("1,3", 4) == [1, 3]
    for bad, says in (("4", "no GPU 4 here; this machine shows GPUs 0..3"), ("1,1", "names a GPU twice"),
                      ("a,b", "write all, or GPU indices")):
        with pytest.raises(PlacementError, match=says):
            parse_gpus(bad, 4)
    with pytest.raises(PlacementError, match="sees no CUDA GPU"):
        parse_gpus("all", 0)


def test_slots_spread_over_the_gpus_first_and_never_outnumber_the_runs():
    assert gpu_slots([1, 3], 2, runs=10, cpus=16) == [Slot(1, 4), Slot(3, 4), Slot(1, 4), Slot(3, 4)]
    assert gpu_slots([1, 3], 2, runs=3, cpus=16) == [Slot(1, 5), Slot(3, 5), Slot(1, 5)]
    assert gpu_slots([1, 3], 4, runs=1, cpus=2) == [Slot(1, 2)]  # more slots than runs: one
    assert gpu_slots([0], 8, runs=100, cpus=2) == [Slot(0, 1)] * 8  # each slot keeps one thread
    assert cpu_slots(2, runs=5, cpus=2) == [Slot(None, 1)] * 2
    assert cpu_slots(4, runs=1, cpus=2) == [Slot(None, 2)]
    with pytest.raises(PlacementError, match="at least 1"):
        gpu_slots([0], 0, runs=1, cpus=1)


def test_a_worker_is_pinned_to_the_physical_gpu_behind_its_index():
    assert pinned_devices(None, 1) == "1"
    assert pinned_devices("2,5", 1) == "5"  # SLURM gave this job GPUs 2 and 5; index 1 is GPU 5
    assert pinned_devices("GPU-aa, GPU-bb", 0) == "GPU-aa"
    with pytest.raises(PlacementError, match="not among CUDA_VISIBLE_DEVICES=2"):
        pinned_devices("2", 1)


def test_placements_are_checked_when_made():
    assert Placement("ray", address="auto").address == "auto"
    for kwargs, says in ((dict(executor="slurm"), "use one of local, ray"), (dict(runs_per_gpu=0), "at least 1"),
                         (dict(gpus="0;1"), "GPU indices"),
                         (dict(address="auto"), "--executor local takes no --address .*; --address is for --executor ray"),
                         (dict(executor="ray", gpus="0"), "--executor ray takes no --gpus .*is for --executor local")):
        with pytest.raises(PlacementError, match=says):
            Placement(**kwargs)
    out = CliRunner().invoke(main, ["run", "-s", "small_cnn", "--runs-per-gpu", "0"])
    assert out.exit_code == 2 and "'--runs-per-gpu'" in out.output and "at least 1" in out.output
    out = CliRunner().invoke(main, ["run", "-s", "small_cnn", "--device", "cpu", "--runs-per-gpu", "2"])
    assert out.exit_code == 1 and "on the CPU, --workers N runs N at once" in out.output
    with pytest.raises(PlacementError, match="with --runs-per-gpu"):
        Placement(workers=2).check_device("cuda")


def test_every_executor_is_one_registry_entry_that_the_cli_placement_and_plan_read(monkeypatch, tmp_path):
    import importlib

    from harness.runs import executors, plan as planning
    from harness.runs.slots import EXECUTORS, ExecutorKind

    for name in EXECUTORS:  # each factory is where its entry says
        module, _, function = EXECUTORS.get(name).factory.partition(":")
        assert callable(getattr(importlib.import_module(module), function))
    class Idle:  # an executor that runs nothing
        def results(self, jobs, status):
            return iter(())

    made = []
    monkeypatch.setitem(EXECUTORS._items, "idle", ExecutorKind("runs nothing", "harness.runs.executors:idle"))
    monkeypatch.setattr(executors, "idle", lambda *args: made.append(args) or Idle(), raising=False)
    option = next(p for p in main.commands["sweep"].params if p.name == "executor")  # made when the CLI loaded
    assert list(option.type.choices) == ["local", "ray"] and \
        option.help == "local: this machine's GPUs or cores; ray: a Ray instance or cluster (pip install -e '.[ray]')."
    with pytest.raises(PlacementError, match="--executor idle takes no --address"):
        Placement("idle", address="auto")
    (tmp_path / "s.yaml").write_text(SWEEP)
    placement, subs = Placement("idle", workers=1), submissions()
    plan = make_plan(read_sweep(tmp_path / "s.yaml").points, subs, load_catalog(), data_root(), tmp_path, CPU, placement)
    execute_plan(plan, subs, CPU, tmp_path, None, "test", placement=placement)
    assert [(args[0], args[2], args[3]) for args in made] == [(placement, 6, 1)]  # all six runs, one per device


def test_with_nothing_left_to_run_no_executor_is_made_and_ray_is_never_reached(monkeypatch, tmp_path):
    from harness.runs import ray_executor
    from harness.runs.plan import Plan, Planned
    from harness.runs.run import Run

    def reached(*args, **kwargs):
        raise AssertionError("Ray was started or joined with nothing to run")

    monkeypatch.setattr(ray_executor, "_ray", reached)
    monkeypatch.setattr(ray_executor, "RayCluster", reached)
    spec = load_catalog().get("synthetic")
    finished = Planned(None, None, spec, [Run("small_cnn", "synthetic", 1, 1, 1)], [], 1)
    reports = execute_plan(Plan([finished]), submissions(), CPU, tmp_path / "results", None, "test",
                           placement=Placement("ray"))
    assert len(reports) == 1 and not reports[0].done
    monkeypatch.undo()
    monkeypatch.setattr(ray_executor, "_ray", reached)  # nor when the driver's runs were all taken meanwhile
    assert list(ray_executor.RayCluster().results(iter([]), lambda job, text: None)) == []


def test_a_job_trains_on_its_own_device_whichever_executor_runs_it(monkeypatch):
    from harness.runs import executors
    from harness.runs.executors import InProcess, Job, device_of
    from harness.runs.run import Run

    run = Run("small_cnn", "synthetic", 1, 1, 1)
    job = lambda kind: Job(None, None, run, kind, None)
    assert device_of(job("cpu")) == CPU and device_of(job("cpu"), 1) == CPU
    assert device_of(job("cuda")) == torch.device("cuda") and device_of(job("cuda"), 1) == torch.device("cuda", 1)
    seen = []
    monkeypatch.setattr(executors, "attempt", lambda ex: seen.append(ex.device))
    for executor, kind in ((InProcess(), "cpu"), (InProcess(1), "cuda"), (InProcess(1), "cpu")):
        list(executor.results(iter([job(kind)]), lambda job, text: None))
    assert seen == [CPU, torch.device("cuda", 1), CPU]


# --- the executors give the serial results ---------------------------------------------------

def sweep(tmp_path: Path, results: Path, placement: Placement) -> list:
    path = tmp_path / "s.yaml"
    path.write_text(SWEEP)
    subs = submissions()
    plan = make_plan(read_sweep(path).points, subs, load_catalog(), data_root(), results, CPU, placement)
    return execute_plan(plan, subs, CPU, results, None, "test", placement=placement)


def outcome(results: Path) -> dict:
    """What the runs computed: the same runs, configs, metrics and predictions (a loss curve's
    last digits depend on the thread count, which differs between executors)."""
    keep = ("run", "config_hash", "source_hash", "metrics", "predictions", "fold_fingerprint")
    return {p.relative_to(results).as_posix(): {k: json.loads(p.read_text())[k] for k in keep}
            for p in sorted(results.rglob("fold*.json"))}


@pytest.fixture(scope="module")
def serial(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("serial")
    reports = sweep(tmp, tmp / "results", Placement())
    assert sum(len(r.done) for r in reports) == 6
    return outcome(tmp / "results")


@pytest.fixture
def writes(monkeypatch) -> list:
    """Every result path the driver writes, in order: each run must be written once."""
    written, real = [], store.write_record

    def write(path, record):
        written.append(path)
        return real(path, record)

    monkeypatch.setattr(store, "write_record", write)
    return written


@pytest.fixture
def kill_once(tmp_path, monkeypatch):
    """SIGKILL the first worker to reach its second epoch; its retry goes through."""
    monkeypatch.setenv("BENCH_CRASH_AT", "epoch:2:KILL")
    monkeypatch.setenv("BENCH_CRASH_ONCE", str(tmp_path / "crashed"))
    return tmp_path / "crashed"


@pytest.mark.slow
def test_two_local_cpu_workers_give_the_serial_results_even_when_one_is_killed(tmp_path, serial, writes, kill_once):
    reports = sweep(tmp_path, tmp_path / "results", Placement(workers=2))
    assert kill_once.exists(), "no worker was killed: the test tested nothing"
    assert sum(len(r.done) for r in reports) == 6 and not any(r.failed for r in reports)
    assert outcome(tmp_path / "results") == serial
    assert len(writes) == len(set(writes)) == 6
    assert not list(tmp_path.rglob("*.claim"))


@pytest.mark.slow
def test_without_an_address_the_ray_executor_starts_and_stops_its_own_instance(tmp_path, serial):
    pytest.importorskip("ray", reason="the Ray executor needs pip install -e '.[ray]' (make install does)")
    (tmp_path / "s.yaml").write_text(SWEEP)
    out, err = (proc := bench(tmp_path, "sweep", "s.yaml", "--device", "cpu", "--executor", "ray")).communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "6 runs done now, 0 failed" in out and outcome(tmp_path / "results") == serial


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="the Ray executor needs pip install -e '.[ray]' (make install does)")
    context = ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield context.address_info["address"]
    ray.shutdown()


@pytest.mark.slow
def test_a_ray_worker_killed_mid_run_is_retried_and_recorded_once(tmp_path, serial, writes, kill_once, ray_cluster):
    reports = sweep(tmp_path, tmp_path / "results", Placement("ray"))
    assert kill_once.exists(), "no worker was killed: the test tested nothing"
    assert sum(len(r.done) for r in reports) == 6 and not any(r.failed for r in reports)
    assert outcome(tmp_path / "results") == serial
    assert len(writes) == len(set(writes)) == 6


def bench(home: Path, *args: str, crash: str = "") -> subprocess.Popen:
    env = {**os.environ, "BENCH_RESULTS": str(home / "results"), "BENCH_DATA_ROOT": str(home / "data"),
           "BENCH_CRASH_AT": crash}
    return subprocess.Popen([sys.executable, "-c", "from harness.cli.commands import main; main()", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=home,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


@pytest.mark.slow
def test_an_interrupted_ray_sweep_resumes_to_the_serial_results(tmp_path, serial, ray_cluster):
    (tmp_path / "s.yaml").write_text(SWEEP)
    command = ("sweep", "s.yaml", "--device", "cpu", "--executor", "ray", "--address", ray_cluster)
    # Ctrl-C while the driver writes its second result: that one is lost, the first is kept
    _, err = (proc := bench(tmp_path, *command, crash="result:2:INT")).communicate(timeout=300)
    assert proc.returncode == 130 and "interrupted: finished runs are kept" in err, err
    assert len(list((tmp_path / "results").rglob("fold*.json"))) == 1
    assert not list(tmp_path.rglob("*.claim"))

    out, err = (proc := bench(tmp_path, *command)).communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "1 finished, 5 missing" in out and "5 runs done now" in out, out
    assert outcome(tmp_path / "results") == serial


def test_a_record_carries_the_drivers_view_of_the_code_and_a_runner_refuses_other_code():
    import dataclasses

    from harness.core.errors import SubmissionError
    from harness.runs.execute import run_one, task_for
    from harness.runs.provenance import Origin
    from harness.runs.run import Run

    spec, run, subs = load_catalog().get("synthetic"), Run("small_cnn", "synthetic", 1, 1, 1), submissions()
    task = task_for(subs, run, spec)
    driver = Origin(task.source.source_hash, {"commit": "0123abc", "dirty": False})  # a runner may have no .git
    record = run_one(dataclasses.replace(task, source=driver), spec, run, CPU)
    assert record.git == driver.git and record.source_hash == driver.source_hash
    with pytest.raises(SubmissionError, match="changed since it was planned"):
        run_one(dataclasses.replace(task, source=Origin("f" * 64, driver.git)), spec, run, CPU)


@pytest.mark.slow
def test_the_driver_decodes_a_dataset_once_before_its_workers_start(tmp_path, tiny_catalog, monkeypatch):
    from harness.data.fetch import fetch
    from harness.runs import executors, plan as planning
    from harness.runs.cells import Cell
    from harness.runs.sweep import Point

    from conftest import make_digit_folder

    catalog = load_catalog(tiny_catalog())
    fetch(catalog.get("tiny"), data_root(), from_path=make_digit_folder(tmp_path / "src"))
    events, decode, start = [], planning.load_dataset, executors._Worker.__init__
    monkeypatch.setattr(planning, "load_dataset", lambda *a, **k: events.append("decode") or decode(*a, **k))
    monkeypatch.setattr(executors._Worker, "__init__",
                        lambda self, slot, settings: events.append("worker") or start(self, slot, settings))
    placement, subs = Placement(workers=2), submissions()
    work = make_plan([Point((), Cell("small_cnn", "tiny", folds="1,2", epochs=1))], subs, catalog, data_root(),
                     tmp_path / "results", CPU, placement)
    reports = execute_plan(work, subs, CPU, tmp_path / "results", data_root(), "test", placement=placement)
    assert len(reports[0].done) == 2 and events == ["decode", "worker", "worker"]
    assert len(list((data_root() / "cache").glob("tiny-*.npy"))) == 1


def test_a_gpu_run_on_a_ray_cluster_without_gpus_is_refused_not_queued_forever(ray_cluster):
    from harness.runs.execute import task_for
    from harness.runs.executors import Job
    from harness.runs.ray_executor import RayCluster, RayUnavailable
    from harness.runs.run import Run

    run, spec = Run("small_cnn", "synthetic", 1, 1, 1), load_catalog().get("synthetic")
    job = Job(task_for(submissions(), run, spec), spec, run, "cuda", None)
    with pytest.raises(RayUnavailable, match="offers no GPU"):
        list(RayCluster().results(iter([job]), lambda job, text: None))
