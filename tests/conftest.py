import os
import resource
import struct
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf


def pytest_configure(config):
    """The suite runs in the locked environment or not at all: a package at another version than
    requirements.lock stops it here, named with both versions, before an import of it can fail
    with a message that names neither (torchaudio 2.11.1 beside torch 2.11.0: an undefined symbol).
    ``BENCH_ANY_ENVIRONMENT=1`` runs it anyway (trying another stack; tests/test_environment.py still fails).

    ``BENCH_TEST_THREADS=16 make test`` runs the suite with that many torch threads: the
    results must not depend on the thread count (or on which CPU runs them)."""
    from harness.runs import environment

    if environment.LOCK_FILE.is_file() and not os.environ.get("BENCH_ANY_ENVIRONMENT") \
            and (drift := environment.drift()):
        pytest.exit("installed packages differ from requirements.lock: " + "; ".join(map(str, drift)) +
                    ". Run `make install` (or set BENCH_ANY_ENVIRONMENT=1 to test another stack)", returncode=3)
    threads = os.environ.get("BENCH_TEST_THREADS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def pytest_report_header(config):
    import torch

    return f"torch threads: {torch.get_num_threads()}"


@pytest.fixture(autouse=True)
def isolated_registry():
    """Submissions a test registers (broken examples) disappear after it."""
    import sys

    from harness.training.submission import SUBMISSIONS, load_submissions

    load_submissions()
    items, modules = dict(SUBMISSIONS._items), set(sys.modules)
    yield
    SUBMISSIONS._items.clear()
    SUBMISSIONS._items.update(items)
    for name in set(sys.modules) - modules:
        if name.startswith("submissions."):
            del sys.modules[name]


@pytest.fixture(autouse=True)
def isolated_roots(tmp_path, monkeypatch):
    """Every test gets its own data root and result store; nothing touches the user's."""
    monkeypatch.setenv("BENCH_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("BENCH_RESULTS", str(tmp_path / "results"))
    monkeypatch.delenv("BENCH_DATASETS", raising=False)
    return tmp_path


def write_wav(path: Path, seconds: float = 0.3, sr: int = 8000, freq: float = 440.0, channels: int = 1):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    wave = 0.5 * np.sin(2 * np.pi * freq * t)
    sf.write(path, np.stack([wave] * channels, axis=1) if channels > 1 else wave, sr)


def make_digit_folder(folder: Path, digits=(0, 1), speakers=("anna", "bob"), indices=range(10)) -> Path:
    """A tiny FSDD-shaped folder: {digit}_{speaker}_{index}.wav."""
    for d in digits:
        for s in speakers:
            for i in indices:
                write_wav(folder / f"{d}_{s}_{i}.wav", freq=300 + 200 * d + i)
    return folder


TINY_CATALOG = """
[tiny]
version = "1"
kind = "audio"
url = "{url}"
archive_sha256 = "{sha}"
archive_root = "tiny-1.0/recordings"
fingerprint = "{fingerprint}"
sample_rate = 8000
clip_seconds = 0.5
num_classes = 2
class_names = ["0", "1"]
metadata = {{ format = "filename", pattern = '^(?P<digit>\\d)_(?P<speaker>[a-z]+)_(?P<index>\\d+)\\.wav$', label = "digit" }}
folds = {{ protocol = "by_index", k = 2, field = "index", size = 5 }}
"""


@pytest.fixture
def tiny_catalog(tmp_path):
    """Write a catalog declaring the tiny dataset; returns a function taking url/sha/fingerprint."""
    def write(url="", sha="", fingerprint="") -> Path:
        path = tmp_path / "datasets.toml"
        path.write_text(TINY_CATALOG.format(url=url, sha=sha, fingerprint=fingerprint))
        return path
    return write


def runs(submission: str, dataset: str = "synthetic", folds=(1, 2), trials: int = 1, epochs: int = 1, **identity):
    """The runs of one grid cell (``harness.runs.run.grid``) with folds given as a tuple."""
    from harness.runs.run import grid

    return grid(submission, dataset, list(folds), trials, epochs, **identity)


def submissions(*folders: Path, project: bool = True, **settings):
    """The driver's submissions (described in sandboxed workers), with ``folders`` of test files."""
    from harness.runs.described import Submissions
    from harness.runs.sandboxed import Settings

    return Submissions(Settings(**settings), tuple(folders), project=project)


def run_named(run, spec, device: str = "cpu", subs=None, **kwargs):
    """One run of a registered submission, as the driver makes it: described and trained in a
    sandboxed worker, scored here."""
    import torch

    from harness.runs.execute import run_one, task_for

    subs = subs or submissions()
    return run_one(task_for(subs, run, spec), spec, run, torch.device(device), settings=subs.settings, **kwargs)


def grid_named(spec, runs_, results, device: str = "cpu", subs=None, data_root=None, workers: int = 1):
    """Every missing run of one submission's grid, as ``bench run`` drives them: one at a time, or
    ``workers`` at once (CPU cores split between them)."""
    import torch
    from tqdm import tqdm

    from harness.runs.driver import Work, drive, judged, plan
    from harness.runs.executors import InProcess, LocalPool
    from harness.runs.slots import cpu_slots

    subs, dev = subs or submissions(), torch.device(device)
    slots = cpu_slots(workers, len(runs_), torch.get_num_threads()) if workers > 1 else []
    executor = LocalPool(slots, subs.settings) if len(slots) > 1 else InProcess(settings=subs.settings)
    missing, _ = plan(runs_, results, judged(subs, [spec], data_root))
    name = runs_[0].submission if runs_ else ""
    with tqdm(total=len(missing), desc=f"{name} on {spec.name}", unit="run", disable=not missing) as bar:
        report, = drive([Work(name, spec, runs_)], executor, subs, dev, results, data_root, bar)
    return report


def copy_submission(name: str, folder: Path, edit=lambda text: text) -> Path:
    """``submissions/<name>.py`` copied into ``folder`` with ``edit`` applied: an edited submission."""
    from harness.core.paths import PROJECT_ROOT

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}.py"
    target.write_text(edit((PROJECT_ROOT / "submissions" / f"{name}.py").read_text()))
    return target


def fsdd_source() -> Path | None:
    path = os.environ.get("BENCH_FSDD_SOURCE")
    return Path(path) if path and Path(path).is_dir() else None


@contextmanager
def memory_ceiling(extra_bytes: int):
    """Inside, any allocation that would grow this process's address space by more than
    ``extra_bytes`` fails with MemoryError instead of taking the machine down."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    now = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (now + extra_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def with_header_rate(wav: bytes, rate: int) -> bytes:
    """A canonical 44-byte-header PCM WAV with its sample rate (and byte rate) fields replaced."""
    channels, bits = struct.unpack_from("<H", wav, 22)[0], struct.unpack_from("<H", wav, 34)[0]
    return wav[:24] + struct.pack("<II", rate, (rate * channels * bits // 8) % 2**32) + wav[32:]


class ThreadWorker:
    """A worker serving in a thread of the test process instead of a sandboxed process, for tests
    of the training engine that spy on it with monkeypatch (``monkeypatch.setattr(execute,
    "Worker", ThreadWorker)``): the same requests and answers, none of the confinement."""

    def __init__(self, submission_file, settings, device_type="cpu", protected=None, readable=(), writable=(),
                 compile_cache=None, compiled=False):
        from harness.runs.sandboxed import Worker

        self._real = Worker(submission_file, settings, device_type, protected, readable, writable, compile_cache,
                            compiled)
        self.file = self._real.file

    def __enter__(self):
        import multiprocessing
        import sys
        import threading

        from harness.runs import worker_tasks
        from harness.training.submission import SUBMISSIONS

        SUBMISSIONS._items.clear()  # as in a fresh worker: only the one file it loads (isolated_registry restores)
        for module in [m for m in sys.modules if m.startswith("submissions.")]:
            del sys.modules[module]
        self.conn, child = multiprocessing.Pipe()
        self.thread = threading.Thread(target=worker_tasks.serve, args=(child,), daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.conn.send({"op": "stop"})
        self.thread.join(10)
        self.conn.close()

    def send(self, message, arrays=None):
        from harness.runs import protocol

        specs, fds = protocol.send_arrays(self.conn, arrays or {})
        self.conn.send({**message, "file": str(self.file), "arrays": specs})
        protocol.pass_fds(self.conn, fds)

    def receive(self, deadline, doing):
        import json
        import time

        if not self.conn.poll(max(0.0, deadline - time.monotonic())):
            raise TimeoutError(doing)
        return json.loads(self.conn.recv_bytes())

    def ask(self, message, deadline, doing, arrays=None, on_event=lambda m: None, until=""):
        from harness.runs.sandboxed import Worker

        return Worker.ask(self, message, deadline, doing, arrays, on_event, until)
