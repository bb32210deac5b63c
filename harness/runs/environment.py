"""The locked environment: what ``requirements.lock`` pins, and where the installed packages differ.

The lock (``make lock``, made by uv) is the environment the test suite, the reproducibility locks
and the published results ran in; ``make install`` installs exactly it. A number depends on the
packages below, so ``bench doctor`` and the test suite compare them with the lock, and the
board marks results made with another torch stack than the lock's.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.version import InvalidVersion, Version

from harness.core.errors import HarnessError
from harness.core.paths import PROJECT_ROOT

LOCK_FILE = PROJECT_ROOT / "requirements.lock"
CHECKED = ("torch", "torchaudio", "torchvision", "timm", "numpy", "soundfile", "soxr")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def normalized(name: str) -> str:
    """A package name as PEP 503 compares them (``Scikit_Learn`` is ``scikit-learn``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(lock: Path | None = None) -> dict[str, str]:
    """Package -> exact version, for every ``name==version`` line of a pip requirements lock
    (by default the project's)."""
    lock = lock or LOCK_FILE
    try:
        return dict(_pins(lock, lock.stat().st_mtime_ns))
    except (OSError, UnicodeDecodeError) as err:
        raise HarnessError(f"{lock}: cannot read the lock ({err}); regenerate it with `make lock`") from err


@functools.lru_cache(maxsize=8)
def _pins(lock: Path, mtime_ns: int) -> tuple[tuple[str, str], ...]:
    """Parsed once per version of the file (the board asks for every record)."""
    text = lock.read_text(encoding="utf-8")
    return tuple((normalized(m[1]), m[2]) for line in text.splitlines() if (m := PIN.match(line)))


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def same_release(installed: str | None, locked: str) -> bool:
    """Equal as released versions: a build tag (``2.11.0+cu130``, ``+cpu``) is the same release."""
    if installed is None:
        return False
    try:
        return Version(installed).public == Version(locked).public
    except InvalidVersion:
        return installed == locked


@dataclass(frozen=True)
class Drift:
    """One checked package whose installed version is not the lock's."""

    package: str
    installed: str | None
    locked: str | None

    def __str__(self) -> str:
        installed = f"{self.installed} installed" if self.installed else "not installed"
        locked = f"{self.locked} locked" if self.locked else "not in the lock"
        return f"{self.package}: {installed}, {locked}"


def drift(lock: Path | None = None, packages: tuple[str, ...] = CHECKED) -> list[Drift]:
    """Every package of ``packages`` whose installed version differs from ``lock``'s."""
    pins = locked_versions(lock)
    found = []
    for name in packages:
        installed, locked = installed_version(name), pins.get(normalized(name))
        if locked is None or not same_release(installed, locked):
            found.append(Drift(name, installed, locked))
    return found


def record_drift(versions: dict[str, str], lock: Path | None = None) -> list[Drift]:
    """The checked packages that a record's stored versions hold at another release than the lock
    (a package the record did not store is not judged); empty when there is no lock to compare with."""
    if not (lock or LOCK_FILE).is_file():
        return []
    pins = locked_versions(lock)
    return [Drift(name, versions[name], pins.get(normalized(name))) for name in CHECKED
            if name in versions and not (normalized(name) in pins and same_release(versions[name], pins[normalized(name)]))]
