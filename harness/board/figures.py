"""The figures of one leaderboard table (a dataset and an epoch budget), from its ranked entries,
and each entry's own: what each shows is in its title, and ``FIGURES`` / ``OWN`` name them for the
markdown (``figure_captions``).
"""
from __future__ import annotations

import numpy as np

from harness.board.aggregate import Entry
from harness.board.plots import box_plot_png, confusion_png, critical_difference_png, curves_png, per_class_png
from harness.training.metrics import registered

FIGURES = {  # file suffix -> what the markdown calls it
    "folds": "test accuracy per fold, every run",
    "curves": "curves per epoch, mean ± std over runs",
    "confusion": "confusion matrix of #1, summed over its runs",
    "per-class-f1": "per-class F1 of the top entries",
    "critical-difference": "mean rank over the shared (fold, trial) splits, Friedman + Nemenyi",
}
OWN = {  # an entry's own figures: file suffix -> what its page calls it
    "confusion": "its confusion matrix, summed over its runs",
    "per-class-f1": "its per-class F1, mean over its runs",
}
SHARED = ("folds", "curves", "critical-difference")  # the table's figures an entry's page shows too
CURVES = {"train_loss": ("training loss", 1), "val_loss": ("validation loss", 1),  # curve key -> (title, scale)
          **{f"val_{spec.name}": (f"validation {spec.label}", 100) for spec in registered()}}
TOP = 3  # entries in the per-class F1 figure


def figure_path(dataset: str, epochs: int, kind: str, entry: Entry | None = None) -> str:
    """A table's figure, or one of ``entry``'s own (named by its slug, as its page is)."""
    return f"figures/{dataset}-e{epochs}-{f'{entry.slug}-' if entry else ''}{kind}.png"


def figure_captions(dataset: str, epochs: int, figures: dict[str, bytes], entry: Entry | None = None) -> dict[str, str]:
    """Caption -> path of the ``figures`` the board shows for the table, or ``entry``'s page for it."""
    kinds = [(FIGURES[kind], figure_path(dataset, epochs, kind)) for kind in (SHARED if entry else FIGURES)]
    kinds += [(OWN[kind], figure_path(dataset, epochs, kind, entry)) for kind in OWN] if entry else []
    return {caption: path for caption, path in kinds if path in figures}


def table_figures(dataset: str, epochs: int, entries: list[Entry]) -> dict[str, bytes]:
    """Every figure of a table and of its entries, by path relative to the board; ``entries`` ranked, #1 first."""
    where = f"{dataset}, {epochs} epoch{'s' if epochs != 1 else ''}"
    figures = {"folds": box_plot_png(f"{where}: test accuracy of every run, by test fold", _by_fold(entries))}
    if panels := _curve_panels(entries):
        figures["curves"] = curves_png(f"{where}: mean ± std over runs", panels, epochs)
    own = {entry.label: entry_figures(where, entry) for entry in entries}
    top = entries[0]
    if "confusion" in own[top.label]:
        figures["confusion"] = own[top.label]["confusion"]  # the same figure: #1's own
    best = [e for e in entries[:TOP] if all("per_class_f1" in r.metrics for r in e.records)]
    if best:
        figures["per-class-f1"] = per_class_png(
            f"{where}: per-class F1 (mean over runs) of the top {len(best)}", top.class_names,
            {e.label: e.per_class_f1() for e in best}, "F1 %")
    shared = [e for e in entries if _pairs(e).keys() == _pairs(top).keys()]
    if len(shared) >= 3 and len(_pairs(top)) >= 2:
        figures["critical-difference"] = critical_difference_png(
            f"{where}: test accuracy ranks of the {len(shared)} entries on the same splits",
            {e.label: _pairs(e) for e in shared})
    return {figure_path(dataset, epochs, kind): png for kind, png in figures.items()} | \
        {figure_path(dataset, epochs, kind, e): png for e in entries for kind, png in own[e.label].items()}


def entry_figures(where: str, entry: Entry) -> dict[str, bytes]:
    """An entry's own figures, by kind (``OWN``): its confusion matrix summed over its runs and its
    per-class F1, mean over them, where every run has them."""
    figures, runs = {}, f"{len(entry.records)} run{'s' if len(entry.records) != 1 else ''}"
    if confusion := _summed_confusion(entry):
        figures["confusion"] = confusion_png(f"{where}: {entry.label}, summed over {runs}", confusion,
                                             entry.class_names)
    if entry.has("per_class_f1"):
        figures["per-class-f1"] = per_class_png(f"{where}: {entry.label}, per-class F1 (mean over {runs})",
                                                entry.class_names, {entry.label: entry.per_class_f1()}, "F1 %")
    return figures


def _pairs(entry: Entry) -> dict[tuple[int, int], float]:
    return {(r.run.fold, r.run.trial): 100 * r.accuracy for r in entry.records}


def _by_fold(entries: list[Entry]) -> dict[str, dict[int, list[float]]]:
    return {e.label: {fold: [100 * r.accuracy for r in e.records if r.run.fold == fold] for fold in e.folds}
            for e in entries}


def _curve_panels(entries: list[Entry]) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """quantity -> entry -> (mean, std) per epoch, over the epochs all of the entry's runs have."""
    panels: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    for key, (title, scale) in CURVES.items():
        for entry in entries:
            series = [[scale * row[key] for row in r.curves if key in row] for r in entry.records]
            shortest = min(map(len, series))
            if shortest:
                values = np.array([s[:shortest] for s in series])
                std = values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros(shortest)
                panels.setdefault(title, {})[entry.label] = (values.mean(axis=0).tolist(), std.tolist())
    return panels


def _summed_confusion(entry: Entry) -> list[list[int]] | None:
    matrices = [r.metrics.get("confusion") for r in entry.records]
    return np.sum(matrices, axis=0).tolist() if all(matrices) else None
