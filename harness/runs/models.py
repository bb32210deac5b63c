"""A submission's model: built (a timm name or its own factory, pretrained weights adapted),
checked against the number of classes, and sized in FLOPs. Inside a sandboxed worker (and in
``bench speed``, which trains the harness's own workloads)."""
from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import torch
from torch import nn

from harness.core.errors import HarnessError
from harness.training.submission import Submission, SubmissionError, user_frame


class WeightsUnavailable(HarnessError, RuntimeError):
    """Pretrained weights were asked for and could not be had."""


def build_model(sub: Submission, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """Instantiate the submission's model: its own factory or a timm name (with ``in_chans`` from the input).

    A factory that takes ``input_shape`` gets the per-item feature shape.
    """
    if callable(sub.model):
        extra = {"input_shape": input_shape} if "input_shape" in inspect.signature(sub.model).parameters else {}
        return sub.model(num_classes=num_classes, **extra, **sub.model_kwargs)
    import timm

    kwargs = dict(num_classes=num_classes, in_chans=input_shape[0] if len(input_shape) == 3 else 1, **sub.model_kwargs)
    if not sub.pretrained:
        return timm.create_model(sub.model, pretrained=False, **kwargs)
    overlay = {**kwargs.pop("pretrained_cfg_overlay", {}),
               **({"file": str(sub.pretrained)} if isinstance(sub.pretrained, str) else {})}
    try:  # a local checkpoint is loaded and adapted (input channels, new head) exactly like hub weights
        return timm.create_model(sub.model, pretrained=True, pretrained_cfg_overlay=overlay or None, **kwargs)
    except Exception as err:
        raise WeightsUnavailable(
            f"cannot load pretrained weights for {sub.model} ({type(err).__name__}: {err}). "
            f"Name a local checkpoint with `bench run --weights FILE`, or train from random "
            f"initialisation with `bench run --random-init` (the leaderboard marks it not pretrained)."
        ) from None


def check_output_shape(sub: Submission, model: nn.Module, probe: torch.Tensor, num_classes: int) -> None:
    """One forward pass on two items before training: a wrong head fails at once, by name."""
    with torch.no_grad():
        model.eval()
        shape = tuple(model(probe).shape)
    if shape != (len(probe), num_classes):
        raise SubmissionError(f"{sub.source_file}: model {sub.model_name} returns shape {shape} for a batch of "
                              f"{len(probe)}, expected ({len(probe)}, {num_classes}) (batch, num_classes)")


def model_gflop(sub: Submission, spec) -> float | None:
    """GFLOP per training sample of ``sub``'s model on ``spec``'s clips, counted on the meta
    device (no memory, no data); None when the model cannot be built there."""
    from harness.runs.flops import flops_per_sample

    rate = sub.frontend.sample_rate or spec.sample_rate
    item = tuple(spec.image_size) if spec.kind == "image" else (round(rate * spec.clip_seconds),)
    try:
        shape = sub.frontend.output_shape(item)
        with torch.device("meta"):
            model = build_model(dataclasses.replace(sub, pretrained=False), spec.num_classes, tuple(shape))
            return flops_per_sample(model, torch.empty(2, *shape)) / 1e9
    except Exception:  # a model that cannot live on the meta device is simply not sized
        return None


def describe_failure(err: BaseException, sub: Submission) -> str:
    """One line: where in the submission it broke (file:line), what, and what to try."""
    where = user_frame(err, Path(sub.source_file)) if sub.source_file else ""
    text = f"{type(err).__name__}: {err}"
    if isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower():
        half = max(1, sub.recipe.batch_size // 2)
        text = (f"out of memory at batch size {sub.recipe.batch_size}; try Recipe(batch_size={half}) "
                f"in {sub.source_file or 'the submission'}")
    return f"{where}: {text}" if where and where != sub.source_file else text
