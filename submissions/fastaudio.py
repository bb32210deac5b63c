"""Seed 000: "Fine-tuning ResNet-18 for Audio Classification" (J. Hartquist, W&B report).

Recipe (the report's final sweep configuration): 44.1 kHz audio; log-mel with n_fft 4096,
win_length 2205, hop_length 308, 224 mels, f_max 18 kHz, in dB relative to 1.0 with no floor
(the report's ``train.py`` builds fastaudio's ``AudioToSpec``, whose ``AmplitudeToDB`` has
``top_db=None``: the harness's default floor at 80 dB below each clip's maximum would put 58-75%
of an FSDD clip's bins at the floor, up to 1.0 std apart after normalisation); global normalisation (mean/std of
the training folds); mixup 0.1; batch 64; learning rate 1e-2; fastai ``fine_tune`` of an
ImageNet model; 10, 20 and 80 epochs; 5 folds x 5 trials on ESC-50. The report names no
numeric precision; fastai trains in fp32 unless told otherwise.

Deviations, all forced by running outside fastai:
- Model: timm's copy of the torchvision ImageNet weights fastai uses (``*.tv_in1k``), 1 input channel (timm
  sums the RGB filters of the first conv) and timm's plain linear head. fastai's
  ``cnn_learner`` adds a pooled concat head (BN, dropout, 512-unit layer); we do not.
- ``fine_tune(E)``: 1 frozen epoch (pct_start 0.99) then E unfrozen epochs with
  ``slice(lr/200, lr/2)`` over 3 parameter groups; fastai's groups follow the ResNet's
  stages, ours split the body's parameters into two equal consecutive halves, then the head.
  The run's epoch budget E is fastai's ``n_epoch``; the run trains E + 1 epochs in all.
- Optimiser: AdamW (fastai's Adam with true weight decay 0.01), betas cycled 0.95-0.85-0.95
  by the one-cycle schedule like fastai's moms.
- Precision: the harness's, recorded per run: bf16 autocast where the device computes bf16
  natively, else fp32. `bench run --precision fp32` matches fastai's default.
- fastaudio pads/crops clips to 5 s like our ``pad`` policy; ESC-50 clips are all 5 s.
"""
from harness import LogMel, Recipe, Submission, register_submission
from harness.training import FineTune

PROTOCOL = "ESC-50, 5 folds x 5 trials"


def _fastaudio(model: str, batch_size: int = 64, published=None) -> Submission:
    return Submission(
        frontend=LogMel(44100, n_fft=4096, win_length=2205, hop_length=308, n_mels=224, f_max=18000, top_db=None),
        model=model,
        pretrained=True,
        fit=FineTune(freeze_epochs=1, lr_mult=100, groups=3),
        recipe=Recipe(epochs=20, batch_size=batch_size, optimizer="adamw", lr=1e-2, weight_decay=0.01,
                      mixup=0.1, normalize="global"),
        published=published or {},
        seed="000 W&B report: fine-tuning ResNet-18 (fastai/fastaudio)",
    )


@register_submission
def fastaudio_resnet18() -> Submission:
    """ImageNet ResNet-18 fine-tuned on 224-band log-mels, the report's final recipe.

    Published: 86.14% at 20 epochs, 89.54% at 80 epochs (ESC-50, 5 folds x 5 trials).
    """
    return _fastaudio("resnet18.tv_in1k", published={"esc50": [
        {"epochs": 20, "accuracy": 86.14, "protocol": PROTOCOL},
        {"epochs": 80, "accuracy": 89.54, "protocol": PROTOCOL}]})


@register_submission
def fastaudio_resnet34() -> Submission:
    """The report's architecture sweep: ResNet-34 with the same recipe (no 5x5 figure published)."""
    return _fastaudio("resnet34.tv_in1k")


@register_submission
def fastaudio_densenet161() -> Submission:
    """The report's best model: DenseNet-161, batch 32, same recipe.

    Published: 91.47% at 80 epochs (ESC-50, 5 folds x 5 trials).
    """
    return _fastaudio("densenet161.tv_in1k", batch_size=32, published={"esc50": [
        {"epochs": 80, "accuracy": 91.47, "protocol": PROTOCOL}]})
