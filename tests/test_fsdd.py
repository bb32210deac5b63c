"""Real data: the Free Spoken Digit Dataset, when a copy is available (BENCH_FSDD_SOURCE)."""
import numpy as np
import pytest

from harness.data.catalog import load_catalog
from harness.data.datasets import load_dataset
from harness.data.fetch import fetch
from harness.runs.run import Run

from conftest import fsdd_source, run_named

pytestmark = [pytest.mark.slow, pytest.mark.skipif(fsdd_source() is None, reason="set BENCH_FSDD_SOURCE to an FSDD copy")]


def test_fsdd_imports_with_declared_fingerprint_and_folds(tmp_path):
    catalog = load_catalog()
    fetch(catalog.get("fsdd"), tmp_path / "data", from_path=fsdd_source())
    digits = load_dataset(catalog.get("fsdd"), tmp_path / "data")
    speakers = load_dataset(catalog.get("fsdd_speaker"), tmp_path / "data")
    assert digits.x.shape == (3000, 8000) and np.bincount(digits.folds).tolist() == [0, 600, 600, 600, 600, 600]
    fold1 = {i for i, f in zip(digits.ids, digits.folds) if f == 1}
    assert {f"{d}_george_{i}.wav" for d in range(10) for i in range(5)} <= fold1  # official test set
    assert sorted(set(speakers.y)) == list(range(6)) and digits.fold_fingerprint == speakers.fold_fingerprint
    run = run_named(Run("small_cnn", "fsdd", 2, 1, 1), catalog.get("fsdd"), data_root=tmp_path / "data")
    assert run.n_test == 600 and run.accuracy > 0.8
