"""Figures, all through matplotlib (Agg backend, PNG) and scikit-learn's displays: the leaderboard's
box plots, curves, confusion matrices and per-class F1, and the sweep reports' bar charts.

Every function returns PNG bytes without a version stamp, so the bytes change only when the
numbers do and a re-render leaves unchanged figures unchanged in git.
"""
from __future__ import annotations

import io

COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
STYLES = ["-", "--", ":", "-."]  # with 10 colours: 40 entries stay apart


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # no display; the same bytes on every machine with the same matplotlib
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png", metadata={"Software": None})  # no version stamp: bytes depend on data only
    _pyplot().close(fig)
    return out.getvalue()


def bar_chart_png(title: str, x_label: str, y_label: str, categories: list[str],
                  series: dict[str, dict[str, tuple[float, float]]]) -> bytes:
    """Grouped bars with std error bars.

    Args:
        categories: the x values, in order. series: name -> {category: (mean, std)}; one bar
            colour per series, a legend when there are several.
    """
    plt = _pyplot()
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(categories) * max(1, len(series)) + 2), 4), dpi=100)
    for n, (name, points) in enumerate(series.items()):
        xs = [i + (n - (len(series) - 1) / 2) * width for i, c in enumerate(categories) if c in points]
        means = [points[c][0] for c in categories if c in points]
        stds = [points[c][1] for c in categories if c in points]
        ax.bar(xs, means, width, yerr=stds, capsize=3, label=name, color=COLOURS[n % len(COLOURS)],
               error_kw={"ecolor": "black", "elinewidth": 1})
    ax.set_xticks(range(len(categories)), categories, rotation=45 if len(categories) > 8 else 0)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(title, fontsize=10)
    lows = [m - s for points in series.values() for m, s in points.values()]
    highs = [m + s for points in series.values() for m, s in points.values()]
    low, high = max(0.0, min(lows, default=0.0) - 5), max(highs, default=1.0)
    ax.set_ylim(low, high + 0.05 * (high - low))  # room for the top std bar, even above 100 %
    if len(series) > 1:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def box_plot_png(title: str, entries: dict[str, dict[int, list[float]]], y_label: str = "test accuracy %") -> bytes:
    """One box per entry over all its runs, each run a dot coloured by its test fold (as seed 001
    shows its folds), entries top to bottom in the given order.

    Args:
        entries: name -> {test fold: the metric of each trial on it}.
    """
    plt = _pyplot()
    names = list(entries)
    folds = sorted({fold for by_fold in entries.values() for fold in by_fold})
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.45 * len(names)), dpi=100)
    ax.boxplot([[v for values in entries[n].values() for v in values] for n in names], orientation="horizontal",
               positions=range(len(names)), widths=0.6, showfliers=False, medianprops={"color": "black"})
    for i, fold in enumerate(folds):
        points = [(v, row) for row, n in enumerate(names) for v in entries[n].get(fold, [])]
        offset = (i - (len(folds) - 1) / 2) * 0.08  # folds side by side, not on top of each other
        ax.scatter([v for v, _ in points], [row + offset for _, row in points], s=12, zorder=3,
                   color=COLOURS[i % len(COLOURS)], label=f"fold {fold}")
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()  # the first entry (#1) on top, as in the table
    ax.set_xlabel(y_label)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    if len(folds) > 1:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, title="test fold",
                  title_fontsize=7)
    fig.tight_layout()
    return _png(fig)


def curves_png(title: str, panels: dict[str, dict[str, tuple[list[float], list[float]]]], budget: int) -> bytes:
    """One panel per quantity (training loss, validation loss, ...), one line per entry: its mean
    over runs per epoch with a shaded ±1 std band. Integer epoch ticks chosen by matplotlib, so
    500 epochs read as well as 5.

    Args:
        panels: quantity -> entry -> (mean per epoch, std per epoch). budget: the table's epoch
            budget; a staged recipe's extra epochs (frozen fine-tuning, progressive resizing) come
            on top of it, and the axis says so.
    """
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    names = list(dict.fromkeys(name for lines in panels.values() for name in lines))
    columns, rows = min(2, len(panels)), (len(panels) + 1) // 2  # four panels: two by two
    legend_rows = -(-len(names) // (1 + len(names) // 26))
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns + 2.2 * (1 + len(names) // 26),
                                                     max(3.4 * rows, 0.15 * legend_rows + 0.9)),
                             dpi=100, squeeze=False, layout="constrained")
    for ax in axes.flat[len(panels):]:
        ax.set_axis_off()
    for ax, (quantity, lines) in zip(axes.flat, panels.items()):
        for name, (mean, std) in lines.items():
            n = names.index(name)
            epochs = range(1, len(mean) + 1)
            colour, style = COLOURS[n % len(COLOURS)], STYLES[n // len(COLOURS) % len(STYLES)]
            ax.plot(epochs, mean, style, color=colour, label=name, marker="o" if len(mean) == 1 else None, lw=1.4)
            ax.fill_between(epochs, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                            color=colour, alpha=0.15, lw=0)
        longest = max(len(mean) for mean, _ in lines.values())
        ax.set_xlabel("epoch" if longest <= budget else f"epoch ({longest} over all stages; budget {budget})",
                      fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=8))
        ax.set_title(quantity, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10, x=0.01, ha="left")  # left: clear of the legend on the right
    handles = {label: handle for ax in axes.flat for handle, label in zip(*ax.get_legend_handles_labels())}
    if len(names) > 1:  # beside the panels, one column per 25 entries: every name stays on the canvas
        fig.legend([handles[n] for n in names], names, loc="outside right upper", fontsize=7, frameon=False,
                   ncol=1 + len(names) // 26)
    return _png(fig)


def confusion_png(title: str, matrix: list[list[int]], class_names: list[str]) -> bytes:
    """scikit-learn's confusion matrix display: true classes down, predicted across; counts in
    the cells up to 20 classes, colour alone beyond (50 classes stay readable)."""
    import numpy as np
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = _pyplot()
    n = len(class_names)
    size = max(5.0, 0.22 * n + 2.5)
    fig, ax = plt.subplots(figsize=(size, size), dpi=100)
    shown = ConfusionMatrixDisplay(np.asarray(matrix), display_labels=class_names).plot(
        ax=ax, include_values=n <= 20, cmap="Blues", xticks_rotation="vertical", colorbar=False)
    fig.colorbar(shown.im_, ax=ax, shrink=0.7, label="clips")
    ax.tick_params(labelsize=7 if n > 20 else 9)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _png(fig)


def per_class_png(title: str, class_names: list[str], series: dict[str, list[float]], x_label: str) -> bytes:
    """Horizontal grouped bars, one group per class (top to bottom), one colour per entry."""
    plt = _pyplot()
    height = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(7, 1.5 + 0.12 * len(class_names) * len(series) + 0.15 * len(class_names)),
                           dpi=100)
    for n, (name, values) in enumerate(series.items()):
        ys = [i + (n - (len(series) - 1) / 2) * height for i in range(len(class_names))]
        ax.barh(ys, values, height, label=name, color=COLOURS[n % len(COLOURS)])
    ax.set_yticks(range(len(class_names)), class_names, fontsize=7 if len(class_names) > 20 else 9)
    ax.invert_yaxis()
    ax.set_xlabel(x_label)
    ax.set_xlim(0, 100)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    return _png(fig)


def critical_difference_png(title: str, results: dict[str, dict[tuple[int, int], float]]) -> bytes:
    """Demšar's critical-difference diagram (scikit-posthocs): each entry at its mean rank over the
    shared (fold, trial) splits (1 = best), entries that the Nemenyi test after Friedman's cannot
    tell apart at the 5% level joined by a bar; the Friedman p in the title.

    Args:
        results: entry -> {(fold, trial): metric}, every entry over the same pairs, at least three entries.
    """
    import pandas as pd
    import scikit_posthocs as posthocs
    from scipy.stats import friedmanchisquare

    plt = _pyplot()
    frame = pd.DataFrame({name: [by_pair[key] for key in sorted(by_pair)] for name, by_pair in results.items()})
    ranks = frame.rank(axis=1, ascending=False).mean()
    friedman = friedmanchisquare(*(frame[column] for column in frame)).pvalue
    fig, ax = plt.subplots(figsize=(7.5, 1.6 + 0.28 * len(results)), dpi=100)
    posthocs.critical_difference_diagram(ranks, posthocs.posthoc_nemenyi_friedman(frame), ax=ax,
                                         label_props={"fontsize": 8})
    ax.set_title(f"{title}\nFriedman p = {friedman:.3g}; bars join entries Nemenyi cannot tell apart (5%)",
                 fontsize=9, pad=22)  # above the rank axis, which is drawn at the top
    fig.tight_layout()
    return _png(fig)
