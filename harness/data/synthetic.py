"""The embedded synthetic dataset: six sound classes, generated bit-identically everywhere.

Each clip draws its parameters (pitch, onset, loudness, noise) from a generator seeded by
(class, item), so the data depends on nothing but the declaration.
"""
from __future__ import annotations

import numpy as np

from harness.data.catalog import DatasetSpec


def _clip(cls: str, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    f0 = rng.uniform(300, 1200)
    if cls == "tone":
        return np.sin(2 * np.pi * f0 * t)
    if cls in ("chirp_up", "chirp_down"):
        lo, hi = f0 / 2, min(f0 * 3, 3500)
        f = np.linspace(lo, hi, len(t)) if cls == "chirp_up" else np.linspace(hi, lo, len(t))
        return np.sin(2 * np.pi * np.cumsum(f) * (t[1] - t[0]))
    if cls == "noise_burst":
        env = np.zeros_like(t)
        start = rng.integers(0, len(t) // 2)
        env[start:start + len(t) // 3] = 1.0
        return env * rng.standard_normal(len(t))
    if cls == "click_train":
        out = np.zeros_like(t)
        out[:: int(rng.integers(150, 400))] = 4.0
        return out
    if cls == "am_tone":
        return np.sin(2 * np.pi * f0 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(4, 12) * t))
    raise ValueError(f"unknown synthetic class {cls!r}")


def generate(spec: DatasetSpec, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(x, y)``: ``x`` float32 (classes * per_class, samples), ``y`` int64 labels."""
    n = round(sample_rate * spec.clip_seconds)
    t = np.arange(n) / sample_rate
    x, y = [], []
    for c, cls in enumerate(spec.class_names):
        for i in range(spec.per_class):
            rng = np.random.default_rng([c, i])
            wave = rng.uniform(0.2, 0.8) * _clip(cls, t, rng) + 0.05 * rng.standard_normal(n)
            x.append(wave.astype(np.float32))
            y.append(c)
    return np.stack(x), np.asarray(y, dtype=np.int64)
