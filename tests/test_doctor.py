"""bench doctor: datasets, caches, leftovers and damaged results, reported; leftovers cleaned on request."""
import multiprocessing

from click.testing import CliRunner

from harness import owners
from harness import results as R
from harness.cli import main
from harness.fetch import fetch
from harness.catalog import load_catalog

from conftest import make_digit_folder


def test_doctor_reports_and_cleans_only_leftovers(tmp_path, tiny_catalog):
    catalog = tiny_catalog()
    fetch(load_catalog(catalog).get("tiny"), tmp_path / "data", from_path=make_digit_folder(tmp_path / "src"))
    (tmp_path / "data" / "cache").mkdir()
    (tmp_path / "data" / "cache" / "tiny-x.npy").write_bytes(b"\0" * 4096)
    dead = multiprocessing.get_context("fork").Process(target=lambda: None)
    dead.start()
    dead.join()
    host = owners.owner_tag().split("~")[0]
    leftover = tmp_path / "data" / "cache" / f".tiny-x.npy~{host}~{dead.pid}~1~0abc.tmp"
    leftover.write_bytes(b"\0" * 1000)
    damaged = R.result_path(tmp_path / "results", "synthetic", "small_cnn", 1, 1, 1)
    R.write_json_atomic(damaged, {"status": "ok", "metrics": {"accuracy": 1.0}})  # not sealed

    out = CliRunner().invoke(main, ["--datasets", str(catalog), "doctor"])
    assert out.exit_code == 0, out.output
    assert "dataset tiny: 40 files" in out.output and "decode cache: 1 array(s), 4.1 KB" in out.output
    assert f"{damaged}: checksum mismatch" in out.output
    assert f"{leftover}: written by pid {dead.pid} on {host}, which is gone" in out.output
    assert "bench doctor --clean" in out.output and leftover.exists()

    out = CliRunner().invoke(main, ["--datasets", str(catalog), "doctor", "--clean"])
    assert "removed 1 leftover(s)" in out.output
    assert not leftover.exists() and damaged.exists() and (tmp_path / "data" / "cache" / "tiny-x.npy").exists()
