"""bench speed: it runs on CPU, reports, and its ratio comes from two measured throughputs."""
import json

import pytest
import torch
from click.testing import CliRunner

from harness.speed import benchmark as speed
from harness.data.catalog import load_catalog
from harness.cli.commands import main
from harness.training.device import resolve_precision

from conftest import grid_named, runs, submissions


def test_ratio_is_computed_from_the_two_measured_throughputs(monkeypatch):
    monkeypatch.setattr(speed, "run_reference", lambda work, paths, labels, steps, device: 4.0)
    engine = {"prepare": 1.0, "first_step": 2.0, "train": 0.5, "minimal": 0.4, "minimal_first_step": 1.0, "flops": 2e9}
    monkeypatch.setattr(speed, "run_engine", lambda work, paths, labels, steps, device, precision, compiled: engine)
    r = speed.measure(speed.fsdd_small_cnn(), 3, torch.device("cpu"))
    assert r["reference_samples_per_s"] == pytest.approx(3 * 16 / 4.0)
    assert r["engine_samples_per_s"] == pytest.approx(3 * 16 / 0.5)
    assert r["ratio"] == pytest.approx(8.0) and r["engine_vs_minimal"] == pytest.approx(0.8)
    assert r["engine_tflop_per_s"] == pytest.approx(2e9 * 96 / 1e12) and r["engine_first_step_s"] == 2.0
    assert r["projected_grid_s"]["reference"] == pytest.approx(5 * r["projected_run_s"]["reference"])


def test_speed_command_measures_both_pipelines_on_cpu(tmp_path):
    out = CliRunner().invoke(main, ["speed", "--workload", "fsdd-small-cnn", "--steps", "3", "--device", "cpu",
                                    "--json", str(tmp_path / "speed.json")])
    assert out.exit_code == 0, out.output
    assert "engine/reference" in out.output and "fsdd-small-cnn" in out.output
    row = json.loads((tmp_path / "speed.json").read_text())["workloads"][0]
    assert row["reference_samples_per_s"] > 0 and row["engine_samples_per_s"] > 0
    assert row["ratio"] == pytest.approx(row["engine_samples_per_s"] / row["reference_samples_per_s"])
    assert row["reference_precision"] == "fp32"
    assert row["engine_precision"] == resolve_precision("auto", torch.device("cpu")) and "engine " in out.output
    assert row["gflop_per_sample"] > 0 and row["minimal_samples_per_s"] > 0 and row["compiled"] is False
    assert "time to first step" in out.output and "engine/minimal" in out.output


def test_reference_trains_a_plain_fp32_model_and_the_engine_its_tuned_one(monkeypatch):
    """The reference is the seeds' pipeline (fp32, default layout); the engine runs at the precision asked for."""
    seen = []
    real = speed._setup
    monkeypatch.setattr(speed, "_setup", lambda *a: seen.append(a[4]) or real(*a))
    r = speed.measure(speed.fsdd_small_cnn(), 1, torch.device("cpu"), precision="bf16")
    assert seen == [None, "bf16"] and r["engine_precision"] == "bf16"


@pytest.mark.slow
def test_side_by_side_runs_report_an_aggregate():
    r = speed.side_by_side("fsdd-small-cnn", 3, torch.device("cpu"), 2)
    assert r["aggregate_samples_per_s"] > 0 and r["gain"] == pytest.approx(r["aggregate_samples_per_s"] / r["one_run_samples_per_s"])


@pytest.mark.slow
def test_grid_with_several_workers_stores_every_run(tmp_path):
    report = grid_named(load_catalog().get("synthetic"), runs("small_cnn", folds=(1, 2, 3)), tmp_path / "results",
                        workers=2)
    assert len(report.done) == 3 and not report.failed
    records = [json.loads(p.read_text()) for p in report.done]
    assert sorted(r["fold"] for r in records) == [1, 2, 3] and all(r["status"] == "ok" for r in records)


def test_each_pipeline_reports_its_own_peak_memory():
    """A large allocation before the reset does not count in the next peak (Linux and CUDA)."""
    import sys

    cpu = torch.device("cpu")
    big = torch.ones(2**28 // 4 * 4)  # 1 GiB, touched
    high = speed._peak_memory(cpu)
    assert high > 1.0
    del big
    speed._reset_peak_memory(cpu)
    if sys.platform.startswith("linux"):
        assert speed._peak_memory(cpu) < high - 0.5


def test_model_size_decides_what_auto_means_on_a_gpu():
    """Counted on the meta device: the ESC-50 ResNet-18 is 33.3 GFLOP per training sample (as
    measured by hand for the engine issue), the FSDD small CNN 0.16; only the latter is small."""
    from harness.runs.described import Variant
    from harness.runs.flops import is_small
    from harness.training.device import resolve_compile

    catalog, subs = load_catalog(), submissions()
    gflop = lambda name, dataset: subs.built(name, Variant(spec=catalog.get(dataset))).gflop  # in a sandboxed worker
    assert gflop("fastaudio_resnet18", "esc50") == pytest.approx(33.33, abs=0.01)
    assert gflop("small_cnn", "fsdd") == pytest.approx(0.164, abs=0.001)
    assert is_small(gflop("small_cnn", "fsdd")) and not is_small(gflop("fastaudio_resnet18", "esc50"))
    assert resolve_compile("auto", torch.device("cuda"), small=True) is False


def test_workers_must_be_auto_or_a_count():
    out = CliRunner().invoke(main, ["run", "-s", "small_cnn", "--workers", "0"])
    assert out.exit_code == 2 and "Invalid value for '--workers': '0': use auto or a whole number" in out.output
