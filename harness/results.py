"""Result files: one JSON per run (``harness.run.Run.path``), sealed and written atomically.

A run is finished when its file exists with ``status == "ok"`` and the same config hash;
the runner skips exactly those, so an interrupted grid resumes where it stopped.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from harness.catalog import PROJECT_ROOT
from harness.faults import crash_point
from harness.owners import temp_path

SCHEMA = 2  # 2: records hold their run identity (harness.run) and live at Run.path
PACKAGES = ("torch", "torchaudio", "timm", "numpy", "scikit-learn", "soundfile")


def results_root(override: str | Path | None = None) -> Path:
    return Path(override or os.environ.get("BENCH_RESULTS") or PROJECT_ROOT / "results")


def _digest(record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def seal(record: dict[str, Any]) -> dict[str, Any]:
    """Add a checksum over the record, so a hand-edited result is detected and not ranked."""
    return {**record, "checksum": _digest(record)}


def is_sealed(record: dict[str, Any]) -> bool:
    return record.get("checksum") == _digest(record)


def write_json_atomic(path: Path, record: dict[str, Any]) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``.

    A crash or a full disk leaves either the old file or the new one, never half of one; the
    temporary file is tagged with this process (``harness.owners``), so a later run removes it
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


def precision_of(record: dict[str, Any]) -> str:
    """The precision a run trained in; results from before it was recorded ran bf16 on CUDA, fp32 on CPU."""
    return record.get("precision") or ("bf16" if record.get("device") == "cuda" else "fp32")


def is_finished(path: Path, config_hash: str, source_hash: str) -> bool:
    """A sealed, successful run of this config and of this submission code."""
    record = read_result(path)
    return (bool(record) and is_sealed(record) and record.get("status") == "ok"
            and record.get("config_hash") == config_hash and record.get("source_hash") == source_hash)


def iter_results(root: Path) -> Iterator[tuple[Path, dict[str, Any] | None]]:
    """Every result file under ``root`` with its record (None if it cannot be parsed)."""
    for path in sorted(root.rglob("fold*-trial*.json")):
        yield path, read_result(path)


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    try:
        return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions


def hardware(device: "torch.device") -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"CPU x{torch.get_num_threads()} ({cpu})"
