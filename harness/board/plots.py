"""Figures: training curves as small standalone SVG files, and bar charts through matplotlib (PNG)."""
from __future__ import annotations

from xml.sax.saxutils import escape

COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def curves_svg(title: str, series: dict[str, list[float]], y_label: str = "training loss",
               width: int = 640, height: int = 320, budget: int | None = None) -> str:
    """A line chart of one value per epoch for each named series (e.g. mean loss over runs).

    ``budget``: the table's epoch budget; series longer than it (fine-tuning's frozen epochs come
    on top of the budget) say so on the x axis. A single epoch is drawn as points, centred.
    """
    left, right, top, bottom = 56, 170, 28, 40
    values = [v for ys in series.values() for v in ys]
    lo, hi = min(values, default=0.0), max(values, default=1.0)
    hi = hi if hi > lo else lo + 1
    epochs = max((len(ys) for ys in series.values()), default=1)
    px = lambda i: left + (width - left - right) * (i / (epochs - 1) if epochs > 1 else 0.5)
    x_label = "epoch" if budget is None or epochs <= budget else \
        f"epoch (frozen fine-tuning epochs included: {epochs} for a budget of {budget})"
    py = lambda v: top + (height - top - bottom) * (1 - (v - lo) / (hi - lo))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="{left}" y="16" font-size="13">{escape(title)}</text>',
             f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="black"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="black"/>',
             f'<text x="{(width - right + left) / 2}" y="{height - 8}" text-anchor="middle">{escape(x_label)}</text>',
             f'<text x="12" y="{(height - bottom + top) / 2}" transform="rotate(-90 12 {(height - bottom + top) / 2})" '
             f'text-anchor="middle">{escape(y_label)}</text>']
    for v in (lo, (lo + hi) / 2, hi):
        parts.append(f'<text x="{left - 4}" y="{py(v) + 4:.1f}" text-anchor="end">{v:.2f}</text>')
    for i in range(epochs):
        parts.append(f'<text x="{px(i):.1f}" y="{height - bottom + 14}" text-anchor="middle">{i + 1}</text>')
    for n, (name, ys) in enumerate(series.items()):
        colour = COLOURS[n % len(COLOURS)]
        points = " ".join(f"{px(i):.1f},{py(v):.1f}" for i, v in enumerate(ys))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>' if len(ys) > 1 else
                     f'<circle cx="{px(0):.1f}" cy="{py(ys[0]):.1f}" r="3" fill="{colour}"/>')
        parts.append(f'<text x="{width - right + 8}" y="{top + 14 * n + 4}" fill="{colour}">{escape(name)}</text>')
    return "\n".join(parts + ["</svg>"])


def bar_chart_png(title: str, x_label: str, y_label: str, categories: list[str],
                  series: dict[str, dict[str, tuple[float, float]]]) -> bytes:
    """Grouped bars with std error bars, as PNG bytes that only change when the numbers do.

    Args:
        categories: the x values, in order. series: name -> {category: (mean, std)}; one bar
            colour per series, a legend when there are several.
    """
    import io

    import matplotlib
    matplotlib.use("Agg")  # no display; the same bytes on every machine with the same matplotlib
    import matplotlib.pyplot as plt

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
    out = io.BytesIO()
    fig.savefig(out, format="png", metadata={"Software": None})  # no version stamp: bytes depend on data only
    plt.close(fig)
    return out.getvalue()
