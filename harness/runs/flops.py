"""A model's FLOPs per training sample (torch's flop counter), and what they decide.

``is_small`` decides what ``auto`` means for a run on a GPU: small models go side by side and
uncompiled, large ones alone and compiled (the figures are below, at ``SMALL_MODEL_GFLOP``).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def flops_per_sample(model: nn.Module, x: torch.Tensor) -> float:
    """FLOPs of one forward and backward pass, per item of the batch ``x`` (torch's flop counter)."""
    counter = FlopCounterMode(display=False)
    with counter:
        model(x).float().sum().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / len(x)


# A model under this many GFLOP per training sample leaves an H100 mostly idle in one run: there,
# 4 runs side by side did 25 FSDD small-CNN runs (0.16 GFLOP) in 45.8 s instead of 105.7 s, and
# torch.compile made each run slower (4.57 s vs 3.78 s: compiling costs more than it saves). A
# ResNet-18 on ESC-50 log-mels (33.3 GFLOP) fills the GPU alone and gains from compiling.
SMALL_MODEL_GFLOP = 2.0
SIDE_BY_SIDE = 4


def is_small(gflop: float | None) -> bool:
    """A model of ``gflop`` per training sample (``Built.gflop``) is small enough to share a GPU."""
    return gflop is not None and gflop < SMALL_MODEL_GFLOP
