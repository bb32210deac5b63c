"""Which process owns a file being written or a run being trained, and whether it still lives.

A process marks what it has in hand with its owner tag ``host~pid~start``; ``start`` is the
process's start time, so a pid that the kernel later gave to an unrelated process is not taken
for the owner. Temporary files carry the tag in their name, run claims in their content.

Anything tagged by a process of this host that no longer runs is a leftover of a crash: no
live process can be writing it, so removing it is safe while other processes work beside.
An owner on another host (a shared results folder) cannot be checked: its temporary files are
left alone. Run claims need no such guess: they are file locks, which die with their owner.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import socket
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

from harness.core import disk
from harness.core.faults import crash_point

CLAIM_SUFFIX = ".claim"
TAGGED = re.compile(r"~(?P<tag>[^~/]+~\d+~\d+)~[0-9a-f]+\.tmp$")
LEGACY_CACHE = re.compile(r"\.tmp(?P<pid>\d+)\.npy$")
LEGACY_RESULT = re.compile(r"^\.fold\d+-trial\d+\.json\.[A-Za-z0-9_]{8}$")
LEGACY_AGE_S = 3600


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "localhost"


def _start_time(pid: int) -> int:
    """The process's start time in clock ticks since boot (Linux), or 0 where /proc cannot tell."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return 0


def process_age() -> float | None:
    """Seconds since this process started (its command was typed), or None where /proc cannot tell."""
    ticks = _start_time(os.getpid())
    return time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK") if ticks else None


def owner_tag() -> str:
    """This process, as ``host~pid~start``."""
    pid = os.getpid()
    return f"{_host()}~{pid}~{_start_time(pid)}"


def is_alive(tag: str) -> bool | None:
    """Whether the owner still runs: True or False on this host, None for an owner on another host."""
    host, pid, start = tag.split("~")
    if host != _host():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        pass
    return start == "0" or _start_time(int(pid)) == int(start)


def temp_path(path: Path) -> Path:
    """A fresh hidden name beside ``path`` for writing it, tagged with this process as the owner."""
    return path.with_name(f".{path.name}~{owner_tag()}~{uuid.uuid4().hex[:8]}.tmp")


@contextmanager
def atomic(path: Path, text: bool = False, crash: str = "") -> Iterator[IO]:
    """``with atomic(path) as fh:`` writes a temporary file beside ``path`` (``temp_path``; utf-8
    when ``text``), then fsyncs it and renames it over ``path``. Any failure, a full disk or a
    crash point (``crash``, before the rename) included, leaves ``path`` as it was and no temporary
    file. The file gets the permissions the umask allows, like any other."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "w", encoding="utf-8") if text else os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        if crash:
            crash_point(crash)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: bytes) -> None:
    """``data`` as the whole of ``path``, written through ``atomic``: the old file or the new one, never half."""
    with atomic(path) as fh:
        fh.write(data)


# --- run claims ----------------------------------------------------------------------------
# A claim is a file beside the run's result, flock-ed by its owner for as long as it works on
# the run. The kernel drops the lock when the owner dies, however it dies, so a claim left by a
# crash is free for the next process without any guessing (on NFS the lock spans hosts).

_held: dict[Path, int] = {}  # claims this process holds: claim file -> locked descriptor


def claim_path(result: Path) -> Path:
    return result.with_name(f".{result.name}{CLAIM_SUFFIX}")


def _open(path: Path, create: bool) -> int:
    """``path`` opened for its lock: to write where it can be (NFS locks only such files), else to
    read (a read-only store, whose stale claims are still told from held ones)."""
    try:
        return os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o666)
    except OSError as err:
        if create or err.errno not in disk.REFUSED:
            raise
        return os.open(path, os.O_RDONLY)


def _lock(path: Path, create: bool) -> int | None:
    """A descriptor of ``path`` holding its exclusive lock, or None if someone else holds it (or,
    on a read-only NFS store, no lock can be taken to tell)."""
    while True:
        fd = _open(path, create)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if isinstance(err, BlockingIOError) or err.errno == errno.EBADF:
                return None
            raise
        try:  # the last owner may have removed the file between our open and our lock: try again
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            if not create:
                os.close(fd)
                raise
        os.close(fd)


def _holder(path: Path) -> str:
    try:
        host, pid, _ = json.loads(path.read_text())["owner"].split("~")
        return f"pid {pid} on {host}"
    except (OSError, ValueError, KeyError):
        return "another process"


def claim(result: Path) -> str | None:
    """Claim the run whose result goes to ``result``: None on success, else who holds it. A store
    that cannot take the claim (full, read-only) raises ``disk.DiskError`` and keeps no claim file."""
    path = claim_path(result)
    note = json.dumps({"owner": owner_tag(), "since": time.time()}).encode()
    with disk.writing(path.parent, disk.RESULTS, len(note)):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = _lock(path, create=True)
        if fd is None:
            return _holder(path)
        try:
            os.ftruncate(fd, 0)
            if os.write(fd, note) != len(note):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        except OSError:
            path.unlink(missing_ok=True)  # while still locked, as in release
            os.close(fd)
            raise
    _held[path] = fd
    return None


def release(result: Path) -> None:
    """Drop this process's claim on a run (finished, failed or interrupted); removes its file."""
    fd = _held.pop(claim_path(result), None)
    if fd is not None:
        claim_path(result).unlink(missing_ok=True)  # while still locked: nobody can take a removed file
        os.close(fd)


def _unheld(path: Path, remove: bool) -> bool:
    """Whether nobody holds the claim file ``path`` (its owner died); ``remove`` deletes it then."""
    try:
        fd = _lock(path, create=False)
    except FileNotFoundError:
        return False
    if fd is None:
        return False
    if remove:
        path.unlink(missing_ok=True)
    os.close(fd)
    return True


# --- leftovers -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Leftover:
    path: Path
    why: str
    size: int


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


def _legacy(path: Path) -> str | None:
    """Temporary files of harness versions before owner tags: a cache array named by its pid, a
    result file with mkstemp's random suffix. Taken as leftovers an hour after their last write."""
    if time.time() - path.stat().st_mtime < LEGACY_AGE_S:
        return None
    if match := LEGACY_CACHE.search(path.name):
        return None if is_alive(f"{_host()}~{match['pid']}~0") else "cache array of an earlier harness version's crash"
    return "result file of an earlier harness version's crash" if LEGACY_RESULT.match(path.name) else None


def _why(path: Path) -> str | None:
    """Why ``path`` is a leftover, or None when it is not one (or its owner may still be at work)."""
    if match := TAGGED.search(path.name):
        host, pid, _ = match["tag"].split("~")
        return f"written by pid {pid} on {host}, which is gone" if is_alive(match["tag"]) is False else None
    if path.name.endswith(CLAIM_SUFFIX):
        return f"claim of a run by {_holder(path)}, which is gone" if _unheld(path, remove=False) else None
    return _legacy(path)


def leftovers(folder: Path, recursive: bool = True) -> list[Leftover]:
    """Temporary files and folders of dead processes, and claims nobody holds, under ``folder``
    (or directly in it, not ``recursive``)."""
    entries = (folder.rglob("*") if recursive else folder.iterdir()) if folder.is_dir() else []
    candidates = sorted(p for p in entries if p.name.startswith(".") or LEGACY_CACHE.search(p.name))
    return [Leftover(p, why, _size(p)) for p in candidates if (why := _why(p))]


def remove(leftover: Leftover) -> None:
    """Remove one leftover; a claim only if it is still stale (a live process may just have taken it over).
    A folder that refuses (read-only) raises ``disk.DiskError``."""
    path = leftover.path
    with disk.writing(path.parent, "leave it: a leftover is never read as a result or a cache"):
        if path.name.endswith(CLAIM_SUFFIX):
            _unheld(path, remove=True)  # only if it is still unheld: a live process may just have taken it
        elif path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def clean(folder: Path, recursive: bool = True) -> list[Leftover]:
    """Remove what crashed processes left under ``folder``; returns what was removed. A leftover
    that cannot be removed (a read-only folder) stays: it is never read as a result or a cache."""
    removed = []
    for leftover in leftovers(folder, recursive):
        try:
            remove(leftover)
        except disk.DiskError as err:
            if err.errno not in disk.REFUSED:
                raise
            continue
        removed.append(leftover)
    return removed
