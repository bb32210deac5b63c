"""audio-bench: a strict, reproducible benchmark harness for audio classification.

A submission imports what it needs from here: ``register_submission``, ``Submission``,
``Recipe`` and the front-ends. They are loaded on first use, so tools that only decode or
fetch data (``harness.data.audio``, ``harness.data.fetch``) start without importing torch.
"""
import importlib

_EXPORTS = {"Image": "frontends", "LogMel": "frontends", "Waveform": "frontends",
            "Recipe": "training.submission", "Submission": "training.submission",
            "register_submission": "training.submission"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    return getattr(importlib.import_module(f"harness.{_EXPORTS[name]}"), name)
