"""The decoder in bounded time and memory for any sample rate, reading only what a clip keeps."""
import io
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from harness.data import audio
from harness.data.datasets import DatasetError

from conftest import memory_ceiling, with_header_rate

MiB = 2**20


def short_wav(samples: int = 400) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.sin(np.arange(samples) / 5).astype(np.float32), 8000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@pytest.mark.parametrize("rate", [11127, 44056, 44101, 96001, 100003, 383999])
def test_odd_rates_decode_fast_in_bounded_memory(tmp_path, rate):
    # a 0.1 s clip; torchaudio's polyphase resampler took 42 s and 6.4 GB for 44101 Hz
    path = tmp_path / "odd.wav"
    path.write_bytes(with_header_rate(short_wav(rate // 10), rate))
    start = time.perf_counter()
    with memory_ceiling(256 * MiB):
        wave = audio.decode_audio(path, 8000)
        clip = audio.decode_audio(path, 8000, 8000, "pad")
    assert time.perf_counter() - start < 2.0
    assert abs(len(wave) - 800) <= 1 and clip.shape == (8000,) and np.isfinite(clip).all()


@pytest.mark.parametrize("rate", [1, 999, 384001, 1_000_003, 2**31 - 1])
def test_rates_outside_the_accepted_range_are_reported_with_the_rate(tmp_path, rate):
    path = tmp_path / "odd.wav"
    path.write_bytes(with_header_rate(short_wav(), rate))
    with memory_ceiling(256 * MiB), pytest.raises(DatasetError, match=rf"odd.wav: sample rate {rate} Hz is outside "
                                                                      r"the accepted 1000-384000 Hz"):
        audio.decode_audio(path, 8000)


def _bytes_read() -> int:
    return int(next(line.split()[1] for line in Path("/proc/self/io").read_text().splitlines()
                    if line.startswith("rchar")))


def test_a_long_file_is_read_only_as_far_as_the_clip_needs(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, np.zeros(44100 * 120, dtype=np.int16), 44100)  # 2 minutes: 10.6 MB
    before = _bytes_read()
    clip = audio.decode_audio(path, 8000, 8000, "pad")  # a 1 s clip
    assert clip.shape == (8000,)
    assert _bytes_read() - before < 1 * MiB


def test_a_window_decodes_like_the_whole_file_and_crop_keeps_the_centre(tmp_path):
    path = tmp_path / "noise.wav"
    sf.write(path, 0.3 * np.random.default_rng(0).standard_normal(16000 * 3).astype(np.float32), 16000, subtype="FLOAT")
    whole = audio.decode_audio(path, 8000)
    assert len(whole) == 24000
    np.testing.assert_allclose(audio.decode_audio(path, 8000, 8000, "pad"), whole[:8000], atol=1e-5)
    np.testing.assert_allclose(audio.decode_audio(path, 8000, 8000, "crop"), whole[8000:16000], atol=1e-5)
    looped = audio.decode_audio(path, 8000, 60000, "loop")
    np.testing.assert_allclose(looped[24000:48000], whole, atol=1e-5)


def test_a_header_claiming_many_channels_is_read_in_bounded_blocks(tmp_path, monkeypatch):
    path = tmp_path / "wide.wav"
    sf.write(path, np.ones((8000, 64), dtype=np.float32) * np.arange(64), 8000, subtype="FLOAT")
    monkeypatch.setattr(audio, "BLOCK_VALUES", 64 * 100)  # 100 frames a block
    reads = []
    real = sf.SoundFile.blocks
    monkeypatch.setattr(sf.SoundFile, "blocks", lambda self, **kw: (reads.append(len(b)) or b for b in real(self, **kw)))
    wave = audio.decode_audio(path, 8000)
    assert max(reads) == 100 and len(reads) == 80
    np.testing.assert_allclose(wave, 31.5)  # the mean over 64 channels


def test_fetching_and_decoding_start_without_importing_torch():
    import subprocess
    import sys

    code = "import sys, harness.cli.commands, harness.data.fetch, harness.data.audio, harness.cli.doctor; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
