"""Decode one audio file to a mono float32 clip, in time and memory bounded whatever the file says.

Three things keep one odd or hostile file from taking a machine down:

- the sample rate must lie in ``[MIN_RATE, MAX_RATE]``; outside it the file is reported as bad;
- resampling uses soxr (libsoxr, librosa's default), made for arbitrary ratios: its cost grows
  with the length of the audio, not with the two rates divided by their greatest common divisor
  as a polyphase kernel's does (torchaudio's took 42 s and 6.4 GB for one 0.1 s clip at 44101 Hz);
- only the part of the file that the clip-length policy keeps is read (plus a margin for the
  resampler's filter), block by block, downmixed as it is read, so neither a 10-minute file in a
  dataset of 1-second clips nor a header that claims 1024 channels makes a large allocation.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from harness.core.errors import DatasetError

MIN_RATE, MAX_RATE = 1_000, 384_000  # Hz: every real recording rate, from telephone speech to 384 kHz audio
RESAMPLER = "soxr-hq-1"              # in the decode cache key: another resampler must not reuse cached arrays
BLOCK_VALUES = 1 << 22               # samples read at once (frames x channels): 16 MiB of float32
MARGIN_SECONDS = 0.02                # read beyond the kept part so the filter sees real neighbours, not an edge


def fit_length(wave: np.ndarray, n: int, policy: str) -> np.ndarray:
    """Bring a 1-D clip to ``n`` samples.

    pad: zero-pad at the end, cut at the end. loop: tile the clip, then cut.
    crop: keep the centre of long clips, zero-pad short ones at the end.
    """
    if len(wave) == 0:
        return np.zeros(n, dtype=np.float32)
    if policy == "loop" and len(wave) < n:
        wave = np.tile(wave, -(-n // len(wave)))
    if policy == "crop" and len(wave) > n:
        start = (len(wave) - n) // 2
        wave = wave[start:start + n]
    out = np.zeros(n, dtype=np.float32)
    out[: min(n, len(wave))] = wave[:n]
    return out


def _window(total: int, rate: int, sample_rate: int, n: int | None, policy: str) -> tuple[int, int, int]:
    """Source frames to read, ``[start, stop)``, and where the kept part begins inside them.

    The kept part is the first ``n`` output samples (pad, loop) or the centre ones (crop).
    """
    if n is None:
        return 0, total, 0
    need, margin = math.ceil(n * rate / sample_rate), math.ceil(MARGIN_SECONDS * rate)
    keep = (total - need) // 2 if policy == "crop" and total > need else 0
    start = max(0, keep - margin)
    return start, min(total, keep + need + margin), keep - start


def _read_mono(snd: sf.SoundFile, start: int, stop: int) -> np.ndarray:
    """Frames ``[start, stop)`` averaged over channels, read in blocks of bounded size."""
    block = max(1, BLOCK_VALUES // snd.channels)
    if start and snd.seekable():
        snd.seek(start)
    elif start:  # not seekable: read and drop what comes before
        for _ in snd.blocks(blocksize=block, frames=start, dtype="float32", always_2d=True):
            pass
    parts = [b.mean(axis=1) for b in snd.blocks(blocksize=block, frames=stop - start, dtype="float32", always_2d=True)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def decode_audio(path: Path, sample_rate: int, n: int | None = None, policy: str = "pad") -> np.ndarray:
    """Decode ``path`` to mono float32 at ``sample_rate``; raises ``DatasetError`` naming the file.

    Args:
        path: an audio file soundfile can read (WAV, FLAC, OGG, ...).
        sample_rate: the rate to return, in Hz.
        n: the clip length in samples at ``sample_rate``; None decodes the whole file.
        policy: how a clip is brought to ``n`` samples (``fit_length``); only what it keeps is read.

    Returns:
        shape (n,), or (samples,) for the whole file.
    """
    try:
        with sf.SoundFile(str(path)) as snd:
            rate = snd.samplerate
            if not MIN_RATE <= rate <= MAX_RATE:
                raise DatasetError(f"{path}: sample rate {rate} Hz is outside the accepted {MIN_RATE}-{MAX_RATE} Hz; "
                                   f"a damaged header, or convert the file (e.g. `sox in.wav -r 44100 out.wav`)")
            start, stop, offset = _window(snd.frames, rate, sample_rate, n, policy)
            wave = _read_mono(snd, start, stop)
    except DatasetError:
        raise
    except Exception as err:  # soundfile raises several types for unreadable files
        raise DatasetError(f"{path}: cannot decode audio ({err})") from None
    if wave.shape[0] == 0:
        raise DatasetError(f"{path}: has no samples (zero-length audio)")
    if not np.isfinite(wave).all():
        raise DatasetError(f"{path}: contains NaN or infinite samples")
    if rate != sample_rate:
        wave = soxr.resample(wave, rate, sample_rate, quality="HQ")
        offset = round(offset * sample_rate / rate)
    return wave if n is None else fit_length(wave[offset:offset + n], n, policy)


def inspect_audio(path: Path, sample_rate: int, n: int | None, policy: str = "pad") -> tuple[str | None, int, int]:
    """Check one file for import by decoding it as training will: (problem or None, channels, rate)."""
    try:
        info = sf.info(str(path))
        decode_audio(path, sample_rate, n, policy)
        return None, info.channels, info.samplerate
    except DatasetError as err:
        return str(err).split(": ", 1)[-1], 0, 0
    except Exception as err:
        return f"cannot decode audio ({err})", 0, 0
