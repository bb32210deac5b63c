"""Executors: where the runs of a plan train. The driver (``harness.runs.driver``) hands one an
iterator of jobs and gets back ``(job, record)`` pairs as runs finish; the driver alone claims
runs and writes results, so resume, provenance and the single writer are the same whichever
executor trained them.

- ``InProcess``: the driver trains the runs itself, one at a time (progress shown per epoch).
- ``LocalPool``: one worker process per slot (``harness.runs.slots``), pinned to its GPU with
  ``CUDA_VISIBLE_DEVICES`` or given its share of the CPU cores; a worker that dies (killed, out
  of host memory) is replaced and its run retried.
- ``RayCluster`` (``harness.runs.ray_executor``): each run a Ray task, here or on a cluster.

Which one a plan gets is the executor registry's (``harness.runs.slots.EXECUTORS``): ``local``
is this module's ``local`` (a pool, or ``InProcess`` for one slot), ``ray`` is Ray's.

An executor takes the next job only when it has room for it, so a run is claimed just before
it starts, and two drivers sharing a store split a sweep between them.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Callable, Iterator, Protocol

import torch

from harness.core.disk import DiskError
from harness.core.errors import HarnessError
from harness.core.sandbox import SandboxUnavailable
from harness.data.catalog import DatasetSpec
from harness.runs.execute import Execution, Task, attempt
from harness.runs.records import FailedRecord, Record
from harness.runs.run import Run
from harness.runs.sandboxed import Settings
from harness.runs.slots import Placement, Slot, cpu_slots, gpu_slots, parse_gpus, pinned_devices
from harness.training.loop import Progress

MAX_ATTEMPTS = 3  # a run whose worker died this often is recorded as failed, not tried forever


@dataclass(frozen=True)
class Job:
    """One run, by value, as a runner needs it: it pickles to a process or to another machine.

    ``task``: the submission as the run trains it, as data, with the driver's view of its code (a
    runner checks its own copy against it); ``device`` is ``cpu`` or ``cuda``, the one statement of
    where the run trains (``device_of``: which GPU is the executor's slot's); ``runs_per_gpu`` how
    many runs of this kind share one GPU.
    """

    task: Task
    spec: DatasetSpec
    run: Run
    device: str
    data_root: Path | None
    runs_per_gpu: int = 1


Status = Callable[[Job, str], None]  # what an executor says of a job while it runs (on the progress bar)


class Executor(Protocol):
    def results(self, jobs: Iterator[Job], status: Status) -> Iterator[tuple[Job, Record]]:
        """Train ``jobs``, taking the next only when there is room for it; yield each with its record."""


def device_of(job: Job, gpu: int | None = None) -> torch.device:
    """The device ``job`` trains on: its kind, on GPU ``gpu`` of this process when the slot names one
    (a runner pinned to its GPU with ``CUDA_VISIBLE_DEVICES`` names none: its GPU is ``cuda:0``)."""
    return torch.device(job.device, gpu) if job.device == "cuda" and gpu is not None else torch.device(job.device)


def work(job: Job, threads: int, settings: Settings) -> Record:
    """What a runner process does with a job: its record (``attempt`` turns every error into a
    failed record); the submission's code runs in the sandboxed worker it starts."""
    torch.set_num_threads(threads)
    return attempt(Execution(job.task, job.spec, job.run, device_of(job), job.data_root, settings))


def died(job: Job, attempts: int, why: str) -> FailedRecord:
    return FailedRecord(job.run, f"its worker process died {attempts} times ({why}); nothing of it was stored. "
                                 f"If it ran out of host memory, run fewer at once (--runs-per-gpu, --workers)")


@dataclass
class InProcess:
    """The driver runs one job at a time itself, on the job's device (``gpu``: which GPU of this
    process, for a CUDA job): it holds the data and scores, and each run's submission code trains
    in a fresh sandboxed worker (``harness.runs.execute``)."""

    gpu: int | None = None
    settings: Settings = Settings()

    def results(self, jobs: Iterator[Job], status: Status) -> Iterator[tuple[Job, Record]]:
        for job in jobs:
            show = lambda epoch, row: status(job, f"epoch {epoch} (budget {job.run.epochs}) loss {row['train_loss']:.3f}")
            step = lambda epoch, number, steps: status(job, f"epoch {epoch} step {number}/{steps}")
            status(job, "data, features, first step")
            yield job, attempt(Execution(job.task, job.spec, job.run, device_of(job, self.gpu), job.data_root,
                                         self.settings, Progress(show, step)))


def local(placement: Placement, device: torch.device, runs: int, per_device: int,
          settings: Settings) -> Executor:
    """The ``local`` executor for ``runs`` runs, ``per_device`` of them sharing a GPU or the CPU:
    a pool of worker processes, one per slot, or with one slot the driver itself."""
    cpus = torch.get_num_threads()
    if device.type == "cuda":
        slots = gpu_slots(parse_gpus(placement.gpus, torch.cuda.device_count()), per_device, runs, cpus)
    else:
        slots = cpu_slots(per_device, runs, cpus)
    return LocalPool(slots, settings) if len(slots) > 1 else InProcess(slots[0].gpu, settings)


class LocalPool:
    """One spawned worker process per slot, kept for all the jobs; a dead one is replaced and its
    run given to the next free slot, up to ``MAX_ATTEMPTS`` times."""

    def __init__(self, slots: list[Slot], settings: Settings = Settings()):
        self.slots, self.settings = slots, settings

    def results(self, jobs: Iterator[Job], status: Status) -> Iterator[tuple[Job, Record]]:
        workers: dict[int, _Worker] = {}
        retry: deque[tuple[Job, int]] = deque()
        idle, busy = list(range(len(self.slots))), {}
        try:
            while True:
                while idle and (nxt := retry.popleft() if retry else _next(jobs)):
                    index = idle.pop(0)
                    worker = workers.get(index) or workers.setdefault(index, _Worker(self.slots[index], self.settings))
                    busy[index] = worker.give(*nxt)
                    status(nxt[0], f"on {self.slots[index]}")
                if not busy:
                    return
                for index in _finished(workers, busy):
                    job, attempts = busy.pop(index)
                    idle.append(index)
                    record = workers[index].take()
                    if isinstance(record, HarnessError):  # the machine's problem, not the run's: stop here
                        raise record
                    if record is None:  # the process died mid-run: a fresh one takes its slot
                        workers.pop(index).stop()
                        if attempts < MAX_ATTEMPTS:
                            retry.append((job, attempts + 1))
                            status(job, f"worker died (attempt {attempts}); retrying")
                            continue
                        record = died(job, attempts, "killed or out of memory")
                    yield job, record
        finally:  # also on Ctrl-C: a worker holds no result the driver has not stored
            for worker in workers.values():
                worker.stop()


def _next(jobs: Iterator[Job]) -> tuple[Job, int] | None:
    job = next(jobs, None)
    return (job, 1) if job is not None else None


def _finished(workers: dict[int, "_Worker"], busy: dict[int, tuple[Job, int]]) -> list[int]:
    """The busy slots whose worker sent a record or died (waits for at least one)."""
    ready = set(wait([h for i in busy for h in (workers[i].conn, workers[i].process.sentinel)]))
    return [i for i in busy if workers[i].conn in ready or workers[i].process.sentinel in ready]


class _Worker:
    """One slot's process: it receives a job, sends back its record, and waits for the next."""

    def __init__(self, slot: Slot, settings: Settings):
        context = multiprocessing.get_context("spawn")  # CUDA cannot be forked
        self.conn, child = context.Pipe()
        pinned = pinned_devices(os.environ.get("CUDA_VISIBLE_DEVICES"), slot.gpu) if slot.gpu is not None else None
        self.process = context.Process(target=_serve, args=(child, pinned, slot.threads, settings), name=f"bench {slot}")
        self.process.start()
        child.close()

    def give(self, job: Job, attempts: int) -> tuple[Job, int]:
        self.conn.send(job)
        return job, attempts

    def take(self) -> Record | None:
        """The record the worker sent, or None when it died before sending one."""
        try:
            return self.conn.recv() if self.conn.poll() else None
        except (EOFError, OSError):
            return None

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()


def _serve(conn, pinned: str | None, threads: int, settings: Settings) -> None:
    """A runner's life: pinned to its GPU before CUDA starts, then one job after another (each run's
    submission code in a sandboxed worker of its own)."""
    if pinned is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = pinned
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle; it stops the workers
    while True:
        try:
            job = conn.recv()
        except EOFError:  # the driver is gone
            return
        try:
            record = work(job, threads, settings)
        except (SandboxUnavailable, DiskError) as err:  # raised again by the driver, which stops the sweep
            record = err
        conn.send(record)
