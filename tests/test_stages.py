"""Multi-stage recipes: the progressive stages' inputs and rates, best-checkpoint reloading, fine_tune."""
import copy

import pytest
import torch
from torch import nn

from harness.training import loop
from harness.training import stages as T
from harness.training.submission import get_submission
from harness.training import Stage, TrainContext, fit_stages, scale_epochs
from harness.training.stages import even_mults


def test_progressive_stage_inputs_match_the_paper():
    clip = torch.randn(2, 22050 * 4)
    for method in ("mel", "resize"):
        fit = get_submission(f"progressive_{method}").fit
        stages = fit.stages(170, urbansound=False)
        shapes = [tuple((s.frontend or get_submission(f"progressive_{method}").frontend)(clip).shape[2:]) for s in stages]
        assert shapes == [(64, 128), (64, 128), (96, 214), (96, 214), (128, 300), (128, 300)]
        assert [s.epochs for s in stages] == [20, 20, 20, 20, 20, 70]
        assert [s.frozen for s in stages] == [True, False] * 3
        assert [s.lrs[-1] for s in stages] == [5e-3, 5e-4, 5e-3, 5e-6, 5e-3, 5e-6]  # Table 1, ESC-50 column
    mel_r1 = get_submission("progressive_mel").fit.stages(170, False)[0].frontend
    resize_r1 = get_submission("progressive_resize").fit.stages(170, False)[0].frontend
    assert (mel_r1.n_mels, mel_r1.frames, mel_r1.size) == (64, 128, None)  # fewer filters, shorter crop
    assert (resize_r1.n_mels, resize_r1.frames, tuple(resize_r1.size)) == (128, 300, (64, 128))  # resized R3


def test_baseline_stages_and_urbansound_rates():
    fit = get_submission("progressive_baseline").fit
    esc, us8k = fit.stages(190, urbansound=False), fit.stages(190, urbansound=True)
    assert [s.epochs for s in esc] == [20, 50, 120] and all(s.frontend is None for s in esc)
    assert [s.lrs for s in esc] == [(5e-3,), (1e-4 / 3, 1e-4), (1e-6 / 3, 1e-6)]  # last layer lr, others lr/3
    assert [s.lrs[-1] for s in us8k] == [1e-2, 5e-6, 1e-6]


def test_epoch_budget_is_spread_over_stages():
    assert scale_epochs([20, 50, 120], 190) == [20, 50, 120]
    assert scale_epochs([20, 50, 120], 19) == [2, 5, 12]
    assert scale_epochs([20, 20, 20, 20, 20, 70], 5) == [1, 1, 1, 1, 1, 2]


def tiny_context(epochs=3, on_epoch=lambda e, r: None) -> TrainContext:
    torch.manual_seed(0)
    x, y = torch.randn(32, 1, 4, 4), torch.arange(32) % 2
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2))
    sub = get_submission("small_cnn").with_recipe(batch_size=8, lr=1e-2)
    return TrainContext(submission=sub, model=model, x=x, y=y, x_val=x[:8], y_val=y[:8], epochs=epochs, num_classes=2,
                        device=torch.device("cpu"), generator=torch.Generator().manual_seed(0),
                        progress=loop.Progress(on_epoch=on_epoch))


def test_a_context_is_made_by_name_and_tells_its_progress_each_epoch_and_step():
    ctx = tiny_context()
    with pytest.raises(TypeError, match="positional"):
        TrainContext(ctx.submission, ctx.model, ctx.x, ctx.y, epochs=1, num_classes=2, device=ctx.device,
                     generator=ctx.generator)
    epochs, steps = [], []
    ctx.progress = loop.Progress(on_epoch=lambda epoch, row: epochs.append(epoch),
                                 on_step=lambda epoch, step, count: steps.append((epoch, step, count)))
    loop.fit_default(ctx)
    assert epochs == [1, 2, 3] and steps == [(e, s, 4) for e in (1, 2, 3) for s in (1, 2, 3, 4)]


def test_each_stage_starts_from_the_previous_stages_best_checkpoint(monkeypatch):
    scripted = iter([0.2, 0.9, 0.5, 0.1, 0.1, 0.1])  # validation accuracy per epoch: best is epoch 2
    monkeypatch.setattr(loop, "predict", lambda model, x, device, precision="fp32": _scripted_logits(next(scripted), x))
    snapshots, starts = {}, []
    ctx = tiny_context(on_epoch=lambda e, row: snapshots.setdefault(e, copy.deepcopy(ctx.model.state_dict())))
    real_run_stage = T.run_stage
    monkeypatch.setattr(T, "run_stage", lambda c, s, first: starts.append(copy.deepcopy(c.model.state_dict())) or real_run_stage(c, s, first))
    result = fit_stages(ctx, [Stage(3, (1e-2,)), Stage(3, (1e-2,))])
    assert [r["stage"] for r in result.curves] == [1, 1, 1, 2, 2, 2]
    for name, value in starts[1].items():
        assert torch.equal(value, snapshots[2][name]), f"stage 2 did not start from epoch 2's weights ({name})"
    assert not all(torch.equal(v, snapshots[3][k]) for k, v in starts[1].items())


def _scripted_logits(accuracy: float, x: torch.Tensor) -> torch.Tensor:
    """Logits that score ``accuracy`` against tiny_context's validation labels (0, 1, 0, 1, ...)."""
    y = torch.arange(len(x)) % 2
    right = torch.arange(len(x)) < round(accuracy * len(x))
    pred = torch.where(right, y, 1 - y)
    return torch.nn.functional.one_hot(pred, 2).float()


def test_fine_tune_freezes_the_body_first_then_uses_discriminative_rates(monkeypatch):
    ctx = tiny_context(epochs=2)
    ctx.x_val = ctx.y_val = None
    body_before = copy.deepcopy(ctx.model[1].state_dict())
    seen = []
    real_run_stage = T.run_stage

    def spy(c, stage, first):
        rows = real_run_stage(c, stage, first)
        seen.append((stage, copy.deepcopy(c.model[1].state_dict())))
        return rows

    monkeypatch.setattr(T, "run_stage", spy)
    T.FineTune(freeze_epochs=1, lr_mult=100, groups=3)(ctx)
    (frozen, body_after_frozen), (unfrozen, body_after) = seen
    assert frozen.frozen and frozen.epochs == 1 and frozen.pct_start == 0.99
    assert all(torch.equal(body_before[k], body_after_frozen[k]) for k in body_before)  # body untouched
    assert not all(torch.equal(body_before[k], body_after[k]) for k in body_before)
    assert unfrozen.epochs == 2 and unfrozen.lrs == pytest.approx(even_mults(1e-2 / 200, 1e-2 / 2, 3))
    assert even_mults(1e-4, 1e-2, 3) == pytest.approx((1e-4, 1e-3, 1e-2))


def test_an_epochs_recorded_learning_rate_is_the_highest_it_trained_at():
    """fastai's frozen epoch is one one-cycle of pct_start 0.99: it ends at max_lr / 25 / 1e5 (4e-09 for
    lr 1e-2), which is not the rate it trained at."""
    ctx = tiny_context(epochs=1)
    curves = T.FineTune(freeze_epochs=1, lr_mult=100, groups=3)(ctx).curves
    frozen, unfrozen = curves
    assert 1e-2 / 25 < frozen["lr"] <= 1e-2 and 1e-2 / 2 / 5 < unfrozen["lr"] <= 1e-2 / 2


def test_the_run_summary_says_what_a_staged_recipes_budget_trained(tmp_path):
    from click.testing import CliRunner

    from harness.cli.commands import main

    from conftest import copy_submission
    from test_compile import STAGED

    rename = lambda text: STAGED(text).replace("def small_cnn(", "def staged_cnn(")
    folder = copy_submission("small_cnn", tmp_path / "edited", rename).parent
    out = CliRunner().invoke(main, ["--submissions", str(folder), "run", "-s", "staged_cnn", "--folds", "1",
                                    "--epochs", "2", "--results", str(tmp_path / "results")], catch_exceptions=False)
    assert "trained 3 epochs (1 + 2 over its stages) for a budget of 2: a staged recipe" in out.output, out.output
    help_text = " ".join(CliRunner().invoke(main, ["run", "--help"]).output.split())
    assert "fastaudio_*: 1 frozen epoch + the budget" in help_text
