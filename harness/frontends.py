"""Front-ends: turn a batch of clips into model input. Thin ``nn.Module``s over torchaudio.

Like scikit-learn estimators, a constructor only stores its arguments, so ``params()``
reads every setting back for logging, hashing and cloning.
"""
from __future__ import annotations

import inspect

import torch
import torchaudio.transforms as T
from torch import nn


class Frontend(nn.Module):
    """Base class: ``params()`` returns the constructor arguments by introspection."""

    sample_rate: int | None = None

    def params(self) -> dict:
        names = inspect.signature(type(self).__init__).parameters
        return {"name": type(self).__name__, **{n: getattr(self, n) for n in names if n != "self"}}

    def summary(self) -> str:
        return type(self).__name__


class LogMel(Frontend):
    """Log-mel spectrogram in dB.

    Args:
        sample_rate: rate the audio is decoded at (Hz).
        n_fft: FFT size. Default 1024.
        win_length: window length in samples; defaults to ``n_fft``.
        hop_length: hop in samples. Default 256.
        n_mels: mel bands. Default 128.
        f_min, f_max: mel range in Hz; ``f_max`` defaults to Nyquist.
        top_db: floor at ``max - top_db`` per clip (None: no floor). Default 80.

    Shape: (batch, samples) -> (batch, 1, n_mels, 1 + samples // hop_length).
    """

    def __init__(self, sample_rate: int, n_fft: int = 1024, win_length: int | None = None,
                 hop_length: int = 256, n_mels: int = 128, f_min: float = 0.0,
                 f_max: float | None = None, top_db: float | None = 80.0):
        super().__init__()
        self.sample_rate, self.n_fft, self.win_length, self.hop_length = sample_rate, n_fft, win_length, hop_length
        self.n_mels, self.f_min, self.f_max, self.top_db = n_mels, f_min, f_max, top_db
        self.mel = T.MelSpectrogram(sample_rate, n_fft=n_fft, win_length=win_length, hop_length=hop_length,
                                    n_mels=n_mels, f_min=f_min, f_max=f_max)
        self.to_db = T.AmplitudeToDB("power", top_db=top_db)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        # the channel axis keeps AmplitudeToDB's top_db floor per clip, not per batch
        return self.to_db(self.mel(wave.unsqueeze(1)))

    def summary(self) -> str:
        f_max = f"{self.f_max / 1000:g}k" if self.f_max else "nyq"
        return (f"log-mel {self.n_mels}@{self.sample_rate / 1000:g}kHz "
                f"fft{self.n_fft}/win{self.win_length or self.n_fft}/hop{self.hop_length}, fmax {f_max}")


class Waveform(Frontend):
    """The raw waveform, unchanged. Shape: (batch, samples) -> (batch, samples)."""

    def __init__(self, sample_rate: int):
        super().__init__()
        self.sample_rate = sample_rate

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return wave

    def summary(self) -> str:
        return f"waveform@{self.sample_rate / 1000:g}kHz"


class Image(Frontend):
    """Images from an image dataset, as one channel. Shape: (batch, H, W) -> (batch, 1, H, W)."""

    def __init__(self):
        super().__init__()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return image.unsqueeze(1)

    def summary(self) -> str:
        return "image"
