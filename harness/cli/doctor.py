"""``bench doctor``: what a data root and a result store hold, and what crashed processes left.

It lists the imported datasets, the decode, feature and embedding caches and their sizes, the leftovers of processes
that died (``harness.core.owners``: half-written cache arrays, result temporaries, import staging
folders, claims of runs nobody works on any more) and result files that fail their checksum or
cannot be read (``harness.runs.store``: too large, nested too deep, a link out of the store), and
results that are stale (``harness.runs.verdict``). Leftovers can be removed; results never are: a
damaged or stale one is redone by its grid's next run.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness.core import owners
from harness.runs import environment
from harness.runs.provenance import metrics_problem
from harness.runs.records import RecordError, RunRecord, from_json, is_sealed
from harness.runs.store import link_out, result_files, result_json
from harness.data.cache import BUDGET_ENV, DEFAULT_BUDGET_GB
from harness.data.datasets import MARKER

if TYPE_CHECKING:
    from harness.runs.verdict import Judged  # it imports torch, which `bench fetch` and `bench sweep` start without


@dataclass
class Checkup:
    datasets: list[tuple[str, int, int, str]] = field(default_factory=list)  # name, files, bytes, fingerprint
    caches: list[tuple[str, int]] = field(default_factory=list)               # file name, bytes
    features: list[tuple[str, int]] = field(default_factory=list)             # file name, bytes
    embeddings: list[tuple[str, int]] = field(default_factory=list)           # file name, bytes (frozen protocols)
    partial_downloads: list[tuple[str, int]] = field(default_factory=list)
    leftovers: list[owners.Leftover] = field(default_factory=list)
    damaged: list[tuple[Path, str]] = field(default_factory=list)             # result file, why
    stale: list[tuple[Path, str]] = field(default_factory=list)               # result file, why
    drift: list[environment.Drift] | None = None                              # None: no lock to compare with


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def examine(data_root: Path, results_root: Path, against: Judged | None = None) -> Checkup:
    """Look through both folders; changes nothing. With ``against`` (the submissions, the catalog
    and the data's splits), each result's metrics are recomputed from its predictions and the
    labels of its dataset, where it is here, and each is judged current or stale as the planner and
    the board judge it (``harness.runs.verdict``)."""
    found = Checkup()
    if environment.LOCK_FILE.is_file():
        found.drift = environment.drift()
    if data_root.is_dir():
        for folder in sorted(p for p in data_root.iterdir() if (p / MARKER).is_file()):
            files = [p for p in _files(folder) if not p.name.startswith(".")]
            found.datasets.append((folder.name, len(files), sum(p.stat().st_size for p in files),
                                   (folder / MARKER).read_text().strip()))
        found.caches = [(p.name, p.stat().st_size) for p in sorted((data_root / "cache").glob("*.npy"))]
        found.features, found.embeddings = ([(p.name, p.stat().st_size) for p in sorted((data_root / "cache" / kind).glob(
            "*.npy"))] for kind in ("features", "embeddings"))
        found.partial_downloads = [(p.name, p.stat().st_size) for p in sorted((data_root / "downloads").glob("*.part"))]
        found.leftovers += owners.leftovers(data_root)
    found.leftovers += owners.leftovers(results_root)
    _examine_results(found, results_root, against)
    return found


def _examine_results(found: Checkup, results_root: Path, against: Judged | None) -> None:
    """Each result file: unreadable or unsealed (damaged), metrics that do not follow from its
    predictions (damaged), or no longer standing against the code and data (stale)."""
    from harness.runs.verdict import Stale, verdict

    for path in result_files(results_root):
        try:
            data = result_json(path, results_root)
        except RecordError as err:
            found.damaged.append((path, str(err)))
            continue
        if not is_sealed(data):
            found.damaged.append((path, "checksum mismatch: edited by hand or damaged"))
            continue
        try:
            record = from_json(data)
        except RecordError:
            continue  # readable as JSON and sealed, but of another schema: the board lists why
        if against is None or not isinstance(record, RunRecord) or record.run.dataset not in against.datasets:
            continue
        spec = against.datasets.get(record.run.dataset)
        if why := metrics_problem(record, against.splits.key(spec), spec.num_classes):
            found.damaged.append((path, why))
        elif isinstance(judged := verdict(record, against), Stale):
            found.stale.append((path, judged.reason))


def size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


def describe(found: Checkup, data_root: Path, results_root: Path) -> list[str]:
    """The checkup in plain lines, one section per kind of thing found."""
    lines = [environment_line(found.drift), f"data root {data_root}:"]
    lines += [f"  dataset {name}: {count} files, {size(nbytes)}, fingerprint {fp[:12]}…"
              for name, count, nbytes, fp in found.datasets] or ["  no imported datasets"]
    total = sum(n for _, n in found.caches)
    lines.append(f"  decode cache: {len(found.caches)} array(s), {size(total)}")
    lines.append(f"  feature cache: {len(found.features)} array(s), {size(sum(n for _, n in found.features))} "
                 f"(evicted beyond {BUDGET_ENV}={os.environ.get(BUDGET_ENV, DEFAULT_BUDGET_GB)})")
    lines.append(f"  embedding cache: {len(found.embeddings)} array(s), {size(sum(n for _, n in found.embeddings))} "
                 f"(frozen protocols' embeddings, one per encoder and audio; evicted the same way)")
    lines += [f"  partial download {name} ({size(n)}): `bench fetch` resumes it" for name, n in found.partial_downloads]
    lines.append(f"results {results_root}: {len(found.damaged)} damaged result file(s)")
    lines += [f"  {path}: {why}; {_then(path, results_root)}" for path, why in found.damaged]
    lines.append(f"results {results_root}: {len(found.stale)} stale result(s): not ranked, and the next run of their "
                 f"grid redoes them")
    lines += [f"  {path}: {why}" for path, why in found.stale]
    lines.append(f"leftovers of crashed processes: {len(found.leftovers)} ({size(sum(x.size for x in found.leftovers))})")
    lines += [f"  {x.path}: {x.why}" for x in found.leftovers]
    return lines


def _then(path: Path, results_root: Path) -> str:
    """What the planner and the board do with a damaged or refused result file."""
    if link_out(results_root, path) is None:
        return "it is not ranked, and the next run of its grid redoes it"
    if path.is_dir():
        return ("nothing under it is read or ranked, and `bench run` and `bench sweep` stop before storing a run "
                "through it: remove the link, or move what it points to into the store")
    return "it is not ranked, and the next run of its grid replaces the link with its result (its target is left alone)"


def environment_line(drift: list[environment.Drift] | None) -> str:
    lock = environment.LOCK_FILE.name
    if drift is None:
        return f"environment: no {lock} beside the harness (installed as a package): versions not checked"
    if not drift:
        return f"environment: {', '.join(environment.CHECKED)} as {lock} pins them"
    return (f"environment differs from {lock}: {'; '.join(map(str, drift))}. Results made here are not the "
            f"lock's; `make install` installs it")
