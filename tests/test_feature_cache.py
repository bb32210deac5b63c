"""The feature cache: a (dataset, front-end) pair computed once, a later run slices it, and a
run's numbers never depend on whether the cache was warm, cold, damaged or off."""
import os

import numpy as np
import pytest
import torch

from harness.core.errors import HarnessError
from harness.data.cache import BUDGET_ENV, cache_budget, make_room
from harness.data.catalog import load_catalog
from harness.data.datasets import load_dataset
from harness.data.fetch import fetch
from harness.frontends import LogMel, Waveform
from harness.runs.contract import tiny_data
from harness.runs.run import Run
from harness.training import features as feats

from conftest import make_digit_folder, run_named

CPU = torch.device("cpu")


@pytest.fixture
def tiny(tmp_path, tiny_catalog):
    spec = load_catalog(tiny_catalog()).get("tiny")
    fetch(spec, tmp_path / "data", from_path=make_digit_folder(tmp_path / "src"))
    return spec, tmp_path / "data"


@pytest.fixture
def forward_calls(monkeypatch):
    """Counts the clips LogMel is run on."""
    calls, forward = [], LogMel.forward
    monkeypatch.setattr(LogMel, "forward", lambda self, wave: calls.append(len(wave)) or forward(self, wave))
    return calls


def _run(spec, root, trial=1):
    return run_named(Run("small_cnn", "tiny", 1, 1, trial), spec, data_root=root)


def test_a_second_run_of_a_front_end_reads_its_features_instead_of_computing_them(tiny, forward_calls):
    spec, root = tiny
    first = _run(spec, root)
    assert sum(forward_calls) == 1 + 40  # a probe for the shape, then every clip once
    files = list((root / "cache" / "features").glob("*.npy"))
    assert len(files) == 1 and "--LogMel-" in files[0].name
    forward_calls.clear()
    second = _run(spec, root, trial=2)
    assert forward_calls == []  # not one clip through the front-end
    assert second.phases["features_s"] - second.phases["data_s"] < first.phases["features_s"] - first.phases["data_s"]


def test_numbers_are_the_same_with_the_cache_cold_warm_damaged_or_off(tiny, monkeypatch, capsys, forward_calls):
    spec, root = tiny
    cold = _run(spec, root)
    warm = _run(spec, root)
    path, = (root / "cache" / "features").glob("*.npy")
    path.write_bytes(path.read_bytes()[:200])  # damaged on disk: cut short
    damaged = _run(spec, root)
    assert "unreadable cache file" in capsys.readouterr().out
    monkeypatch.setenv(BUDGET_ENV, "0")
    forward_calls.clear()
    off = _run(spec, root)
    assert sum(forward_calls) == 40  # off: not read either, every clip computed in memory
    for other in (warm, damaged, off):
        assert other.predictions == cold.predictions and other.curves == cold.curves


def test_the_cache_key_holds_the_front_ends_settings_and_the_data(tiny):
    spec, root = tiny
    data = load_dataset(spec, root)
    key = lambda fe: feats.cache_path(fe, data, CPU)
    assert key(LogMel(8000, n_mels=32)) == key(LogMel(8000, n_mels=32))
    assert key(LogMel(8000, n_mels=32)) != key(LogMel(8000, n_mels=40))
    assert key(LogMel(8000, n_mels=32)).parent == root / "cache" / "features"
    assert key(LogMel(8000, n_mels=32)).name.startswith(data.cache.stem)  # re-decoded data: another key
    assert key(Waveform(8000)) is None  # would copy the decoded array
    assert key(torch.nn.Identity()) is None  # no settings to key it by
    _, in_memory = tiny_data(8000, image=False)
    assert feats.cache_path(LogMel(8000), in_memory, CPU) is None


def test_features_equal_whatever_the_batches_or_the_order(tiny):
    spec, root = tiny
    data = load_dataset(spec, root)
    frontend, some = LogMel(8000, n_mels=32), np.array([7, 3, 39, 0, 12])
    table = feats.feature_table(frontend, data, CPU)
    assert isinstance(table.rows, np.ndarray)  # memory-mapped from the cache file
    assert torch.equal(table.take(some), feats.compute_features(frontend, data.x, some, CPU))


def test_the_least_recently_used_features_make_room(tmp_path):
    folder = tmp_path / "features"
    folder.mkdir()
    for age, name in enumerate(["old", "mid", "new"]):
        (folder / f"{name}.npy").write_bytes(b"x" * 100)
        stamp = 1_000_000 + age
        os.utime(folder / f"{name}.npy", (stamp, stamp))
    assert make_room(folder, incoming=150, budget=300)
    assert sorted(p.stem for p in folder.glob("*.npy")) == ["new"]
    assert not make_room(folder, incoming=301, budget=300)  # never fits: nothing evicted
    assert sorted(p.stem for p in folder.glob("*.npy")) == ["new"]


def test_features_larger_than_the_budget_are_computed_in_memory(tiny, monkeypatch):
    spec, root = tiny
    monkeypatch.setenv(BUDGET_ENV, "1e-6")  # 1 kB
    table = feats.feature_table(LogMel(8000, n_mels=32), load_dataset(spec, root), CPU)
    assert isinstance(table.rows, torch.Tensor)
    assert not list((root / "cache" / "features").glob("*.npy"))


@pytest.mark.parametrize("value", ["lots", "-1", "nan", "inf"])
def test_a_bad_budget_names_the_variable(monkeypatch, value):
    monkeypatch.setenv(BUDGET_ENV, value)
    with pytest.raises(HarnessError, match="BENCH_FEATURE_CACHE_GB.*size in GB"):
        cache_budget()
