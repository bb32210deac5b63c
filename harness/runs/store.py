"""The result store: one sealed JSON file per run at ``Run.path``, written atomically.

Nothing is written over by accident: a run's path is a function of its whole identity, so two
runs that could give different numbers never share a file.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

import platformdirs

from harness.core.paths import PROJECT_ROOT
from harness.core.faults import crash_point
from harness.core.owners import temp_path
from harness.runs.records import Record, RecordError, from_json, seal


PUBLISHED_RESULTS = PROJECT_ROOT / "results"  # the published board's runs: `make leaderboard` stores here


def results_root(override: str | Path | None = None) -> Path:
    """Where results are stored: the argument, ``$BENCH_RESULTS``, or the user's data folder. A
    user's own runs never land among the published board's (``results/``, from another machine),
    where they would be skipped as finished or overwrite nothing of their own."""
    root = override or os.environ.get("BENCH_RESULTS") or Path(platformdirs.user_data_dir("audio-bench")) / "results"
    return Path(root).expanduser()


def write_json_atomic(path: Path, record: dict[str, Any]) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``.

    A crash or a full disk leaves either the old file or the new one, never half of one; the
    temporary file is tagged with this process (``harness.core.owners``), so a later run removes it
    once this process is gone. The file gets the permissions the umask allows, like any other.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "w") as fh:
            json.dump(record, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        crash_point("result")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_result(path: Path) -> dict[str, Any] | None:
    """The record at ``path``, or None when it is missing or unreadable."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def result_files(root: Path) -> list[Path]:
    """Every result file under ``root``, in path order."""
    return sorted(root.rglob("fold*-trial*.json"))


def iter_results(root: Path) -> Iterator[tuple[Path, dict[str, Any] | None]]:
    """Every result file under ``root`` with its raw JSON (None if it cannot be parsed)."""
    for path in result_files(root):
        yield path, read_result(path)


def write_record(path: Path, record: Record) -> None:
    write_json_atomic(path, seal(record.to_json()))


def load_record(path: Path) -> Record:
    """The record stored at ``path``; ``RecordError`` names the file and what is wrong with it."""
    data = read_result(path)
    if data is None:
        raise RecordError(f"{path}: unreadable or corrupt JSON")
    try:
        return from_json(data)
    except RecordError as err:
        raise RecordError(f"{path}: {err}") from None
