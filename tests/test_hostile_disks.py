"""Disks that cannot take a write (issue 27): a full or read-only result store or data root, an
ASCII-only locale, a HOME that does not exist. Each says so in one line naming the folder and what to
do, and damages nothing already stored.

The real cases mount a size-limited tmpfs or a read-only bind mount in a private mount namespace
(``unshare --mount``, as root), where the ``bench`` commands run; they skip where mounting is not
permitted. Each has a variant that fakes the same failures with monkeypatch and runs everywhere.
"""
import builtins
import errno
import functools
import io
import json
import locale
import os
import shlex
import shutil
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli.commands import main
from harness.core import owners
from harness.core.paths import PROJECT_ROOT
from harness.core.errors import HarnessError
from harness.data.cache import cached_array
from harness.data.catalog import load_catalog
from harness.data.datasets import data_root
from harness.data.fetch import fetch
from harness.runs import store
from harness.runs.run import Run
from harness.runs.store import results_root

from conftest import make_digit_folder

BENCH = [sys.executable, "-c", "from harness.cli.commands import main; main()"]
RUN = ["run", "-s", "small_cnn", "--epochs", "1", "--device", "cpu"]
STORED = "synthetic/small_cnn/e1/scratch-fp32"  # where the runs of RUN on synthetic are stored
DRIVER = """
import json, os, subprocess, sys, traceback
from click.testing import CliRunner
from harness.cli.commands import main

steps, outcomes, environment = json.loads(sys.argv[1]), [], dict(os.environ)
for step in steps:
    if isinstance(step, str):  # a shell step: mount, fill, copy
        subprocess.run(step, shell=True, check=True)
        continue
    os.environ.clear()
    os.environ.update(environment)  # each command as if started afresh
    result = CliRunner().invoke(main, step)
    shown = result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        shown += "".join(traceback.format_exception(*result.exc_info))
    outcomes.append([result.exit_code, shown])
    with open(sys.argv[2], "w") as fh:
        json.dump(outcomes, fh)
"""


def snapshot(folder: Path) -> dict[Path, bytes]:
    """Every file under ``folder`` with its bytes, to check that nothing was damaged."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def stored_result(results: Path, fold: int = 1) -> Path:
    path = Run("small_cnn", "synthetic", fold, 1, 1).path(results)
    store.write_json_atomic(path, store.seal({"status": "ok", "note": "finished before the fault"}))
    return path


@functools.cache
def mount_problem() -> str | None:
    """Why this process cannot mount in a private mount namespace, or None when it can."""
    if not shutil.which("unshare"):
        return "no unshare command"
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            "mount -t tmpfs -o size=4k tmpfs /mnt"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"mounting is not permitted here: {probe.stderr.strip()}"


@pytest.fixture
def namespace(tmp_path, monkeypatch):
    """``namespace(setup, steps)``: in a private mount namespace, run the shell lines ``setup``
    (mounts), then each step in one process: a shell line, or a bench command (its arguments),
    each as if started afresh; returns (exit status, output) of each bench command."""
    if problem := mount_problem():
        pytest.skip(problem)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for chosen in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"):  # an earlier CLI test set them in this process
        monkeypatch.delenv(chosen, raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))  # workers' scratch and a fallback compile cache: kept here
    (tmp_path / "tmp").mkdir()
    outcomes = tmp_path / "outcomes.json"

    def run(setup: list[str], steps: list[list[str] | str]) -> list[tuple[int, str]]:
        script = "\n".join(["set -e", *setup, shlex.join([sys.executable, "-c", DRIVER, json.dumps(steps),
                                                         str(outcomes)])])
        done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                              capture_output=True, text=True, timeout=300)
        shown = json.loads(outcomes.read_text()) if outcomes.exists() else []
        assert done.returncode == 0, f"exit status {done.returncode}; so far {shown}\n{done.stderr[-3000:]}"
        return [tuple(outcome) for outcome in shown]
    return run


def one_line(output: str) -> str:
    """The error line of a command that failed as a harness error: no traceback, just ``Error: ...``."""
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, output
    return errors[0]


def _path_of(target) -> Path | None:
    if isinstance(target, int):
        try:
            return Path(os.readlink(f"/proc/self/fd/{target}"))
        except OSError:
            return None
    return Path(os.path.abspath(os.fsdecode(target))) if isinstance(target, (str, bytes, os.PathLike)) else None


def _inside(target, folder: Path) -> bool:
    path = _path_of(target)
    return path is not None and (path == folder or folder in path.parents)


class _Refusing:
    """A file opened for writing whose writes fail with ``code``, as on a full disk."""

    def __init__(self, fh, code: int):
        self._fh, self._code = fh, code

    def write(self, data):
        raise OSError(self._code, os.strerror(self._code))

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()


def fake_full(monkeypatch, folder: Path) -> None:
    """``folder`` as on a full disk: files can be created there, but no byte written or allocated."""
    folder = Path(os.path.abspath(folder))
    real_open, real_write, real_allocate = io.open, os.write, os.posix_fallocate

    def full(fd: int) -> OSError:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(_path_of(fd)))

    def opened(file, mode="r", *args, **kwargs):
        fh = real_open(file, mode, *args, **kwargs)
        return _Refusing(fh, errno.ENOSPC) if _inside(file, folder) and set(mode) & set("wax+") else fh

    def write(fd, data):
        if _inside(fd, folder):
            raise full(fd)
        return real_write(fd, data)

    def allocate(fd, offset, length):
        if _inside(fd, folder):
            raise full(fd)
        return real_allocate(fd, offset, length)

    for module in (io, builtins):
        monkeypatch.setattr(module, "open", opened)
    monkeypatch.setattr(os, "write", write)
    monkeypatch.setattr(os, "posix_fallocate", allocate)


def fake_read_only(monkeypatch, folder: Path) -> None:
    """``folder`` as a read-only mount: everything in it can be read, nothing created, changed or
    removed (EROFS), as Linux answers."""
    folder = Path(os.path.abspath(folder))
    real = {name: getattr(os, name) for name in ("open", "mkdir", "utime", "unlink", "replace", "rename", "rmdir")}
    real_open = io.open

    def refuse(target):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(_path_of(target)))

    def os_open(path, flags, *args, **kwargs):
        if _inside(path, folder) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC):
            refuse(path)
        return real["open"](path, flags, *args, **kwargs)

    def mkdir(path, *args, **kwargs):
        if _inside(path, folder):
            if os.path.lexists(path):
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path))
            refuse(path)
        return real["mkdir"](path, *args, **kwargs)

    def changing(name):
        def change(path, *args, **kwargs):
            if _inside(path, folder) or args and _inside(args[0], folder):
                refuse(path)
            return real[name](path, *args, **kwargs)
        return change

    def opened(file, mode="r", *args, **kwargs):
        if _inside(file, folder) and set(mode) & set("wax+"):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(os, "mkdir", mkdir)
    for name in ("utime", "unlink", "replace", "rename", "rmdir"):
        monkeypatch.setattr(os, name, changing(name))
    for module in (io, builtins):
        monkeypatch.setattr(module, "open", opened)


def tiny_data(tmp_path, tiny_catalog, monkeypatch) -> Path:
    """The tiny dataset imported into the test's data root (its decode cache needs 640 kB)."""
    catalog = tiny_catalog()
    monkeypatch.setenv("BENCH_DATASETS", str(catalog))
    root = tmp_path / "data"
    fetch(load_catalog(catalog).get("tiny"), root, from_path=make_digit_folder(tmp_path / "src"))
    return root


# --- 1. a full result store ------------------------------------------------------------------

def test_a_full_store_says_so_when_a_result_is_written_and_keeps_what_it_holds(tmp_path, monkeypatch):
    results = tmp_path / "results"
    path = stored_result(results)
    before = snapshot(results)
    fake_full(monkeypatch, results)
    with pytest.raises(HarnessError) as err:
        store.write_json_atomic(path, {"status": "ok", "metrics": "new"})
    message = str(err.value)
    assert message.startswith(f"No space left on device in {path.parent} (") and " B needed, " in message
    assert message.endswith("free some space there, or use another result store (--results DIR or BENCH_RESULTS)")
    monkeypatch.undo()
    assert snapshot(results) == before  # the old result whole, no temporary file


def test_a_full_store_at_claim_time_says_so_and_leaves_no_claim(tmp_path, monkeypatch):
    result = Run("small_cnn", "synthetic", 1, 1, 1).path(tmp_path / "results")
    result.parent.mkdir(parents=True)
    fake_full(monkeypatch, tmp_path / "results")
    with pytest.raises(HarnessError, match=r"^No space left on device in .*scratch-fp32 \(\d+ B needed, .* free\): "):
        owners.claim(result)
    monkeypatch.undo()
    assert list(result.parent.iterdir()) == []  # no 0-byte claim
    assert owners.claim(result) is None  # and nothing holds the run
    owners.release(result)


# --- 4. a read-only result store ----------------------------------------------------------------

def test_a_read_only_store_refuses_a_claim_in_one_line(tmp_path, monkeypatch):
    result = Run("small_cnn", "synthetic", 2, 1, 1).path(tmp_path / "results")
    fake_read_only(monkeypatch, tmp_path / "results")
    with pytest.raises(HarnessError) as err:
        owners.claim(result)
    assert str(err.value) == (f"cannot write to {result.parent}: Read-only file system; mount it writable, or use "
                              f"another result store (--results DIR or BENCH_RESULTS)")


def test_a_really_full_then_read_only_store_says_so_in_one_line_and_keeps_its_results(tmp_path, monkeypatch,
                                                                                         namespace):
    """A tmpfs of 1 MB: with one page left (the claim fits, the result does not), with none left,
    then remounted read-only (it still plans and renders the board elsewhere)."""
    results, board, folder = tmp_path / "results", tmp_path / "board" / "board.md", tmp_path / "results" / STORED
    for name, value in {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONIOENCODING": "ascii"}.items():
        monkeypatch.setenv(name, value)  # and an ASCII-only locale: the board is still written, in utf-8
    fill = (f"{shlex.quote(sys.executable)} -c \"import os,sys; s=os.statvfs(sys.argv[1]); open(sys.argv[1] + "
            f"'/.filler' + sys.argv[2], 'wb').write(bytes(s.f_bavail * s.f_frsize - int(sys.argv[2])))\" {results}")
    outcomes = namespace([f"mkdir -p {results}", f"mount -t tmpfs -o size=1m tmpfs {results}"], [
        RUN + ["--folds", "1"], f"cp -a {results} {tmp_path}/before", f"{fill} 4096",
        RUN + ["--folds", "1,2"], f"{fill} 0", RUN + ["--folds", "2"],
        f"rm {results}/.filler*; mount -o remount,ro {results}",
        RUN + ["--folds", "1,2"], RUN + ["--folds", "1"], ["leaderboard"], ["leaderboard", "--output", str(board)],
        f"cp -a {results} {tmp_path}/after"])
    (first, out_first), (written, out_written), (claimed, out_claimed), *read_only = outcomes
    assert first == 0, out_first
    assert written == 1 and one_line(out_written).startswith(f"Error: No space left on device in {folder} (")
    assert re.search(r"\(\d+\.\d kB needed, 0 B free\): free some space there, or use another result store "
                     r"\(--results DIR or BENCH_RESULTS\)$", one_line(out_written))  # the result, not its claim
    assert claimed == 1 and one_line(out_claimed).startswith(f"Error: No space left on device in {folder} (")
    (run, out_run), (planned, out_planned), (rendered, out_rendered), (elsewhere, out_elsewhere) = read_only
    assert run == 1 and one_line(out_run) == (
        f"Error: cannot write to {folder}: Read-only file system; mount it writable, or use another result store "
        f"(--results DIR or BENCH_RESULTS)")
    assert planned == 0 and "0 runs, 1 already finished, 0 failed" in out_planned, out_planned
    assert rendered == 1 and one_line(out_rendered) == (
        f"Error: cannot write to {results}: Read-only file system; mount it writable, or write the board "
        f"elsewhere (--output FILE)")
    assert elsewhere == 0 and f"wrote {board}" in out_elsewhere, out_elsewhere
    assert "small_cnn" in board.read_text(encoding="utf-8") and "**±**" in board.read_text(encoding="utf-8")
    assert snapshot(tmp_path / "after") == snapshot(tmp_path / "before")  # fold 1 whole; no fold 2, claim or temporary


# --- 2. a full data root, 3. a read-only data root ---------------------------------------------

def test_a_full_cache_folder_says_so_with_the_size_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "data" / "cache" / "x.npy"
    path.parent.mkdir(parents=True)
    fake_full(monkeypatch, path.parent)
    with pytest.raises(HarnessError) as err:
        cached_array(path, (1000, 4096), lambda out: out.fill(1.0))
    assert str(err.value).startswith(f"No space left on device in {path.parent} (16.4 MB needed, ")
    assert str(err.value).endswith("or use another data root (--data-root DIR or BENCH_DATA_ROOT)")
    monkeypatch.undo()
    assert [p.name for p in path.parent.iterdir()] == ["x.npy.lock"]  # no temporary array


def test_warm_caches_of_a_read_only_data_root_are_read_without_lock_or_touch(tmp_path, monkeypatch):
    path = tmp_path / "data" / "cache" / "x.npy"
    cached_array(path, (4, 3), lambda out: out.fill(7.0))
    path.with_name("x.npy.lock").unlink()
    fake_read_only(monkeypatch, tmp_path / "data")
    assert float(cached_array(path, (4, 3), lambda out: out.fill(0.0))[0, 0]) == 7.0
    with pytest.raises(HarnessError) as err:  # a cold one cannot be built there: said, in one line
        cached_array(path.with_name("y.npy"), (4, 3), lambda out: out.fill(0.0))
    assert str(err.value) == (f"cannot write to {path.parent}: Read-only file system; mount it writable, or use "
                              f"another data root (--data-root DIR or BENCH_DATA_ROOT)")


def test_a_read_only_data_root_gets_a_compile_cache_elsewhere_and_says_so(tmp_path, monkeypatch):
    from harness.training.device import compile_cache

    said, writable, refused = [], tmp_path / "data", tmp_path / "other"
    writable.mkdir()
    refused.mkdir()
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: not _inside(path, refused))
    assert compile_cache(writable, said.append) == writable / "compile-cache" and not said
    fallback = compile_cache(refused, said.append)
    assert not _inside(fallback, refused) and said == [
        f"compile cache: {refused}/compile-cache cannot be written (no write access for uid {os.getuid()}); using "
        f"{fallback} instead, so compiled kernels are not kept in the data root"]
    assert compile_cache(refused, said.append) == fallback and len(said) == 1  # said once


def test_a_really_full_then_read_only_data_root(tmp_path, tiny_catalog, monkeypatch, namespace):
    """A 64 kB tmpfs for the decode cache (640 kB): an error, not a bus error. Then, its caches warm
    and the data root mounted read-only, runs of tiny and of synthetic train."""
    root = tiny_data(tmp_path, tiny_catalog, monkeypatch)
    cache = root / "cache"
    outcomes = namespace([f"mkdir -p {cache}", f"mount -t tmpfs -o size=64k tmpfs {cache}"], [
        RUN + ["-d", "tiny", "--folds", "1"], f"ls -A {cache} > {tmp_path}/left; umount {cache}",
        RUN + ["-d", "tiny", "--folds", "1", "--results", str(tmp_path / "warm")],
        f"mount --bind {root} {root}; mount -o remount,bind,ro {root}",
        RUN + ["-d", "tiny", "--folds", "2"], ["--datasets", str(PROJECT_ROOT / "datasets.toml"), *RUN, "--folds", "2"],
    ])
    (full, out_full), (warmed, out_warm), (trained, out_trained), (synthetic, out_synthetic) = outcomes
    assert full == 1 and "Traceback" not in out_full and "FAILED" not in out_full  # not 135: a bus error
    assert re.search(rf"^Error: No space left on device in {cache} \(640.0 kB needed, [\d.]+ kB free\): "
                     r"free some space there, or use another data root \(--data-root DIR or BENCH_DATA_ROOT\)$",
                     out_full, re.M), out_full  # the sweep stops: no later run could get past it either
    assert all(name.endswith(".lock") for name in (tmp_path / "left").read_text().split())  # no temporary array
    assert warmed == 0, out_warm
    assert trained == 0 and "small_cnn on tiny (scratch-fp32, 1 epoch): 1 run, 0 already finished, 0 failed" \
        in out_trained, out_trained
    assert f"compile cache: {root}/compile-cache cannot be written (a read-only file system); using " \
           f"{tmp_path}/tmp/bench-compile-cache-{os.getuid()} instead" in out_trained
    assert synthetic == 0 and "1 run, 0 already finished, 0 failed" in out_synthetic, out_synthetic


# --- 5. the board under an ASCII-only locale, and a board that cannot be written whole ---------------

@pytest.fixture
def ascii_locale():
    """This process's locale made ASCII-only (``LC_CTYPE=C``), as ``LC_ALL=C PYTHONUTF8=0`` makes it."""
    if sys.flags.utf8_mode:
        pytest.skip("Python runs in UTF-8 mode here: its files are utf-8 whatever the locale")
    before = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")
    assert locale.getpreferredencoding(False) == "ANSI_X3.4-1968"
    yield
    locale.setlocale(locale.LC_CTYPE, before)


def test_the_board_is_written_in_utf8_under_an_ascii_locale(tmp_path, ascii_locale):
    out = CliRunner().invoke(main, ["leaderboard"])
    assert out.exit_code == 0, out.output
    assert "**±**" in (tmp_path / "results" / "leaderboard.md").read_text(encoding="utf-8")  # the rules


def test_a_board_that_cannot_be_written_leaves_the_last_one_whole(tmp_path, monkeypatch):
    from harness.board.leaderboard import write

    board = tmp_path / "board" / "README.md"
    write(board, "# board ± 1\n", {"figures/a-folds.png": b"one", "entries/a.md": "a ± 1"})
    before = snapshot(board.parent)
    fake_full(monkeypatch, board.parent)
    with pytest.raises(HarnessError) as err:
        write(board, "# board ± 2\n", {"figures/a-folds.png": b"two", "entries/a.md": "a ± 2"})
    monkeypatch.undo()
    assert str(err.value).startswith(f"No space left on device in {board.parent} (") and \
        str(err.value).endswith("free some space there, or write the board elsewhere (--output FILE)")
    assert snapshot(board.parent) == before  # neither empty nor half: the last board, and no temporary file


# --- 6. a HOME that does not exist -----------------------------------------------------------

@pytest.fixture
def no_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "nonexistent" / "x"
    monkeypatch.setenv("HOME", str(home))
    for name in ("BENCH_RESULTS", "BENCH_DATA_ROOT", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    return home


def test_a_home_that_does_not_exist_is_named_not_created(no_home):
    with pytest.raises(HarnessError) as err:
        results_root()
    assert str(err.value) == (f"HOME={no_home} does not exist, so there is no default result store "
                              f"({no_home}/.local/share/audio-bench); set BENCH_RESULTS to a folder, or create "
                              f"{no_home}")
    with pytest.raises(HarnessError, match=rf"^HOME={no_home} does not exist, so there is no default data root .*; "
                                           rf"set BENCH_DATA_ROOT to a folder, or create {no_home}$"):
        data_root()
    assert results_root("elsewhere") == Path("elsewhere") and data_root("elsewhere") == Path("elsewhere")


def test_bench_with_a_home_that_does_not_exist_says_so_in_one_line(no_home):
    out = CliRunner().invoke(main, ["leaderboard"])
    assert out.exit_code == 1 and out.output.startswith(f"Error: HOME={no_home} does not exist, so there is no "
                                                        f"default data root"), out.output
    assert not no_home.parent.exists()
