"""The training engine's device paths: where features live, and the CUDA-only modes.

The CUDA tests run only where torch sees a GPU; CI has none, so they are skipped there.
"""
import os

import pytest
import torch

from harness.runs import execute as runner
from harness.training import features
from harness.data.catalog import load_catalog
from harness.runs.run import Run

from conftest import ThreadWorker, run_named

SYNTH = load_catalog().get("synthetic")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("free_gib, streams", [(64, False), (1, True)])
def test_features_stream_from_host_memory_only_when_they_do_not_fit(monkeypatch, capsys, free_gib, streams):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (free_gib * 2**30, 80 * 2**30))
    home = features._feature_home(torch.device("cuda"), 4 * 2**30)
    assert home == (torch.device("cpu") if streams else torch.device("cuda"))
    said = capsys.readouterr().out
    assert ("streaming batches from pinned host memory" in said) == streams
    if streams:
        assert "features need 4.0 GiB, more than 50% of free GPU memory" in said


def test_features_stay_on_the_cpu_device_whatever_their_size():
    assert features._feature_home(torch.device("cpu"), 2**50) == torch.device("cpu")


def test_cublas_gets_its_fixed_workspace_where_cuda_is_used_before_cuda_starts(monkeypatch, tmp_path):
    from harness.runs.sandboxed import worker_env
    from harness.training.device import switches

    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", "")
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")  # and restored afterwards, whatever switches set
    initialised = torch.cuda.is_initialized()
    with switches(torch.device("cuda")):
        assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") == ":4096:8"
        assert torch.cuda.is_initialized() == initialised  # set without starting CUDA
    assert worker_env(tmp_path, None, "cuda")["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"  # a CUDA run's worker has it
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    with switches(torch.device("cuda")):
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"  # the user's own stays


@cuda
def test_cuda_run_trains_in_bf16_and_records_it():
    record = run_named(Run("small_cnn", "synthetic", 1, 1, 1, precision="bf16"), SYNTH, "cuda")
    assert record.run.precision == "bf16" and record.device == "cuda"


@cuda
def test_cuda_run_streams_features_it_is_told_do_not_fit(monkeypatch, capsys):
    monkeypatch.setattr(features, "DEVICE_MEMORY_SHARE", 0.0)
    monkeypatch.setattr(runner, "Worker", ThreadWorker)  # the patched share is this process's
    record = run_named(Run("small_cnn", "synthetic", 1, 1, 1), SYNTH, "cuda")
    assert "streaming batches from pinned host memory" in capsys.readouterr().out
    assert record.accuracy >= 0.0 and len(record.predictions) == record.n_test


@cuda
def test_compiled_cuda_run_finishes():
    record = run_named(Run("small_cnn", "synthetic", 1, 1, 1, compiled=True), SYNTH, "cuda")
    assert record.run.compiled and record.to_json()["compiled"] is True
