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

from harness.board.aggregate import Entry, aggregate, ranked, with_keys
from harness.board.cards import card_path, model_card
from harness.board.figures import figure_captions, table_figures
from harness.board.suites import WEIGHTINGS, Suite, score_suite
from harness.board.significance import McNemar, Verdict, compare, competition_ranks, judge, mcnemar, rank_intervals
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
- Ranked by mean test accuracy; equal means share a rank (1, 1, 3). **±** is the sample
  standard deviation (ddof = 1) over all runs of the row, i.e. over folds × trials; *runs* says how many
  that is, *test clips* how many clips each run was scored on. **[low, high]** is the 95% interval
  on the mean from the corrected variance the *vs #1* t-test uses: mean ± t(0.975, n−1) ×
  √((1/n + n_test/n_train) × var), within 0–100; one run has no spread and no interval. A metric a
  run was recorded without (registered after it ran) is computed from its stored predictions where
  the dataset's labels are here, else shown as –.
- *rank interval*: the central 95% of the entry's rank over 2,000 bootstrap redraws of each
  entry's (fold, trial) results (a fixed seed; entries on the same splits redrawn together). Like
  a plain t-test it takes the results as independent, so it is narrower than it should be: how
  stable the order is over the runs, not a test. One run: none.
- *vs #1* compares each entry with #1: the mean accuracy difference in points, the two-sided p of
  the deciding test, and that p adjusted by Holm's step-down over all of the table's comparisons
  with #1. An entry whose adjusted p is 5% or more is ranked *1 (tied)*.
  - With two or more paired (fold, trial) runs the corrected resampled t-test decides
    (Nadeau & Bengio 2003, for repeated k-fold as in Bouckaert & Frank 2004). A plain paired
    t-test over folds would overstate significance: the training sets of any two folds share most
    of their clips, so the fold results are correlated and their spread understates the variance;
    the correction scales it by 1/n + n_test/n_train.
  - Where both ran on identical test sets (the same dataset, fold and fold fingerprint: the same
    clips in the same order), McNemar's exact test on the clips one got right and the other wrong,
    their counts summed over the runs (the exact Mantel-Haenszel test, each clip its own stratum).
    It takes the trained models as given, so it measures only the test clips' variance, not the
    training's: it decides only for one run each, where no t-test can run, and then says that these
    two trained models differ, not that their recipes would with other seeds. Beside a t-test it is
    shown, not deciding. Without the dataset's labels here it cannot be computed, and one-run
    entries are then not tested.
  - Entries that did not run on the same (fold, trial) pairs are not compared.
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
- *protocol* is how an entry was evaluated: *finetune* (its model trained end to end by its recipe),
  *linear* (a probe on its frozen encoder's embeddings, chosen on a validation split of the training
  folds) or *knn* (the 10 nearest training clips by cosine similarity); `bench run --protocol`.
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
    """Mean ± sample std over the entry's runs, then [the 95% interval on the mean]; a single run
    has no spread and no interval to show; "–" where a run lacks the metric (recorded before it was
    registered, its dataset's labels not here)."""
    if not entry.has(metric):
        return "–"
    std = entry.std(metric)
    if std is None:
        return f"{entry.mean(metric):.2f} (1 run) [no interval]"
    interval = entry.interval(metric)
    return f"{entry.mean(metric):.2f} ± {std:.2f}" + (f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "")


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
    """The record with what it was recorded without taken from its dataset as it is now, where its
    labels are here and its split is the record's (it passed ``_damage`` and the verdict): each
    registered metric, computed from its predictions, and the class names of its split (declared or read from the data)."""
    missing = [name for name in METRICS if name not in record.metrics]
    spec = against.datasets.get(record.run.dataset)
    key = against.splits.key(spec) if missing or record.class_names is None else None
    if key is None or record.fold_fingerprint != key.fingerprint:
        return record
    now = scores(key.labels[key.folds == record.run.fold], np.asarray(record.predictions), spec.num_classes) \
        if missing else {}
    return dataclasses.replace(record, metrics={**record.metrics, **{name: now[name] for name in missing}},
                               class_names=record.class_names or list(key.class_names or spec.class_names) or None)


def _published_row(name: str, sub: Described, pub: Published) -> dict[str, Any]:
    return {"#": "–", "rank interval": "", "submission": name, "model": sub.model_name,
            "front-end": sub.registered.frontend_summary,
            "pretrained": "yes" if sub.pretrained else "no", "protocol": "finetune",
            **{spec.label: "" for spec in registered()},
            METRICS.get("accuracy").label: "not run here", "runs": "0", "test clips": "", "s/run": "", "hardware": "",
            "vs #1": "", "published": _published_text(pub)}


def _entry_row(rank: str, interval: str, entry: Entry, pub: Published | None, versus: str, card: str
               ) -> dict[str, Any]:
    first, recs = entry.first, entry.records
    return {"#": rank, "rank interval": interval,
            "submission": f"[{entry.label}]({card})" + (" *TTA*" if first.tta else ""), "model": first.model,
            "front-end": first.frontend, "pretrained": "yes" if first.pretrained else "no",
            "protocol": first.run.protocol, **{spec.label: _fmt(entry, spec.name) for spec in registered()},
            "runs": f"{len(recs)} ({plural(len(entry.folds), 'fold')} × {plural(len(entry.trials), 'trial')})"
                    + (f", {len(first.excluded_files)} bad files left out" if first.excluded_files else ""),
            "test clips": _span([r.n_test for r in recs]),
            "s/run": f"{np.mean([r.wall_time_s for r in recs]):.1f}",
            "hardware": ", ".join(sorted({f"{r.hardware}, {r.run.precision}" + (", compiled" if r.run.compiled else "")
                                          + _unlocked(r) + _unsandboxed(r) for r in recs})),
            "vs #1": versus, "published": _published_text(pub)}


COLUMNS = ["#", "rank interval", "submission", "model", "front-end", "pretrained", "protocol",
           *(spec.label for spec in registered()), "vs #1", "runs", "test clips", "s/run", "hardware", "published"]


def comparisons(entries: list[Entry]) -> list[Verdict | None]:
    """Each ranked entry against #1 (None for #1 itself and for entries on other (fold, trial) pairs):
    the corrected t-test over their accuracies, McNemar's test on their clips where they scored
    identical test sets, and the deciding p Holm-adjusted over the table
    (``harness.board.significance``)."""
    if not entries:
        return []
    best, tests = entries[0], []
    for entry in entries[1:]:
        t_test = compare(best.accuracies(), entry.accuracies(), best.test_train_ratio)
        tests.append((t_test, _same_clips(best, entry)) if t_test else None)
    return judge([None, *tests])


def _same_clips(best: Entry, other: Entry) -> McNemar | None:
    """McNemar's test of two entries whose paired runs scored identical test sets (the same fold
    of the same split, its clips in the same order); None where the dataset's labels are not here."""
    mine, theirs = best.outcomes(), other.outcomes()
    if mine is None or theirs is None or mine.keys() != theirs.keys() or \
            any(mine[key][0] != theirs[key][0] for key in mine):
        return None
    return mcnemar([(mine[key][1], theirs[key][1]) for key in sorted(mine)])


def _rank(place: int, versus: Verdict | None) -> str:
    """``place``: 1 + how many entries score higher (equal scores share it); *1 (tied)* where the
    Holm-adjusted deciding test cannot tell the entry from #1."""
    return "1 (tied)" if versus is not None and versus.tied else str(place)


def _p(p: float) -> str:
    return f"p = {p:.3f}" if p >= 0.001 else "p < 0.001"


def _versus(position: int, versus: Verdict | None) -> str:
    if position == 1:
        return "–"
    if versus is None:
        return "not compared (other folds or trials)"
    difference = f"{0.0 - versus.t_test.mean_difference or 0.0:+.2f}"
    if versus.decided_by is None:
        return f"{difference} (one run each, and no labels here for McNemar: not tested)"
    text = f"{difference}, {versus.decided_by} {_p(versus.p)}, Holm {_p(versus.adjusted_p)}"
    if versus.decided_by == "t-test" and versus.mcnemar is not None:
        text += f"; McNemar {_p(versus.mcnemar.p)}"
    return text + (" (tied)" if versus.tied else "")


def _rank_interval(interval: tuple[int, int] | None) -> str:
    return f"{interval[0]}–{interval[1]}" if interval else "– (1 run)"


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
                 files: dict[str, Any], spec: DatasetSpec | None) -> list[dict[str, Any]]:
    """The table's rows, #1 first, each with its rank group and its page (written into ``files``, which
    holds the table's figures and its entries'); ``spec``: the dataset, None where no longer declared."""
    rows = []
    shared = competition_ranks([e.mean() for e in entries]).tolist() if entries else []  # equal scores, one rank
    intervals = rank_intervals([e.accuracies() for e in entries]) if entries else []
    for position, (entry, versus, at, interval) in enumerate(zip(entries, comparisons(entries), shared, intervals), 1):
        rank, against = _rank(at, versus), _versus(position, versus)
        card = card_path(dataset, epochs, entry)
        place = f"#{rank}" + (f" ({against} vs #1)" if position > 1 else "")
        files[card] = model_card(entry, built.get(entry.submission), spec, place,
                                 figure_captions(dataset, epochs, files, entry))
        pub = built[entry.submission].published_for(dataset, epochs) if entry.submission in built else None
        rows.append(_entry_row(rank, _rank_interval(interval), entry, pub, against, card))
    return rows


def _section(dataset: str, epochs: int, entries: list[Entry], built: dict[str, Described], files: dict[str, Any],
             spec: DatasetSpec | None) -> list[str]:
    entries = ranked(entries)
    figures = table_figures(dataset, epochs, entries) if entries else {}
    files.update(figures)
    table = _ranked_rows(dataset, epochs, entries, built, files, spec)
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
                *[f"![{caption}]({path})\n" for caption, path in figure_captions(dataset, epochs, figures).items()]]
    return out


def _suite_section(suite: Suite, tables: dict) -> list[str]:
    """A suite's entries: complete ones ranked by their score, then those lacking a task (missing)."""
    weighting = WEIGHTINGS.get(suite.weighting)
    rows = [[i + 1 if s.score is not None else "–", s.label,
             f"{s.score:.2f}" if s.score is not None else f"incomplete ({sum(a is None for a in s.accuracies)} missing)",
             *(f"{a:.2f}" if a is not None else "missing" for a in s.accuracies)]
            for i, s in enumerate(score_suite(suite, tables))]
    if not rows:
        return []
    better = "higher" if weighting.higher_is_better else "lower"
    return [f"## Suite: {suite.name}", "", *([suite.description, ""] if suite.description else []),
            f"Score: {weighting.doc}; in {weighting.unit}, {better} is better; over entries with a ranked result "
            f"for every task. Accuracy % per task: the mean over its runs.", "",
            tabulate(rows, ["#", "entry", "score", *(t.label for t in suite.tasks)], tablefmt="github"), ""]


def _protocol(spec: DatasetSpec) -> str:
    """What a table's runs are tested on: a holdout's one test split, or the folds of cross-validation."""
    if spec.folds["protocol"] == "holdout":
        test = round(100 * spec.folds.get("test_fraction", 0.1))
        return f"{100 - test}/{test} holdout: one test split"
    return f"{spec.num_folds} folds"


def _published_text(pub: Published | None) -> str:
    if pub is None:
        return ""
    text = f"{pub.accuracy:.2f}"
    if pub.accuracy_std is not None:
        text += f" ± {pub.accuracy_std:.2f}"
    return text + (f" ({pub.protocol})" if pub.protocol else "")


def render(results_root: Path, submissions: Submissions, specs: Registry[DatasetSpec], splits: Splits | None = None,
           published: bool = True, suites: list[Suite] = ()) -> tuple[str, dict[str, Any]]:
    """The whole leaderboard as markdown, and the files it links (path relative to it -> PNG bytes
    of a figure, or the markdown of an entry's page).

    ``published``: the project's board, which also shows tables where only a seed document's
    figure exists ("not run here"); a user's own board shows the tables they ran.
    """
    splits = splits if splits is not None else Splits()
    records, excluded = collect(results_root, submissions, specs, splits)
    # each entry is given its dataset's labels (the ones collect read), for McNemar's test on its clips
    tables = with_keys(aggregate(records), {d: splits.key(specs.get(d)) for d in {r.run.dataset for r in records}})
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
        lines += [f"## {dataset}" + (f" (v{spec.version}, {_protocol(spec)})" if spec else ""), ""]
        if spec and spec.description:
            lines += [spec.description, ""]
        for _, epochs in sorted(s for s in sections if s[0] == dataset):
            lines += _section(dataset, epochs, tables.get((dataset, epochs), []), built, files, spec)
    for suite in suites:
        lines += _suite_section(suite, tables)
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
