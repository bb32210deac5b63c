"""The default training loop, and the pieces a submission's own ``fit`` can reuse.

Features are computed once per run and kept on the device as one tensor; batches are drawn
by indexing it with a random permutation, so no per-item loader sits in the hot loop and
the host synchronises once per epoch, not per step.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from harness.frontends import augment as A
from harness.core.errors import HarnessError
from harness.core.faults import crash_point
from harness.training.device import autocast, is_compiled
from harness.training.metrics import validation_metrics
from harness.training.submission import Recipe, Submission


class NonFiniteLossError(HarnessError, RuntimeError):
    """Training diverged: the loss became NaN or infinite."""


def _quiet(*args: object) -> None:
    """Says nothing."""


@dataclass(frozen=True)
class Progress:
    """What a run says while it trains, a protocol of two calls: ``on_epoch(epoch, row)`` after each
    epoch, with its row of the curves, and ``on_step(epoch, step, steps)`` inside an epoch. Built
    from the functions wanted (``Progress(on_step=show)``); the others say nothing."""

    on_epoch: Callable[[int, dict], None] = _quiet
    on_step: Callable[[int, int, int], None] = _quiet


@dataclass(kw_only=True)
class TrainContext:
    """What the harness hands a training loop: training data only, never the test fold. Made by
    name (``TrainContext(submission=..., model=..., ...)``); a submission's ``fit`` reads it and
    tells its progress through ``ctx.on_epoch`` and ``ctx.on_step``."""

    submission: Submission
    model: nn.Module
    x: torch.Tensor              # training features on ``device`` (normalised)
    y: torch.Tensor              # training labels on ``device``
    x_val: torch.Tensor | None = None   # validation features carved from the training folds
    y_val: torch.Tensor | None = None
    epochs: int
    num_classes: int
    device: torch.device
    generator: torch.Generator   # CPU generator: batch order and augmentation draws
    progress: Progress = Progress()
    # features of the same training / validation clips through another front-end (multi-stage recipes)
    features_for: Callable[[nn.Module], tuple[torch.Tensor, torch.Tensor | None]] | None = None
    dataset: str = ""
    precision: str = "fp32"      # resolved: "bf16" or "fp32" (see ``harness.training.device``)
    marks: dict[str, float] = field(default_factory=dict)  # perf_counter() when the first step ended

    @property
    def recipe(self) -> Recipe:
        return self.submission.recipe

    def on_epoch(self, epoch: int, row: dict) -> None:
        """Tell the run's progress that ``epoch`` ended with ``row``."""
        self.progress.on_epoch(epoch, row)

    def on_step(self, epoch: int, step: int, steps: int) -> None:
        """Tell the run's progress that ``step`` of ``steps`` in ``epoch`` ended."""
        self.progress.on_step(epoch, step, steps)


@dataclass
class FitResult:
    model: nn.Module
    curves: list[dict] = field(default_factory=list)  # one row per epoch


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy against per-class target weights (one-hot, smoothed or mixed), in float32.

    Shapes: logits and target (batch, num_classes) -> scalar.
    """
    return torch.sum(-target * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()


def make_optimizer(params, recipe: Recipe, lr: float | None = None) -> torch.optim.Optimizer:
    """The recipe's optimiser; Adam and AdamW use their fused CUDA kernel when every parameter is
    on a GPU (one kernel for all parameters instead of a few per tensor; CPU runs are unchanged)."""
    lr = recipe.lr if lr is None else lr
    params = list(params)
    tensors = [p for group in params for p in (group["params"] if isinstance(group, dict) else [group])]
    fused = {"fused": True} if tensors and all(p.is_cuda for p in tensors) else {}
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=recipe.weight_decay, **fused)
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=recipe.weight_decay, **fused)
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=recipe.weight_decay)
    raise ValueError(f"unknown optimizer {recipe.optimizer!r}; use adamw, adam or sgd")


def one_cycle(opt: torch.optim.Optimizer, total_steps: int, pct_start: float = 0.25, div: float = 25.0,
              final_div: float = 1e4):
    """torch's OneCycleLR peaking at each group's lr. Very short runs (a few steps, as in smoke
    tests) get at least 2 steps and a warm-up share that leaves both phases non-empty, which
    OneCycleLR otherwise rejects with a division by zero; real runs are unaffected."""
    total = max(total_steps, 2)
    pct = min(max(pct_start, 1.5 / total), (total - 0.25) / total)
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=total,
                                               pct_start=pct, div_factor=div, final_div_factor=final_div)


def make_schedule(opt: torch.optim.Optimizer, recipe: Recipe, total_steps: int):
    if recipe.schedule == "onecycle":
        return one_cycle(opt, total_steps)
    if recipe.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    raise ValueError(f"unknown schedule {recipe.schedule!r}; use onecycle or constant")


def augment_batch(x: torch.Tensor, y: torch.Tensor, recipe: Recipe, num_classes: int,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the recipe's augmentations; returns inputs and soft targets."""
    target = F.one_hot(y, num_classes).float()
    if x.dim() >= 3:  # spectrogram-like input: (batch, channels, freq, time)
        x = A.random_time_shift(x, recipe.time_shift, recipe.time_shift_fill, generator)
        x = A.freq_mask(x, recipe.freq_mask, generator)
        x = A.time_mask(x, recipe.time_mask, generator)
    return A.mixup(x, target, recipe.mixup, generator)


def steps_per_epoch(n: int, batch_size: int) -> int:
    return n // batch_size if n > batch_size else 1


def train_epochs(ctx: TrainContext, model: nn.Module, opt: torch.optim.Optimizer, schedule, epochs: int,
                 first_epoch: int = 0) -> list[dict]:
    """Run ``epochs`` epochs of ``model`` on ``ctx.x``; return one row per epoch.

    Records the validation loss, accuracy and macro-F1 of each epoch when a validation split
    exists (the test fold is not touched) and leaves ``model`` holding the weights of its best
    epoch by validation accuracy (the last one without validation). Multi-stage
    recipes call it once per stage with a context whose features they replaced.
    """
    x, recipe, n = ctx.x, ctx.recipe, len(ctx.x)
    bs = min(recipe.batch_size, n)
    rows, best, best_state = [], -1.0, None
    for epoch in range(epochs):
        model.train()
        perm = A.to_device(torch.randperm(n, generator=ctx.generator), ctx.device)
        loss_sum, peak_lr = torch.zeros((), device=ctx.device), 0.0
        for step in range(steps_per_epoch(n, bs)):
            idx = perm[step * bs:(step + 1) * bs]
            # features live on the device, or (when too large) in pinned host memory: copy the batch over
            xb = x[idx.to(x.device)].to(ctx.device, non_blocking=True)
            xb, yb = augment_batch(xb, ctx.y[idx], recipe, ctx.num_classes, ctx.generator)
            with autocast(ctx.device, ctx.precision):
                loss = soft_cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            peak_lr = max(peak_lr, opt.param_groups[-1]["lr"])  # the rate this step trained the head at
            schedule.step()
            loss_sum += loss.detach()
            if "first_step" not in ctx.marks:
                _mark_first_step(ctx)
            ctx.on_step(first_epoch + epoch + 1, step + 1, steps_per_epoch(n, bs))
        row = {"epoch": first_epoch + epoch + 1, "train_loss": loss_sum.item() / steps_per_epoch(n, bs),
               "lr": peak_lr}  # the epoch's highest: after a one-cycle epoch its last is ~1e-9 (max_lr / 25 / 1e5)
        if not math.isfinite(row["train_loss"]):
            hint = (" in bf16; bf16 kernels overflow or misbehave on some devices (e.g. AMX CPUs): "
                    "re-run with `--precision fp32`") if ctx.precision == "bf16" else ""
            raise NonFiniteLossError(f"non-finite training loss at epoch {row['epoch']}{hint}")
        if ctx.x_val is not None and len(ctx.x_val):
            row |= validation_metrics(predict(model, ctx.x_val, ctx.device, ctx.precision), ctx.y_val, ctx.num_classes)
            if row["val_accuracy"] > best:
                best, best_state = row["val_accuracy"], copy.deepcopy(model.state_dict())
        rows.append(row)
        ctx.on_epoch(row["epoch"], row)
        crash_point("epoch")
    if best_state is not None:
        model.load_state_dict(best_state)
    return rows


def _mark_first_step(ctx: TrainContext) -> None:
    """When the run's first optimiser step has finished (waiting for the GPU once, at that step)."""
    if ctx.device.type == "cuda":
        torch.cuda.synchronize(ctx.device)
    ctx.marks["first_step"] = time.perf_counter()


def fit_default(ctx: TrainContext) -> FitResult:
    """One optimiser over all parameters, the recipe's schedule over all steps."""
    opt = make_optimizer(ctx.model.parameters(), ctx.recipe)
    schedule = make_schedule(opt, ctx.recipe, ctx.epochs * steps_per_epoch(len(ctx.x), min(ctx.recipe.batch_size, len(ctx.x))))
    return FitResult(ctx.model, train_epochs(ctx, ctx.model, opt, schedule, ctx.epochs))


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, device: torch.device, precision: str = "fp32",
            batch_size: int = 256) -> torch.Tensor:
    """Logits for ``x`` in eval mode, batch by batch (float32, on ``device``).

    A compiled model gets its last batch padded to full size, so that evaluation compiles one
    graph, not one per remainder (in eval mode an item's output does not depend on its batch:
    ``bench check`` verifies it for every submission).
    """
    model.eval()
    pad = is_compiled(model) and len(x) > batch_size
    out = []
    with autocast(device, precision):
        for i in range(0, len(x), batch_size):
            batch = x[i:i + batch_size].to(device, non_blocking=True)
            if pad and len(batch) < batch_size:
                batch = torch.cat([batch, batch.new_zeros((batch_size - len(batch), *batch.shape[1:]))])
            out.append(model(batch)[:len(x) - i].float())
    return torch.cat(out)


