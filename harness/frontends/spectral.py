"""Everything the harness takes from torchaudio, in one place: the mel spectrogram (Hann-windowed
STFT power, HTK mel filterbank) and power-to-dB with a ``top_db`` floor. Nothing else imports
torchaudio (``tests/test_environment.py`` checks), so moving to ``torch.stft`` or another library
is this file; the reproducibility locks say whether features stayed bit for bit the same.

Audio decoding and resampling do not use torchaudio (soundfile and soxr, ``harness.data.audio``);
masks, time shifts and mixup are the harness's own (``harness.frontends.augment``).
"""
from __future__ import annotations

import torchaudio
import torchaudio.transforms as T
from torch import nn

VERSION = torchaudio.__version__  # part of a feature cache key: another version may give other bits


def mel_spectrogram(sample_rate: int, n_fft: int, hop_length: int, n_mels: int, win_length: int | None = None,
                    f_min: float = 0.0, f_max: float | None = None) -> nn.Module:
    """(..., samples) -> (..., n_mels, 1 + samples // hop_length): mel power, centred frames."""
    return T.MelSpectrogram(sample_rate, n_fft=n_fft, win_length=win_length, hop_length=hop_length,
                            n_mels=n_mels, f_min=f_min, f_max=f_max)


def power_to_db(top_db: float | None) -> nn.Module:
    """10 log10(power), floored at ``max - top_db`` over the last two axes of each leading index."""
    return T.AmplitudeToDB("power", top_db=top_db)
