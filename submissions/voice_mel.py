"""Seed 003: 24-class voice mel-spectrogram images (BDMI homework 4 report).

The report classifies mel-spectrogram *images* (24 classes, about 100 images each, 90/10
train/validation split) with two models, both trained with Adam at 1e-4 for 500 epochs with
frequency and time masking:
- a pretrained ResNet-18 with its last layer replaced, all layers fine-tuned (about 85%
  validation accuracy, published);
- a CNN of four convolutional layers with BatchNorm and ReLU, trained from scratch.

Choices where the report is silent: mask widths (up to 1/8 of each axis: 16 bins on 128-pixel
images), channel widths of the scratch CNN (32-64-128-256, max-pooling between layers, global
average pooling, linear head), batch size 32, constant learning rate, no normalisation beyond
the images' [0, 1] scale. ImageNet weights are timm's copy of torchvision's
(``resnet18.tv_in1k``) with one input channel; the report's images were probably RGB renderings.
The published 85% is the report's best validation accuracy during training, i.e. selected on
its own 10% split; the harness scores the final epoch's model on the held-out fold instead.
On audio datasets the scratch CNN reads 64-band log-mels at 16 kHz instead of images.
"""
import dataclasses

from torch import nn

from harness import Image, LogMel, Recipe, Submission, register_submission

SEED = "003 report: 24-class voice mel-spectrogram images"


class SpecAugCNN(nn.Module):
    """Four conv-BN-ReLU layers (32-64-128-256), max-pool between them, global average pool, linear head."""

    def __init__(self, num_classes: int, widths: tuple[int, ...] = (32, 64, 128, 256)):
        super().__init__()
        layers, c_in = [], 1
        for i, c_out in enumerate(widths):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            layers += [nn.MaxPool2d(2)] if i < len(widths) - 1 else []
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


def _recipe() -> Recipe:
    return Recipe(epochs=500, batch_size=32, optimizer="adam", lr=1e-4, schedule="constant",
                  normalize="none", freq_mask=16, time_mask=16)


@register_submission
def specaug_cnn() -> Submission:
    """Seed 003's scratch CNN with SpecAugment masking, on 64-band log-mels at 16 kHz (audio datasets)."""
    return Submission(frontend=LogMel(16000, n_fft=1024, hop_length=256, n_mels=64), model=SpecAugCNN,
                      recipe=dataclasses.replace(_recipe(), normalize="global", freq_mask=8, time_mask=8), seed=SEED)


@register_submission
def specaug_cnn_image() -> Submission:
    """Seed 003's scratch CNN with SpecAugment masking, on mel-spectrogram images (image datasets)."""
    return Submission(frontend=Image(), model=SpecAugCNN, recipe=_recipe(), seed=SEED)


@register_submission
def voice_resnet18() -> Submission:
    """Seed 003's pretrained ResNet-18, last layer replaced, all layers fine-tuned, on mel-spectrogram images.

    Published: about 85% validation accuracy on the 24-class voice set (90/10 split, 500 epochs).
    """
    return Submission(frontend=Image(), model="resnet18.tv_in1k", pretrained=True, recipe=_recipe(), seed=SEED,
                      published={"voice24_holdout": {"epochs": 500, "accuracy": 85.0,
                                                     "protocol": "24 classes, 90/10 split, best validation accuracy"}})
