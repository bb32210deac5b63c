"""Figures, all through matplotlib (Agg backend, PNG) and scikit-learn's displays: the leaderboard's
box plots, curves, confusion matrices and per-class F1, and the sweep reports' bar charts.

Each ``*_figure`` function returns the matplotlib figure, sized to what it holds: its labels and
legends are measured as drawn, its title is wrapped to its width (``_finish``), so no text leaves
the canvas (tests/test_figures.py). Each ``*_png`` returns that figure's PNG bytes without a version
stamp, so the bytes change only when the numbers do and a re-render leaves unchanged figures
unchanged in git.
"""
from __future__ import annotations

import io
import textwrap
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from matplotlib.figure import Figure

COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
STYLES = ["-", "--", ":", "-."]  # with 10 colours: 40 entries stay apart
DPI = 100
EDGE = 0.1  # inches between a title and the canvas's edge


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # no display; the same bytes on every machine with the same matplotlib
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Figure) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png", metadata={"Software": None})  # no version stamp: bytes depend on data only
    _pyplot().close(fig)
    return out.getvalue()


def _inches(fig: Figure, artists: Iterable[Any], along: str = "width") -> float:
    """The widest (``along="height"``: the tallest) of ``artists`` as ``fig`` draws them, in inches; 0 for none."""
    renderer = fig.canvas.get_renderer()
    return max((getattr(a.get_window_extent(renderer), along) for a in artists), default=0.0) / fig.dpi


def _finish(fig: Figure, title: str, width: float, height: float, fontsize: float = 10) -> Figure:
    """``fig`` sized ``width`` x ``height`` inches under its title, left-aligned: a title wider than
    the figure is wrapped at words, never clipped, and the figure grows by each line it adds."""
    lines, probe = title.splitlines(), fig.text(0, 0, "", fontsize=fontsize)
    for chars in range(max([10, *map(len, lines)]), 9, -1):
        wrapped = [part for line in lines for part in textwrap.wrap(line, chars)]
        probe.set_text("\n".join(wrapped))
        if _inches(fig, [probe]) <= width - 2 * EDGE:
            break
    probe.remove()
    fig.set_size_inches(width, height + (len(wrapped) - len(lines)) * 1.2 * fontsize / 72)
    at = {} if fig.get_layout_engine() else {"y": 1 - EDGE / fig.get_figheight(), "va": "top"}  # a layout places it
    fig.suptitle("\n".join(wrapped), x=EDGE / width, ha="left", fontsize=fontsize, **at)
    return fig


def bar_chart_figure(title: str, x_label: str, y_label: str, categories: list[str],
                     series: dict[str, dict[str, tuple[float, float]]],
                     reference: tuple[float | None, str] | None = None) -> Figure:
    """Grouped bars with std error bars, from zero up.

    Args:
        categories: the x values, in order. series: name -> {category: (mean, std)}; one bar
            colour per series. reference: (x, label) of a dashed line at x (bar i stands at i;
            None: the label alone), e.g. the submission's own value of a swept setting. A legend
            when there are several series or a reference.
    """
    plt = _pyplot()
    width, across = 0.8 / max(1, len(series)), min(16.0, max(4.0, 0.35 * len(categories) * max(1, len(series)) + 0.6))
    fig, ax = plt.subplots(dpi=DPI, layout="constrained")
    for n, (name, points) in enumerate(series.items()):
        xs = [i + (n - (len(series) - 1) / 2) * width for i, c in enumerate(categories) if c in points]
        means = [points[c][0] for c in categories if c in points]
        stds = [points[c][1] for c in categories if c in points]
        ax.bar(xs, means, width, yerr=stds, capsize=3, label=name, color=COLOURS[n % len(COLOURS)],
               error_kw={"ecolor": "black", "elinewidth": 1})
    if reference and reference[0] is not None:
        ax.axvline(reference[0], color="black", ls="--", lw=1.2, label=reference[1])
    elif reference:
        ax.plot([], [], ls="none", label=reference[1])  # the legend alone: it has no place among the bars
    ax.set_xticks(range(len(categories)), categories)
    if _inches(fig, ax.get_xticklabels()) > 0.9 * across / max(1, len(categories)):  # tilted, not overlapping
        ax.set_xticks(range(len(categories)), categories, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    highs = [m + s for points in series.values() for m, s in points.values()]
    ax.set_ylim(0, 1.05 * max(highs + [1.0]))  # from zero: a 3-point difference looks like one; room for std bars
    legend = [ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)] \
        if len(series) > 1 or reference else []
    ax.grid(axis="y", alpha=0.3)
    return _finish(fig, title, across + 1.0 + _inches(fig, legend), 3.6 + _inches(fig, ax.get_xticklabels(), "height"))


def bar_chart_png(title: str, x_label: str, y_label: str, categories: list[str],
                  series: dict[str, dict[str, tuple[float, float]]],
                  reference: tuple[float | None, str] | None = None) -> bytes:
    return _png(bar_chart_figure(title, x_label, y_label, categories, series, reference))


def box_plot_figure(title: str, entries: dict[str, dict[int, list[float]]], y_label: str = "test accuracy %"
                    ) -> Figure:
    """One box per entry over all its runs, each run a dot coloured by its test fold (as seed 001
    shows its folds), entries top to bottom in the given order.

    Args:
        entries: name -> {test fold: the metric of each trial on it}.
    """
    plt = _pyplot()
    names = list(entries)
    folds = sorted({fold for by_fold in entries.values() for fold in by_fold})
    fig, ax = plt.subplots(dpi=DPI, layout="constrained")
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
    ax.grid(axis="x", alpha=0.3)
    legend = [ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0,
                        title="test fold", title_fontsize=7)] if len(folds) > 1 else []
    return _finish(fig, title, 5.5 + _inches(fig, ax.get_yticklabels()) + _inches(fig, legend),
                   max(1.4 + 0.45 * len(names), 1.0 + _inches(fig, legend, "height")))


def box_plot_png(title: str, entries: dict[str, dict[int, list[float]]], y_label: str = "test accuracy %") -> bytes:
    return _png(box_plot_figure(title, entries, y_label))


def curves_figure(title: str, panels: dict[str, dict[str, tuple[list[float], list[float]]]], budget: int
                  ) -> Figure:
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
    fig, axes = plt.subplots(rows, columns, dpi=DPI, squeeze=False, layout="constrained")
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
    handles = {label: handle for ax in axes.flat for handle, label in zip(*ax.get_legend_handles_labels())}
    legend = [fig.legend([handles[n] for n in names], names, loc="outside right upper", fontsize=7, frameon=False,
                         ncol=1 + len(names) // 26)] if len(names) > 1 else []  # beside the panels, 25 a column
    return _finish(fig, title, 4.2 * columns + 0.2 + _inches(fig, legend),
                   max(3.4 * rows, 0.6 + _inches(fig, legend, "height")))


def curves_png(title: str, panels: dict[str, dict[str, tuple[list[float], list[float]]]], budget: int) -> bytes:
    return _png(curves_figure(title, panels, budget))


NAME_CHARACTERS = 18  # the most of a class name an axis shows: ESC-50's longest names stay whole


def short_names(names: list[str], most: int = NAME_CHARACTERS) -> list[str]:
    """Class names as an axis or a table shows them: on one line, a name longer than ``most`` as its
    start and end around an ellipsis ("a_very_lo…ass_name"), ``$`` escaped (matplotlib and GitHub
    read ``$...$`` as mathematics); where two would read the same, each is led by its index."""
    def short(name: str) -> str:
        name = " ".join(name.split())
        return name if len(name) <= most else f"{name[:most - 1 - (most - 1) // 2]}…{name[-((most - 1) // 2):]}"
    shown = [short(name).replace("$", r"\$") for name in names]
    return shown if len(set(shown)) == len(shown) else [f"{i}: {name}" for i, name in enumerate(shown)]


def confusion_figure(title: str, matrix: list[list[int]], class_names: list[str]) -> Figure:
    """scikit-learn's confusion matrix display: true classes down, predicted across, named
    (``short_names``); counts in the cells up to 20 classes, colour alone beyond (50 classes stay readable)."""
    import numpy as np
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = _pyplot()
    n = len(class_names)
    fig, ax = plt.subplots(dpi=DPI)
    shown = ConfusionMatrixDisplay(np.asarray(matrix), display_labels=short_names(class_names)).plot(
        ax=ax, include_values=n <= 20, cmap="Blues", xticks_rotation="vertical", colorbar=False)
    colorbar = fig.colorbar(shown.im_, cax=fig.add_axes((0, 0, 1, 1)), label="clips")
    ax.tick_params(labelsize=7 if n > 20 else 9)
    return _around(fig, ax, colorbar.ax, title, max(2.4, (0.42 if n <= 20 else 0.2) * n))  # a count fits a cell


def _around(fig: Figure, ax: Any, cax: Any, title: str, side: float) -> Figure:
    """``fig`` laid out by hand around its square ``ax``, ``side`` inches: its labels left and below,
    the colorbar ``cax`` right, the title above, each given the room it draws in, so no empty band
    frames the matrix (a layout engine centres a square in a box of another shape)."""
    from matplotlib.transforms import Bbox

    def place(x: float, y: float) -> None:  # the matrix's lower left corner, in inches
        width, height = fig.get_size_inches()
        ax.set_position((x / width, y / height, side / width, side / height))
        cax.set_position(((x + side + 0.15) / width, (y + 0.15 * side) / height, 0.15 / width, 0.7 * side / height))

    fig.set_size_inches(side + 10, side + 10)
    place(5, 5)
    renderer = fig.canvas.get_renderer()
    drawn, matrix = Bbox.union([a.get_tightbbox(renderer) for a in (ax, cax)]), ax.get_window_extent(renderer)
    left, below = (matrix.x0 - drawn.x0) / fig.dpi, (matrix.y0 - drawn.y0) / fig.dpi
    right, above = (drawn.x1 - matrix.x1) / fig.dpi, (drawn.y1 - matrix.y1) / fig.dpi
    _finish(fig, title, left + side + right + 2 * EDGE, below + side + above + 3 * EDGE + 1.2 * 10 / 72)
    place(EDGE + left, EDGE + below)
    return fig


def confusion_png(title: str, matrix: list[list[int]], class_names: list[str]) -> bytes:
    return _png(confusion_figure(title, matrix, class_names))


def per_class_figure(title: str, class_names: list[str], series: dict[str, list[float]], x_label: str) -> Figure:
    """Horizontal grouped bars, one group per class (top to bottom, named: ``short_names``), one colour per entry."""
    plt = _pyplot()
    height = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(dpi=DPI, layout="constrained")
    for n, (name, values) in enumerate(series.items()):
        ys = [i + (n - (len(series) - 1) / 2) * height for i in range(len(class_names))]
        ax.barh(ys, values, height, label=name, color=COLOURS[n % len(COLOURS)])
    ax.set_yticks(range(len(class_names)), short_names(class_names), fontsize=7 if len(class_names) > 20 else 9)
    ax.set_ylim(len(class_names) - 0.5, -0.5)  # the first class on top; no empty rows above or below
    ax.set_xlabel(x_label)
    ax.set_xlim(0, 100)
    ax.grid(axis="x", alpha=0.3)
    legend = [ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)] \
        if len(series) > 1 else []
    return _finish(fig, title, 5.0 + _inches(fig, ax.get_yticklabels()) + _inches(fig, legend),
                   max(1.3 + (0.12 * len(series) + 0.15) * len(class_names), 1.0 + _inches(fig, legend, "height")))


def per_class_png(title: str, class_names: list[str], series: dict[str, list[float]], x_label: str) -> bytes:
    return _png(per_class_figure(title, class_names, series, x_label))


def critical_difference_figure(title: str, results: dict[str, dict[tuple[int, int], float]]) -> Figure:
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
    fig, ax = plt.subplots(dpi=DPI, layout="constrained")
    posthocs.critical_difference_diagram(ranks, posthocs.posthoc_nemenyi_friedman(frame), ax=ax,
                                         label_props={"fontsize": 8})
    for line in ax.lines:  # a bar joins a set of entries, its points in set order: the same picture, other
        x, y = line.get_data()  # pixels in another process (string hashes vary); drawn in rank order instead
        if len(x) > 1 and len(set(y)) == 1:
            line.set_data(sorted(x), y)
    return _finish(fig, f"{title}\nFriedman p = {friedman:.3g}; bars join entries Nemenyi cannot tell apart (5%)",
                   4.5 + 2 * _inches(fig, ax.texts), 1.6 + 0.28 * len(results), fontsize=9)


def critical_difference_png(title: str, results: dict[str, dict[tuple[int, int], float]]) -> bytes:
    return _png(critical_difference_figure(title, results))
