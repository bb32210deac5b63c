"""Training: a submission (front-end, model, recipe), the default loop and the staged recipes
built on it, where features live, and the device, precision and compile policy.

Submission files import what they reuse from here (``FineTune``, ``Stage``, ``fit_stages``,
``TrainContext``, ``FitResult``, ``scale_epochs``); the modules below are its parts.
"""
from harness.training.loop import FitResult, TrainContext, fit_default, predict, train_epochs
from harness.training.stages import FineTune, Stage, fit_stages, scale_epochs

__all__ = ["FineTune", "FitResult", "Stage", "TrainContext", "fit_default", "fit_stages", "predict",
           "scale_epochs", "train_epochs"]
