"""Bring a dataset into the data root: download (resumable, verified) or import a local copy.

Files only land in ``<root>/<source>`` after every check has passed: the archive's sha256
(when declared) before anything is extracted, safe member paths during extraction, and the
content fingerprint of the imported files before the folder is published with one rename.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from harness.core import owners
from harness.data.audio import inspect_audio
from harness.data.catalog import LAYOUTS, DatasetSpec, inside
from harness.data.datasets import (EXCLUDED, MARKER, DatasetError, dataset_folder, decode_image, list_clips,
                                   verified_folder)
from harness.core.owners import temp_path



def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_tree(path: Path) -> str:
    """sha256 of a file, or of a folder's files (their paths below it and contents, in sorted order)."""
    if not path.is_dir():
        return sha256_file(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(path).as_posix()}\0{sha256_file(file)}\n".encode())
    return digest.hexdigest()


def content_fingerprint(folder: Path) -> str:
    """sha256 over the sorted ``relative/path<TAB>sha256`` lines of every file but the marker: hidden
    files and the list of excluded files too, so it covers every file a dataset reads (``list_clips``
    keeps every file it lists inside the folder)."""
    lines = sorted(
        f"{p.relative_to(folder).as_posix()}\t{sha256_file(p)}"
        for p in folder.rglob("*") if p.is_file() and p != folder / MARKER
    )
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


# --- download ----------------------------------------------------------------------------

def download(url: str, dest: Path, expected_sha256: str = "", name: str = "NAME") -> Path:
    """Download ``url`` to ``dest``, resuming a ``dest.part`` left by an interrupted attempt.

    A completed file whose sha256 differs from ``expected_sha256`` is deleted and reported.
    """
    from tqdm import tqdm

    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # the part file is already complete
            response = None
        else:
            part.unlink(missing_ok=True)
            raise DatasetError(f"download of {url} failed: HTTP {err.code} {err.reason}; nothing was kept") from None
    except (urllib.error.URLError, OSError) as err:
        raise DatasetError(
            f"cannot reach {url} ({getattr(err, 'reason', err)}). If this machine is offline, download "
            f"the archive elsewhere and run `bench fetch {name} --from ARCHIVE_OR_FOLDER`."
        ) from None
    if response is not None:
        with response:
            resumed = response.status == 206
            total = int(response.headers.get("Content-Length") or 0) + (have if resumed else 0)
            with open(part, "ab" if resumed else "wb") as out, tqdm(
                total=total or None, initial=have if resumed else 0, unit="B", unit_scale=True,
                desc=f"downloading {dest.name}",
            ) as bar:
                while block := response.read(1 << 20):
                    out.write(block)
                    bar.update(len(block))
    if expected_sha256:
        actual = sha256_file(part)
        if actual != expected_sha256:
            part.unlink()
            raise DatasetError(
                f"download of {url} is corrupt: sha256 {actual[:12]}… != expected {expected_sha256[:12]}…; "
                f"the file was removed, run `bench fetch` again."
            )
    os.replace(part, dest)
    return dest


# --- extraction --------------------------------------------------------------------------

def _check_member(name: str, is_link: bool, archive: Path) -> None:
    parts = Path(name).parts
    if is_link:
        raise DatasetError(f"{archive}: refusing link entry {name!r}")
    if name.startswith(("/", "\\")) or (parts and ":" in parts[0]) or ".." in parts:
        raise DatasetError(f"{archive}: refusing entry {name!r}, it would land outside the target folder")


def safe_extract(archive: Path, target: Path) -> None:
    """Extract a zip or tar archive, refusing absolute paths, ``..`` and links before writing."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                _check_member(info.filename, stat.S_ISLNK(info.external_attr >> 16), archive)
            zf.extractall(target)
        return
    try:
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            for m in members:
                _check_member(m.name, m.issym() or m.islnk(), archive)
                if not (m.isfile() or m.isdir()):
                    raise DatasetError(f"{archive}: refusing special entry {m.name!r}")
            tf.extractall(target, members=members, filter="data")
    except tarfile.TarError as err:
        raise DatasetError(f"{archive}: not a readable zip or tar archive ({err})") from None


# --- import ------------------------------------------------------------------------------

def _audit(spec: DatasetSpec, source_dir: Path, files: list[str]) -> tuple[dict[str, str], list[str]]:
    """Every listed file that is missing or cannot be used, with its reason; plus notes said once."""
    bad, multichannel, other_rates = {}, 0, set()
    for rel in files:
        path = source_dir / rel
        if not path.is_file():
            bad[rel] = "listed in the metadata but missing"
        elif spec.kind == "audio":
            problem, channels, rate = inspect_audio(path, spec.sample_rate, spec.num_samples, spec.length_policy)
            if problem:
                bad[rel] = problem
            multichannel += channels > 1
            if rate and rate != spec.sample_rate:
                other_rates.add(rate)
        elif spec.kind == "image":
            try:
                decode_image(path, spec.image_size)
            except DatasetError as err:
                bad[rel] = str(err).split(": ", 1)[-1]
    notes = []
    if multichannel:
        notes.append(f"{multichannel} multichannel file(s) will be downmixed to mono")
    if other_rates:
        notes.append(f"files at {sorted(other_rates)} Hz will be resampled to {spec.sample_rate} Hz")
    return bad, notes


def _publish(spec: DatasetSpec, source_dir: Path, root: Path, skip_bad: bool = False) -> tuple[Path, list[str]]:
    """Audit the listed files, copy the good ones into a temporary folder, verify, rename into place."""
    table = list_clips(spec, source_dir, skip=set())
    if spec.clips and len(table.files) != spec.clips:
        raise DatasetError(
            f"{source_dir}: {len(table.files)} clips listed, {spec.name} has {spec.clips}: a partial or different "
            f"copy, nothing was imported. Import a complete copy, or declare yours as a dataset of its own (a new "
            f"name, its own clips and folds) in a catalog of your own (`bench --datasets FILE` or $BENCH_DATASETS), "
            f"so its runs are never ranked as {spec.name}'s.")
    bad, notes = _audit(spec, source_dir, table.files)
    if bad and not skip_bad:
        listing = "\n  ".join(f"{rel}: {why}" for rel, why in sorted(bad.items()))
        raise DatasetError(f"{len(bad)} bad file(s) in {source_dir}, nothing was imported:\n  {listing}\n"
                           f"Fix or remove them, or run `bench fetch {spec.source} --skip-bad` to leave them out.")
    extra = [spec.metadata[key] for key in LAYOUTS.get(spec.metadata["format"]).paths if key in spec.metadata] \
        if spec.metadata.get("format") else []  # a layout's own files (a CSV of clips) come along
    final = dataset_folder(spec, root)
    staging = temp_path(final)  # tagged: removed by a later fetch if this process dies
    staging.mkdir()
    try:
        for rel in extra + [f for f in table.files if f not in bad]:
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source_dir / rel, staging / rel)
        if bad:
            (staging / EXCLUDED).write_text("".join(f"{rel}\t{why}\n" for rel, why in sorted(bad.items())))
            notes.append(f"{len(bad)} bad file(s) left out, listed in {spec.source}/{EXCLUDED}")
        fingerprint = content_fingerprint(staging)
        if spec.fingerprint and fingerprint != spec.fingerprint:
            raise DatasetError(
                f"{source_dir}: content fingerprint {fingerprint[:12]}… does not match the declared "
                f"{spec.fingerprint[:12]}… of {spec.name!r} (wrong version, or modified files); nothing was imported."
            )
        (staging / MARKER).write_text(fingerprint + "\n")
        if final.exists():
            _check_ours(spec, final)
            shutil.rmtree(final)
        os.replace(staging, final)
        return final, notes
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_ours(spec: DatasetSpec, folder: Path) -> None:
    """A folder ``bench fetch`` may replace: one that an earlier import made (it holds the marker)."""
    if folder.is_symlink() or not (folder / MARKER).is_file():
        raise DatasetError(
            f"{folder} exists and was not made by `bench fetch` (no {MARKER} in it), so it is left as it is and "
            f"nothing was imported: move it out of the data root, or give {spec.name} another source in the catalog")


def fetch(spec: DatasetSpec, root: Path, from_path: Path | None = None, force: bool = False,
          skip_bad: bool = False) -> tuple[Path, str]:
    """Make ``spec`` available under ``root``; returns the folder and a one-line report. A folder in
    the way that an import did not make is refused, never emptied."""
    root.mkdir(parents=True, exist_ok=True)
    if spec.kind == "synthetic":
        return root, f"{spec.name} is generated by the harness; nothing to fetch"
    folder = dataset_folder(spec, root)
    if folder.exists() or folder.is_symlink():
        _check_ours(spec, folder)
    if not force and (folder / MARKER).is_file():
        recorded = (folder / MARKER).read_text().strip()
        actual = content_fingerprint(folder)
        if actual != recorded:
            raise DatasetError(f"{folder}: files changed since import; re-import with `bench fetch {spec.source} --force`")
        return verified_folder(spec, root), f"{spec.name} already present and verified ({actual[:12]}…)"
    owners.clean(root, recursive=False)  # staging folders of fetches that crashed, not every dataset's files
    extract = temp_path(root / "extract")
    extract.mkdir()
    try:
        return _fetch_into(spec, root, from_path, skip_bad, extract)
    finally:
        shutil.rmtree(extract, ignore_errors=True)


def _fetch_into(spec: DatasetSpec, root: Path, from_path: Path | None, skip_bad: bool, tmp: Path) -> tuple[Path, str]:
    """Download or take ``from_path``, extract an archive into ``tmp``, then audit and publish."""
    if from_path is None:
        if not spec.url:
            raise DatasetError(f"{spec.name} has no download url; import a local copy with `bench fetch {spec.name} --from PATH`")
        downloads = root / "downloads"
        downloads.mkdir(exist_ok=True)
        from_path = download(spec.url, downloads / Path(spec.url).name, spec.archive_sha256, spec.name)
    if from_path.is_file():
        if spec.archive_sha256 and sha256_file(from_path) != spec.archive_sha256:
            raise DatasetError(f"{from_path}: sha256 does not match the declared archive_sha256; nothing was extracted")
        safe_extract(from_path, tmp)
        inner = inside(tmp, spec.archive_root, f"dataset {spec.name!r}: archive_root", "the archive",
                       DatasetError) if spec.archive_root else tmp
        from_path = inner if inner.is_dir() else tmp
    elif not from_path.is_dir():
        raise DatasetError(f"{from_path}: no such file or folder")
    folder, notes = _publish(spec, _find_source_dir(spec, from_path), root, skip_bad)
    fingerprint = (folder / MARKER).read_text().strip()
    if not spec.fingerprint:
        notes.append(f"no fingerprint is declared for {spec.name}, so this one is now pinned locally: "
                     f"add fingerprint = \"{fingerprint}\" to [{spec.name}] in {spec.origin} to pin it for everyone")
    return folder, "; ".join([f"{spec.name} imported into {folder} ({fingerprint[:12]}…)", *notes])


def _find_source_dir(spec: DatasetSpec, folder: Path) -> Path:
    """The folder that holds the dataset: ``folder`` itself or one level down (e.g. ``recordings/``)."""
    candidates = [folder] + sorted(p for p in folder.iterdir() if p.is_dir())
    for candidate in candidates:
        try:
            list_clips(spec, candidate)
            return candidate
        except DatasetError:
            continue
    return folder  # list_clips on it raises the informative error
