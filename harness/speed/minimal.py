"""What the hardware allows: a minimal training loop on features already on the device, so that
``bench speed`` can say how close the engine comes.

The minimal loop is what a careful person writes by hand for one fixed shape: bf16 autocast
(on CUDA), channels_last, fused AdamW, random batches indexed from one tensor, and optionally
``torch.compile``; no augmentation, no bookkeeping.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from harness.training.device import autocast, place_model


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
