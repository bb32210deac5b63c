"""Every figure the board and the sweep reports draw, at the sizes real tables reach: 2 to 50
classes, 1 to 25 runs, class names and entry labels longer than an axis shows. No text leaves the
canvas (each text matplotlib draws, where its renderer puts it), no title covers what it titles,
no empty band frames a confusion matrix, and a sweep chart's bars start at zero beside the
submission's own value of the setting.

``BENCH_FIGURES_DIR=FOLDER`` also writes the PNGs of the largest cases (50 classes, 25 runs) there,
for a person to look at.
"""
import itertools
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from harness.board import figures, plots, sweep_report

CLASSES = (2, 10, 24, 50)
RUNS = (1, 5, 25)
WHERE = "fsdd_speaker_images_holdout, 500 epochs"  # the longest dataset name of the results, a long budget
SLACK = 1.0  # pixels a text may pass the canvas's edge by (rounding)
BAND = 0.3  # inches of empty canvas allowed beside a confusion matrix


def class_names(count: int) -> list[str]:
    """Names as datasets have them, every third far longer than an axis shows whole."""
    return [f"{i}: the sound of a very long class name, longer than any axis" if i % 3 == 0 else f"dog_bark_{i}"
            for i in range(count)]


def entry_labels(count: int) -> list[str]:
    return [f"fastaudio_densenet161 (frontend.n_mels={32 * (i + 1)}, recipe.mixup=0.4, pretrained, #{i + 1})"
            for i in range(count)]


def splits(runs: int) -> list[tuple[int, int]]:
    """(fold, trial) of ``runs`` runs: one fold, five folds, or five folds of five trials."""
    return [(fold, trial) for trial in range(1, max(1, runs // 5) + 1) for fold in range(1, min(runs, 5) + 1)]


def drawn_texts(fig) -> list[Text]:
    """Every text ``fig`` draws (visible and not empty), recorded as matplotlib draws it."""
    drawn, draw = [], Text.draw

    def record(self, renderer):
        if self.get_visible() and self.get_text():
            drawn.append(self)
        return draw(self, renderer)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Text, "draw", record)
        fig.canvas.draw()
    return drawn


def off_canvas(fig) -> list[str]:
    """The texts of ``fig`` that pass its canvas's edge, each with where its renderer puts it."""
    renderer = fig.canvas.get_renderer()
    width, height = fig.bbox.width, fig.bbox.height
    return [f"{text.get_text()!r} at {box.bounds} on {width:.0f}x{height:.0f}" for text in drawn_texts(fig)
            for box in [text.get_window_extent(renderer)]
            if box.x0 < -SLACK or box.y0 < -SLACK or box.x1 > width + SLACK or box.y1 > height + SLACK]


def title_box(fig) -> Bbox:
    """Where ``fig`` draws its title."""
    title = next(t for t in drawn_texts(fig) if t.get_text() == fig.get_suptitle())
    return title.get_window_extent(fig.canvas.get_renderer())


def under_the_title(fig) -> list[str]:
    """The axes (with their labels) and legends of ``fig`` that its title is drawn over."""
    renderer, title = fig.canvas.get_renderer(), title_box(fig)
    boxes = [ax.get_tightbbox(renderer) for ax in fig.axes]
    boxes += [legend.get_window_extent(renderer) for legend in fig.legends]
    return [f"{box.bounds} under the title at {title.bounds}" for box in boxes if box.overlaps(title)]


def bands(fig) -> dict[str, float]:
    """Inches of empty canvas beside what ``fig`` draws: left, right and below its axes (with their
    labels and the colorbar), between them and the title, and above the title."""
    title, renderer = title_box(fig), fig.canvas.get_renderer()
    content = Bbox.union([ax.get_tightbbox(renderer) for ax in fig.axes])
    gaps = {"left": content.x0, "right": fig.bbox.width - content.x1, "below": content.y0,
            "under the title": title.y0 - content.y1, "above the title": fig.bbox.height - title.y1}
    return {side: gap / fig.dpi for side, gap in gaps.items()}


def check(fig, keep: str = "", png=None) -> None:
    """No text of ``fig`` leaves its canvas and its title covers nothing. ``keep``: a largest case, which
    ``png()`` renders twice to the same bytes (the board is deterministic) and writes to
    BENCH_FIGURES_DIR under that name."""
    import matplotlib.pyplot as plt

    try:
        assert not off_canvas(fig), "text off the canvas:\n" + "\n".join(off_canvas(fig))
        assert not under_the_title(fig), "\n".join(under_the_title(fig))
    finally:
        plt.close(fig)
    if keep:
        first = png()
        assert first == png() and first.startswith(b"\x89PNG")
        if folder := os.environ.get("BENCH_FIGURES_DIR"):
            Path(folder).mkdir(parents=True, exist_ok=True)
            Path(folder, f"{keep}.png").write_bytes(first)


@pytest.mark.parametrize("runs,entries", list(itertools.product(RUNS, (1, 25))))
def test_a_box_plot_keeps_its_title_labels_and_legend_on_the_canvas(runs, entries):
    rng, data = np.random.default_rng(runs * 100 + entries), {}
    for label in entry_labels(entries):
        for fold, _ in splits(runs):
            data.setdefault(label, {}).setdefault(fold, []).append(80 + 15 * float(rng.random()))
    args = (f"{WHERE}: test accuracy of every run, by test fold", data)
    check(plots.box_plot_figure(*args), "folds" if (runs, entries) == (25, 25) else "",
          lambda: plots.box_plot_png(*args))


@pytest.mark.parametrize("runs,entries", list(itertools.product(RUNS, (1, 25, 50))))
def test_curves_keep_their_title_axes_and_legend_on_the_canvas(runs, entries):
    rng = np.random.default_rng(runs * 100 + entries)
    epochs = 30  # a staged recipe's, over a budget of 20: the long axis label
    panels = {quantity: {label: (list(scale * np.exp(-np.arange(epochs) / (10 + i))),
                                 list(scale * (runs > 1) * 0.05 * rng.random(epochs)))
                         for i, label in enumerate(entry_labels(entries))}
              for quantity, scale in (("training loss", 1), ("validation loss", 1), ("validation accuracy %", 100),
                                      ("validation macro-F1 %", 100))}
    args = (f"{WHERE}: mean ± std over runs", panels, 20)
    check(plots.curves_figure(*args), "curves" if (runs, entries) == (25, 50) else "",
          lambda: plots.curves_png(*args))


@pytest.mark.parametrize("classes,runs", list(itertools.product(CLASSES, RUNS)))
def test_a_confusion_matrix_fills_its_figure_and_keeps_its_names_on_the_canvas(classes, runs):
    rng = np.random.default_rng(classes * 100 + runs)
    matrix = (rng.integers(0, 3, (classes, classes)) + np.diag([8 * runs] * classes)).tolist()
    args = (f"{WHERE}: {entry_labels(1)[0]}, summed over {runs} run{'s' * (runs != 1)}", matrix,
            class_names(classes))
    fig = plots.confusion_figure(*args)
    wide = {side: round(gap, 2) for side, gap in bands(fig).items() if not -SLACK / fig.dpi <= gap <= BAND}
    assert not wide, f"empty bands (inches) beside the matrix, or a title over it: {wide}"
    check(fig, "confusion" if (classes, runs) == (50, 25) else "", lambda: plots.confusion_png(*args))


@pytest.mark.parametrize("classes,entries", list(itertools.product(CLASSES, (1, 3))))
def test_per_class_f1_keeps_its_names_and_legend_on_the_canvas(classes, entries):
    rng = np.random.default_rng(classes * 100 + entries)
    args = (f"{WHERE}: per-class F1 (mean over runs) of the top {entries}", class_names(classes),
            {label: list(100 * rng.random(classes)) for label in entry_labels(entries)}, "F1 %")
    fig = plots.per_class_figure(*args)
    low, high = sorted(fig.axes[0].get_ylim())
    bars = [(bar.get_y(), bar.get_y() + bar.get_height()) for bar in fig.axes[0].patches]
    assert min(b for b, _ in bars) - low < 0.2 and high - max(t for _, t in bars) < 0.2  # no empty rows
    check(fig, "per-class-f1" if (classes, entries) == (50, 3) else "", lambda: plots.per_class_png(*args))


@pytest.mark.parametrize("runs,entries", list(itertools.product((5, 25), (3, 25))))  # ranks need two splits at least
def test_a_critical_difference_diagram_keeps_its_labels_on_the_canvas(runs, entries):
    rng = np.random.default_rng(runs * 100 + entries)
    results = {label: {pair: 90 - i * 0.5 + 3 * float(rng.random()) for pair in splits(runs)}
               for i, label in enumerate(entry_labels(entries))}
    args = (f"{WHERE}: test accuracy ranks of the {entries} entries on the same splits", results)
    check(plots.critical_difference_figure(*args), "critical-difference" if (runs, entries) == (25, 25) else "",
          lambda: plots.critical_difference_png(*args))


def sweep_table(param: str, values: list, others: dict[str, list], runs: int) -> list[dict]:
    """A parameter's table as the report makes it (``sweep_report.parameter_table``): accuracy per run."""
    rng = np.random.default_rng(runs * 100 + len(values))
    return [{**dict(zip(others, combination)), param: value, "runs": [runs, runs],
             "accuracy": list(0.95 + 0.03 * rng.random(runs))}
            for combination in itertools.product(*others.values()) for value in values]


N_MELS = [32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448]  # seed 000's sweep


@pytest.mark.parametrize("runs,values,others,own,at", [
    (1, [16, 32, 64], {}, 40, 1.25),                                   # between two bars
    (5, [16, 32, 64], {"mixup": [0.0, 0.4]}, 128, 2.75),               # beyond the last
    (25, N_MELS, {"epochs": [10, 20, 80], "recipe.time_shift_fill": [0.0, 0.5]}, 224, 6.0),  # at its bar
    (5, ["resnet18", "densenet161_with_a_long_name"], {}, "efficientnet_b0", None),  # no place: the legend alone
])
def test_a_sweep_chart_starts_at_zero_and_shows_the_submissions_own_value(runs, values, others, own, at):
    param = "n_mels" if own != "efficientnet_b0" else "model"
    table = sweep_table(param, values, others, runs)
    args = sweep_report._chart(param, table, list(others), ("small_cnn", own))
    fig = plots.bar_chart_figure(*args)
    ax, label = fig.axes[0], f"small_cnn's own {param} = {own}"
    assert ax.get_ylim()[0] == 0 and ax.get_ylim()[1] > 100 * max(max(row["accuracy"]) for row in table)
    lines = [line for line in ax.get_lines() if line.get_label() == label]
    assert len(lines) == 1 and (list(lines[0].get_xdata()) == [at, at] if at is not None
                                else not len(lines[0].get_xdata()))
    assert label in [t.get_text() for t in ax.get_legend().get_texts()]
    check(fig, "sweep" if runs == 25 else "", lambda: plots.bar_chart_png(*args))


def test_the_submissions_own_value_is_placed_among_the_swept_ones():
    place = sweep_report._place
    assert place(40, [16, 32, 64]) == 1.25 and place(32, [16, 32, 64]) == 1.0 and place(0, [0.0, 0.4]) == 0.0
    assert place(8, [16, 32]) == -0.75 and place(128, [16, 32]) == 1.75
    assert place("resnet18", ["resnet18", "vgg"]) == 0.0 and place("x", ["resnet18", "vgg"]) is None
    assert place(40, [64, 16]) is None and place(None, [1, 2]) is None and place(True, [0, 2]) is None


def planned(submission: str, setting: dict, overrides: tuple = (), epochs: int = 5, own: dict | None = None) -> tuple:
    """A (planned point, its records) row of a report, as far as the report's own-value reading looks."""
    point = SimpleNamespace(setting=tuple(setting.items()), cell=SimpleNamespace(submission=submission))
    return SimpleNamespace(point=point, built=SimpleNamespace(overrides=overrides, epochs=epochs), own=own or {}), []


def test_the_submissions_own_value_is_read_from_the_points_that_leave_it_as_it_is():
    rows = [planned("small_cnn", {"mixup": mixup, "n_mels": n_mels, "epochs": 2},
                    (("frontend.n_mels", n_mels),) + ((("recipe.mixup", mixup),) if mixup else ()))
            for mixup in (0.0, 0.4) for n_mels in (16, 32)]
    own = sweep_report._own_value
    assert own("mixup", rows) == ("small_cnn", 0.0)  # its points of mixup 0.0 override no mixup
    assert own("n_mels", rows) is None  # every point overrides it, and nothing says what the submission has
    written = [planned("small_cnn", {"n_mels": n}, (("frontend.n_mels", n),), own={"frontend": {"n_mels": 40}})
               for n in (16, 32)]
    assert own("n_mels", written) == ("small_cnn", 40)  # the case: n_mels = 40, swept 16 and 32
    assert own("epochs", rows) == ("small_cnn", 5)  # the recipe's budget, whatever a point runs
    assert own("mixup", rows + [planned("specaug_cnn", {"mixup": 0.0})]) is None  # whose?
    assert own("precision", rows) is None


def test_an_entrys_figures_count_its_runs_in_words(monkeypatch):
    titles = []
    monkeypatch.setattr(figures, "confusion_png", lambda title, *args: titles.append(title) or b"")
    monkeypatch.setattr(figures, "per_class_png", lambda title, *args: titles.append(title) or b"")
    for runs in (1, 5):
        entry = SimpleNamespace(label="small_cnn", records=[SimpleNamespace(metrics={"confusion": [[2]]})] * runs,
                                class_names=["yes"], has=lambda metric: True, per_class_f1=lambda: [100.0])
        figures.entry_figures("fsdd, 1 epoch", entry)
    assert titles == ["fsdd, 1 epoch: small_cnn, summed over 1 run", "fsdd, 1 epoch: small_cnn, per-class F1 "
                      "(mean over 1 run)", "fsdd, 1 epoch: small_cnn, summed over 5 runs",
                      "fsdd, 1 epoch: small_cnn, per-class F1 (mean over 5 runs)"]


def test_a_critical_difference_diagram_is_the_same_bytes_in_every_process():
    """Its bars join sets of entries; string hashes differ per process, so set order did too."""
    import hashlib
    import os
    import subprocess
    import sys

    code = ("import sys, hashlib; from harness.board.plots import critical_difference_png as cd\n"
            "r = {n: {(f, 1): 50 + 10 * i + f * (i % 2) for f in range(1, 6)} for i, n in enumerate('abcde')}\n"
            "sys.stdout.write(hashlib.sha256(cd('t', r)).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2", "3")}
    assert len(digests) == 1, digests
