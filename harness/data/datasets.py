"""Datasets: list a dataset's clips from its metadata, decode them once, cache the arrays.

``load_dataset`` is the one entry point for training code. It returns every clip as one
fixed-size float32 array (memory-mapped from the cache), with labels, test folds and the
split's fingerprint; after the first call no audio file is read again.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import platformdirs

from harness.data import folds as F
from harness.data import synthetic
from harness.data.cache import cached_array
from harness.data.audio import RESAMPLER, decode_audio
from harness.data.catalog import LAYOUTS, DatasetSpec, inside, inside_all
from harness.core.errors import DatasetError
from harness.core.faults import crash_point
from harness.core import disk

DECODE_THREADS = min(16, os.cpu_count() or 1)  # files decoded at once when a dataset is first cached


def data_root(override: str | Path | None = None) -> Path:
    """Where datasets and caches live: the argument, ``$BENCH_DATA_ROOT``, or the user cache dir."""
    root = override or os.environ.get("BENCH_DATA_ROOT") or \
        disk.user_folder(platformdirs.user_cache_dir("audio-bench"), "BENCH_DATA_ROOT", "data root")
    return Path(root).expanduser()


@dataclass(frozen=True)
class ClipTable:
    """A dataset's clips before decoding: ids, files (relative to the dataset folder), labels, folds."""

    ids: list[str]
    files: list[str]
    labels: np.ndarray
    folds: np.ndarray
    class_names: tuple[str, ...]
    derived_names: bool = False  # class names read from the data, not declared

    @property
    def fingerprint(self) -> str:
        """The split's fingerprint; derived class names are part of it (they decide the labels)."""
        return F.fold_fingerprint(self.ids, self.folds, self.class_names if self.derived_names else ())


@dataclass(frozen=True)
class Dataset:
    """Decoded clips ready for training: ``x`` is (N, samples) audio or (N, H, W) images."""

    spec: DatasetSpec
    x: np.ndarray
    y: np.ndarray
    folds: np.ndarray
    ids: list[str]
    class_names: tuple[str, ...]
    sample_rate: int
    fold_fingerprint: str
    excluded: tuple[str, ...] = ()
    cache: Path | None = None  # the decoded array's file; None for data made in memory


# --- listing clips -----------------------------------------------------------------------

def _label_index(spec: DatasetSpec, names: tuple[str, ...], value: str, where: str) -> int:
    if value in names:
        return names.index(value)
    if value.isdigit() and not any(n.isdigit() for n in names) and int(value) < len(names):
        return int(value)
    raise DatasetError(f"{where}: unknown label {value!r}; {spec.name} declares {', '.join(names)}")


def _assign_folds(spec: DatasetSpec, labels: np.ndarray, fields: list[dict[str, str]], where: str) -> np.ndarray:
    protocol, k = spec.folds["protocol"], spec.num_folds
    try:
        if protocol == "official":
            return F.official_folds([int(f[spec.metadata["fold"]]) for f in fields], k)
        if protocol == "by_index":
            return F.by_index_folds([int(f[spec.folds["field"]]) for f in fields], spec.folds["size"], k)
        if protocol == "holdout":
            return F.holdout_folds(labels, spec.folds.get("test_fraction", 0.1), spec.folds.get("seed", 0))
        return F.stratified_folds(labels, k, spec.folds.get("seed", 0))
    except (F.FoldError, ValueError, KeyError, TypeError) as err:
        raise DatasetError(f"{where}: cannot assign folds ({err})") from None


EXCLUDED = ".excluded.tsv"  # files left out by `bench fetch --skip-bad`, with their reasons
MARKER = ".fingerprint"  # written into a dataset folder once its import is verified


def dataset_folder(spec: DatasetSpec, root: Path) -> Path:
    """``root / spec.source``, refused if a symbolic link takes it outside the data root."""
    return inside(root, spec.source, f"dataset {spec.name!r}: source", "the data root", DatasetError)


def verified_folder(spec: DatasetSpec, root: Path) -> Path:
    """The dataset's folder, if it was imported and verified against the declared fingerprint."""
    folder = dataset_folder(spec, root)
    marker = folder / MARKER
    if not marker.is_file():
        raise DatasetError(
            f"dataset {spec.name!r} is not in the data root {root}. "
            f"Run `bench fetch {spec.source}` (or `bench fetch {spec.source} --from PATH` for a local copy)."
        )
    recorded = marker.read_text().strip()
    if spec.fingerprint and recorded != spec.fingerprint:
        raise DatasetError(
            f"{folder}: content fingerprint {recorded[:12]}… does not match the declared "
            f"{spec.fingerprint[:12]}… of {spec.name!r}. Re-import it with `bench fetch {spec.source} --force`."
        )
    return folder


def excluded_files(folder: Path) -> dict[str, str]:
    """The files an import left out (relative path -> reason); empty for a clean import."""
    path = folder / EXCLUDED
    if not path.is_file():
        return {}
    return dict(line.split("\t", 1) for line in path.read_text().splitlines() if "\t" in line)


def list_clips(spec: DatasetSpec, folder: Path, skip: set[str] | None = None) -> ClipTable:
    """Read the metadata of a dataset folder into a ``ClipTable`` (no audio is decoded), through the
    loader of its layout (``catalog.LAYOUTS``).

    Files in ``skip`` (default: those an import excluded) are left out of the table.
    """
    skip = set(excluded_files(folder)) if skip is None else skip
    fmt = spec.metadata["format"]
    listing = LAYOUTS.get(fmt).list_clips(spec, folder, skip)
    files, where = listing.files, listing.where or str(folder)
    names = spec.class_names or listing.names or tuple(sorted(set(listing.labels)))
    labels = np.asarray([_label_index(spec, names, value, listing.where or str(folder / file))
                         for file, value in zip(files, listing.labels)], dtype=np.int64)
    if not files:
        kind = "audio files (.wav, .flac, .ogg, .aiff)" if spec.kind == "audio" else "clips"
        raise DatasetError(f"{folder}: no {kind} found for {spec.name} in the layout metadata declares "
                           f"({fmt}); check the metadata of [{spec.name}] in {spec.origin} against the folder")
    if len(names) != spec.num_classes:
        raise DatasetError(f"{folder}: found {len(names)} classes, {spec.name} declares {spec.num_classes}")
    inside_all(folder, files, f"{where}: listed file", error=DatasetError)  # no row, no link leads outside
    folds = _assign_folds(spec, labels, listing.fields, str(folder))
    return ClipTable(ids=list(files), files=list(files), labels=labels, folds=folds, class_names=names,
                     derived_names=not spec.class_names)


# --- decoding ----------------------------------------------------------------------------

def decode_image(path: Path, size: tuple[int, int]) -> np.ndarray:
    """Read one image as grayscale float32 in [0, 1], resized to (H, W) = ``size``."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img = img.convert("L").resize((size[1], size[0]), Image.BILINEAR)
            return np.asarray(img, dtype=np.float32) / 255.0
    except Exception as err:
        raise DatasetError(f"{path}: cannot read image ({err})") from None


def _decode_all(spec: DatasetSpec, folder: Path, table: ClipTable, sample_rate: int, out: np.ndarray) -> None:
    """Decode every clip into ``out``, several files at a time (soundfile and soxr release the GIL);
    each clip lands in its own row, so the array does not depend on the number of threads."""
    from tqdm import tqdm

    n = round(sample_rate * spec.clip_seconds)

    def decode(i: int) -> str | None:
        path = folder / table.files[i]
        try:
            out[i] = decode_image(path, spec.image_size) if spec.kind == "image" else \
                decode_audio(path, sample_rate, n, spec.length_policy)
        except DatasetError as err:
            return str(err)
        return None

    errors = []
    with ThreadPoolExecutor(DECODE_THREADS) as pool:
        for i, error in enumerate(tqdm(pool.map(decode, range(len(table.files))), total=len(table.files),
                                       desc=f"decoding {spec.name}", unit="clip", leave=False)):
            errors += [error] if error else []
            if i == len(table.files) // 2:
                crash_point("decode")
    if errors:
        listing = "\n  ".join(errors[:50]) + ("\n  ..." if len(errors) > 50 else "")
        raise DatasetError(f"{len(errors)} bad file(s) in {spec.name}:\n  {listing}")


def load_dataset(spec: DatasetSpec, root: Path | None = None, sample_rate: int | None = None) -> Dataset:
    """Return the decoded dataset, decoding and caching it on first use.

    The cache key holds the source's version and fingerprint, the list of decoded files, the
    sample rate, the clip length and its policy, and the resampler, so a changed declaration,
    re-imported data or another decoder can never reuse stale arrays, while tasks over the
    same files share one.
    """
    sample_rate = sample_rate or spec.sample_rate
    if spec.kind == "synthetic":
        x, y = synthetic.generate(spec, sample_rate)
        ids = [f"{spec.class_names[c]}_{i:03d}" for i, c in enumerate(y)]
        folds = F.stratified_folds(y, spec.num_folds, spec.folds.get("seed", 0))
        return Dataset(spec, x, y, folds, ids, spec.class_names, sample_rate, F.fold_fingerprint(ids, folds))
    root = data_root(root)
    folder = verified_folder(spec, root)
    table = list_clips(spec, folder)
    fingerprint = (folder / MARKER).read_text().strip()
    shape = (len(table.files), *spec.image_size) if spec.kind == "image" else (
        len(table.files), round(sample_rate * spec.clip_seconds))
    # tasks over the same files (fsdd and fsdd_speaker) share one cache: keyed by what is decoded
    files = hashlib.sha256("\n".join(table.files).encode()).hexdigest()[:8]
    decoder = "" if spec.kind == "image" else f"-{spec.length_policy}-{RESAMPLER}"
    key = f"{spec.source}-v{spec.version}-{fingerprint[:12]}-{files}-{sample_rate}hz-{shape[-1]}{decoder}"
    cache = root / "cache" / f"{key}.npy"
    x = cached_array(cache, shape, lambda out: _decode_all(spec, folder, table, sample_rate, out))
    return Dataset(spec, x, table.labels, table.folds, table.ids, table.class_names, sample_rate,
                   table.fingerprint, tuple(sorted(excluded_files(folder))), cache)


@dataclass(frozen=True)
class AnswerKey:
    """A dataset's labels and folds as they are now, read from its metadata (no audio decoded): what
    a stored result's predictions are scored against, and the split's fingerprint."""

    labels: np.ndarray
    folds: np.ndarray
    fingerprint: str
    class_names: tuple[str, ...] = ()  # as the split names them (declared, or read from the data)


def answer_key(spec: DatasetSpec, root: Path | None = None) -> AnswerKey | None:
    """The labels and folds of the data as it is now, or None if the data is not available."""
    try:
        if spec.kind == "synthetic":
            data = load_dataset(spec)
            return AnswerKey(data.y, data.folds, data.fold_fingerprint, tuple(data.class_names))
        table = list_clips(spec, verified_folder(spec, data_root(root)))
        return AnswerKey(table.labels, table.folds, table.fingerprint, tuple(table.class_names))
    except DatasetError:
        return None
