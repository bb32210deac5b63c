"""The driver's side of the sandbox: a worker process per run (``harness.runs.worker``), what it
may read and write, its limits, and what the driver believes of its answers.

A worker is forked from a fork server that preloads torch and the harness. Its answers are JSON,
read with a size limit; a worker that is silent past its time limit is killed with everything
it started, one that dies is reported with its exit status, and neither ends the driver.
"""
from __future__ import annotations

import json
import math
import multiprocessing
import os
import shutil
import site
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, Callable

import numpy as np

from harness.core import sandbox
from harness.core.errors import HarnessError
from harness.core.paths import PROJECT_ROOT
from harness.runs import protocol, worker

MAX_MESSAGE = 64 * 2**20  # bytes: a worker's answer beyond this is refused unread
START_TIMEOUT = 120.0  # seconds for a worker to start and confine itself
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "CUDA_VISIBLE_DEVICES", "CUBLAS_WORKSPACE_CONFIG", "NVIDIA_VISIBLE_DEVICES",
              "LD_LIBRARY_PATH")
SYSTEM_READ = ("/usr", "/lib", "/lib64", "/bin", "/etc/ld.so.cache", "/etc/localtime", "/proc/self",
               "/proc/thread-self", "/proc/cpuinfo", "/proc/meminfo", "/proc/stat", "/sys/devices/system/cpu",
               "/sys/fs/cgroup")
CUDA_READ = ("/proc/driver/nvidia", "/sys/bus/pci", "/sys/devices", "/sys/module/nvidia")
CUDA_DEVICES = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset", "/dev/nvidia-caps")


class WorkerFailed(HarnessError, RuntimeError):
    """The worker died, went past a limit, or answered what no honest worker answers."""


@dataclass(frozen=True)
class Settings:
    """How runs are sandboxed: ``confined`` False is ``--unsandboxed`` (recorded in each result);
    ``time_limit`` seconds per run (None: derived from the run's budget, ``time_limit_for``);
    ``memory_gb`` the worker's address space (None: ``default_memory_bytes``; CUDA workers are not
    limited, as the CUDA driver reserves far more address space than it uses)."""

    confined: bool = True
    time_limit: float | None = None
    memory_gb: float | None = None
    processes: int = 512

    def __post_init__(self):
        for name in ("time_limit", "memory_gb"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise HarnessError(f"--{name.replace('_', '-')} {value!r}: a number above 0")


def default_memory_bytes() -> int:
    """Three quarters of the machine's memory, and at least 8 GiB of address space (torch maps more
    than it uses)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(8 * 2**30, int(0.75 * total))


def memory_bytes(settings: Settings) -> int:
    """The address space a CPU worker may use (``--memory-limit``, else the default)."""
    return int(settings.memory_gb * 2**30) if settings.memory_gb else default_memory_bytes()


CPU_GFLOPS, CUDA_GFLOPS = 50.0, 5000.0  # sustained rates assumed for the default time limit, well below measured


BASE_LIMIT_S = 300.0  # what a tiny run may take on a loaded machine: under CI with two other jobs on 2 cores,
                     # 2-epoch synthetic runs queued on Ray took up to 65 s, and 123 s limits killed two of six


def time_limit_for(epochs: int, n_train: int, gflop: float | None, device_type: str) -> float:
    """The default wall-time limit of a run: 5 minutes, plus ten times the time its training FLOPs
    (3x a forward pass per sample and epoch) take at a modest rate; without a FLOP count, 0.1 s per
    training clip and epoch."""
    if gflop is None:
        return BASE_LIMIT_S + 0.1 * epochs * n_train
    rate = CUDA_GFLOPS if device_type == "cuda" else CPU_GFLOPS
    return BASE_LIMIT_S + 10 * epochs * n_train * gflop / rate


# --- what a worker may touch -------------------------------------------------------------------------

def protected_roots(*roots: Path | None) -> list[Path]:
    """What no worker may read: the project (results, locks, git), the home folder, and ``roots``
    (the data root, the result store)."""
    found = [PROJECT_ROOT, Path.home(), *(r for r in roots if r is not None)]
    return [Path(os.path.realpath(p)) for p in found]


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def python_paths(protected: list[Path]) -> list[str]:
    """The Python environment's folders (interpreter, standard library, site-packages, sys.path)
    that hold no protected folder. A folder that would expose one is left out, so a protected
    folder is never readable: the project itself is on sys.path in an editable install."""
    candidates = {sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages(), *sys.path}
    keep = []
    for entry in sorted(c for c in candidates if c and os.path.isdir(c)):
        real = Path(os.path.realpath(entry))
        if not any(_within(p, real) for p in protected):
            keep.append(str(real))
    return keep


def policy_for(submission_file: Path, scratch: Path, writable: list[Path], device_type: str,
               protected: list[Path], settings: Settings) -> sandbox.Policy:
    """Read: Python, the harness and the one submission file; write: the scratch folder and
    ``writable``; devices: the standard ones, and the GPU's on CUDA."""
    harness = PROJECT_ROOT / "harness"
    read = [*python_paths(protected), str(harness), str(submission_file.resolve()),
            *(p for p in SYSTEM_READ if os.path.exists(p))]
    devices = [d for d in sandbox.Policy.__dataclass_fields__["devices"].default]
    if device_type == "cuda":
        read += [p for p in CUDA_READ if os.path.exists(p)]
        devices += [str(p) for p in Path("/dev").glob("nvidia[0-9]*")] + [d for d in CUDA_DEVICES if os.path.exists(d)]
    memory = None if device_type == "cuda" else memory_bytes(settings)
    return sandbox.Policy(read=tuple(read), write=(str(scratch), *map(str, writable)), devices=tuple(devices),
                          memory_bytes=memory, processes=settings.processes)


def worker_env(scratch: Path, compile_cache: Path | None, device_type: str = "cpu",
               compiled: bool = False) -> dict[str, str]:
    """The worker's whole environment: nothing of the driver's but what running needs (no
    ``BENCH_RESULTS``, no data root, no tokens); a compiled CPU run also gets the driver's verdict
    on the CPU's vector instructions (``vec_isa_verdict``)."""
    env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    env.update(HOME=str(scratch), TMPDIR=str(scratch), USER="bench", LOGNAME="bench", PYTHONDONTWRITEBYTECODE="1",
               XDG_CACHE_HOME=str(scratch / "cache"), TORCH_HOME=str(scratch / "torch"), HF_HOME=str(scratch / "hf"),
               HF_HUB_OFFLINE="1", MPLCONFIGDIR=str(scratch / "mpl"))
    cache = compile_cache or scratch / "compile"
    env.update(TORCHINDUCTOR_CACHE_DIR=str(cache / "inductor"), TRITON_CACHE_DIR=str(cache / "triton"))
    if compiled and device_type == "cpu":
        from harness.training.device import vec_isa_verdict  # torch: imported here, not before the fork server starts

        env.update(vec_isa_verdict())
    return env


_context = None
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # read once, when the fork server loads torch's libraries


def fork_server():
    """The fork server, started once per driver process with torch and the harness imported (it
    imports them while the driver goes on: the first worker waits for it).

    It starts with the workers' environment, not the driver's: every worker is its fork, and a
    process can read the environment it began with (``/proc/self/environ``) whatever it sets
    later, so the driver's tokens and paths must never be in it."""
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(worker.PRELOAD)
        from multiprocessing import forkserver

        driver_env = dict(os.environ)
        tempfile.gettempdir()  # chosen under the driver's TMPDIR: starting the server makes a temporary folder
        os.environ.clear()
        os.environ.update({k: driver_env[k] for k in (*PASSED_ENV, *THREAD_ENV) if k in driver_env})
        try:
            forkserver.ensure_running()
        finally:
            os.environ.clear()
            os.environ.update(driver_env)
    return _context


# --- one worker ---------------------------------------------------------------------------------------

class Worker:
    """One sandboxed process for one submission file; ``with Worker(...) as w:`` starts and ends it.

    ``readable``: checkpoint files it may read; ``writable``: folders it may write besides its own
    scratch folder (a compile cache).
    """

    def __init__(self, submission_file: Path, settings: Settings, device_type: str = "cpu",
                 protected: list[Path] | None = None, readable: list[Path] = (), writable: list[Path] = (),
                 compile_cache: Path | None = None, compiled: bool = False):
        self.file, self.settings, self.device_type = Path(submission_file), settings, device_type
        self.protected = protected or protected_roots()
        self.readable, self.writable, self.compile_cache = list(readable), list(writable), compile_cache
        self.compiled = compiled
        self.process = self.conn = self.scratch = None
        self.confined = settings.confined

    def __enter__(self) -> "Worker":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self.scratch = Path(tempfile.mkdtemp(prefix="bench-worker-"))
        writable = self.writable + ([self.compile_cache] if self.compile_cache else [])
        for folder in writable:
            folder.mkdir(parents=True, exist_ok=True)
        policy = policy_for(self.file, self.scratch, writable, self.device_type, self.protected, self.settings)
        policy = sandbox.Policy(**{**policy.__dict__, "read": policy.read + tuple(map(str, self.readable))})
        context = fork_server()
        self.conn, child = context.Pipe()
        env = worker_env(self.scratch, self.compile_cache, self.device_type, self.compiled)
        self.process = context.Process(target=worker.keeper, args=(child, policy if self.confined else None, env),
                                       name=f"bench worker {self.file.name}", daemon=True)
        self.process.start()
        child.close()
        ready = self.receive(time.monotonic() + START_TIMEOUT, "starting")
        if ready.get("event") == "unavailable":
            self.stop()
            raise sandbox.SandboxUnavailable(
                f"the sandbox cannot be set up here: {ready.get('error')}. Run on Linux 6.12 or later with "
                f"Landlock enabled, or pass --unsandboxed (recorded in every result and shown on the board)")

    def stop(self) -> None:
        """End the worker (killed if it does not stop at once) and remove its scratch folder."""
        if self.process is not None:
            try:
                self.conn.send({"op": "stop"})
            except (OSError, ValueError):
                pass
            self.process.join(2)
            if self.process.is_alive():
                self.process.kill()
                self.process.join()
            self.conn.close()
            self.process = None
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)  # made by us; what the worker wrote in it is its own
            self.scratch = None

    # --- talking --------------------------------------------------------------------------------------

    def send(self, message: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> None:
        specs, fds = protocol.send_arrays(self.conn, arrays or {})
        self.conn.send({**message, "file": str(self.file), "arrays": specs})
        protocol.pass_fds(self.conn, fds)

    def receive(self, deadline: float, doing: str) -> dict[str, Any]:
        """The worker's next answer, checked to be a JSON object of bounded size."""
        data = self._bytes(deadline, doing, MAX_MESSAGE)
        try:
            message = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError):  # nested past Python's stack: not ours either
            message = None
        if not isinstance(message, dict) or not isinstance(message.get("event"), str):
            self.kill()
            raise WorkerFailed(f"the worker's answer while {doing} is not a message of the harness's protocol")
        return message

    def receive_array(self, deadline: float, doing: str, shape: tuple[int, ...]) -> np.ndarray:
        """The float32 array of ``shape`` the worker sends next as raw bytes, exactly that many."""
        nbytes = 4 * math.prod(shape)
        data = self._bytes(deadline, doing, max(nbytes, 1))
        if len(data) != nbytes:
            self.kill()
            raise WorkerFailed(f"the worker sent {len(data)} bytes while {doing}, not the {nbytes} it announced")
        return np.frombuffer(data, np.float32).reshape(shape).copy()

    def _bytes(self, deadline: float, doing: str, limit: int) -> bytes:
        """The next framed message, at most ``limit`` bytes, by ``deadline``."""
        remaining = deadline - time.monotonic()
        ready = wait([self.conn, self.process.sentinel], timeout=max(0.0, remaining))
        if not ready:
            self.kill()
            raise WorkerFailed(f"over the time limit while {doing}: killed with every process it started "
                               f"(--time-limit sets the limit)")
        try:
            return self.conn.recv_bytes(limit)
        except (EOFError, OSError) as err:
            self.process.join(5)
            code = self.process.exitcode
            self.kill()
            if code is None:  # alive, but what it sent is not a framed message (or is over the size limit)
                raise WorkerFailed(f"the worker's answer while {doing} is not a message of the harness's protocol "
                                   f"({err or type(err).__name__}); it was killed") from None
            raise WorkerFailed(f"the submission's process ended while {doing} ({_status(code)}); nothing "
                               f"it did can end the run's driver") from None

    def kill(self) -> None:
        if self.process is not None and self.process.is_alive():
            self.process.kill()
            self.process.join()

    def ask(self, message: dict[str, Any], deadline: float, doing: str, arrays: dict[str, np.ndarray] | None = None,
            on_event: Callable[[dict[str, Any]], None] = lambda m: None, until: str = "") -> dict[str, Any]:
        """Send a request and read answers until one whose event is ``until`` (events before it go
        to ``on_event``); a worker's error is raised as a ``WorkerFailed`` with its one line."""
        self.send(message, arrays)
        while True:
            answer = self.receive(deadline, doing)
            if answer["event"] == "error":
                raise WorkerError(_line(answer.get("error")), _text(answer.get("traceback"), 4000))
            if answer["event"] == until:
                return answer
            on_event(answer)


class WorkerError(WorkerFailed):
    """The submission's code raised: ``str`` is the worker's one line, ``trace`` its traceback's end."""

    def __init__(self, line: str, trace: str = ""):
        super().__init__(line)
        self.trace = trace


def _text(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else repr(value)
    return "".join(c if c.isprintable() or c in "\n\t" else "?" for c in text)[:limit]


def _line(value: Any) -> str:
    return _text(value, 2000).replace("\n", " ")


def _status(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0 or code >= 128:
        import signal

        number = -code if code < 0 else code - 128
        try:
            return f"killed by {signal.Signals(number).name}"
        except ValueError:
            return f"killed by signal {number}"
    return f"exit code {code}"
