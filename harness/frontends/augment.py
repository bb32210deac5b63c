"""Normalisation and augmentation as pure batch functions on any device.

Random functions take an explicit ``torch.Generator`` so that a run's draws depend on its
seed only. Shapes: ``x`` is (batch, ..., freq, time) for spectrograms.
"""
from __future__ import annotations

import numpy as np
import torch


def global_stats(x: torch.Tensor) -> tuple[float, float]:
    """Mean and std over every value of the *training* features (global normalisation)."""
    return x.mean().item(), x.std().item()


def normalize_global(x: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    return (x - mean) / (std + 1e-8)


def normalize_minmax(x: torch.Tensor) -> torch.Tensor:
    """Scale each item to [0, 1] by its own min and max (a constant item becomes 0)."""
    flat = x.flatten(1)
    lo, hi = flat.min(1).values, flat.max(1).values
    shape = (-1,) + (1,) * (x.dim() - 1)
    return (x - lo.view(shape)) / (hi - lo).clamp_min(1e-8).view(shape)


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU-drawn tensor on ``device``. To a GPU it goes through pinned memory without blocking:
    a copy from pageable memory waits for the GPU's queue to drain, once per step, and the GPU
    then idles while Python prepares the next step."""
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def mixup(x: torch.Tensor, y: torch.Tensor, alpha: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix each item with a random partner, fastai-style (the larger weight stays on the item).

    Args:
        x: inputs (batch, ...). y: one-hot or soft targets (batch, classes).
        alpha: Beta(alpha, alpha) concentration; 0 returns the batch unchanged.
    """
    if alpha <= 0:
        return x, y
    # torch's Beta sampler takes no generator, so draw it from NumPy seeded by ours
    rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=generator)))
    lam = torch.from_numpy(rng.beta(alpha, alpha, x.shape[0])).to(x.dtype)
    lam = to_device(torch.maximum(lam, 1 - lam), x.device)
    perm = to_device(torch.randperm(x.shape[0], generator=generator), x.device)
    lam_x = lam.view((-1,) + (1,) * (x.dim() - 1))
    return lam_x * x + (1 - lam_x) * x[perm], lam[:, None] * y + (1 - lam[:, None]) * y[perm]


def _mask(x: torch.Tensor, width: int, axis: int, generator: torch.Generator, fill: float) -> torch.Tensor:
    """Set one random band of up to ``width`` bins along ``axis`` to ``fill``, per item."""
    size, n = x.shape[axis], x.shape[0]
    widths = torch.randint(0, width + 1, (n,), generator=generator)
    starts = (torch.rand(n, generator=generator) * (size - widths + 1)).long()
    pos = torch.arange(size)
    band = (pos >= starts[:, None]) & (pos < (starts + widths)[:, None])  # (batch, size)
    shape = [n] + [1] * (x.dim() - 1)
    shape[axis] = size
    return x.masked_fill(to_device(band.view(shape), x.device), fill)


def freq_mask(x: torch.Tensor, width: int, generator: torch.Generator, fill: float = 0.0) -> torch.Tensor:
    """SpecAugment frequency masking on the second-to-last axis."""
    return _mask(x, width, x.dim() - 2, generator, fill) if width > 0 else x


def time_mask(x: torch.Tensor, width: int, generator: torch.Generator, fill: float = 0.0) -> torch.Tensor:
    """SpecAugment time masking on the last axis."""
    return _mask(x, width, x.dim() - 1, generator, fill) if width > 0 else x


def shift_time(x: torch.Tensor, shifts: torch.Tensor, fill: float) -> torch.Tensor:
    """Roll each item by ``shifts[i]`` frames along the last axis; the wrapped part becomes ``fill``."""
    t = x.shape[-1]
    src = torch.arange(t, device=x.device)[None, :] - to_device(shifts, x.device)[:, None]  # (batch, time)
    valid = (src >= 0) & (src < t)
    idx = src.clamp(0, t - 1).view((x.shape[0],) + (1,) * (x.dim() - 2) + (t,)).expand_as(x)
    out = torch.gather(x, -1, idx)
    return out.masked_fill(~valid.view((x.shape[0],) + (1,) * (x.dim() - 2) + (t,)), fill)


def random_time_shift(x: torch.Tensor, max_frac: float, fill: float, generator: torch.Generator) -> torch.Tensor:
    """Seed 002's augmentation: shift by up to ``max_frac`` of the width, either direction."""
    if max_frac <= 0:
        return x
    n, t = x.shape[0], x.shape[-1]
    frac = torch.rand(n, generator=generator) * max_frac
    sign = torch.where(torch.rand(n, generator=generator) < 0.5, -1, 1)
    return shift_time(x, sign * (frac * t).long(), fill)


def trim_silence(wave: torch.Tensor, top_db: float = 60.0, frame: int = 2048, hop: int = 512) -> torch.Tensor:
    """Cut leading and trailing silence from one 1-D clip (librosa.effects.trim's rule).

    A frame is silent when its RMS is more than ``top_db`` below the loudest frame's; the clip
    is kept from the first non-silent frame's start to the last one's end. All-silent clips
    are returned unchanged.
    """
    if wave.numel() == 0:
        return wave
    padded = torch.nn.functional.pad(wave, (frame // 2, frame // 2))
    frames = padded.unfold(0, frame, hop) if len(padded) >= frame else padded[None]
    rms_db = 10 * torch.log10(frames.pow(2).mean(-1).clamp_min(1e-20))
    loud = torch.nonzero(rms_db > rms_db.max() - top_db).flatten()
    if rms_db.max() <= -190 or not len(loud):
        return wave
    start = int(loud[0]) * hop
    end = min(len(wave), (int(loud[-1]) + 1) * hop)
    return wave[start:end]


def tile_time(x: torch.Tensor, frames: int) -> torch.Tensor:
    """Repeat ``x`` along its last axis until it is at least ``frames`` long, then crop from the start."""
    if x.shape[-1] == 0:
        return x.new_zeros(*x.shape[:-1], frames)
    reps = -(-frames // x.shape[-1])
    return x.repeat(*([1] * (x.dim() - 1)), reps)[..., :frames]
