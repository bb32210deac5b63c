"""The Ray executor: each run one Ray task, on a local Ray instance or on an existing cluster.

A GPU run asks Ray for ``1 / runs_per_gpu`` of a GPU (small models pack several to a GPU; Ray
sets the task's ``CUDA_VISIBLE_DEVICES``) and one CPU; a CPU run for its share of the cluster's
cores (``workers`` runs at once; by default one core each), which its torch uses. A task whose worker process or node dies is retried by Ray (the task is
the whole run, so a retry starts it afresh), and only the driver writes its record, once.

Every node needs the same code (the worker checks its submission's source hash against the
driver's) and the data root at the same path: on a shared filesystem, or with each dataset
imported on each node (``bench fetch``).
"""
from __future__ import annotations

import itertools
import os
from typing import TYPE_CHECKING, Iterator

from harness.core.errors import HarnessError
from harness.runs.executors import MAX_ATTEMPTS, Job, Status, died, work
from harness.runs.sandboxed import Settings
from harness.runs.records import FailedRecord, Record
from harness.runs.slots import Placement

if TYPE_CHECKING:
    import torch

FORWARDED = ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")  # and every BENCH_* variable


class RayUnavailable(HarnessError):
    """Ray is not installed, or the cluster named cannot be reached or has no GPU."""


def _ray():
    try:
        import ray
    except ImportError:
        raise RayUnavailable("--executor ray needs Ray: pip install -e '.[ray]'") from None
    return ray


def cluster(placement: Placement, device: "torch.device", runs: int, per_device: int,
            settings: Settings) -> "RayCluster":
    """The ``ray`` executor (``harness.runs.slots.EXECUTORS``): every run of a plan to one Ray
    instance or cluster, which packs them itself. Ray is reached only once a run is asked for."""
    return RayCluster(placement.address, placement.workers, settings)


class RayCluster:
    """Runs as Ray tasks. ``address``: None starts (or joins, if this process has one) a local Ray
    instance; ``auto`` or ``HOST:PORT`` joins an existing cluster."""

    def __init__(self, address: str | None = None, workers: int | None = None, settings: Settings = Settings()):
        self.address = address
        self.workers = workers
        self.settings = settings

    def results(self, jobs: Iterator[Job], status: Status) -> Iterator[tuple[Job, Record]]:
        if (first := next(jobs, None)) is None:  # nothing to run: Ray is neither started nor joined
            return
        jobs, ray = itertools.chain([first], jobs), _ray()
        started = self._connect(ray)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.cpus_per_run = max(1, cpus // self.workers) if self.workers else 1
        task, flying, job = ray.remote(work), {}, None
        try:
            while True:
                while len(flying) < self._room(ray, job) and (job := next(jobs, None)) is not None:
                    self._check_feasible(ray, job)
                    flying[task.options(**self._resources(job)).remote(job, self.cpus_per_run, self.settings)] = job
                    status(job, "queued on Ray")
                if not flying:
                    return
                (ref,), _ = ray.wait(list(flying), num_returns=1)
                job = flying.pop(ref)
                yield job, self._record(ray, ref, job)
        finally:  # on Ctrl-C too: runs in flight are cancelled, their claims released by the driver
            for ref in flying:
                ray.cancel(ref, force=True)
            if started:
                ray.shutdown()

    def _connect(self, ray) -> bool:
        """Join or start Ray; True when this call started it (and so stops it at the end)."""
        if ray.is_initialized():
            return False
        options = dict(logging_level="WARNING", log_to_driver=True)
        try:
            if self.address:
                ray.init(address=self.address, **options)
            else:
                ray.init(include_dashboard=False, **options)
        except ConnectionError as err:
            raise RayUnavailable(f"--address {self.address}: cannot reach a Ray cluster there ({err}); start one "
                                 f"with `ray start --head`, or leave --address out for a local instance") from None
        return True

    @staticmethod
    def _check_feasible(ray, job: Job) -> None:
        """A GPU run on a cluster without GPUs would wait forever in Ray's queue: say so instead."""
        if job.device == "cuda" and not ray.cluster_resources().get("GPU"):
            raise RayUnavailable("the Ray cluster offers no GPU, so a CUDA run could never start: start its nodes "
                                 "with `ray start --num-gpus N`, or run on the CPU (--device cpu)")

    def _resources(self, job: Job) -> dict:
        env = {k: v for k, v in os.environ.items() if k.startswith("BENCH_") or k in FORWARDED}
        gpu = job.device == "cuda"
        return {"num_gpus": 1 / job.runs_per_gpu if gpu else 0, "num_cpus": 1 if gpu else self.cpus_per_run,
                "max_retries": MAX_ATTEMPTS - 1, "retry_exceptions": False,
                **({"runtime_env": {"env_vars": env}} if env else {})}

    def _room(self, ray, last: Job | None) -> int:
        """How many runs to have in flight (runs like ``last``): what the cluster can run at once,
        plus one queued so that no slot waits for the driver; a bound, so that runs are claimed
        only shortly before they start."""
        if last is None:
            return 1
        total = ray.cluster_resources()
        at_once = int(total.get("GPU", 0)) * last.runs_per_gpu if last.device == "cuda" else \
            int(total.get("CPU", 1)) // self.cpus_per_run
        return max(1, at_once) + 1

    @staticmethod
    def _record(ray, ref, job: Job) -> Record:
        try:
            return ray.get(ref)
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.OutOfMemoryError) as err:
            return died(job, MAX_ATTEMPTS, type(err).__name__)
        except ray.exceptions.RayError as err:  # e.g. the harness cannot be imported on that node
            return FailedRecord(job.run, f"Ray could not run it: {str(err).strip().splitlines()[-1]}")
