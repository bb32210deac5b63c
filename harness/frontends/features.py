"""Front-ends: turn a batch of clips into model input. Thin ``nn.Module``s over ``spectral``'s torchaudio transforms.

Like scikit-learn estimators, a constructor only stores its arguments, so ``params()``
reads every setting back for logging, hashing and cloning.
"""
from __future__ import annotations

import functools
import inspect

import torch
from torch import nn

from harness.data.audio import MAX_RATE, MIN_RATE
from harness.core.errors import SubmissionError
from harness.core.registry import did_you_mean
from harness.frontends import augment as A
from harness.frontends.spectral import mel_spectrogram, power_to_db


RATES = (MIN_RATE, MAX_RATE)
MAX_FFT, MAX_MELS = 2**16, 4096  # a filterbank is (n_fft / 2 + 1) x n_mels: beyond these it is the machine's memory


def mel_flops(samples: int, n_fft: int, hop_length: int, n_mels: int) -> float:
    """A mel spectrogram's cost: per frame an FFT (5 n log2 n) and the filterbank's matrix product."""
    frames = 1 + samples // hop_length
    return frames * (5 * n_fft * max(1, n_fft.bit_length()) + 2 * (n_fft // 2 + 1) * n_mels)


def _checked(init, cls_name: str):
    """``init`` that refuses unknown options with "did you mean", then checks the values it stored."""
    options = [p for p in inspect.signature(init).parameters if p != "self"]

    signature = inspect.signature(init)

    @functools.wraps(init)
    def checked_init(self, *args, **kwargs):
        for key in kwargs:
            if key not in options:
                raise SubmissionError(f"{cls_name}({key}=...): no such option; {cls_name} takes "
                                      f"{', '.join(options)}.{did_you_mean(key, options)}")
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        type(self).check_bounds(bound.arguments)  # before anything is built from them (a filterbank's size)
        init(self, *args, **kwargs)
        self.check()
    return checked_init


class Frontend(nn.Module):
    """Base class: ``params()`` returns the constructor arguments by introspection.

    A subclass is checked when it is made: a misspelt option says what was meant, and each
    value named in its ``BOUNDS`` (name -> (lowest, highest), None for no limit) must lie within
    them; ``check`` adds what depends on several values.
    """

    sample_rate: int | None = None
    cache_features = True  # False where features are the input reshaped: caching would copy the data
    BOUNDS: dict[str, tuple[float | None, float | None]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _checked(cls.__dict__["__init__"], cls.__name__)

    @classmethod
    def check_bounds(cls, values: dict) -> None:
        for name, (low, high) in cls.BOUNDS.items():
            value = values.get(name)
            if value is not None and ((low is not None and value < low) or (high is not None and value > high)):
                bounds = f"from {low} to {high}" if high is not None else f"at least {low}"
                raise SubmissionError(f"{cls.__name__}({name}={value!r}): must be {bounds}")

    def check(self) -> None:
        self.check_bounds({name: getattr(self, name) for name in self.BOUNDS})

    def params(self) -> dict:
        names = inspect.signature(type(self).__init__).parameters
        return {"name": type(self).__name__, **{n: getattr(self, n) for n in names if n != "self"}}

    def summary(self) -> str:
        return type(self).__name__

    def output_shape(self, item_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The declared shape of one item's features, given one item's input shape."""
        raise NotImplementedError

    def flops(self, item_shape: tuple[int, ...]) -> float:
        """About how many floating-point operations one item's features take (0: next to nothing)."""
        return 0.0


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
        ref_max: measure dB against each clip's maximum (librosa's ``ref=np.max``), so values
            lie in [-top_db, 0]. Default False (dB relative to 1.0).

    Shape: (batch, samples) -> (batch, 1, n_mels, 1 + samples // hop_length).
    """

    BOUNDS = {"sample_rate": RATES, "n_fft": (1, MAX_FFT), "win_length": (1, MAX_FFT), "hop_length": (1, None),
              "n_mels": (1, MAX_MELS), "f_min": (0, None), "top_db": (1e-6, None)}

    def __init__(self, sample_rate: int, n_fft: int = 1024, win_length: int | None = None,
                 hop_length: int = 256, n_mels: int = 128, f_min: float = 0.0,
                 f_max: float | None = None, top_db: float | None = 80.0, ref_max: bool = False):
        super().__init__()
        self.sample_rate, self.n_fft, self.win_length, self.hop_length = sample_rate, n_fft, win_length, hop_length
        self.n_mels, self.f_min, self.f_max, self.top_db, self.ref_max = n_mels, f_min, f_max, top_db, ref_max
        self.mel = mel_spectrogram(sample_rate, n_fft, hop_length, n_mels, win_length, f_min, f_max)
        self.to_db = power_to_db(top_db)

    def check(self) -> None:
        super().check()
        if self.win_length is not None and self.win_length > self.n_fft:
            raise SubmissionError(f"LogMel(win_length={self.win_length}): must not exceed n_fft={self.n_fft}")
        if self.f_max is not None and not self.f_min < self.f_max <= self.sample_rate / 2:
            raise SubmissionError(f"LogMel(f_max={self.f_max}): must lie above f_min={self.f_min} and at most at "
                                  f"Nyquist, {self.sample_rate / 2:g} Hz for sample_rate={self.sample_rate}")

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        # the channel axis keeps AmplitudeToDB's top_db floor per clip, not per batch
        db = self.to_db(self.mel(wave.unsqueeze(1)))
        return db - db.amax(dim=(-2, -1), keepdim=True) if self.ref_max else db

    def output_shape(self, item_shape):
        return (1, self.n_mels, 1 + item_shape[-1] // self.hop_length)

    def flops(self, item_shape):
        return mel_flops(item_shape[-1], self.n_fft, self.hop_length, self.n_mels)

    def summary(self) -> str:
        f_max = f"{self.f_max / 1000:g}k" if self.f_max else "nyq"
        return (f"log-mel {self.n_mels}@{self.sample_rate / 1000:g}kHz "
                f"fft{self.n_fft}/win{self.win_length or self.n_fft}/hop{self.hop_length}, fmax {f_max}")


class Waveform(Frontend):
    """The raw waveform, unchanged. Shape: (batch, samples) -> (batch, samples)."""

    BOUNDS = {"sample_rate": RATES}
    cache_features = False

    def __init__(self, sample_rate: int):
        super().__init__()
        self.sample_rate = sample_rate

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return wave

    def output_shape(self, item_shape):
        return tuple(item_shape)

    def summary(self) -> str:
        return f"waveform@{self.sample_rate / 1000:g}kHz"


class Image(Frontend):
    """Images from an image dataset, as one channel. Shape: (batch, H, W) -> (batch, 1, H, W)."""

    cache_features = False

    def __init__(self):
        super().__init__()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return image.unsqueeze(1)

    def output_shape(self, item_shape):
        return (1, *item_shape)

    def summary(self) -> str:
        return "image"


class TrimmedMel(Frontend):
    """Seed 001's front-end: trim silence, log-mel, crop from the start or tile to ``frames``,
    min-max scale each clip to [0, 1].

    Args:
        sample_rate: Hz (the paper resamples to 22.05 kHz).
        n_mels: mel bands. frames: output width (time crop from the start; shorter clips tiled).
        n_fft, hop_length: STFT window and hop (paper: 1024 and 256).
        top_db: silence threshold for trimming, dB below the loudest frame. Default 60.
        size: if given, bilinearly resize the result to (n_mels, frames) = ``size`` instead
            (the paper's "resize" method, applied to the full-resolution spectrogram).

    Shape: (batch, samples) -> (batch, 1, n_mels, frames), or (batch, 1, *size).
    """

    BOUNDS = {"sample_rate": RATES, "n_mels": (1, MAX_MELS), "frames": (1, 100_000), "n_fft": (1, MAX_FFT),
              "hop_length": (1, None), "top_db": (1e-6, None)}

    def __init__(self, sample_rate: int = 22050, n_mels: int = 128, frames: int = 300, n_fft: int = 1024,
                 hop_length: int = 256, top_db: float = 60.0, size: tuple[int, int] | None = None):
        super().__init__()
        self.sample_rate, self.n_mels, self.frames, self.n_fft = sample_rate, n_mels, frames, n_fft
        self.hop_length, self.top_db, self.size = hop_length, top_db, size
        self.mel = mel_spectrogram(sample_rate, n_fft, hop_length, n_mels)
        self.to_db = power_to_db(80.0)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        # trimming makes every clip a different length, so the mel is taken clip by clip
        specs = [A.tile_time(self.to_db(self.mel(A.trim_silence(w, self.top_db)[None])), self.frames) for w in wave]
        x = A.normalize_minmax(torch.stack(specs))
        if self.size is not None:
            x = torch.nn.functional.interpolate(x, size=tuple(self.size), mode="bilinear", align_corners=False)
        return x

    def output_shape(self, item_shape):
        return (1, *self.size) if self.size is not None else (1, self.n_mels, self.frames)

    def flops(self, item_shape):
        return mel_flops(item_shape[-1], self.n_fft, self.hop_length, self.n_mels)

    def summary(self) -> str:
        shape = f"{self.size[0]}x{self.size[1]} resized" if self.size else f"{self.n_mels}x{self.frames}"
        return f"trimmed log-mel {shape}@{self.sample_rate / 1000:g}kHz fft{self.n_fft}/hop{self.hop_length}, min-max"
