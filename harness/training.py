"""The default training loop, and the pieces a submission's own ``fit`` can reuse.

Features are computed once per run and kept on the device as one tensor; batches are drawn
by indexing it with a random permutation, so no per-item loader sits in the hot loop and
the host synchronises once per epoch, not per step.
"""
from __future__ import annotations

import copy
import math
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness import augment as A
from harness.errors import HarnessError
from harness.faults import crash_point
from harness.submission import Recipe, Submission


class NonFiniteLossError(HarnessError, RuntimeError):
    """Training diverged: the loss became NaN or infinite."""


@dataclass
class TrainContext:
    """What the harness hands a training loop: training data only, never the test fold."""

    submission: Submission
    model: nn.Module
    x: torch.Tensor              # training features on ``device`` (normalised)
    y: torch.Tensor              # training labels on ``device``
    x_val: torch.Tensor | None   # validation features carved from the training folds
    y_val: torch.Tensor | None
    epochs: int
    num_classes: int
    device: torch.device
    generator: torch.Generator   # CPU generator: batch order and augmentation draws
    on_epoch: Callable[[int, dict], None] = lambda epoch, row: None
    # features of the same training / validation clips through another front-end (multi-stage recipes)
    features_for: Callable[[nn.Module], tuple[torch.Tensor, torch.Tensor | None]] | None = None
    dataset: str = ""
    precision: str = "fp32"      # resolved: "bf16" or "fp32" (see ``resolve_precision``)

    @property
    def recipe(self) -> Recipe:
        return self.submission.recipe


@dataclass
class FitResult:
    model: nn.Module
    curves: list[dict] = field(default_factory=list)  # one row per epoch


PRECISIONS = ("auto", "bf16", "fp32")


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` is bf16 on CUDA GPUs that compute it natively and fp32 everywhere else.

    bf16 on a CPU only on request: oneDNN's bf16 kernels differ between CPUs (AVX512-BF16 on
    AMD and Intel, AMX tiles on recent Xeons), and on AMX Xeons the frozen ResNet-18 of seed 002
    gave a NaN loss in bf16 at its first epoch while fp32 trained (a likely cause, not verified
    on an AMX machine: oneDNN's AMX bf16 kernels have had tail bugs that leak garbage into
    outputs, uxlfoundation/oneDNN#5717). A benchmark's default must give the same kind of
    number on every machine.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    return precision


def autocast(device: torch.device, precision: str = "fp32"):
    """bf16 autocast for ``precision="bf16"`` (weights and optimiser stay fp32); nothing for fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy against per-class target weights (one-hot, smoothed or mixed), in float32.

    Shapes: logits and target (batch, num_classes) -> scalar.
    """
    return torch.sum(-target * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()


def make_optimizer(params, recipe: Recipe, lr: float | None = None) -> torch.optim.Optimizer:
    lr = recipe.lr if lr is None else lr
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=recipe.weight_decay)
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

    Tracks the validation accuracy when a validation split exists and leaves ``model``
    holding the weights of its best epoch (the last one without validation). Multi-stage
    recipes call it once per stage with a context whose features they replaced.
    """
    x, recipe, n = ctx.x, ctx.recipe, len(ctx.x)
    bs = min(recipe.batch_size, n)
    rows, best, best_state = [], -1.0, None
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=ctx.generator).to(ctx.device)
        loss_sum = torch.zeros((), device=ctx.device)
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
            schedule.step()
            loss_sum += loss.detach()
        row = {"epoch": first_epoch + epoch + 1, "train_loss": loss_sum.item() / steps_per_epoch(n, bs),
               "lr": opt.param_groups[-1]["lr"]}
        if not math.isfinite(row["train_loss"]):
            hint = (" in bf16; bf16 kernels overflow or misbehave on some devices (e.g. AMX CPUs): "
                    "re-run with `--precision fp32`") if ctx.precision == "bf16" else ""
            raise NonFiniteLossError(f"non-finite training loss at epoch {row['epoch']}{hint}")
        if ctx.x_val is not None and len(ctx.x_val):
            row["val_accuracy"] = float((predict(model, ctx.x_val, ctx.device, ctx.precision).argmax(1).cpu() == ctx.y_val.cpu()).float().mean())
            if row["val_accuracy"] > best:
                best, best_state = row["val_accuracy"], copy.deepcopy(model.state_dict())
        rows.append(row)
        ctx.on_epoch(row["epoch"], row)
        crash_point("epoch")
    if best_state is not None:
        model.load_state_dict(best_state)
    return rows


def fit_default(ctx: TrainContext) -> FitResult:
    """One optimiser over all parameters, the recipe's schedule over all steps."""
    opt = make_optimizer(ctx.model.parameters(), ctx.recipe)
    schedule = make_schedule(opt, ctx.recipe, ctx.epochs * steps_per_epoch(len(ctx.x), min(ctx.recipe.batch_size, len(ctx.x))))
    return FitResult(ctx.model, train_epochs(ctx, ctx.model, opt, schedule, ctx.epochs))


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, device: torch.device, precision: str = "fp32",
            batch_size: int = 256) -> torch.Tensor:
    """Logits for ``x`` in eval mode, batch by batch (float32, on ``device``)."""
    model.eval()
    with autocast(device, precision):
        return torch.cat([model(x[i:i + batch_size].to(device, non_blocking=True)).float()
                          for i in range(0, len(x), batch_size)])


DEVICE_MEMORY_SHARE = 0.5  # features may take this share of the free device memory; beyond it they stream


def _feature_home(device: torch.device, nbytes: int) -> torch.device:
    """Keep features on the GPU when they fit, else in (pinned) host memory, saying so once."""
    if device.type != "cuda" or nbytes <= DEVICE_MEMORY_SHARE * torch.cuda.mem_get_info(device)[0]:
        return device
    print(f"features need {nbytes / 2**30:.1f} GiB, more than {DEVICE_MEMORY_SHARE:.0%} of free GPU memory: "
          f"streaming batches from pinned host memory instead")
    return torch.device("cpu")


@torch.no_grad()
def compute_features(frontend: nn.Module, x: np.ndarray, indices: np.ndarray, device: torch.device,
                     batch_size: int = 256) -> torch.Tensor:
    """Run the front-end over the selected clips in batches on ``device``.

    The result stays on ``device`` when it fits there; otherwise it is gathered in pinned host
    memory and the training loop copies one batch at a time.
    """
    frontend = frontend.to(device)
    parts, home = [], None
    for i in range(0, len(indices), batch_size):
        part = frontend(torch.from_numpy(np.ascontiguousarray(x[indices[i:i + batch_size]])).to(device))
        home = home or _feature_home(device, part[0].numel() * part.element_size() * len(indices))
        parts.append(part.to(home))
    if not parts:
        return torch.empty(0, device=device)
    out = torch.cat(parts)
    return out.pin_memory() if home != device and device.type == "cuda" else out


# --- staged training: fastai's fine_tune and the progressive-resizing stages ---------------

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


def run_stage(ctx: TrainContext, stage: Stage, first_epoch: int) -> list[dict]:
    """Train one stage; the model ends holding the stage's best epoch (validation) or its last."""
    model, head = ctx.model, {id(p) for p in head_and_body(ctx.model)[0]}
    for p in model.parameters():
        p.requires_grad_(not stage.frozen or id(p) in head)
    groups = [g for g in param_groups(model, stage.lrs) if any(p.requires_grad for p in g["params"])]
    for g in groups:
        g["params"] = [p for p in g["params"] if p.requires_grad]
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
    import dataclasses

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
