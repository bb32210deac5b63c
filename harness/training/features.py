"""Features: a front-end run once over every clip of a dataset, cached on disk, kept where
training reads them fastest.

A (dataset, front-end) pair is computed once, over all clips in their order and in fixed batches,
and stored as a memory-mapped array beside the decoded audio (``<data root>/cache/features``);
every later run of that front-end, in this process or another, slices it instead of computing.
Because there is one way of computing them, a run's numbers do not depend on whether the cache
was warm. The file's name holds what could change its content: the decoded array's key, the
front-end's parameters and code, torch and torchaudio's versions and the device kind (a GPU's FFT
is not the CPU's); the CPU thread count does not change a log-mel bit, so it is not in it.

The cache is bounded: ``$BENCH_FEATURE_CACHE_GB`` (default 20; 0 turns it off) evicts the least
recently used arrays, so a sweep over a thousand front-ends does not fill the disk. Data made in
memory, front-ends that only reshape their input (waveform, image) and plain ``nn.Module``
front-ends are computed in memory, the same way.

Features stay on the GPU when they fit in a share of its free memory; otherwise they are gathered
in pinned host memory and the training loop copies one batch at a time.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from harness.core.errors import HarnessError
from harness.data.cache import cache_budget, cached_array, make_room
from harness.data.datasets import Dataset
from harness.frontends import features as frontends, spectral

DEVICE_MEMORY_SHARE = 0.5  # features may take this share of the free device memory; beyond it they stream
BATCH = 256  # clips per front-end call; fixed, so that features never depend on who computed them


def _feature_home(device: torch.device, nbytes: int) -> torch.device:
    """Keep features on the GPU when they fit, else in (pinned) host memory, saying so once."""
    if device.type != "cuda" or nbytes <= DEVICE_MEMORY_SHARE * torch.cuda.mem_get_info(device)[0]:
        return device
    print(f"features need {nbytes / 2**30:.1f} GiB, more than {DEVICE_MEMORY_SHARE:.0%} of free GPU memory: "
          f"streaming batches from pinned host memory instead")
    return torch.device("cpu")


def move_home(part: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``part`` where training reads it: on the device when it fits there, else in pinned host memory."""
    home = _feature_home(device, part.numel() * part.element_size())
    if home == device:
        return part.to(device)
    return part.to(home).pin_memory() if device.type == "cuda" else part.to(home)


class FeaturesTooSlow(HarnessError, TimeoutError):
    """A front-end whose features were not computed before the run's time limit."""


def _batches(frontend: nn.Module, x: np.ndarray, indices: np.ndarray, device: torch.device,
             deadline: float | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """The front-end over ``indices`` in fixed batches; past ``deadline`` (``time.monotonic``) it stops."""
    frontend = frontend.to(device)
    with torch.no_grad():
        for i in range(0, len(indices), BATCH):
            if deadline is not None and time.monotonic() > deadline:
                raise FeaturesTooSlow(f"features through {frontend.__class__.__name__} were not ready within the "
                                      f"run's time limit ({i} of {len(indices)} clips done; --time-limit)")
            yield i, frontend(torch.from_numpy(np.ascontiguousarray(x[indices[i:i + BATCH]])).to(device))


def compute_features(frontend: nn.Module, x: np.ndarray, indices: np.ndarray, device: torch.device,
                     deadline: float | None = None) -> torch.Tensor:
    """Run the front-end over the selected clips in batches on ``device``.

    The result stays on ``device`` when it fits there; otherwise it is gathered in pinned host
    memory and the training loop copies one batch at a time.
    """
    parts, home = [], None
    for _, part in _batches(frontend, x, indices, device, deadline):
        home = home or _feature_home(device, part[0].numel() * part.element_size() * len(indices))
        parts.append(part.to(home))
    if not parts:
        return torch.empty(0, device=device)
    out = torch.cat(parts)
    return out.pin_memory() if home != device and device.type == "cuda" else out


@dataclass(frozen=True)
class FeatureTable:
    """The features of every clip of a dataset: a memory-mapped cache file or a tensor in memory."""

    rows: np.ndarray | torch.Tensor
    device: torch.device

    def take(self, indices: np.ndarray) -> torch.Tensor:
        """The features of the clips ``indices``, where training reads them (see ``_feature_home``)."""
        if isinstance(self.rows, torch.Tensor):
            return move_home(self.rows[torch.as_tensor(indices, device=self.rows.device)], self.device)
        return move_home(torch.from_numpy(np.ascontiguousarray(self.rows[np.asarray(indices)])), self.device)


def feature_table(frontend: nn.Module, data: Dataset, device: torch.device, deadline: float | None = None) -> FeatureTable:
    """Every clip of ``data`` through ``frontend``: from the feature cache, or computed (and cached)
    by ``deadline`` (``time.monotonic``; None: no limit)."""
    path = cache_path(frontend, data, device)
    if path is not None:
        rows = _cached(path, frontend, data, device, deadline)
        if rows is not None:
            return FeatureTable(rows, device)
    return FeatureTable(compute_features(frontend, data.x, np.arange(len(data.x)), device, deadline), device)


def _cached(path: Path, frontend: nn.Module, data: Dataset, device: torch.device,
            deadline: float | None = None) -> np.ndarray | None:
    """The cache file's rows, built now if missing; None when the cache is off or they would not fit."""
    budget = cache_budget()
    if budget == 0:
        return None
    try:  # published whole (renamed into place), so a file that loads is complete
        rows = np.load(path, mmap_mode="r")
    except (OSError, ValueError):  # missing, or damaged: built (again) below
        rows = None
    if rows is not None:
        with contextlib.suppress(OSError):  # a read-only data root still serves its features
            os.utime(path)  # recently used: the last to be evicted
        return rows
    probe = next(_batches(frontend, data.x, np.arange(1), device))[1]
    if probe.dtype != torch.float32:
        return None
    shape = (len(data.x), *probe.shape[1:])
    if not path.exists() and not make_room(path.parent, 4 * int(np.prod(shape)), budget):
        return None

    def fill(out: np.ndarray) -> None:
        for i, part in _batches(frontend, data.x, np.arange(len(data.x)), device, deadline):
            out[i:i + len(part)] = part.cpu().numpy()
    return cached_array(path, shape, fill)


def cache_path(frontend: nn.Module, data: Dataset, device: torch.device) -> Path | None:
    """Where the features of ``data`` through ``frontend`` are cached, or None if they are not."""
    if data.cache is None or not isinstance(frontend, frontends.Frontend) or not frontend.cache_features:
        return None
    what = {"params": frontend.params(), "code": _code_digest(inspect.getsourcefile(type(frontend))),
            "torch": torch.__version__, "torchaudio": spectral.VERSION, "device": device_kind(device)}
    digest = hashlib.sha256(json.dumps(what, sort_keys=True, default=repr).encode()).hexdigest()[:16]
    return data.cache.parent / "features" / f"{data.cache.stem}--{type(frontend).__name__}-{digest}.npy"


@functools.cache
def _code_digest(source_file: str) -> str:
    """The front-end's own file and the front-end package (its helpers): an edit is a new key."""
    files = sorted(Path(frontends.__file__).parent.glob("*.py")) + [Path(source_file)]
    return hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()


def device_kind(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} cuda {torch.version.cuda}"
    return f"{device.type} {torch.backends.cpu.get_cpu_capability()}"
