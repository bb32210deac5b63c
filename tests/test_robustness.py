"""Bad data, bad submissions, interrupted grids and hostile archives: clear errors, nothing lost.

Every test runs beside a finished result file and checks at the end that it is byte-for-byte intact.
"""
import io
import json
import os
import signal
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from harness.runs import store as R
from harness.runs import execute as runner
from harness.runs import driver as scheduling
from harness.data.catalog import load_catalog
from harness.cli.commands import main
from harness.data.datasets import DatasetError, load_dataset
from harness.data.fetch import fetch, safe_extract
from harness.board.leaderboard import collect
from harness.runs.run import Run
from harness.training.submission import SubmissionError

from conftest import grid_named, make_digit_folder, run_named, runs, submissions, write_wav

SYNTH = load_catalog().get("synthetic")


@pytest.fixture(autouse=True)
def finished_result(tmp_path):
    """A finished run that no failure below may touch."""
    path = Run("earlier", "synthetic", 1, 1, 1).path(tmp_path / "results")
    R.write_json_atomic(path, R.seal({"status": "ok", "note": "finished before the fault"}))
    before = path.read_bytes()
    yield path
    assert path.read_bytes() == before, "a finished result was changed"


def tiny_spec(tiny_catalog):
    return load_catalog(tiny_catalog()).get("tiny")


def import_with(tmp_path, tiny_catalog, bad: dict[str, bytes] | None = None, **kwargs):
    src = make_digit_folder(tmp_path / "src")
    for name, payload in (bad or {}).items():
        (src / name).write_bytes(payload)
    return fetch(tiny_spec(tiny_catalog), tmp_path / "data", from_path=src, **kwargs)


def wav_bytes(data: np.ndarray, sr=8000, subtype=None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, data, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


GOOD = wav_bytes(np.zeros(800, dtype=np.float32))

# --- audio -----------------------------------------------------------------------------------

@pytest.mark.parametrize("payload, reason", [
    (GOOD[:30], "cannot decode"),                                                          # truncated header
    (os.urandom(2048), "cannot decode"),                                                   # random bytes
    (b"", "cannot decode"),                                                                # empty file
    (wav_bytes(np.zeros(0, dtype=np.float32)), "zero-length"),                             # no samples
    (wav_bytes(np.array([0.1, np.nan, 0.2], dtype=np.float32), subtype="FLOAT"), "NaN or infinite"),
    (wav_bytes(np.array([0.1, np.inf, 0.2], dtype=np.float32), subtype="FLOAT"), "NaN or infinite"),
    (b"\x89PNG\r\n\x1a\n" + os.urandom(100), "cannot decode"),                              # unsupported format
], ids=["truncated", "corrupt", "empty", "zero-length", "nan", "inf", "unsupported"])
def test_bad_audio_stops_import_with_a_report(tmp_path, tiny_catalog, payload, reason):
    with pytest.raises(DatasetError, match=rf"(?s)1 bad file\(s\).*0_anna_3.wav: .*{reason}.*--skip-bad"):
        import_with(tmp_path, tiny_catalog, {"0_anna_3.wav": payload})
    assert not (tmp_path / "data" / "tiny").exists()


def test_every_bad_file_is_reported_at_once(tmp_path, tiny_catalog):
    with pytest.raises(DatasetError) as err:
        import_with(tmp_path, tiny_catalog, {"0_anna_3.wav": b"", "1_bob_7.wav": b"junk"})
    assert "2 bad file(s)" in str(err.value) and "0_anna_3.wav" in str(err.value) and "1_bob_7.wav" in str(err.value)


def test_skip_bad_records_left_out_files_in_results_and_leaderboard(tmp_path, tiny_catalog):
    folder, report = import_with(tmp_path, tiny_catalog, {"0_anna_3.wav": b""}, skip_bad=True)
    assert "1 bad file(s) left out" in report
    spec = tiny_spec(tiny_catalog)
    ds = load_dataset(spec, tmp_path / "data")
    assert ds.excluded == ("0_anna_3.wav",) and len(ds.ids) == 39
    clean = load_dataset(spec, tmp_path / "data")  # same data, same split
    assert clean.fold_fingerprint == ds.fold_fingerprint
    record = run_named(Run("small_cnn", "tiny", 1, 1, 1), spec, data_root=tmp_path / "data")
    assert record.excluded_files == ["0_anna_3.wav"]


def test_skip_bad_changes_the_fold_fingerprint(tmp_path, tiny_catalog):
    spec = tiny_spec(tiny_catalog)
    import_with(tmp_path, tiny_catalog)
    full = load_dataset(spec, tmp_path / "data").fold_fingerprint
    import_with(tmp_path, tiny_catalog, {"1_bob_2.wav": b""}, skip_bad=True, force=True)
    assert load_dataset(spec, tmp_path / "data").fold_fingerprint != full


def test_multichannel_is_downmixed_and_said_once(tmp_path, tiny_catalog):
    src = make_digit_folder(tmp_path / "src")
    write_wav(src / "0_anna_1.wav", channels=2)
    write_wav(src / "0_anna_2.wav", channels=3)
    _, report = fetch(tiny_spec(tiny_catalog), tmp_path / "data", from_path=src)
    assert report.count("will be downmixed") == 1 and "2 multichannel file(s)" in report


def test_other_sample_rates_are_resampled(tmp_path, tiny_catalog):
    src = make_digit_folder(tmp_path / "src")
    write_wav(src / "0_anna_1.wav", seconds=0.25, sr=16000)
    _, report = fetch(tiny_spec(tiny_catalog), tmp_path / "data", from_path=src)
    assert "[16000] Hz will be resampled to 8000 Hz" in report
    ds = load_dataset(tiny_spec(tiny_catalog), tmp_path / "data")
    clip = ds.x[ds.ids.index("0_anna_1.wav")]
    assert np.abs(clip[:2000]).max() > 0.3 and np.abs(clip[2010:]).max() == 0  # 0.25 s at 8 kHz = 2000 samples


# --- metadata and configuration --------------------------------------------------------------

CSV_CATALOG = """
[csvset]
version = "1"
kind = "audio"
sample_rate = 8000
clip_seconds = 0.5
num_classes = 2
class_names = ["a", "b"]
metadata = {{ format = "csv", path = "meta.csv", audio = "audio/{{filename}}", label = "category", fold = "fold" }}
folds = {{ protocol = "official", k = 2 }}
"""


def csv_import(tmp_path, rows: list[str]):
    src = tmp_path / "csvsrc"
    for i in range(4):
        write_wav(src / "audio" / f"c{i}.wav")
    (src / "meta.csv").write_text("filename,category,fold\n" + "\n".join(rows) + "\n")
    (tmp_path / "csv.toml").write_text(CSV_CATALOG.format())
    spec = load_catalog(tmp_path / "csv.toml").get("csvset")
    return fetch(spec, tmp_path / "data", from_path=src)


@pytest.mark.parametrize("rows, message", [
    (["c0.wav,a,1", "c1.wav,b,2", "gone.wav,a,1"], r"audio/gone.wav: listed in the metadata but missing"),
    (["c0.wav,a,1", "c1.wav,b,2", "c0.wav,a,1"], r"duplicate rows for 'audio/c0.wav' \(rows 2 and 4\)"),
    (["c0.wav,a,1", "c1.wav,zebra,2"], r"meta.csv: unknown label 'zebra'"),
    (["c0.wav,a,1", "c1.wav,b,7"], r"fold 7 .* out of range 1..2"),
], ids=["missing-file", "duplicate-row", "unknown-label", "fold-out-of-range"])
def test_bad_metadata_is_named(tmp_path, rows, message):
    with pytest.raises(DatasetError, match=message):
        csv_import(tmp_path, rows)
    assert not (tmp_path / "data" / "csvset").exists()


def test_metadata_without_the_needed_column(tmp_path):
    (tmp_path / "csv.toml").write_text(CSV_CATALOG.format().replace("{filename}", "{file}"))
    src = tmp_path / "csvsrc"
    src.mkdir()
    (src / "meta.csv").write_text("filename,category,fold\nc0.wav,a,1\n")
    with pytest.raises(DatasetError, match="no column 'file'"):
        fetch(load_catalog(tmp_path / "csv.toml").get("csvset"), tmp_path / "data", from_path=src)


def test_metadata_without_the_label_column(tmp_path):
    (tmp_path / "csv.toml").write_text(CSV_CATALOG.format().replace('label = "category"', 'label = "class"'))
    src = tmp_path / "csvsrc"
    write_wav(src / "audio" / "c0.wav")
    (src / "meta.csv").write_text("filename,category,fold\nc0.wav,a,1\n")
    with pytest.raises(DatasetError, match=r"meta.csv: no column 'class' \(metadata.label\); its columns: filename, cat"):
        fetch(load_catalog(tmp_path / "csv.toml").get("csvset"), tmp_path / "data", from_path=src)


def test_misspelt_catalog_key_via_the_cli(tmp_path):
    (tmp_path / "bad.toml").write_text('[x]\nversion = "1"\nkind = "synthetic"\nnum_clases = 2\n')
    out = CliRunner().invoke(main, ["--datasets", str(tmp_path / "bad.toml"), "list"])
    assert out.exit_code == 1 and "unknown key 'num_clases'. Did you mean 'num_classes'" in out.output


# --- archives and downloads ------------------------------------------------------------------

def tar_with(tmp_path, member: tarfile.TarInfo, data: bytes = b"x") -> Path:
    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as tf:
        member.size = len(data) if member.isfile() else 0
        tf.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return path


def symlink(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize("member, message", [
    (tarfile.TarInfo("../escape.txt"), "outside the target folder"),
    (tarfile.TarInfo("/tmp/absolute.txt"), "outside the target folder"),
    (symlink("link", "/etc/passwd"), "refusing link"),
    (symlink("hard", "/etc/passwd", tarfile.LNKTYPE), "refusing link"),
    (symlink("dev", "", tarfile.CHRTYPE), "refusing special entry"),
], ids=["dotdot", "absolute", "symlink", "hardlink", "device"])
def test_hostile_tar_entries_are_refused_before_writing(tmp_path, member, message):
    target = tmp_path / "out"
    with pytest.raises(DatasetError, match=message):
        safe_extract(tar_with(tmp_path, member), target)
    assert not target.exists() and not (tmp_path / "escape.txt").exists()


def test_hostile_zip_entry_is_refused(tmp_path):
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ok.txt", "fine")
        zf.writestr("../../escape.txt", "bad")
    with pytest.raises(DatasetError, match="outside the target folder"):
        safe_extract(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_not_an_archive(tmp_path):
    (tmp_path / "junk.tar.gz").write_bytes(os.urandom(500))
    with pytest.raises(DatasetError, match="not a readable zip or tar archive"):
        safe_extract(tmp_path / "junk.tar.gz", tmp_path / "out")


def test_http_error_is_reported_and_nothing_kept(tmp_path, tiny_catalog):
    import http.server
    import threading

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_port}/no/such/archive.tar.gz"
        with pytest.raises(DatasetError, match="HTTP 404.*nothing was kept"):
            fetch(load_catalog(tiny_catalog(url=url)).get("tiny"), tmp_path / "data")
    finally:
        httpd.shutdown()
    assert not any((tmp_path / "data" / "downloads").iterdir())


# --- runs ------------------------------------------------------------------------------------

def run_grid(results, name="small_cnn", folds=(1, 2), subs=None):
    return grid_named(SYNTH, runs(name, folds=folds), results, subs=subs)


def test_sigterm_keeps_finished_runs_and_resumes(tmp_path, monkeypatch):
    results = tmp_path / "results"
    real = runner.run_one

    def terminated(*args, **kwargs):
        if args[2].fold == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "run_one", terminated)
    with pytest.raises(scheduling.GridInterrupted, match="SIGTERM"):
        run_grid(results)
    assert [p.name for p in (results / "synthetic" / "small_cnn" / "e1" / "scratch-fp32").iterdir()] == ["fold1-trial1.json"]
    assert signal.getsignal(signal.SIGTERM) is not None
    monkeypatch.setattr(runner, "run_one", real)
    assert len(run_grid(results).skipped) == 1


def test_crash_while_writing_leaves_the_old_file(finished_result, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(json, "dump", disk_full)
    with pytest.raises(OSError, match="No space left"):
        R.write_json_atomic(finished_result, {"status": "ok", "metrics": "new"})
    assert [p.name for p in finished_result.parent.iterdir()] == [finished_result.name]  # no temp file left


SUBMISSION_TEMPLATE = '''
import torch
from torch import nn
from harness import LogMel, Recipe, Submission, register_submission


class Model(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.num_classes = num_classes
        self.fc = nn.Linear(1, num_classes)

    def forward(self, x):
        {forward}


@register_submission
def {name}():
    return {returns}
'''


def user_submission(tmp_path, name, forward="return self.fc(x.mean((1, 2, 3))[:, None])",
                    returns="Submission(frontend=LogMel(8000, n_mels=16), model=Model, recipe=Recipe(batch_size=8))",
                    body=None) -> Path:
    path = tmp_path / "subs" / f"{name}.py"
    path.parent.mkdir(exist_ok=True)
    path.write_text(body or SUBMISSION_TEMPLATE.format(name=name, forward=forward, returns=returns))
    return path


def failure_of(tmp_path, name) -> str:
    report = run_grid(tmp_path / "results", name, folds=(1,), subs=submissions(tmp_path / "subs"))
    assert not report.done and len(report.failed) == 1
    record = json.loads(report.failed[0][0].read_text())
    assert record["status"] == "failed"
    return record["error"]


def test_non_finite_loss_fails_the_run_and_it_is_not_ranked(tmp_path):
    user_submission(tmp_path, "nan_model", forward="return self.fc(x.mean((1, 2, 3))[:, None]) * float('nan')")
    assert "non-finite training loss at epoch 1" in failure_of(tmp_path, "nan_model")
    ranked, excluded = collect(tmp_path / "results", submissions(tmp_path / "subs"), load_catalog())
    assert not ranked and any("failed: " in why and "non-finite" in why for _, why in excluded)


def test_out_of_memory_says_which_batch_size_to_try(tmp_path):
    user_submission(tmp_path, "oom_model", forward="raise torch.cuda.OutOfMemoryError('CUDA out of memory')")
    assert "out of memory at batch size 8; try Recipe(batch_size=4)" in failure_of(tmp_path, "oom_model")


def test_crash_in_user_code_names_file_and_line(tmp_path):
    path = user_submission(tmp_path, "crashy", forward="raise ValueError('bad reshape')")
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "bad reshape" in text)
    assert failure_of(tmp_path, "crashy") == f"{path}:{line}: ValueError: bad reshape"


def test_wrong_output_shape_names_the_submission(tmp_path):
    path = user_submission(tmp_path, "wrong_shape", forward="return self.fc(x.mean((1, 2, 3))[:, None])[:, :2]")
    assert failure_of(tmp_path, "wrong_shape") == (
        f"SubmissionError: {path}: model Model returns shape (2, 2) for a batch of 2, expected (2, 6) (batch, num_classes)")


def test_import_error_names_file_and_line(tmp_path):
    user_submission(tmp_path, "broken_import", body="import os\n\nimport no_such_module_here\n\n\n"
                                                    "@register_submission\ndef broken_import():\n    pass\n")
    with pytest.raises(SubmissionError, match=r"broken_import.py:3: cannot import submission \(ModuleNotFoundError"):
        submissions(tmp_path / "subs").describe("broken_import")


def test_factory_returning_the_wrong_type_is_named(tmp_path):
    path = user_submission(tmp_path, "not_a_submission", returns="{'model': 'resnet18'}")
    with pytest.raises(SubmissionError, match=rf"{path}: not_a_submission\(\) must return a harness.Submission, got dict"):
        submissions(tmp_path / "subs").describe("not_a_submission")


def test_unknown_submission_suggests_the_closest():
    out = CliRunner().invoke(main, ["run", "-s", "smal_cnn"])
    assert out.exit_code == 1 and "unknown submission 'smal_cnn'. Did you mean 'small_cnn'" in out.output


# --- results ---------------------------------------------------------------------------------

def test_corrupt_and_hand_edited_results_are_named_and_skipped(tmp_path):
    results = tmp_path / "results"
    good = run_grid(results, folds=(1, 2)).done
    good[0].write_text('{"status": "ok", "metr')                         # torn / corrupt
    edited = json.loads(good[1].read_text())
    edited["metrics"]["accuracy"] = 1.0                                   # hand-edited
    good[1].write_text(json.dumps(edited))
    ranked, excluded = collect(results, submissions(), load_catalog())
    reasons = dict((p.name, why) for p, why in excluded if "small_cnn" in str(p))
    assert reasons == {"fold1-trial1.json": "unreadable or corrupt JSON",
                       "fold2-trial1.json": "checksum mismatch: edited by hand or damaged"}
    out = CliRunner().invoke(main, ["leaderboard", "--output", str(tmp_path / "board.md")])
    assert out.exit_code == 0 and "checksum mismatch" in (tmp_path / "board.md").read_text()


def test_result_without_provenance_is_refused(tmp_path):
    path = Run("small_cnn", "synthetic", 1, 3, 1).path(tmp_path / "results")
    R.write_json_atomic(path, R.seal({"status": "ok", "submission": "small_cnn", "dataset": "synthetic", "epochs": 1}))
    _, excluded = collect(tmp_path / "results", submissions(), load_catalog())
    assert any(p == path and why.startswith("no provenance (missing config, config_hash,") for p, why in excluded)


def test_decoding_in_threads_gives_the_same_array_as_one_file_at_a_time(tmp_path, tiny_catalog, monkeypatch):
    from harness.data import datasets as D
    src = make_digit_folder(tmp_path / "src")
    write_wav(src / "0_anna_1.wav", seconds=0.4, sr=16000)  # resampled
    write_wav(src / "1_bob_2.wav", seconds=0.2, sr=22050, channels=2)  # resampled, downmixed, padded
    spec = tiny_spec(tiny_catalog)
    fetch(spec, tmp_path / "data", from_path=src)
    arrays = []
    for threads in (1, 4):
        monkeypatch.setattr(D, "DECODE_THREADS", threads)
        for cached in (tmp_path / "data" / "cache").glob("*.npy"):
            cached.unlink()
        arrays.append(np.array(load_dataset(spec, tmp_path / "data").x))
    assert np.array_equal(arrays[0], arrays[1]) and np.abs(arrays[0]).max() > 0.3
