"""What the hardware allows: a minimal training loop on features already on the device, and the
model's FLOPs per training sample, so that ``bench speed`` can say how close the engine comes.

``is_small`` decides what ``auto`` means for a run on a GPU: small models go side by side and
uncompiled, large ones alone and compiled (the figures are below, at ``SMALL_MODEL_GFLOP``).

The minimal loop is what a careful person writes by hand for one fixed shape: bf16 autocast
(on CUDA), channels_last, fused AdamW, random batches indexed from one tensor, and optionally
``torch.compile``; no augmentation, no bookkeeping.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from harness.training.device import autocast, place_model


def flops_per_sample(model: nn.Module, x: torch.Tensor) -> float:
    """FLOPs of one forward and backward pass, per item of the batch ``x`` (torch's flop counter)."""
    counter = FlopCounterMode(display=False)
    with counter:
        model(x).float().sum().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / len(x)


def minimal_loop(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, steps: int,
                 device: torch.device, precision: str, compiled: bool) -> tuple[float, float]:
    """(seconds to the end of the first step, seconds for ``steps`` further steps) of the minimal loop.

    Shapes: x (items, ...) on ``device``, y (items,) class indices.
    """
    start = time.perf_counter()
    model = place_model(model, device, x.dim(), precision, compiled)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=device.type == "cuda")
    generator = torch.Generator(device=device).manual_seed(0)

    def step():
        idx = torch.randint(len(x), (batch_size,), device=device, generator=generator)
        with autocast(device, precision):
            loss = F.cross_entropy(model(x[idx]).float(), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    _sync(device)
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return first, time.perf_counter() - start


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# A model under this many GFLOP per training sample leaves an H100 mostly idle in one run: there,
# 4 runs side by side did 25 FSDD small-CNN runs (0.16 GFLOP) in 45.8 s instead of 105.7 s, and
# torch.compile made each run slower (4.57 s vs 3.78 s: compiling costs more than it saves). A
# ResNet-18 on ESC-50 log-mels (33.3 GFLOP) fills the GPU alone and gains from compiling.
SMALL_MODEL_GFLOP = 2.0
SIDE_BY_SIDE = 4


def is_small(gflop: float | None) -> bool:
    """A model of ``gflop`` per training sample (``Built.gflop``) is small enough to share a GPU."""
    return gflop is not None and gflop < SMALL_MODEL_GFLOP
