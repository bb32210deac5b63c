"""Every normalisation and augmentation against hand-computed expectations."""
import numpy as np
import pytest
import torch

from harness.frontends import augment as A
from harness.data.audio import fit_length
from harness.frontends.features import LogMel, TrimmedMel


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_global_normalisation():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    mean, std = A.global_stats(x)
    assert mean == 2.5 and std == pytest.approx(1.2909944)  # sample std of 1..4 = sqrt(5/3)
    assert A.normalize_global(x, mean, std).tolist() == pytest.approx([-1.161895, -0.387298, 0.387298, 1.161895], abs=1e-5)


def test_minmax_normalisation_per_item():
    x = torch.tensor([[[2.0, 4.0, 6.0]], [[5.0, 5.0, 5.0]]])
    assert A.normalize_minmax(x).tolist() == [[[0.0, 0.5, 1.0]], [[0.0, 0.0, 0.0]]]


def test_mixup_mixes_inputs_and_targets_with_the_same_weight():
    x = torch.arange(8.0).view(8, 1, 1, 1).expand(8, 1, 2, 3).clone()  # item i is the constant i
    y = torch.eye(8)
    mx, my = A.mixup(x, y, 0.4, gen(1))
    assert torch.allclose(my.sum(1), torch.ones(8))
    # item i became lam*i + (1-lam)*j, and its target puts lam on i and 1-lam on j
    assert torch.allclose(mx[:, 0, 0, 0], my @ torch.arange(8.0), atol=1e-5)
    assert (my.max(1).values >= 0.5).all() and (my.argmax(1) == torch.arange(8)).all()  # fastai: larger weight stays
    same_x, same_y = A.mixup(x, y, 0.0, gen(1))
    assert same_x is x and same_y is y


@pytest.mark.parametrize("axis_fn, axis", [(A.freq_mask, 2), (A.time_mask, 3)])
def test_masks_zero_one_contiguous_band_per_item(axis_fn, axis):
    x = torch.ones(16, 1, 8, 10)
    out = axis_fn(x, 3, gen(2))
    for item in out:
        lines = item[0].min(dim=1 if axis == 2 else 0).values  # 0 where a whole row/column is masked
        zero = torch.nonzero(lines == 0).flatten().tolist()
        assert len(zero) <= 3 and zero == list(range(zero[0], zero[0] + len(zero))) if zero else True
        assert (item == 0).sum() == len(zero) * (10 if axis == 2 else 8)  # nothing else touched
    assert (out == 0).any()
    assert axis_fn(x, 0, gen(2)) is x


def test_shift_time_fills_the_vacated_part():
    x = torch.arange(5.0).view(1, 1, 1, 5).repeat(2, 1, 1, 1)
    out = A.shift_time(x, torch.tensor([2, -2]), fill=-80.0)
    assert out[0, 0, 0].tolist() == [-80, -80, 0, 1, 2]
    assert out[1, 0, 0].tolist() == [2, 3, 4, -80, -80]


def test_random_time_shift_stays_within_twenty_percent():
    x = torch.arange(10.0).view(1, 1, 1, 10).repeat(64, 1, 1, 1)
    out = A.random_time_shift(x, 0.2, -80.0, gen(3))[:, 0, 0]
    filled = (out == -80).sum(1)
    assert filled.max() <= 2 and filled.max() > 0  # at most 20% of 10 frames, and some shifted
    for row in out:
        kept = row[row != -80]
        assert (kept == torch.arange(kept[0], kept[0] + len(kept))).all()  # the rest keeps its order
    right, left = out[:, 0] == -80, out[:, -1] == -80
    assert right.any() and left.any()  # both directions occur


def test_trim_silence_follows_librosas_frame_rule():
    wave = torch.tensor([0.0] * 4 + [1.0] * 4 + [0.0] * 4)
    # frames of 4 samples every 2 (centred): frames 2, 3 and 4 hold signal -> samples 4 .. (4 + 1) * 2
    assert A.trim_silence(wave, top_db=60, frame=4, hop=2).tolist() == [1, 1, 1, 1, 0, 0]
    silent = torch.zeros(12)
    assert A.trim_silence(silent, frame=4, hop=2) is silent


def test_tiling_and_length_policies():
    assert A.tile_time(torch.tensor([1.0, 2.0, 3.0]), 7).tolist() == [1, 2, 3, 1, 2, 3, 1]
    assert A.tile_time(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]), 3).tolist() == [1, 2, 3]
    wave = np.array([1, 2, 3], dtype=np.float32)
    assert fit_length(wave, 7, "loop").tolist() == [1, 2, 3, 1, 2, 3, 1]
    assert fit_length(wave, 5, "pad").tolist() == [1, 2, 3, 0, 0]
    assert fit_length(np.arange(1, 6, dtype=np.float32), 3, "crop").tolist() == [2, 3, 4]
    assert fit_length(np.arange(1, 6, dtype=np.float32), 3, "pad").tolist() == [1, 2, 3]


def test_logmel_ref_max_lies_in_minus_top_db_to_zero_and_batches_equal_items():
    wave = torch.randn(3, 16000, generator=torch.Generator().manual_seed(0)) * torch.tensor([[0.01], [1.0], [10.0]])
    mel = LogMel(16000, n_fft=2048, hop_length=512, n_mels=128, ref_max=True)
    out = mel(wave)
    assert out.shape == (3, 1, 128, 32)
    assert torch.allclose(out.amax(dim=(1, 2, 3)), torch.zeros(3)) and out.min() >= -80
    # one item alone and in a batch agree to a thousandth of a dB (batched FFTs round differently on some CPUs);
    # a reference taken over the batch instead of the item would differ by 20 and 40 dB
    assert torch.allclose(torch.cat([mel(w[None]) for w in wave]), out, rtol=0, atol=1e-3)


def test_trimmed_mel_is_min_max_scaled_and_tiled():
    sr = 22050
    wave = torch.zeros(2, sr * 2)
    wave[:, sr // 2: sr] = torch.sin(torch.arange(sr // 2) * 0.2)  # 0.5 s of tone inside silence
    out = TrimmedMel(n_mels=64, frames=128)(wave)
    assert out.shape == (2, 1, 64, 128) and out.min() == 0 and out.max() == 1
    # the trimmed clip is far shorter than 128 frames, so the crop repeats it with its own period
    width = 1 + len(A.trim_silence(wave[0])) // 256
    assert width < 64
    assert torch.allclose(out[0, 0, :, 5], out[0, 0, :, 5 + width], atol=1e-4)
