"""Staged training: fastai's ``fine_tune`` (a frozen head epoch, then discriminative learning
rates over the body) and the progressive-resizing stages of seed 001, each stage one one-cycle
schedule starting from the best checkpoint of the one before.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from torch import nn

from harness.training.device import is_compiled
from harness.training.loop import FitResult, TrainContext, make_optimizer, one_cycle, steps_per_epoch, train_epochs


@dataclass(frozen=True)
class Stage:
    """One one-cycle stage of a multi-stage recipe.

    Args:
        epochs: epochs of this stage.
        lrs: peak learning rate per parameter group, body first, head last (see ``param_groups``);
            one value trains every group at that rate.
        frozen: train the head only (the body's parameters get no gradient).
        pct_start, div: one-cycle warm-up share and initial-lr divisor (fastai's names).
        frontend: features for this stage (None: the submission's own front-end).
    """

    epochs: int
    lrs: tuple[float, ...]
    frozen: bool = False
    pct_start: float = 0.25
    div: float = 25.0
    frontend: nn.Module | None = None


def head_and_body(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Split parameters into the classifier head (timm's ``get_classifier`` or ``.head``/``.fc``) and the rest."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else getattr(model, "head", None) or getattr(model, "fc", None)
    if head is None:
        head = list(model.children())[-1]
    head_ids = {id(p) for p in head.parameters()}
    return [p for p in model.parameters() if id(p) in head_ids], [p for p in model.parameters() if id(p) not in head_ids]


def param_groups(model: nn.Module, lrs: tuple[float, ...]) -> list[dict]:
    """fastai-style discriminative groups: the body cut into ``len(lrs) - 1`` consecutive chunks, then the head."""
    head, body = head_and_body(model)
    if len(lrs) == 1:
        return [{"params": body + head, "lr": lrs[0]}]
    chunks = np.array_split(np.arange(len(body)), len(lrs) - 1)
    return [{"params": [body[i] for i in c], "lr": lr} for c, lr in zip(chunks, lrs[:-1])] + [{"params": head, "lr": lrs[-1]}]


def even_mults(lo: float, hi: float, n: int) -> tuple[float, ...]:
    """fastai's ``slice(lo, hi)`` over n groups: geometric steps from lo to hi."""
    return tuple(lo * (hi / lo) ** (i / (n - 1)) for i in range(n)) if n > 1 else (hi,)


def trained_groups(model: nn.Module, stage: Stage) -> list[dict]:
    """The stage's parameter groups with the parameters it trains: all of them, or the head's
    alone when the stage is frozen. A frozen parameter is one the optimiser does not hold."""
    head = {id(p) for p in head_and_body(model)[0]}
    groups = [{**g, "params": [p for p in g["params"] if not stage.frozen or id(p) in head]}
              for g in param_groups(model, stage.lrs)]
    return [g for g in groups if g["params"]]


def run_stage(ctx: TrainContext, stage: Stage, first_epoch: int) -> list[dict]:
    """Train one stage; the model ends holding the stage's best epoch (validation) or its last.

    An eager model also skips the frozen body's backward pass (``requires_grad`` off). A compiled
    one keeps ``requires_grad`` on: dynamo does not guard on it, so a graph traced with the body
    frozen would be reused after unfreezing and the body would never train again
    (pytorch/pytorch#139476; reproduced here with torch 2.11 and tested in tests/test_compile.py).
    """
    model, groups = ctx.model, trained_groups(ctx.model, stage)
    trained = {id(p) for g in groups for p in g["params"]}
    compiled = is_compiled(model)
    model.zero_grad(set_to_none=True)  # no gradient carries over from the stage before
    for p in model.parameters():
        p.requires_grad_(compiled or id(p) in trained)
    opt = make_optimizer(groups, ctx.recipe, lr=groups[-1]["lr"])
    steps = stage.epochs * steps_per_epoch(len(ctx.x), min(ctx.recipe.batch_size, len(ctx.x)))
    schedule = one_cycle(opt, steps, stage.pct_start, stage.div, final_div=1e5)  # fastai's default
    rows = train_epochs(ctx, model, opt, schedule, stage.epochs, first_epoch)
    for p in model.parameters():
        p.requires_grad_(True)
    return rows


def fit_stages(ctx: TrainContext, stages: list[Stage]) -> FitResult:
    """Run stages in order. A stage with its own front-end trains on features recomputed for it
    from the same training clips; each stage starts from the best checkpoint of the last."""
    curves: list[dict] = []
    for number, stage in enumerate(stages, 1):
        stage_ctx = ctx
        if stage.frontend is not None:
            x, x_val = ctx.features_for(stage.frontend)
            stage_ctx = dataclasses.replace(ctx, x=x, x_val=x_val)
        rows = run_stage(stage_ctx, stage, len(curves))
        for row in rows:
            row.update(stage=number, input_shape=list(stage_ctx.x.shape[1:]))
        curves += rows
    return FitResult(ctx.model, curves)


def scale_epochs(epochs: list[int], budget: int) -> list[int]:
    """Spread an epoch budget over stages in proportion to their published lengths (each at least 1)."""
    total = sum(epochs)
    return list(epochs) if budget == total else [max(1, round(e * budget / total)) for e in epochs]


@dataclass(frozen=True)
class FineTune:
    """fastai's ``Learner.fine_tune(epochs, base_lr)``: one frozen epoch at ``base_lr`` (pct_start 0.99),
    then ``epochs`` unfrozen epochs with discriminative rates ``slice(base_lr / 2 / lr_mult, base_lr / 2)``
    over ``groups`` parameter groups (pct_start 0.3, div 5). The run's epoch budget is ``epochs``."""

    freeze_epochs: int = 1
    lr_mult: float = 100.0
    groups: int = 3

    def params(self) -> dict:
        return {"name": "FineTune", **self.__dict__}

    def __call__(self, ctx: TrainContext) -> FitResult:
        lr = ctx.recipe.lr
        return fit_stages(ctx, [
            Stage(self.freeze_epochs, (lr,), frozen=True, pct_start=0.99),
            Stage(ctx.epochs, even_mults(lr / 2 / self.lr_mult, lr / 2, self.groups), pct_start=0.3, div=5.0),
        ])
