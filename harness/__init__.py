"""audio-bench: a strict, reproducible benchmark harness for audio classification.

A submission imports what it needs from here: ``register_submission``, ``Submission``,
``Recipe`` and the front-ends.
"""
from harness.frontends import Image, LogMel, Waveform
from harness.submission import Recipe, Submission, register_submission

__all__ = ["Image", "LogMel", "Waveform", "Recipe", "Submission", "register_submission"]
