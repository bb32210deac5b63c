"""The dataset catalog: ``datasets.toml`` parsed into validated, frozen ``DatasetSpec``s.

Every key is checked when the catalog is loaded, before anything is read or written: a typo is an
error that names the file, the table and the closest valid key, never a silently ignored setting;
every number lies within ``BOUNDS``; every path a value makes stays inside its folder (``inside``,
the one containment rule); templates and patterns are well-formed.

A dataset's ``metadata`` names its layout (``LAYOUTS``): each ``Layout`` declares the keys its
metadata takes, their check, and how its clips are listed from the folder. The catalog's checks and
``datasets.list_clips`` both read it, so a new layout is one ``register_layout`` call.
"""
from __future__ import annotations

import csv
import os
import re
import string
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from harness.core.errors import DatasetError, HarnessError
from harness.core.paths import PROJECT_ROOT
from harness.core.registry import NAME, Registry, check_name, defined_at, did_you_mean
from harness.data.audio import MAX_RATE, MIN_RATE

DEFAULT_CATALOG = PROJECT_ROOT / "datasets.toml"

KINDS = ("audio", "image", "synthetic")
LENGTH_POLICIES = ("pad", "crop", "loop")
IMAGE_SUFFIXES = {".png"}
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".aif", ".aiff"}  # what soundfile decodes
FOLD_KEYS = {
    "official": {"protocol", "k"},
    "by_index": {"protocol", "k", "field", "size"},
    "stratified": {"protocol", "k", "seed"},
    "holdout": {"protocol", "k", "seed", "test_fraction"},  # k: folds of the split (1 / test_fraction)
}
FOLD_TYPES = {"protocol": str, "k": int, "field": str, "size": int, "seed": int, "test_fraction": (int, float)}
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
BOUNDS: dict[str, tuple[float, float, str]] = {  # key: (least, most, unit), both ends allowed; listed in the README
    "sample_rate": (MIN_RATE, MAX_RATE, " Hz"),  # the rates the audio reader accepts
    "clip_seconds": (0.01, 600, " s"),
    "num_classes": (2, 100_000, ""),
    "per_class": (1, 1_000, ""),  # clips per class of a synthetic dataset
    "clips": (1, 10_000_000, ""),
    "image_size": (8, 4096, " pixels"),  # each of height and width
    "folds.k": (2, 100, ""),
    "folds.size": (1, 1_000_000, ""),
    "folds.seed": (0, 2**32 - 1, ""),
    "folds.test_fraction": (0.01, 0.5, ""),
}
RESERVED = {"cache", "downloads"}  # folders of the data root the harness keeps for itself


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
    origin: str = field(default="datasets.toml", compare=False)  # the catalog file that declares it

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


def inside(root: Path | None, relative: str, where: str, place: str = "",
           error: type[HarnessError] = CatalogError) -> Path:
    """``root / relative`` if it stays inside ``root``, else ``error`` naming ``where`` and the value."""
    inside_all(root, [relative], where, place, error)
    return Path(relative) if root is None else root / relative


def inside_all(root: Path | None, relatives: Iterable[str], where: str, place: str = "",
               error: type[HarnessError] = CatalogError) -> None:
    """Raise ``error`` naming ``where`` and the value unless every one of ``relatives`` stays inside ``root``.

    The one containment rule for every path made from a catalog value, a dataset name or a row of
    metadata: lexically (not empty, not absolute, no ``..`` part), and, where a real ``root`` is
    given (None at load, when it is not known yet), again after resolving symbolic links (each
    folder once, on strings: a dataset lists thousands of files). ``place`` names the root in the
    message (default: the root itself).
    """
    place, real = place or str(root), _Resolver()
    top = real(str(root)).rstrip("/") if root is not None else ""
    for relative in relatives:
        problem = ("is empty" if not relative else "holds a NUL character" if "\0" in relative else
                   "is an absolute path" if relative.startswith("/") else
                   "has a '..' part" if ".." in relative.split("/") else "")
        if problem:
            raise error(f"{where} = {relative!r} {problem}: it must be a relative path inside {place}")
        if root is None:
            continue
        try:
            target = real(os.path.join(root, relative))
        except (OSError, ValueError) as err:
            raise error(f"{where} = {relative!r}: {root / relative} cannot be resolved ({err})") from None
        if target != top and not target.startswith(top + "/"):
            raise error(f"{where} = {relative!r} leads outside {place} through a symbolic link (to {target}); "
                        f"copy the files in instead of linking them")


class _Resolver:
    """``os.path.realpath``, each folder resolved once: a file that is no link resolves to its
    resolved folder and its own name."""

    def __init__(self) -> None:
        self.folders: dict[str, str] = {}

    def __call__(self, path: str) -> str:
        folder, name = os.path.split(path)
        if name in ("", ".", "..") or os.path.islink(path):
            return os.path.realpath(path)
        if folder not in self.folders:
            self.folders[folder] = os.path.realpath(folder)
        return os.path.join(self.folders[folder], name)


def _check_keys(where: str, keys: set[str], allowed: set[str], table: str = "") -> None:
    """Refuse a key not in ``allowed``; naming the ``table`` also lists the keys it takes."""
    for key in sorted(keys - allowed):
        listed = f" in {table}" if table else ""
        known = f" Its keys: {', '.join(sorted(allowed))}." if table else ""
        raise CatalogError(f"{where}: unknown key {key!r}{listed}.{did_you_mean(key, sorted(allowed))}{known}")


def _check_choice(where: str, key: str, value: str, choices) -> None:
    if value not in choices:
        raise CatalogError(
            f"{where}: {key} = {value!r} is not one of {', '.join(choices)}.{did_you_mean(str(value), list(choices))}"
        )


def _check_types(where: str, table: dict[str, Any], types: dict[str, Any], prefix: str = "") -> None:
    for key, value in table.items():
        wanted = types.get(key, object)
        if not isinstance(value, wanted) or (isinstance(value, bool) and wanted is not bool):
            raise CatalogError(f"{where}: {prefix}{key} must be of type {getattr(wanted, '__name__', 'number')}, "
                               f"got {value!r}")


def _check_bound(where: str, key: str, value: float) -> None:
    least, most, unit = BOUNDS[key]
    if not least <= value <= most:  # NaN too: it compares false
        raise CatalogError(f"{where}: {key} = {value!r} is out of bounds: it must be at least {least:,} "
                           f"and at most {most:,}{unit}")


def _check_numbers(where: str, table: dict[str, Any], folds: dict[str, Any]) -> None:
    """Every number within ``BOUNDS``; ``image_size`` is two whole numbers; ``folds.k`` is required."""
    for key, value in table.items():
        if key in BOUNDS and key != "image_size":
            _check_bound(where, key, value)
    size = table.get("image_size", [128, 128])
    if len(size) != 2 or not all(isinstance(n, int) and not isinstance(n, bool) for n in size):
        raise CatalogError(f"{where}: image_size = {size!r} must be two whole numbers [height, width]")
    for n in size:
        _check_bound(where, "image_size", n)
    _check_bound(where, "folds.k", folds.get("k", 0))
    for key, value in folds.items():
        if f"folds.{key}" in BOUNDS:
            _check_bound(where, f"folds.{key}", value)


def _check_folds(where: str, folds: dict[str, Any]) -> None:
    _check_choice(where, "folds.protocol", folds.get("protocol", ""), list(FOLD_KEYS))
    _check_keys(f"{where} folds", set(folds), FOLD_KEYS[folds["protocol"]])
    _check_types(where, folds, FOLD_TYPES, "folds.")
    if folds["protocol"] == "by_index" and not {"field", "size"} <= set(folds):
        raise CatalogError(f"{where}: folds with protocol 'by_index' need field (the index) and size (indices per fold)")


def _check_metadata(where: str, table: dict[str, Any]) -> None:
    """``metadata`` against its layout: a registered format, only the layout's keys, those it needs,
    their types, its paths inside the dataset's folder, then the layout's own check."""
    metadata = table.get("metadata", {})
    _check_choice(where, "metadata.format", metadata.get("format", ""), list(LAYOUTS))
    layout = LAYOUTS.get(metadata["format"])
    _check_keys(where, set(metadata), {"format", *layout.keys}, f"metadata of format {layout.name!r}")
    missing = set(layout.required) - set(metadata)
    if missing:
        raise CatalogError(f"{where}: metadata of format {layout.name!r} needs {', '.join(sorted(missing))}")
    _check_types(where, metadata, {"format": str, **layout.keys}, "metadata.")
    for key in layout.paths:
        if key in metadata:
            inside(None, metadata[key], f"{where}: metadata.{key}", "the dataset's folder")
    layout.check(where, table)


def _check_template(where: str, template: str) -> None:
    """A clip's file from its CSV row: text and ``{column}`` fields, whose text stays inside the folder
    (the file each row makes is checked again when the rows are read)."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as err:
        raise CatalogError(f"{where} = {template!r} is not a well-formed template ({err}); write a CSV column "
                           f"as {{column}} and a literal brace as {{{{ or }}}}") from None
    fields = [(name, spec, conversion) for _, name, spec, conversion in parts if name is not None]
    for name, spec, conversion in fields:
        if not name or name.isdigit() or any(c in name for c in ".[]") or spec or conversion:
            raise CatalogError(f"{where} = {template!r}: a field must be a CSV column's name, as {{column}} "
                               f"(no position, index, attribute, conversion or format)")
    if not fields:
        raise CatalogError(f"{where} = {template!r} names no CSV column, so every row would be the same file; "
                           f"write e.g. 'audio/{{filename}}'")
    inside(None, template, where, "the dataset's folder")


def _check_pattern(where: str, pattern: str, groups: list[str]) -> None:
    """A regular expression on file names (never a path: it only picks files inside the folder)."""
    try:
        compiled = re.compile(pattern)
    except re.error as err:
        raise CatalogError(f"{where} = {pattern!r} is not a valid regular expression ({err})") from None
    for group in groups:
        if group not in compiled.groupindex:
            raise CatalogError(f"{where} = {pattern!r} has no group (?P<{group}>...), which the label or the "
                               f"folds name")


def _check_paths(where: str, name: str, table: dict[str, Any]) -> None:
    """The folder in the data root, the archive's folder and the download's file name."""
    source = table.get("source", name)
    inside(None, source, f"{where}: source", "the data root")
    if not NAME.fullmatch(source) or source in RESERVED:
        reason = "a folder the harness keeps in the data root" if source in RESERVED else "not a dataset name"
        raise CatalogError(f"{where}: source = {source!r} is {reason}: use the name of the folder in the data "
                           f"root, lower-case letters, digits and _ (usually the table's own name)")
    if table.get("archive_root"):
        inside(None, table["archive_root"], f"{where}: archive_root", "the archive")
    if table.get("url"):
        if not re.match(r"https?://", table["url"]):
            raise CatalogError(f"{where}: url = {table['url']!r} must start with https:// or http://")
        inside(None, Path(table["url"]).name, f"{where}: url's file name", "the data root's downloads folder")


def parse_spec(name: str, table: dict[str, Any], origin: str = "datasets.toml") -> DatasetSpec:
    """Validate one table of the catalog and return its spec."""
    where = f"{origin} [{name}]"
    _check_keys(where, set(table), TOP_KEYS)
    missing = REQUIRED - set(table)
    if missing:
        raise CatalogError(f"{where}: missing required key(s) {', '.join(sorted(missing))}")
    _check_types(where, table, TYPES)
    if not all(isinstance(n, str) for n in table.get("class_names", [])):
        raise CatalogError(f"{where}: class_names must be strings")
    _check_choice(where, "kind", table["kind"], KINDS)
    _check_choice(where, "length_policy", table.get("length_policy", "pad"), LENGTH_POLICIES)
    folds = dict(table["folds"])
    _check_folds(where, folds)
    _check_numbers(where, table, folds)
    metadata = dict(table.get("metadata", {}))
    if table["kind"] != "synthetic":
        _check_metadata(where, table)
    _check_paths(where, name, table)
    names = tuple(table.get("class_names", ()))
    if names and len(names) != table["num_classes"]:
        raise CatalogError(f"{where}: {len(names)} class_names but num_classes = {table['num_classes']}")
    if table["kind"] == "synthetic" and not names:
        raise CatalogError(f"{where}: class_names is required for kind 'synthetic'")
    values = {k: v for k, v in table.items() if k not in {"metadata", "folds", "class_names", "image_size"}}
    return DatasetSpec(
        name=name, metadata=metadata, folds=folds, class_names=names,
        image_size=tuple(table.get("image_size", (128, 128))),
        **{**values, "source": table.get("source", name)}, origin=origin,
    )


def _read_catalog(path: Path) -> dict[str, Any]:
    """The catalog's tables; unreadable, non-UTF-8 or invalid TOML is one line naming the file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CatalogError(f"{path}: no such dataset catalog") from None
    except OSError as err:
        raise CatalogError(f"{path}: cannot read the dataset catalog ({err.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise CatalogError(f"{path}: not UTF-8 text (byte {data[err.start]:#04x} at offset {err.start}, line "
                           f"{line}); save the catalog as UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise CatalogError(f"{path}: not valid TOML ({err})") from None


def load_catalog(path: Path | str | None = None) -> Registry[DatasetSpec]:
    """The project's ``datasets.toml`` and, added to it, a catalog of one's own: ``path`` (default:
    ``$BENCH_DATASETS``). A name declared in both is an error naming both files."""
    registry: Registry[DatasetSpec] = Registry("dataset", origin=lambda spec: spec.origin)
    own = Path(path or os.environ.get("BENCH_DATASETS") or DEFAULT_CATALOG)
    for file in dict.fromkeys([DEFAULT_CATALOG.resolve(), own.resolve()]):
        _add_catalog(registry, own if file == own.resolve() else DEFAULT_CATALOG)
    return registry


def _add_catalog(registry: Registry[DatasetSpec], path: Path) -> None:
    for name, table in _read_catalog(path).items():
        if not isinstance(table, dict):
            raise CatalogError(f"{path}: top-level key {name!r} must be a [table]")
        check_name("dataset", name, f"in {path}; a dataset's name is a folder of the data root and the result store")
        if name in registry:
            raise CatalogError(f"{path} [{name}]: dataset {name!r} is also declared in {registry.get(name).origin}; "
                               f"a catalog of one's own adds to the project's: give yours another name")
        registry.add(name, parse_spec(name, table, origin=str(path)))


# --- layouts: how a dataset's folder lists its clips -------------------------------------

@dataclass(frozen=True)
class Listing:
    """What a layout reads from a dataset's folder: each clip's file (relative to the folder), its
    label as written (a class name, or its index in ``class_names``) and the fields its folds read.

    ``names``: the classes where the layout knows them apart from the labels (a folder per class);
    else they are the declared ``class_names`` or the labels, sorted. ``where``: the metadata file
    messages name (none: they name the folder, or the clip's own file).
    """

    files: list[str]
    labels: list[str]
    fields: list[dict[str, str]]
    names: tuple[str, ...] = ()
    where: str = ""


def _no_check(where: str, table: dict[str, Any]) -> None:
    """A layout whose values need no check beyond their types."""


@dataclass(frozen=True)
class Layout:
    """One ``metadata.format``: the keys its metadata takes besides ``format``, each with its type;
    ``list_clips(spec, folder, skip)``, which reads the folder, leaving out the files in ``skip``; the
    keys it requires; the keys whose values are files of the dataset's folder (``paths``, each
    refused at load unless it stays inside the folder); and ``check(where, table)`` of the
    values when the catalog loads (``table``: the dataset's whole table; raise ``CatalogError``
    starting with ``where``)."""

    name: str
    keys: dict[str, type]
    list_clips: Callable[[DatasetSpec, Path, set[str]], Listing]
    required: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    check: Callable[[str, dict[str, Any]], None] = _no_check


LAYOUTS: Registry[Layout] = Registry("dataset layout", lambda layout: defined_at(layout.list_clips))


def register_layout(layout: Layout) -> Layout:
    """Register ``layout`` under its name; a second layout of that name is an error naming both."""
    return LAYOUTS.add(layout.name, layout)


def _csv_rows(spec: DatasetSpec, folder: Path) -> list[dict[str, str]]:
    meta = inside(folder, spec.metadata["path"], f"dataset {spec.name!r}: metadata.path", error=DatasetError)
    if not meta.is_file():
        raise DatasetError(f"{meta}: metadata file not found; run `bench fetch {spec.source}`")
    try:
        with open(meta, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (csv.Error, UnicodeDecodeError) as err:
        raise DatasetError(f"{meta}: not a readable CSV file ({err})") from None
    for line, row in enumerate(rows, start=2):
        if None in row.values() or None in row:
            raise DatasetError(f"{meta}: row {line} has {'missing' if None in row.values() else 'extra'} cells")
    where = {col: [str(v) for v in (val if isinstance(val, list) else [val])]  # CSV cells are text: fold = 4 is "4"
             for col, val in spec.metadata.get("where", {}).items()}
    return [r for r in rows if all(r.get(col) in accepted for col, accepted in where.items())]


def _check_duplicates(files: list[str], where: str) -> None:
    seen: dict[str, int] = {}
    for row, name in enumerate(files, start=2):  # row 1 is the header
        if name in seen:
            raise DatasetError(f"{where}: duplicate rows for {name!r} (rows {seen[name]} and {row}); keep one")
        seen[name] = row


def _list_csv(spec: DatasetSpec, folder: Path, skip: set[str]) -> Listing:
    """A row per clip: ``audio`` makes its file from the row, ``label`` is its column; ``where`` keeps
    matching rows (ESC-50, UrbanSound8K)."""
    where = str(folder / spec.metadata["path"])
    rows = _csv_rows(spec, folder)
    try:
        files = [spec.metadata["audio"].format(**r) for r in rows]
    except KeyError as err:
        raise DatasetError(f"{where}: no column {err} (needed by metadata.audio)") from None
    _check_duplicates(files, where)
    rows, label = [r for r, f in zip(rows, files) if f not in skip], spec.metadata["label"]
    if rows and label not in rows[0]:
        raise DatasetError(f"{where}: no column {label!r} (metadata.label); its columns: {', '.join(rows[0])}")
    return Listing([f for f in files if f not in skip], [r[label] for r in rows], rows, where=where)


def _check_csv(where: str, table: dict[str, Any]) -> None:
    _check_template(f"{where}: metadata.audio", table["metadata"]["audio"])


def _list_by_name(spec: DatasetSpec, folder: Path, skip: set[str]) -> Listing:
    """The files whose names match ``pattern``, in the folder (or below it: ``recursive``); its named
    groups give the label and the fields the folds read (FSDD)."""
    pattern = re.compile(spec.metadata["pattern"])
    found = folder.rglob("*") if spec.metadata.get("recursive") else folder.iterdir()
    files = sorted(p.relative_to(folder).as_posix() for p in found
                   if p.is_file() and pattern.match(p.name) and p.relative_to(folder).as_posix() not in skip)
    fields = [pattern.match(Path(f).name).groupdict() for f in files]
    return Listing(files, [f[spec.metadata["label"]] for f in fields], fields)


def _check_by_name(where: str, table: dict[str, Any]) -> None:
    metadata, folds = table["metadata"], table["folds"]
    _check_pattern(f"{where}: metadata.pattern", metadata["pattern"],
                   [metadata["label"]] + ([folds["field"]] if folds["protocol"] == "by_index" else []))


def _list_class_folders(spec: DatasetSpec, folder: Path, skip: set[str]) -> Listing:
    """One folder per class (its name), the class's files anywhere below it: images for an image
    dataset, audio files for an audio one (Speech Commands, GTZAN, RAVDESS by actor)."""
    suffixes = IMAGE_SUFFIXES if spec.kind == "image" else AUDIO_SUFFIXES
    names = spec.class_names or tuple(sorted(p.name for p in folder.iterdir()
                                             if p.is_dir() and not p.name.startswith(".")))
    files = [p.relative_to(folder).as_posix() for c in names for p in sorted((folder / c).rglob("*"))
             if p.suffix.lower() in suffixes and p.relative_to(folder).as_posix() not in skip]
    return Listing(files, [f.split("/")[0] for f in files], [{} for _ in files], names)


def _check_class_folders(where: str, table: dict[str, Any]) -> None:
    for cls in table.get("class_names", []):
        inside(None, cls, f"{where}: class_names entry", "the dataset's folder")
        if "/" in cls or cls == ".":
            raise CatalogError(f"{where}: class_names entry = {cls!r} is not one folder's name: with metadata "
                               f"format 'folders' each class is a folder of the dataset's folder")


register_layout(Layout("csv", {"path": str, "audio": str, "label": str, "fold": str, "where": dict}, _list_csv,
                       required=("path", "audio", "label"), paths=("path",), check=_check_csv))
register_layout(Layout("filename", {"pattern": str, "label": str, "recursive": bool}, _list_by_name,
                       required=("pattern", "label"), check=_check_by_name))
register_layout(Layout("folders", {}, _list_class_folders, check=_check_class_folders))
