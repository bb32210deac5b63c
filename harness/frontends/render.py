"""Render an audio dataset as a folder per class of mel-spectrogram PNGs (seed 003's input format)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from harness.data.datasets import Dataset
from harness.frontends.features import LogMel


def spectrogram_image(wave: np.ndarray, sample_rate: int, size: int) -> np.ndarray:
    """A ``size`` x ``size`` uint8 image of the clip's log-mel, low frequencies at the bottom."""
    hop = max(1, len(wave) // (size - 1))
    mel = LogMel(sample_rate, n_fft=max(256, 2 * hop), hop_length=hop, n_mels=size, top_db=80.0, ref_max=True)
    db = mel(torch.from_numpy(np.array(wave, dtype=np.float32))[None])[0, 0, :, :size].numpy()  # a writable copy
    scaled = (db - db.min()) / max(float(db.max() - db.min()), 1e-8)
    return (255 * scaled[::-1]).round().astype(np.uint8)


def render_images(data: Dataset, out: Path, size: int = 128) -> int:
    """Write every clip of ``data`` to ``out/<class>/<clip>.png``; returns the number written."""
    from PIL import Image
    from tqdm import tqdm

    for cid, wave, label in tqdm(list(zip(data.ids, data.x, data.y)), desc=f"rendering {data.spec.name}", unit="clip"):
        path = out / data.class_names[label] / (Path(cid).stem + ".png")
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(spectrogram_image(np.asarray(wave), data.sample_rate, size)).save(path)
    return len(data.ids)
