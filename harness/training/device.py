"""Where and how a run computes: its device, its precision, whether its model is compiled, and the
process-wide switches these need (cuDNN autotuning, deterministic kernels).

The switches are set for one run by ``switches`` and restored when it ends, so a run on one
device does not change how the next one, or the caller's own code, computes.
"""
from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext
from typing import Iterator

import torch
from torch import nn

from harness.core.errors import HarnessError

PRECISIONS = ("auto", "bf16", "fp32")


class DeviceUnavailable(HarnessError):
    """A device was asked for that this machine does not have."""


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` is the first CUDA GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceUnavailable("--device cuda was asked for, but torch sees no CUDA device; use --device cpu")
    return torch.device(name)


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
        raise HarnessError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    return precision


def autocast(device: torch.device, precision: str = "fp32"):
    """bf16 autocast for ``precision="bf16"`` (weights and optimiser stay fp32); nothing for fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()


@contextmanager
def switches(device: torch.device) -> Iterator[None]:
    """For one run: deterministic kernels on CPU (runs there are locked bit for bit), cuDNN
    autotuning on CUDA (fastest kernels for a fixed input shape). Both are restored afterwards."""
    saved = (torch.backends.cudnn.benchmark, torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled())
    if device.type == "cpu":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = saved[0]
        torch.use_deterministic_algorithms(saved[1], warn_only=saved[2])


def place_model(model: nn.Module, device: torch.device, input_dims: int, precision: str = "fp32",
                compile_model: bool = False) -> nn.Module:
    """The model on ``device``: channels_last for image-like input on CUDA and in bf16 (oneDNN's
    fast layout on CPU); optionally torch.compile. fp32 on CPU stays exactly as plain PyTorch runs it.

    ``precision`` is resolved already: "bf16" or "fp32".
    """
    model = model.to(device)
    if input_dims == 4 and (device.type == "cuda" or precision == "bf16"):
        model = model.to(memory_format=torch.channels_last)
    return torch.compile(model) if compile_model else model
