"""Render ``leaderboard/README.md`` from stored result files only.

Each (dataset, epoch budget) gets a ranked table (each entry compared with #1 by the corrected
resampled t-test, ``harness.board.significance``), a per-fold table, its figures
(``harness.board.figures``) and a page per entry (``harness.board.cards``). Only results whose
provenance still matches the current submission and dataset are ranked; the rest are listed
with the reason they were left out.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from harness.board.aggregate import Entry, aggregate, ranked
from harness.board.cards import card_path, model_card
from harness.board.figures import FIGURES, figure_path, table_figures
from harness.board.significance import Comparison, compare
from harness.core import disk, owners
from harness.core.errors import HarnessError
from harness.core.registry import Registry
from harness.data.catalog import DatasetSpec
from harness.runs import environment, store
from harness.runs.described import Described, Submissions
from harness.runs.provenance import metrics_problem
from harness.runs.verdict import Judged, Splits, Stale, verdict
from harness.runs.records import FailedRecord, RecordError, RunRecord
from harness.training.metrics import METRICS, registered, scores
from harness.training.submission import Published

RULES = """\
## Rules

- Every table has a fixed epoch budget; entries are compared only within it.
- The test fold never reaches training or model selection: the harness computes test features
  only after training, and early stopping uses a validation split carved from the training folds.
- No test-time augmentation unless a submission declares it; such entries are marked *TTA*.
- Ranked by mean test accuracy. **±** is the sample standard deviation (ddof = 1) over all
  runs of the row, i.e. over folds × trials; *runs* says how many that is, *test clips* how
  many clips each run was scored on. A metric a run was recorded without (registered after it
  ran) is computed from its stored predictions where the dataset's labels are here, else shown as –.
- *vs #1* compares each entry with #1 over their paired (fold, trial) results by the corrected
  resampled t-test (Nadeau & Bengio 2003, for repeated k-fold as in Bouckaert & Frank 2004):
  the mean accuracy difference in points and the two-sided p. An entry not distinguishable from
  #1 at the 5% level is ranked *1 (tied)*. A plain paired t-test over folds would overstate
  significance: the training sets of any two folds share most of their clips, so the fold
  results are correlated and their spread understates the variance; the correction scales it by
  1/n + n_test/n_train. Entries that did not run on the same (fold, trial) pairs are not compared.
- Where three or more entries ran on the same splits, a critical-difference diagram (Demšar 2006:
  Friedman test, then Nemenyi's, drawn by scikit-posthocs) shows their mean ranks over those
  splits. It treats the splits as independent blocks, which folds are not, so it is only a
  picture of the ordering; the *vs #1* column decides who is tied.
- A result is ranked only while its submission source, config hash, dataset version and fold
  fingerprint match the current code and data; otherwise it is listed as stale.
- A run's identity holds its weights (from scratch, pretrained, random initialisation of a
  pretrained model, or a checkpoint by digest), its precision and whether it was compiled: runs
  that differ in any of them are separate entries, named `submission (variant)` where one
  submission has several in a table, and are never averaged together.
- *hardware* names the device, the numeric precision each run trained in (by default bf16
  autocast on CUDA GPUs and fp32 on CPUs; bf16 on a CPU only on request) and whether it was
  compiled.
- *hardware* also names every package (torch, torchaudio, torchvision, timm, numpy, soundfile,
  soxr) that a run had at another version than `requirements.lock`, the environment the project
  tests and publishes with: its numbers may differ from the lock's for that reason alone.
- A result is ranked only if its metrics follow from its stored predictions and the dataset's
  labels (recomputed here); a result's checksum only catches accidents, since anyone can
  recompute it. What proves a result is re-running it: the project's CI re-runs every result file
  a pull request adds or changes (`bench verify --result`: exactly on the same CPU model and thread
  count, within 2 points of accuracy on another CPU, whose kernels differ).
- A submission's code runs in a sandbox that never holds a test label (the harness scores its
  predictions); *hardware* says *unsandboxed* of a run made with `--unsandboxed` or before the
  sandbox existed: its numbers rest on trusting its code.
- *published* is the figure the seed document reports for the same dataset and budget
  (its own protocol, hardware and code), shown for comparison, never ranked.
"""


def _fmt(entry: Entry, metric: str) -> str:
    """Mean ± sample std over the entry's runs; a single run has no spread to show; "–" where a run
    lacks the metric (recorded before it was registered, its dataset's labels not here)."""
    if not entry.has(metric):
        return "–"
    std = entry.std(metric)
    return f"{entry.mean(metric):.2f} ± {std:.2f}" if std is not None else f"{entry.mean(metric):.2f} (1 run)"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


VARIANT = "a sweep's variant (a run with overrides)"


def collect(results_root: Path, submissions: Submissions, specs: Registry[DatasetSpec], splits: Splits | None = None
            ) -> tuple[list[RunRecord], list[tuple[Path, str]]]:
    """(records that may be ranked, (file, why) for every other result file under ``results_root``).

    ``splits``: each dataset's labels and split as they are now (read from the default data root
    when not given); a record whose metrics do not follow from its predictions and those labels is
    damaged, whatever its seal says, and one made on another split is stale (``harness.runs.verdict``).
    """
    against = Judged(submissions, specs, splits or Splits())
    ranked: list[RunRecord] = []
    excluded: list[tuple[Path, str]] = []
    for path in store.result_files(results_root):
        try:
            record = store.load_record(path, results_root)
        except RecordError as err:
            excluded.append((path, str(err).removeprefix(f"{path}: ")))
            continue
        if isinstance(record, FailedRecord):
            excluded.append((path, f"failed: {record.error}"))
        elif damage := _damage(record, against):
            excluded.append((path, damage))
        elif record.run.overrides:
            excluded.append((path, VARIANT))
        elif isinstance(found := verdict(record, against), Stale):
            excluded.append((path, f"stale: {found.reason}"))
        else:
            ranked.append(_completed(record, against))
    return ranked, excluded


def _damage(record: RunRecord, against: Judged) -> str | None:
    if record.run.dataset not in against.datasets:
        return None
    spec = against.datasets.get(record.run.dataset)
    return metrics_problem(record, against.splits.key(spec), spec.num_classes)


def _completed(record: RunRecord, against: Judged) -> RunRecord:
    """The record with each registered metric it was recorded without computed from its predictions,
    where its dataset's labels are here (of its split: it passed ``_damage`` and the verdict)."""
    missing = [name for name in METRICS if name not in record.metrics]
    spec = against.datasets.get(record.run.dataset)
    key = against.splits.key(spec) if missing else None
    if key is None or record.fold_fingerprint != key.fingerprint:
        return record
    now = scores(key.labels[key.folds == record.run.fold], np.asarray(record.predictions), spec.num_classes)
    return dataclasses.replace(record, metrics={**record.metrics, **{name: now[name] for name in missing}})


def _published_row(name: str, sub: Described, pub: Published) -> dict[str, Any]:
    return {"#": "–", "submission": name, "model": sub.model_name, "front-end": sub.registered.frontend_summary,
            "pretrained": "yes" if sub.pretrained else "no", **{spec.label: "" for spec in registered()},
            METRICS.get("accuracy").label: "not run here", "runs": "0", "test clips": "", "s/run": "", "hardware": "",
            "vs #1": "", "published": _published_text(pub)}


def _entry_row(rank: str, entry: Entry, pub: Published | None, versus: str, card: str) -> dict[str, Any]:
    first, recs = entry.first, entry.records
    return {"#": rank, "submission": f"[{entry.label}]({card})" + (" *TTA*" if first.tta else ""), "model": first.model,
            "front-end": first.frontend, "pretrained": "yes" if first.pretrained else "no",
            **{spec.label: _fmt(entry, spec.name) for spec in registered()},
            "runs": f"{len(recs)} ({plural(len(entry.folds), 'fold')} × {plural(len(entry.trials), 'trial')})"
                    + (f", {len(first.excluded_files)} bad files left out" if first.excluded_files else ""),
            "test clips": _span([r.n_test for r in recs]),
            "s/run": f"{np.mean([r.wall_time_s for r in recs]):.1f}",
            "hardware": ", ".join(sorted({f"{r.hardware}, {r.run.precision}" + (", compiled" if r.run.compiled else "")
                                          + _unlocked(r) + _unsandboxed(r) for r in recs})),
            "vs #1": versus, "published": _published_text(pub)}


COLUMNS = ["#", "submission", "model", "front-end", "pretrained", *(spec.label for spec in registered()), "vs #1",
           "runs", "test clips", "s/run", "hardware", "published"]


def comparisons(entries: list[Entry]) -> list[Comparison | None]:
    """Each ranked entry against #1 (None for #1 itself and for entries on other (fold, trial) pairs)."""
    if not entries:
        return []
    best = entries[0]
    ratio = np.mean([r.n_test / max(1, r.n_train + r.n_val) for r in best.records])
    accuracy = lambda e: {(r.run.fold, r.run.trial): 100 * r.accuracy for r in e.records}
    return [None] + [compare(accuracy(best), accuracy(e), float(ratio)) for e in entries[1:]]


def _rank(position: int, versus: Comparison | None) -> str:
    return "1 (tied)" if versus is not None and versus.tied else str(position)


def _versus(position: int, versus: Comparison | None) -> str:
    if position == 1:
        return "–"
    if versus is None:
        return "not compared (other folds or trials)"
    if versus.pairs < 2:
        return f"{0.0 - versus.mean_difference or 0.0:+.2f} (one run each: not tested)"
    p = f"p = {versus.p:.3f}" if versus.p >= 0.001 else "p < 0.001"
    return f"{0.0 - versus.mean_difference or 0.0:+.2f}, {p}" + ("" if versus.distinguishable else " (tied)")


def _unlocked(record: RunRecord) -> str:
    """The packages a run had at other versions than requirements.lock pins (nothing when it had the lock's)."""
    drift = environment.record_drift(record.versions)
    return "".join(f", {d.package} {d.installed} (lock: {d.locked or 'none'})" for d in drift)


def _unsandboxed(record: RunRecord) -> str:
    """Said of a run whose submission code was not confined: ``--unsandboxed``, or run before the sandbox."""
    if record.sandbox is None:
        return ", unsandboxed (run before the sandbox)"
    return ", unsandboxed" if record.sandbox.startswith("off") else ""


def _span(counts: list[int]) -> str:
    """Test clips per run: one number, or the range over folds of different sizes."""
    return str(min(counts)) if min(counts) == max(counts) else f"{min(counts)}-{max(counts)}"


def _ranked_rows(dataset: str, epochs: int, entries: list[Entry], built: dict[str, Described],
                 files: dict[str, Any], captions: dict[str, str]) -> list[dict[str, Any]]:
    """The table's rows, #1 first, each with its rank group and its page (written into ``files``)."""
    rows = []
    for position, (entry, versus) in enumerate(zip(entries, comparisons(entries)), 1):
        rank, against = _rank(position, versus), _versus(position, versus)
        card = card_path(dataset, epochs, entry.label)
        place = f"#{rank}" + (f" ({against} vs #1)" if position > 1 else "")
        files[card] = model_card(entry, built.get(entry.submission), place, captions)
        pub = built[entry.submission].published_for(dataset, epochs) if entry.submission in built else None
        rows.append(_entry_row(rank, entry, pub, against, card))
    return rows


def _section(dataset: str, epochs: int, entries: list[Entry], built: dict[str, Described], files: dict[str, Any],
             class_names: list[str]) -> list[str]:
    entries = ranked(entries)
    figures = table_figures(dataset, epochs, entries, class_names) if entries else {}
    files.update(figures)
    captions = {FIGURES[kind]: path for kind in FIGURES if (path := figure_path(dataset, epochs, kind)) in figures}
    table = _ranked_rows(dataset, epochs, entries, built, files, captions)
    ran = {e.submission for e in entries}
    table += [_published_row(name, sub, pub) for name, sub in built.items()
              if name not in ran and (pub := sub.published_for(dataset, epochs))]
    out = [f"### {dataset}, {plural(epochs, 'epoch')}", "",
           tabulate([[r[c] for c in COLUMNS] for r in table], COLUMNS, tablefmt="github"), ""]
    if entries:
        folds = sorted({f for e in entries for f in e.folds})
        per_fold = [[e.label, *(f"{m:.2f}" if (m := e.fold_mean(f)) is not None else "" for f in folds)]
                    for e in entries]
        out += ["Accuracy % per test fold (mean over trials):", "",
                tabulate(per_fold, ["submission", *[f"fold {f}" for f in folds]], tablefmt="github"), "",
                *[f"![{caption}]({path})\n" for caption, path in captions.items()]]
    return out


def _published_text(pub: Published | None) -> str:
    if pub is None:
        return ""
    text = f"{pub.accuracy:.2f}"
    if pub.accuracy_std is not None:
        text += f" ± {pub.accuracy_std:.2f}"
    return text + (f" ({pub.protocol})" if pub.protocol else "")


def render(results_root: Path, submissions: Submissions, specs: Registry[DatasetSpec], splits: Splits | None = None,
           published: bool = True) -> tuple[str, dict[str, Any]]:
    """The whole leaderboard as markdown, and the files it links (path relative to it -> PNG bytes
    of a figure, or the markdown of an entry's page).

    ``published``: the project's board, which also shows tables where only a seed document's
    figure exists ("not run here"); a user's own board shows the tables they ran.
    """
    records, excluded = collect(results_root, submissions, specs, splits)
    tables = aggregate(records)
    # each described once, in a worker; a user's board needs only the submissions it ranks
    names = list(submissions) if published else sorted({r.run.submission for r in records})
    built = {name: submissions.describe(name) for name in names if not submissions.problem(name)}
    sections = set(tables) | ({(d, p.epochs) for sub in built.values() for d, pubs in sub.published.items()
                               for p in pubs} if published else set())
    source = "`results/`" if published else "this result store"
    files: dict[str, Any] = {}
    lines = ["# Leaderboard", "",
             f"Generated by `bench leaderboard` from the result files under {source}; do not edit by hand.", ""]
    for dataset in sorted({d for d, _ in sections}):
        spec = specs.get(dataset) if dataset in specs else None
        lines += [f"## {dataset}" + (f" (v{spec.version}, {spec.num_folds} folds)" if spec else ""), ""]
        if spec and spec.description:
            lines += [spec.description, ""]
        for _, epochs in sorted(s for s in sections if s[0] == dataset):
            lines += _section(dataset, epochs, tables.get((dataset, epochs), []), built, files,
                              list(spec.class_names) if spec else [])
    variants = sum(why == VARIANT for _, why in excluded)
    listed = [(p, why) for p, why in excluded if why != VARIANT]
    if excluded:
        lines += ["## Not ranked", ""]
    if variants:
        lines += [f"{plural(variants, 'result')} of sweep variants (runs with overrides) are not ranked: a setting "
                  f"chosen by a sweep is tuned on its test folds; register it as a submission to rank it. "
                  f"`bench sweep FILE --report` shows them.", ""]
    if listed:
        lines += [tabulate([[p.relative_to(results_root).as_posix(), why] for p, why in listed],
                           ["result file", "why"], tablefmt="github"), ""]
    return "\n".join(lines + [RULES]), files


OWNED = ("figures", "entries")  # folders beside the board that bench leaderboard writes and cleans
MARKER = ".written-by-bench-leaderboard"


def write(output: Path, text: str, files: dict[str, Any]) -> None:
    """Write the markdown and its files beside it. The ``figures/`` and ``entries/`` folders are the
    board's: a file in them that this render did not make is removed (a folder of that name the
    board did not create is refused, not emptied); an unchanged figure is not rewritten.

    Every file is written whole under a temporary name and renamed into place (utf-8), the markdown
    after its figures and pages, and stale files go last: a render that fails (a full disk, a
    read-only folder: ``disk.DiskError``) leaves the board as it was, never an empty or half page."""
    folder = output.parent
    data = {name: content.encode("utf-8") if isinstance(content, str) else content for name, content in files.items()}
    with disk.writing(folder, disk.BOARD, lambda: len(text.encode("utf-8")) + sum(map(len, data.values()))):
        _refuse_foreign(folder)
        legacy = re.findall(r"\]\((curves-[\w.\-]+\.svg)\)", output.read_text(encoding="utf-8", errors="replace")) \
            if output.exists() else []  # boards before figures/ linked SVG curves beside themselves
        for name, content in data.items():
            path = folder / name
            if not path.exists() or path.read_bytes() != content:
                owners.write_atomic(path, content)
        owners.write_atomic(output, text.encode("utf-8"))
        for name in legacy:
            (folder / name).unlink(missing_ok=True)
        _remove_stale(folder, data)


def _refuse_foreign(folder: Path) -> None:
    """Refuse an owned folder's name holding files the board did not write; mark the board's own."""
    for name in OWNED:
        owned = folder / name
        if owned.exists() and any(owned.iterdir()) and not (owned / MARKER).exists():
            raise HarnessError(f"{owned} holds files bench leaderboard did not write; move them, or write the "
                               f"board elsewhere with --output")
    for name in OWNED:
        (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / name / MARKER).touch()


def _remove_stale(folder: Path, files: dict[str, bytes]) -> None:
    """Remove what the owned folders hold besides ``files``: figures and pages of tables that are
    gone, temporary files of crashed renders; not another live render's temporary files."""
    for name in OWNED:
        for old in (folder / name).rglob("*"):
            if old.is_file() and old.name != MARKER and old.relative_to(folder).as_posix() not in files and \
                    not ((tag := owners.TAGGED.search(old.name)) and owners.is_alive(tag["tag"]) is not False):
                old.unlink(missing_ok=True)
