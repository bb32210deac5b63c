"""Where runs go: the worker slots of an executor, as pure functions of the GPUs asked for, how
many runs share one GPU and how many runs there are. No torch here, so every case is testable
on a machine without a GPU.

A slot is one worker process: on a GPU it sees only its GPU (``CUDA_VISIBLE_DEVICES``), so its
runs use ``cuda:0`` whichever GPU that is; on the CPU the cores are split between the slots.
Runs are handed to slots in order, the first ``len(slots)`` runs one each, every later run to
the first slot that frees up.

``EXECUTORS`` is the one registry of executors: each one's name, what it is, the placement options
it takes and its factory. The command line's ``--executor`` choices, ``Placement``'s checks and
the plan's choice of executor all read it.
"""
from __future__ import annotations

from dataclasses import dataclass

from harness.core.errors import HarnessError
from harness.core.registry import Registry


class PlacementError(HarnessError):
    """A GPU list or slot count that cannot be used on this machine."""


@dataclass(frozen=True)
class Slot:
    """One worker: ``gpu`` is its index among the GPUs this process sees (None on the CPU),
    ``threads`` the CPU threads its runs use."""

    gpu: int | None
    threads: int

    def __str__(self) -> str:
        return f"GPU {self.gpu}" if self.gpu is not None else f"CPU x{self.threads}"


def parse_gpus(text: str, visible: int) -> list[int]:
    """``all`` or a comma-separated list of GPU indices (``1,3``) -> the indices, checked.

    Args:
        text: the ``--gpus`` value.
        visible: how many GPUs this process sees (after the user's own ``CUDA_VISIBLE_DEVICES``).
    """
    if visible < 1:
        raise PlacementError("--gpus: torch sees no CUDA GPU here; run on the CPU (--device cpu)")
    if text.strip() == "all":
        return list(range(visible))
    try:
        gpus = [int(part) for part in text.split(",")]
    except ValueError:
        raise PlacementError(f"--gpus {text!r}: write all, or GPU indices like 0,1 or 1,3") from None
    if bad := [g for g in gpus if not 0 <= g < visible]:
        raise PlacementError(f"--gpus {text!r}: no GPU {bad[0]} here; this machine shows GPUs 0..{visible - 1}")
    if len(set(gpus)) != len(gpus):
        raise PlacementError(f"--gpus {text!r} names a GPU twice; use --runs-per-gpu to put several runs on one")
    return gpus


def gpu_slots(gpus: list[int], runs_per_gpu: int, runs: int, cpus: int) -> list[Slot]:
    """``runs_per_gpu`` slots on each GPU, at most one per run, spread over the GPUs first
    (with 2 runs and GPUs 1,3 each GPU gets one, not GPU 1 both); the CPU cores are split
    between the slots (each drives its GPU from at least one thread)."""
    if runs_per_gpu < 1:
        raise PlacementError(f"--runs-per-gpu {runs_per_gpu}: use a whole number of at least 1")
    order = [gpu for _ in range(runs_per_gpu) for gpu in gpus][:max(runs, 1)]
    return [Slot(gpu, max(1, cpus // len(order))) for gpu in order]


def cpu_slots(workers: int, runs: int, cpus: int) -> list[Slot]:
    """``workers`` CPU slots, at most one per run, the cores split between them."""
    if workers < 1:
        raise PlacementError(f"--workers {workers}: use a whole number of at least 1")
    count = max(1, min(workers, runs))
    return [Slot(None, max(1, cpus // count)) for _ in range(count)]


def pinned_devices(visible: str | None, gpu: int) -> str:
    """The ``CUDA_VISIBLE_DEVICES`` of a worker on GPU ``gpu`` (an index among the GPUs the driver
    sees): with the driver's own ``CUDA_VISIBLE_DEVICES=2,5`` (as SLURM sets it), GPU 1 is ``5``."""
    if visible is None or not visible.strip():
        return str(gpu)
    entries = [entry.strip() for entry in visible.split(",") if entry.strip()]
    if gpu >= len(entries):
        raise PlacementError(f"GPU {gpu} is not among CUDA_VISIBLE_DEVICES={visible}")
    return entries[gpu]


OPTIONS = {"gpus": "--gpus", "runs_per_gpu": "--runs-per-gpu", "workers": "--workers", "address": "--address"}


@dataclass(frozen=True)
class ExecutorKind:
    """An executor as the command line, a ``Placement`` and a plan know it (``EXECUTORS``).

    Args:
        help: what it is, in a few words (``bench run --help``).
        factory: ``"module:function"``, what builds it for a group of runs: ``function(placement,
            device, runs, per_device, settings)`` returns a ``harness.runs.executors.Executor``. The
            plan imports it when it runs one, so that listing executors imports no torch.
        options: the placement options it reads (``OPTIONS``' keys); a ``Placement`` refuses another.
        together: every point's runs go to one executor, which packs them itself (Ray); else a plan
            makes one per group of points whose runs share devices alike.
    """

    help: str
    factory: str
    options: tuple[str, ...] = ("runs_per_gpu", "workers")
    together: bool = False

    def __post_init__(self):
        if unknown := set(self.options) - set(OPTIONS):
            raise PlacementError(f"executor option {sorted(unknown)[0]!r}: use {', '.join(OPTIONS)}")
        module, _, function = self.factory.partition(":")
        if not (module.replace(".", "_").isidentifier() and function.isidentifier()):
            raise PlacementError(f"executor factory {self.factory!r}: write it as module:function")


EXECUTORS: Registry[ExecutorKind] = Registry("executor")  # --executor NAME
EXECUTORS.add("local", ExecutorKind("this machine's GPUs or cores", "harness.runs.executors:local",
                                    ("gpus", "runs_per_gpu", "workers")))
EXECUTORS.add("ray", ExecutorKind("a Ray instance or cluster (pip install -e '.[ray]')", "harness.runs.ray_executor:cluster",
                                  ("runs_per_gpu", "workers", "address"), together=True))


@dataclass(frozen=True)
class Placement:
    """How a plan's runs are spread over the hardware, checked when it is made.

    Args:
        executor: a name of ``EXECUTORS``: ``local`` (this machine's GPUs or cores) or ``ray`` (a
            Ray instance or cluster).
        gpus: ``all`` or GPU indices like ``0,1`` (local executor on CUDA); default ``all``.
        runs_per_gpu: runs sharing one GPU; None: 4 for small models, else 1 (``harness.runs.flops``).
        workers: CPU runs at once, the cores split between them; None: 1 on the local executor,
            one per core on Ray.
        address: the Ray cluster to join (``auto`` or ``HOST:PORT``); None: a local Ray instance.
    """

    executor: str = "local"
    gpus: str = "all"
    runs_per_gpu: int | None = None
    workers: int | None = None
    address: str | None = None

    def __post_init__(self):
        if self.executor not in EXECUTORS:
            raise PlacementError(f"--executor {self.executor!r}: use one of {', '.join(EXECUTORS)}")
        for name, count in (("--runs-per-gpu", self.runs_per_gpu), ("--workers", self.workers)):
            if count is not None and (not isinstance(count, int) or count < 1):
                raise PlacementError(f"{name} {count!r}: use a whole number of at least 1")
        if self.gpus.strip() != "all" and not all(part.strip().isdigit() for part in self.gpus.split(",")):
            raise PlacementError(f"--gpus {self.gpus!r}: write all, or GPU indices like 0,1 or 1,3")
        given = {"gpus": self.gpus.strip() != "all", "runs_per_gpu": self.runs_per_gpu is not None,
                 "workers": self.workers is not None, "address": bool(self.address)}
        if refused := [name for name, value in given.items() if value and name not in self.kind.options]:
            takers = [name for name in EXECUTORS if refused[0] in EXECUTORS.get(name).options]
            raise PlacementError(f"--executor {self.executor} takes no {OPTIONS[refused[0]]} (it takes "
                                 f"{', '.join(OPTIONS[o] for o in self.kind.options)}); {OPTIONS[refused[0]]} is for "
                                 f"--executor {' or '.join(takers)}")

    @property
    def kind(self) -> ExecutorKind:
        """The executor's entry in ``EXECUTORS``."""
        return EXECUTORS.get(self.executor)

    def check_device(self, device_type: str) -> None:
        """Refuse, rather than ignore, options meant for the other kind of device."""
        if device_type == "cuda" and self.workers is not None:
            raise PlacementError("--workers counts CPU runs; on a GPU, say how many runs share it with --runs-per-gpu")
        if device_type != "cuda" and (self.runs_per_gpu is not None or self.gpus.strip() != "all"):
            raise PlacementError("--gpus and --runs-per-gpu place runs on GPUs; on the CPU, --workers N runs N at once")
