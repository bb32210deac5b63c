"""bench doctor: datasets, caches, leftovers and damaged results, reported; leftovers cleaned on request."""
import multiprocessing

from click.testing import CliRunner

from harness.core import owners
from harness.runs import store as R
from harness.cli.commands import main
from harness.data.fetch import fetch
from harness.data.catalog import load_catalog
from harness.runs.run import Run

from conftest import make_digit_folder


def test_doctor_reports_and_cleans_only_leftovers(tmp_path, tiny_catalog):
    catalog = tiny_catalog()
    fetch(load_catalog(catalog).get("tiny"), tmp_path / "data", from_path=make_digit_folder(tmp_path / "src"))
    (tmp_path / "data" / "cache").mkdir()
    (tmp_path / "data" / "cache" / "tiny-x.npy").write_bytes(b"\0" * 4096)
    (tmp_path / "data" / "cache" / "features").mkdir()
    (tmp_path / "data" / "cache" / "features" / "tiny-x--LogMel-0.npy").write_bytes(b"\0" * 2000)
    (tmp_path / "data" / "cache" / "embeddings").mkdir()
    (tmp_path / "data" / "cache" / "embeddings" / "tiny-x--hubert_base-0.npy").write_bytes(b"\0" * 3000)
    dead = multiprocessing.get_context("fork").Process(target=lambda: None)
    dead.start()
    dead.join()
    host = owners.owner_tag().split("~")[0]
    leftover = tmp_path / "data" / "cache" / f".tiny-x.npy~{host}~{dead.pid}~1~0abc.tmp"
    leftover.write_bytes(b"\0" * 1000)
    damaged = Run("small_cnn", "synthetic", 1, 1, 1).path(tmp_path / "results")
    R.write_json_atomic(damaged, {"status": "ok", "metrics": {"accuracy": 1.0}})  # not sealed

    out = CliRunner().invoke(main, ["--datasets", str(catalog), "doctor"])
    assert out.exit_code == 0, out.output
    assert "dataset tiny: 40 files" in out.output and "decode cache: 1 array(s), 4.1 KB" in out.output
    assert "feature cache: 1 array(s), 2.0 KB (evicted beyond BENCH_FEATURE_CACHE_GB=20" in out.output
    assert "embedding cache: 1 array(s), 3.0 KB" in out.output
    assert f"{damaged}: checksum mismatch" in out.output
    assert f"{leftover}: written by pid {dead.pid} on {host}, which is gone" in out.output
    assert "bench doctor --clean" in out.output and leftover.exists()

    out = CliRunner().invoke(main, ["--datasets", str(catalog), "doctor", "--clean"])
    assert "removed 1 leftover(s)" in out.output
    assert not leftover.exists() and damaged.exists() and (tmp_path / "data" / "cache" / "tiny-x.npy").exists()


def test_leaderboard_points_at_leftovers_in_the_result_store(tmp_path):
    R.write_json_atomic(Run("x", "synthetic", 1, 1, 1).path(tmp_path / "results"), {"status": "failed"})
    stray = tmp_path / "results" / "synthetic" / "x" / "e1" / "scratch-fp32" / ".fold2-trial1.json~elsewhere~1~1~0abc.tmp"
    stray.write_text("{}")
    out = CliRunner().invoke(main, ["leaderboard", "--output", str(tmp_path / "board" / "README.md")])
    assert out.exit_code == 0 and "leftover" not in out.output  # another host's file may still be written
    host = owners.owner_tag().split("~")[0]
    stray.rename(stray.with_name(f".fold2-trial1.json~{host}~{2**22 + 7}~1~0abc.tmp"))  # no such pid here
    out = CliRunner().invoke(main, ["leaderboard", "--output", str(tmp_path / "board" / "README.md")])
    assert "note: 1 leftover(s) of crashed processes" in out.output and "bench doctor --clean" in out.output
