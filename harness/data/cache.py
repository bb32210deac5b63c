"""Arrays cached on disk: built once by one process, published atomically, memory-mapped after.

Decoded audio (``harness.data.datasets``) and computed features (``harness.training.features``)
both live here. A cache file's name is its key: whatever could change its content is in it, so a
file is either right or never looked up again.
"""
from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import Callable

import numpy as np
from filelock import FileLock, Timeout

from harness.core import disk, owners
from harness.core.errors import HarnessError

BUDGET_ENV, DEFAULT_BUDGET_GB = "BENCH_FEATURE_CACHE_GB", 20.0  # the feature cache's size limit
CHUNK = 1 << 24  # bytes written at once where a file system cannot allocate ahead


def _load(path: Path, shape: tuple[int, ...], dtype, say: bool = True) -> np.ndarray | None:
    """The finished array at ``path``, or None when it is missing or not what was asked for."""
    if not path.exists():
        return None
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as err:  # damaged on disk: rebuilt, never trusted
        if say:
            print(f"{path}: unreadable cache file ({err}); building it again")
        return None
    return arr if arr.shape == shape and arr.dtype == dtype else None


def _nbytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    return int(np.prod(shape)) * dtype.itemsize


def _used(path: Path, arr: np.ndarray) -> np.ndarray:
    """``arr``, its file marked as recently used (the last to be evicted) where the folder allows."""
    with contextlib.suppress(OSError):  # a read-only data root still serves its arrays
        os.utime(path)
    return arr


def cached_array(path: Path, shape: tuple[int, ...], fill: Callable[[np.ndarray], None],
                 dtype=np.float32) -> np.ndarray:
    """Memory-map ``path`` if it is complete, else build it with ``fill`` and publish atomically.

    A finished file is read without a lock (it was renamed into place whole), so a read-only data
    root serves its warm caches. One process builds a cache file at a time (a file lock beside
    it); another one that needs it waits, then maps the finished array instead of building it a
    second time. A folder that cannot take the file (full, read-only) raises ``disk.DiskError``.
    """
    dtype = np.dtype(dtype)
    if (found := _load(path, shape, dtype, say=False)) is not None:
        return _used(path, found)
    owners.clean(path.parent, recursive=False)  # arrays half-written by crashed processes
    lock = FileLock(path.with_name(path.name + ".lock"))
    with disk.writing(path.parent, disk.DATA, _nbytes(shape, dtype)):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            print(f"waiting for another process that is building {path.name}")
            lock.acquire()
    try:
        if (found := _load(path, shape, dtype)) is not None:
            return _used(path, found)
        _build(path, shape, fill, dtype)
        return np.load(path, mmap_mode="r")
    finally:
        lock.release()


def _build(path: Path, shape: tuple[int, ...], fill: Callable[[np.ndarray], None], dtype: np.dtype) -> None:
    """Fill a temporary file whose blocks are all allocated first (``posix_fallocate``), so that a
    disk that fills up fails here with ENOSPC, never later as SIGBUS in a write to the map."""
    tmp = owners.temp_path(path)
    try:
        with disk.writing(path.parent, disk.DATA, _nbytes(shape, dtype)):
            header = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
            data = header.offset
            del header  # unmapped before an error can keep it (and the file system) busy
            _allocate(tmp, data)
        arr = np.load(tmp, mmap_mode="r+")
        fill(arr)
        arr.flush()
        del arr
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _allocate(path: Path, data: int) -> None:
    """Give every byte of ``path`` its disk blocks, or raise ENOSPC; a file system that cannot
    allocate ahead (EOPNOTSUPP) gets its array (from byte ``data``, after the header) written as zeros."""
    fd = os.open(path, os.O_RDWR)
    try:
        total = os.fstat(fd).st_size
        try:
            os.posix_fallocate(fd, 0, total)
        except OSError as err:
            if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
            for start in range(data, total, CHUNK):
                os.pwrite(fd, bytes(min(CHUNK, total - start)), start)
    finally:
        os.close(fd)


def make_room(folder: Path, incoming: int, budget: int) -> bool:
    """Evict the least recently used arrays in ``folder`` until ``incoming`` more bytes fit in ``budget``.

    Returns False (evicting nothing) when ``incoming`` alone exceeds the budget. A process still
    reading an evicted array keeps its mapping: the file's data lives until it is unmapped.
    """
    if incoming > budget:
        return False
    files = []
    for path in folder.glob("*.npy") if folder.is_dir() else ():
        try:  # another process may evict the same file meanwhile
            files.append((path.stat().st_mtime, path.stat().st_size, path))
        except FileNotFoundError:
            continue
    total = sum(size for _, size, _ in files)
    for _, size, old in sorted(files):
        if total + incoming <= budget:
            break
        total -= size
        old.unlink(missing_ok=True)
    return True


def cache_budget() -> int:
    """The feature cache's size limit in bytes, from ``$BENCH_FEATURE_CACHE_GB`` (default 20 GB)."""
    text = os.environ.get(BUDGET_ENV, str(DEFAULT_BUDGET_GB))
    try:
        gb = float(text)
    except ValueError:
        gb = -1.0
    if not 0 <= gb < float("inf"):
        raise HarnessError(f"{BUDGET_ENV}={text!r}: give the feature cache's size in GB (0 turns it off)")
    return int(gb * 1e9)
