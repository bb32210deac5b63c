"""Folders that cannot take a write: full, read-only, not this user's, or under a HOME that is not there.

Every writer of the harness (result store, run claims, cache arrays, the board) turns such an
``OSError`` into one ``DiskError`` through ``failed`` or ``writing``: one line naming the folder,
the space needed and free where known, and what to do. Any other ``OSError`` stays as it is.
"""
from __future__ import annotations

import errno
import getpass
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from harness.core.errors import HarnessError

FULL = {errno.ENOSPC, errno.EDQUOT}
REFUSED = {errno.EROFS, errno.EACCES, errno.EPERM}
RESULTS = "use another result store (--results DIR or BENCH_RESULTS)"  # what to do instead, per writer
DATA = "use another data root (--data-root DIR or BENCH_DATA_ROOT)"
BOARD = "write the board elsewhere (--output FILE)"


class DiskError(HarnessError, OSError):
    """A folder that cannot take what the harness writes there; ``errno`` is the system's."""

    def __str__(self) -> str:  # the line itself, not OSError's "[Errno n] ..."
        return str(self.args[0]) if self.args else ""


def size(count: float) -> str:
    """``count`` bytes as people read them: 83 B, 3.2 kB, 16.4 MB, 2.0 GB."""
    if count < 1000:
        return f"{count:.0f} B"
    for unit in ("kB", "MB", "GB"):
        count /= 1000
        if count < 1000 or unit == "GB":
            break
    return f"{count:.1f} {unit}"


def cannot_write(err: OSError) -> bool:
    """Whether ``err`` says that a folder cannot take a write: it is full, read-only or refused."""
    return isinstance(err, DiskError) or err.errno in FULL | REFUSED


def free_bytes(folder: Path) -> int | None:
    """Bytes an unprivileged user may still write in ``folder`` (or its nearest existing parent)."""
    for where in (folder, *folder.parents):
        try:
            stats = os.statvfs(where)
        except OSError:
            continue
        return stats.f_bavail * stats.f_frsize
    return None


def failed(err: OSError, folder: Path, instead: str, needed: int | None = None) -> OSError:
    """``err`` as a ``DiskError`` naming ``folder`` when it says the folder cannot be written (full,
    read-only, refused), else ``err`` itself. ``instead``: what else the user can do (``RESULTS``...)."""
    if isinstance(err, DiskError) or not cannot_write(err):
        return err
    if err.errno in FULL:
        free = free_bytes(folder)
        known = [f"{size(needed)} needed"] * (needed is not None) + [f"{size(free)} free"] * (free is not None)
        detail = f" ({', '.join(known)})" if known else ""
        line = f"{os.strerror(err.errno)} in {folder}{detail}: free some space there, or {instead}"
    else:
        fix = "mount it writable" if err.errno == errno.EROFS else f"give user {_user()} write access to it"
        line = f"cannot write to {folder}: {os.strerror(err.errno)}; {fix}, or {instead}"
    error = DiskError(line)
    error.errno, error.filename = err.errno, err.filename
    return error


@contextmanager
def writing(folder: Path, instead: str, needed: int | Callable[[], int] | None = None) -> Iterator[None]:
    """Inside, an ``OSError`` that says ``folder`` cannot be written is raised as ``failed`` makes it;
    ``needed`` (bytes, or a function giving them, asked only on failure) is said when it is full."""
    try:
        yield
    except OSError as err:
        if isinstance(err, DiskError) or not cannot_write(err):
            raise
        raise failed(err, folder, instead, needed() if callable(needed) else needed) from err


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def user_folder(default: str, variable: str, what: str) -> Path:
    """``default`` (a platformdirs folder for ``what``), refused with a ``HarnessError`` when it lies
    under a HOME that does not exist: it would be created in that HOME's name."""
    home = Path.home()  # $HOME where it is set
    path = Path(default)
    if not home.is_dir() and (path == home or home in path.parents):
        raise HarnessError(f"HOME={home} does not exist, so there is no default {what} ({path}); set {variable} "
                           f"to a folder, or create {home}")
    return path
