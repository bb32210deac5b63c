"""Model inputs: front-ends that turn decoded clips into what a model reads (log-mel, waveform,
image), the augmentations applied to them in training, and rendering spectrogram images.

Submission files import front-ends from here (or from ``harness`` itself).
"""
from harness.frontends.features import Frontend, Image, LogMel, TrimmedMel, Waveform

__all__ = ["Frontend", "Image", "LogMel", "TrimmedMel", "Waveform"]
