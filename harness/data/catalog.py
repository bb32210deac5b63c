"""The dataset catalog: ``datasets.toml`` parsed into validated, frozen ``DatasetSpec``s.

Every key is checked, so a typo is an error that names the file, the table and the
closest valid key, never a silently ignored setting.
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError
from harness.core.paths import PROJECT_ROOT
from harness.core.registry import Registry, check_name, did_you_mean

DEFAULT_CATALOG = PROJECT_ROOT / "datasets.toml"

KINDS = ("audio", "image", "synthetic")
LENGTH_POLICIES = ("pad", "crop", "loop")
METADATA_KEYS = {
    "csv": {"format", "path", "audio", "label", "fold", "where"},
    "filename": {"format", "pattern", "label", "recursive"},
    "folders": {"format"},
}
FOLD_KEYS = {
    "official": {"protocol", "k"},
    "by_index": {"protocol", "k", "field", "size"},
    "stratified": {"protocol", "k", "seed"},
    "holdout": {"protocol", "k", "seed", "test_fraction"},  # k: folds of the split (1 / test_fraction)
}
TOP_KEYS = {
    "version", "kind", "source", "description", "url", "archive_sha256", "archive_root",
    "fingerprint", "sample_rate", "clip_seconds", "length_policy", "num_classes", "class_names",
    "metadata", "folds", "image_size", "per_class", "clips",
}
REQUIRED = {"version", "kind", "num_classes", "folds"}
TYPES = {
    "version": str, "kind": str, "source": str, "description": str, "url": str, "archive_sha256": str,
    "archive_root": str, "fingerprint": str, "sample_rate": int, "clip_seconds": (int, float),
    "length_policy": str, "num_classes": int, "class_names": list, "metadata": dict, "folds": dict,
    "image_size": list, "per_class": int, "clips": int,
}
POSITIVE = ("sample_rate", "clip_seconds", "num_classes", "per_class", "clips")


class CatalogError(HarnessError, ValueError):
    """A ``datasets.toml`` entry that does not follow the schema."""


@dataclass(frozen=True)
class DatasetSpec:
    """One declared dataset. Fields mirror the keys of its ``datasets.toml`` table."""

    name: str
    version: str
    kind: str
    num_classes: int
    folds: dict[str, Any]
    source: str = ""
    description: str = ""
    url: str = ""
    archive_sha256: str = ""
    archive_root: str = ""
    fingerprint: str = ""
    sample_rate: int = 16000
    clip_seconds: float = 1.0
    length_policy: str = "pad"
    class_names: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    image_size: tuple[int, int] = (128, 128)
    per_class: int = 20
    clips: int = 0  # the clips a complete copy has (0: not declared); an import of fewer is refused

    @property
    def num_samples(self) -> int:
        return round(self.sample_rate * self.clip_seconds)

    @property
    def num_folds(self) -> int:
        return int(self.folds["k"])

    @property
    def eval_folds(self) -> list[int]:
        """Test folds of a full evaluation: fold 1 only for a holdout split, else every fold."""
        return [1] if self.folds["protocol"] == "holdout" else list(range(1, self.num_folds + 1))


def _check_keys(where: str, keys: set[str], allowed: set[str]) -> None:
    for key in sorted(keys - allowed):
        raise CatalogError(f"{where}: unknown key {key!r}.{did_you_mean(key, sorted(allowed))}")


def _check_choice(where: str, key: str, value: str, choices) -> None:
    if value not in choices:
        raise CatalogError(
            f"{where}: {key} = {value!r} is not one of {', '.join(choices)}.{did_you_mean(value, list(choices))}"
        )


def parse_spec(name: str, table: dict[str, Any], origin: str = "datasets.toml") -> DatasetSpec:
    """Validate one table of the catalog and return its spec."""
    where = f"{origin} [{name}]"
    _check_keys(where, set(table), TOP_KEYS)
    missing = REQUIRED - set(table)
    if missing:
        raise CatalogError(f"{where}: missing required key(s) {', '.join(sorted(missing))}")
    for key, value in table.items():
        if not isinstance(value, TYPES[key]) or isinstance(value, bool):
            raise CatalogError(f"{where}: {key} must be of type {getattr(TYPES[key], '__name__', 'number')}, got {value!r}")
        if key in POSITIVE and value <= 0:
            raise CatalogError(f"{where}: {key} must be positive, got {value!r}")
    if not all(isinstance(n, str) for n in table.get("class_names", [])):
        raise CatalogError(f"{where}: class_names must be strings")
    if not (isinstance(table["folds"].get("k", 0), int) and all(
            isinstance(table["folds"].get(k, 0), (int, float)) for k in ("size", "seed", "test_fraction"))):
        raise CatalogError(f"{where}: folds.k, size and seed must be integers")
    _check_choice(where, "kind", table["kind"], KINDS)
    _check_choice(where, "length_policy", table.get("length_policy", "pad"), LENGTH_POLICIES)
    folds = dict(table["folds"])
    _check_choice(where, "folds.protocol", folds.get("protocol", ""), list(FOLD_KEYS))
    _check_keys(f"{where} folds", set(folds), FOLD_KEYS[folds["protocol"]])
    if int(folds.get("k", 0)) < 2:
        raise CatalogError(f"{where}: folds.k must be at least 2")
    metadata = dict(table.get("metadata", {}))
    if table["kind"] != "synthetic":
        _check_choice(where, "metadata.format", metadata.get("format", ""), list(METADATA_KEYS))
        _check_keys(f"{where} metadata", set(metadata), METADATA_KEYS[metadata["format"]])
    names = tuple(table.get("class_names", ()))
    if names and len(names) != table["num_classes"]:
        raise CatalogError(f"{where}: {len(names)} class_names but num_classes = {table['num_classes']}")
    if table["kind"] == "synthetic" and not names:
        raise CatalogError(f"{where}: class_names is required for kind 'synthetic'")
    values = {k: v for k, v in table.items() if k not in {"metadata", "folds", "class_names", "image_size"}}
    return DatasetSpec(
        name=name, metadata=metadata, folds=folds, class_names=names,
        image_size=tuple(table.get("image_size", (128, 128))),
        **{**values, "source": table.get("source", name)},
    )


def load_catalog(path: Path | str | None = None) -> Registry[DatasetSpec]:
    """Read a catalog file (default: ``$BENCH_DATASETS`` or the project's ``datasets.toml``)."""
    path = Path(path or os.environ.get("BENCH_DATASETS") or DEFAULT_CATALOG)
    try:
        tables = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise CatalogError(f"{path}: no such dataset catalog") from None
    except tomllib.TOMLDecodeError as err:
        raise CatalogError(f"{path}: not valid TOML ({err})") from None
    registry: Registry[DatasetSpec] = Registry("dataset")
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise CatalogError(f"{path}: top-level key {name!r} must be a [table]")
        check_name("dataset", name, f"in {path}; a dataset's name is a folder of the data root and the result store")
        registry.add(name, parse_spec(name, table, origin=path.name))
    return registry
