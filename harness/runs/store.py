"""The result store: one sealed JSON file per run at ``Run.path``, written atomically.

Nothing is written over by accident: a run's path is a function of its whole identity, so two
runs that could give different numbers never share a file.
"""
from __future__ import annotations

import fnmatch
import json
import os
import stat
from pathlib import Path
from typing import Any, Iterator

import platformdirs

from harness.core import disk, owners
from harness.core.paths import PROJECT_ROOT
from harness.runs.records import Record, RecordError, from_json, seal


PUBLISHED_RESULTS = PROJECT_ROOT / "results"  # the published board's runs: `make leaderboard` stores here
RESULT_NAME = "fold*-trial*.json"
MAX_RESULT_BYTES = 16_000_000  # the largest real result (results/) is 8 KB; predictions take ~7 bytes a test clip
MAX_RESULT_DEPTH = 32          # a record nests 4 deep


def results_root(override: str | Path | None = None) -> Path:
    """Where results are stored: the argument, ``$BENCH_RESULTS``, or the user's data folder. A
    user's own runs never land among the published board's (``results/``, from another machine),
    where they would be skipped as finished or overwrite nothing of their own."""
    root = override or os.environ.get("BENCH_RESULTS") or \
        disk.user_folder(platformdirs.user_data_dir("audio-bench"), "BENCH_RESULTS", "result store") / "results"
    return Path(root).expanduser()


def write_json_atomic(path: Path, record: dict[str, Any]) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``.

    A crash or a full disk leaves either the old file or the new one, never half of one; the
    temporary file is tagged with this process (``harness.core.owners``), so a later run removes it
    once this process is gone. The file gets the permissions the umask allows, like any other. A
    store that cannot take it (full, read-only) raises ``disk.DiskError``, one line saying so.
    """
    with disk.writing(path.parent, disk.RESULTS, lambda: len(json.dumps(record, indent=1, sort_keys=True))):
        with owners.atomic(path, text=True, crash="result") as fh:
            json.dump(record, fh, indent=1, sort_keys=True)


# --- reading: a result file is input from anyone (a shared store, a pull request) -------------

def link_out(root: Path, path: Path) -> Path | None:
    """The symbolic link that takes ``path`` out of the store at ``root``: ``path`` itself or a
    folder between the two; None when it stays inside (links within the store are followed).

    The one rule for links: the planner (through ``load_record``), the board and ``bench doctor``
    all refuse what this names, and ``bench run`` and ``bench sweep`` store nothing through it."""
    base, name = os.path.abspath(root).rstrip(os.sep), os.fspath(path)
    if ".." in name.split(os.sep) or not (name := os.path.abspath(name)).startswith(base + os.sep):
        return None if _inside(os.path.realpath(path), root) else path  # judged by where it leads
    step = base
    for part in name[len(base) + 1:].split(os.sep):  # one lstat a level: a result's path crosses five
        step += os.sep + part
        if os.path.islink(step) and not _inside(os.path.realpath(step), root):
            return Path(step)
    return None


def _inside(real: str, root: Path) -> bool:
    home = os.path.realpath(root)
    return real == home or real.startswith(home.rstrip(os.sep) + os.sep)


def outside_store(root: Path, path: Path) -> str | None:
    """Why ``path`` is refused as part of the store at ``root`` (``link_out``), or None."""
    if (link := link_out(root, path)) is None:
        return None
    where = "" if os.path.abspath(link) == os.path.abspath(path) else f"its folder {link} is "
    return f"{where}a link out of the result store (to {os.path.realpath(link)}): refused, not read"


def store_of(path: Path) -> Path | None:
    """The store holding the result at ``path`` by ``Run.path``'s layout
    (``root/dataset/submission/e<epochs>/variant/file``); None for a path too short for one."""
    return path.parents[4] if len(path.parents) > 4 else None


def result_json(path: Path, root: Path | None = None) -> dict[str, Any]:
    """The JSON object in the result file at ``path`` (in the store ``root``, by default
    ``store_of(path)``); ``RecordError`` says why there is none, without the path. Refused unread:
    a link out of the store, anything but a regular file (a FIFO would hang the reader), more than
    ``MAX_RESULT_BYTES``; refused after parsing: nesting deeper than ``MAX_RESULT_DEPTH``."""
    root = store_of(path) if root is None else root
    if root is not None and (why := outside_store(root, path)):
        raise RecordError(why)
    try:
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise RecordError("not a regular file: refused, not read")
            data = fh.read(info.st_size + 1) if info.st_size <= MAX_RESULT_BYTES else b""
            if len(data) > info.st_size:  # it grew while read
                data += fh.read(MAX_RESULT_BYTES + 1 - len(data))
    except OSError as err:
        raise RecordError(f"unreadable ({err.strerror or err})") from None
    if info.st_size > MAX_RESULT_BYTES or len(data) > MAX_RESULT_BYTES:
        raise RecordError(f"{max(info.st_size, len(data)) / 1e6:,.1f} MB, over the {MAX_RESULT_BYTES / 1e6:.0f} MB "
                          f"a result file may hold: refused, not read")
    return _parsed(data)


def _parsed(data: bytes) -> dict[str, Any]:
    deep = f"nested deeper than {MAX_RESULT_DEPTH} levels (a record nests 4): refused"
    try:
        value = json.loads(data)
    except RecursionError:
        raise RecordError(deep) from None
    except ValueError:
        raise RecordError("unreadable or corrupt JSON") from None
    if not isinstance(value, dict):
        raise RecordError("unreadable or corrupt JSON (not an object)")
    if _deeper_than(value, MAX_RESULT_DEPTH):
        raise RecordError(deep)
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether lists and objects nest in ``value`` more than ``limit`` levels (walked level by level)."""
    level = [value]
    for _ in range(limit):
        below = []
        for items in (v.values() if isinstance(v, dict) else v for v in level):
            if not {dict, list}.isdisjoint(map(type, items)):  # a list of numbers is passed over at C speed
                below += [c for c in items if isinstance(c, (dict, list))]
        if not below:
            return False
        level = below
    return True


def read_result(path: Path, root: Path | None = None) -> dict[str, Any] | None:
    """The JSON object in the result file at ``path``, or None when there is none (``result_json``)."""
    try:
        return result_json(path, root)
    except RecordError:
        return None


def result_files(root: Path) -> list[Path]:
    """Every result file under ``root``, in path order, and every link there that leads out of the
    store (reading one says why it is refused). Links are never walked into: one within the store
    is left out, since what it points to is listed by its own path (nothing is read twice, a loop
    of links ends); a folder that cannot be listed is passed over."""
    found, folders = [], [os.fspath(root)]
    while folders:
        try:
            with os.scandir(folders.pop()) as entries:
                for entry in entries:
                    if entry.is_symlink():
                        if _listed_link(root, entry):
                            found.append(Path(entry.path))
                    elif entry.is_dir():
                        folders.append(entry.path)
                    elif fnmatch.fnmatchcase(entry.name, RESULT_NAME):
                        found.append(Path(entry.path))
        except OSError:
            continue
    return sorted(found)


def _listed_link(root: Path, entry: os.DirEntry) -> bool:
    """A link listed, to be reported: one out of the store (to a folder, or named like a result),
    or a result's name linked to nothing."""
    named = fnmatch.fnmatchcase(entry.name, RESULT_NAME)
    if link_out(root, Path(entry.path)) is not None:
        return named or entry.is_dir()
    return named and not os.path.exists(entry.path)


def iter_results(root: Path) -> Iterator[tuple[Path, dict[str, Any] | None]]:
    """Every result file under ``root`` (``result_files``) with its raw JSON (None: ``result_json`` says why)."""
    for path in result_files(root):
        yield path, read_result(path, root)


def write_record(path: Path, record: Record) -> None:
    write_json_atomic(path, seal(record.to_json()))


def load_record(path: Path, root: Path | None = None) -> Record:
    """The record stored at ``path`` (in the store ``root``, by default ``store_of(path)``);
    ``RecordError`` names the file and what is wrong with it."""
    try:
        return from_json(result_json(path, root))
    except RecordError as err:
        raise RecordError(f"{path}: {err}") from None
