"""Render ``leaderboard/README.md`` from stored result files only.

Each (dataset, epoch budget) gets a ranked table and a per-fold table. Only results whose
provenance still matches the current submission and dataset are ranked; the rest are
listed with the reason they were left out.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from harness import results as R
from harness.catalog import DatasetSpec
from harness.provenance import build_submission, provenance_problem
from harness.registry import Registry
from harness.run import Run

RULES = """\
## Rules

- Every table has a fixed epoch budget; entries are compared only within it.
- The test fold never reaches training or model selection: the harness computes test features
  only after training, and early stopping uses a validation split carved from the training folds.
- No test-time augmentation unless a submission declares it; such entries are marked *TTA*.
- Ranked by mean test accuracy. **±** is the sample standard deviation (ddof = 1) over all
  runs of the row, i.e. over folds × trials; *runs* says how many that is.
- A result is ranked only while its submission source, config hash, dataset version and fold
  fingerprint match the current code and data; otherwise it is listed as stale.
- A run's identity holds its weights (from scratch, pretrained, random initialisation of a
  pretrained model, or a checkpoint by digest), its precision and whether it was compiled: runs
  that differ in any of them are separate entries, named `submission (variant)` where one
  submission has several in a table, and are never averaged together.
- *hardware* names the device and the numeric precision each run trained in (by default bf16
  autocast on CUDA GPUs and fp32 on CPUs; bf16 on a CPU only on request).
- *published* is the figure the seed document reports for the same dataset and budget
  (its own protocol, hardware and code), shown for comparison, never ranked.
"""


@dataclass
class Row:
    record: dict[str, Any]
    path: Path


def _fmt(values: list[float]) -> str:
    values = np.asarray(values) * 100
    std = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.2f} ± {std:.2f}"


def collect(results_root: Path, submissions: Registry, specs: Registry[DatasetSpec],
            fold_fingerprints: dict[str, str] | None = None):
    """Sort stored results into ranked rows by (dataset, epochs), and a list of excluded files."""
    current: dict[Any, Any] = {("folds", k): v for k, v in (fold_fingerprints or {}).items()}
    ranked: dict[tuple[str, int], list[Row]] = defaultdict(list)
    excluded: list[tuple[Path, str]] = []
    for path, record in R.iter_results(results_root):
        if record is None:
            excluded.append((path, "unreadable or corrupt JSON"))
        elif not R.is_sealed(record):
            excluded.append((path, "checksum mismatch: edited by hand or damaged"))
        elif record.get("status") != "ok":
            excluded.append((path, f"failed: {record.get('error', 'unknown error')}"))
        elif problem := provenance_problem(record, submissions, specs, current):
            excluded.append((path, f"stale: {problem}"))
        else:
            ranked[(record["dataset"], int(record["epochs"]))].append(Row(record, path))
    return ranked, excluded


def _published(built: dict, dataset: str, epochs: int) -> dict[str, dict]:
    """Published figures for this table, each with the submission's model, front-end and weights."""
    out = {}
    for name, sub in built.items():
        entries = sub.published.get(dataset, [])
        for entry in entries if isinstance(entries, list) else [entries]:
            if int(entry.get("epochs", -1)) == epochs:
                out[name] = {**entry, "_model": sub.model_name, "_frontend": sub.frontend.summary(),
                             "_pretrained": "yes" if sub.pretrained else "no"}
    return out


def entries(rows: list[Row]) -> dict[str, list[dict]]:
    """The table's entries: one per submission and run variant (weights, precision, compile), never
    mixed. An entry is named by its submission, with the variant where one submission has several."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row.record["submission"], Run.from_identity(row.record["run"]).variant)].append(row.record)
    names = [name for name, _ in groups]
    return {name if names.count(name) == 1 else f"{name} ({variant})": recs for (name, variant), recs in groups.items()}


def mean_curves(rows: list[Row]) -> dict[str, list[float]]:
    """Each entry's training loss per epoch, averaged over its runs."""
    losses = {label: [[c["train_loss"] for c in r.get("curves", [])] for r in recs]
              for label, recs in entries(rows).items()}
    return {label: np.mean([c[:min(map(len, runs))] for c in runs], axis=0).tolist() for label, runs in losses.items()
            if min(map(len, runs)) > 0}


def _section(dataset: str, epochs: int, rows: list[Row], published: dict[str, dict]) -> list[str]:
    by_sub = entries(rows)
    table = []
    for name, recs in by_sub.items():
        first = recs[0]
        pub = published.get(first["submission"], {})
        table.append({
            "submission": name + (" *TTA*" if first.get("tta") else ""),
            "model": first["model"], "front-end": first["frontend"],
            "pretrained": "yes" if first.get("pretrained") else "no",
            "accuracy %": _fmt([r["metrics"]["accuracy"] for r in recs]),
            "macro-F1 %": _fmt([r["metrics"]["macro_f1"] for r in recs]),
            "runs": f"{len(recs)} ({len({r['fold'] for r in recs})} folds × {len({r['trial'] for r in recs})} trials)"
                    + (f", {len(first['excluded_files'])} bad files left out" if first.get("excluded_files") else ""),
            "s/run": f"{np.mean([r['wall_time_s'] for r in recs]):.1f}",
            "hardware": ", ".join(sorted({f"{r['hardware']}, {R.precision_of(r)}" for r in recs})),
            "published": _published_text(pub),
            "_key": np.mean([r["metrics"]["accuracy"] for r in recs]),
        })
    for name, pub in published.items():
        if not any(recs[0]["submission"] == name for recs in by_sub.values()):
            table.append({"submission": name, "model": pub["_model"], "front-end": pub["_frontend"],
                          "pretrained": pub["_pretrained"],
                          "accuracy %": "not run here", "macro-F1 %": "", "runs": "0", "s/run": "",
                          "hardware": "", "published": _published_text(pub), "_key": -1.0})
    table.sort(key=lambda r: -r.pop("_key"))
    for rank, row in enumerate(table, 1):
        row["#"] = rank if row["runs"] != "0" else "–"
    cols = ["#", "submission", "model", "front-end", "pretrained", "accuracy %", "macro-F1 %", "runs", "s/run",
            "hardware", "published"]
    out = [f"### {dataset}, {epochs} epochs", "", tabulate([[r[c] for c in cols] for r in table], cols, tablefmt="github"), ""]
    if rows:
        folds = sorted({r.record["fold"] for r in rows})
        per_fold = []
        for name, recs in by_sub.items():
            cells = []
            for f in folds:
                accs = [r["metrics"]["accuracy"] * 100 for r in recs if r["fold"] == f]
                cells.append(f"{np.mean(accs):.2f}" if accs else "")
            per_fold.append([name, *cells])
        out += ["Accuracy % per test fold (mean over trials):", "",
                tabulate(per_fold, ["submission", *[f"fold {f}" for f in folds]], tablefmt="github"), "",
                f"![training loss per epoch]({curve_file(dataset, epochs)})", ""]
    return out


def _published_text(pub: dict) -> str:
    if not pub:
        return ""
    text = f"{pub['accuracy']:.2f}"
    if pub.get("accuracy_std") is not None:
        text += f" ± {pub['accuracy_std']:.2f}"
    return text + (f" ({pub['protocol']})" if pub.get("protocol") else "")


def curve_file(dataset: str, epochs: int) -> str:
    return f"curves-{dataset}-e{epochs}.svg"


def render(results_root: Path, submissions: Registry, specs: Registry[DatasetSpec],
           fold_fingerprints: dict[str, str] | None = None) -> tuple[str, dict[str, str]]:
    """The whole leaderboard as markdown, and the SVG curve files it links (name -> text)."""
    from harness.plots import curves_svg

    ranked, excluded = collect(results_root, submissions, specs, fold_fingerprints)
    figures = {curve_file(d, e): curves_svg(f"{d}, {e} epochs: training loss, mean over runs", mean_curves(rows))
               for (d, e), rows in ranked.items()}
    sections = set(ranked)
    built = {name: sub for name in submissions if not isinstance(sub := build_submission(name), str)}  # each built once
    for sub in built.values():
        for dataset, entries in sub.published.items():
            for entry in entries if isinstance(entries, list) else [entries]:
                sections.add((dataset, int(entry["epochs"])))
    lines = ["# Leaderboard", "",
             "Generated by `bench leaderboard` from the result files under `results/`; do not edit by hand.", ""]
    for dataset in sorted({d for d, _ in sections}):
        spec = specs.get(dataset) if dataset in specs else None
        lines += [f"## {dataset}" + (f" (v{spec.version}, {spec.num_folds} folds)" if spec else ""), ""]
        if spec and spec.description:
            lines += [spec.description, ""]
        for _, epochs in sorted(s for s in sections if s[0] == dataset):
            lines += _section(dataset, epochs, ranked.get((dataset, epochs), []), _published(built, dataset, epochs))
    if excluded:
        lines += ["## Not ranked", "", tabulate([[p.relative_to(results_root).as_posix(), why] for p, why in excluded],
                                                ["result file", "why"], tablefmt="github"), ""]
    return "\n".join(lines + [RULES]), figures
