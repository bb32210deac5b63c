"""Executing one run: its data split by role, features, model, training, and the test fold
scored once at the end, returned as a record (``harness.runs.records``).
"""
from __future__ import annotations

import inspect
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from harness.core import owners
from harness.core.errors import DatasetError, HarnessError
from harness.data.catalog import DatasetSpec
from harness.data.datasets import Dataset, load_dataset
from harness.data.folds import Split, split_for
from harness.frontends import augment as A
from harness.runs.provenance import (Origin, check_origin, config_hash, hardware, origin, package_versions, run_config,
                                     with_weights)
from harness.runs.records import FailedRecord, Record, RunRecord
from harness.runs.run import Run
from harness.training.device import place_model, switches
from harness.training.features import feature_table
from harness.training.loop import FitResult, TrainContext, fit_default, predict
from harness.training.metrics import classification_metrics
from harness.core.seeds import seed_everything
from harness.training.submission import Submission, SubmissionError, user_frame


class WeightsUnavailable(HarnessError, RuntimeError):
    """Pretrained weights were asked for and could not be had."""


def build_model(sub: Submission, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """Instantiate the submission's model: its own factory or a timm name (with ``in_chans`` from the input).

    A factory that takes ``input_shape`` gets the per-item feature shape.
    """
    if callable(sub.model):
        extra = {"input_shape": input_shape} if "input_shape" in inspect.signature(sub.model).parameters else {}
        return sub.model(num_classes=num_classes, **extra, **sub.model_kwargs)
    import timm

    kwargs = dict(num_classes=num_classes, in_chans=input_shape[0] if len(input_shape) == 3 else 1, **sub.model_kwargs)
    if not sub.pretrained:
        return timm.create_model(sub.model, pretrained=False, **kwargs)
    overlay = {**kwargs.pop("pretrained_cfg_overlay", {}),
               **({"file": str(sub.pretrained)} if isinstance(sub.pretrained, str) else {})}
    try:  # a local checkpoint is loaded and adapted (input channels, new head) exactly like hub weights
        return timm.create_model(sub.model, pretrained=True, pretrained_cfg_overlay=overlay or None, **kwargs)
    except Exception as err:
        raise WeightsUnavailable(
            f"cannot load pretrained weights for {sub.model} ({type(err).__name__}: {err}). "
            f"Name a local checkpoint with `bench run --weights FILE`, or train from random "
            f"initialisation with `bench run --random-init` (the leaderboard marks it not pretrained)."
        ) from None


def _normalizer(recipe_normalize: str, train_features: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    if recipe_normalize == "global":
        mean, std = A.global_stats(train_features)
        return lambda x: A.normalize_global(x, mean, std)
    if recipe_normalize == "minmax":
        return A.normalize_minmax
    return lambda x: x


def run_one(sub: Submission, spec: DatasetSpec, run: Run, device: torch.device, data_root: Path | None = None,
            on_epoch=lambda epoch, row: None, data: Dataset | None = None,
            on_step=lambda epoch, step, steps: None, source: Origin | None = None) -> RunRecord:
    """Train on every fold but ``run.fold``, then evaluate on it; returns the run's record.

    ``data`` replaces loading ``spec`` from the data root (in-memory check and lock data).
    ``source``: the code's origin as the driver computed it (a worker checks it is running that
    code); by default computed here.
    """
    start, age = time.perf_counter(), owners.process_age()
    if source:
        check_origin(sub, source)
    source = source or origin(sub)
    trained = with_weights(sub, run)
    with switches(device):
        generator = seed_everything(run.seed)
        data = data or load_dataset(spec, data_root, trained.frontend.sample_rate)
        marks = {"data": time.perf_counter()}
        if not (data.folds == run.fold).any():
            raise DatasetError(f"fold {run.fold} of {spec.name} is empty; it has folds 1..{spec.num_folds}")
        split = split_for(data.folds, data.y, run.fold, trained.recipe.val_fraction, run.seed)
        fitted, pred = _train_and_test(trained, spec, run, device, data, split, generator, (on_epoch, on_step), marks)
    phases = {f"{name}_s": round(at - start, 3) for name, at in marks.items()}
    if age is not None:
        phases["process_s"] = round(age, 3)  # how long the process ran before this run began
    return _record(sub, trained, spec, run, device, data, split, fitted, pred, time.perf_counter() - start, phases,
                   source)


def _train_and_test(sub: Submission, spec: DatasetSpec, run: Run, device: torch.device, data: Dataset, split: Split,
                    generator: torch.Generator, progress, marks: dict[str, float]) -> tuple[FitResult, np.ndarray]:
    """Fit on ``split.train`` (selecting on ``split.val``); predict ``split.test`` once, at the end."""
    own = feature_table(sub.frontend, data, device)  # a stage's other front-end gets its own table

    def prepare(frontend: nn.Module):
        """Training and validation features through ``frontend``, normalised by training statistics."""
        table = own if frontend is sub.frontend else feature_table(frontend, data, device)
        raw = table.take(split.train)
        norm = _normalizer(sub.recipe.normalize, raw)
        x_val = norm(table.take(split.val)) if len(split.val) else None
        return norm(raw), x_val, norm

    features, x_val, normalize = prepare(sub.frontend)
    marks["features"] = time.perf_counter()
    y = lambda idx: torch.from_numpy(data.y[idx]).to(device) if len(idx) else None
    model = build_model(sub, spec.num_classes, input_shape=tuple(features.shape[1:])).to(device)
    check_output_shape(sub, model, features[:2].to(device), spec.num_classes)
    model = place_model(model, device, features.dim(), run.precision, run.compiled)
    ctx = TrainContext(sub, model, features, y(split.train), x_val, y(split.val), run.epochs, spec.num_classes,
                       device, generator, progress[0], lambda fe: prepare(fe)[:2], spec.name, run.precision, marks,
                       progress[1])
    fitted = (sub.fit or fit_default)(ctx)
    del ctx, features
    # the test fold reaches the model only here, after training and model selection are over
    x_test = normalize(own.take(split.test))
    return fitted, predict(fitted.model, x_test, device, run.precision).argmax(1).cpu().numpy()


def _record(sub: Submission, trained: Submission, spec: DatasetSpec, run: Run, device: torch.device, data: Dataset,
            split: Split, fitted: FitResult, pred: np.ndarray, seconds: float, phases: dict[str, float],
            source: Origin) -> RunRecord:
    """``sub`` as registered (its config and code identify the run), ``trained`` as the run changed it."""
    config = run_config(sub, spec, run)
    return RunRecord(
        run, config, config_hash(config), source.source_hash, spec.version, data.fold_fingerprint,
        model=trained.model_name, frontend=trained.frontend.summary(), pretrained=bool(trained.pretrained),
        tta=sub.tta, excluded_files=list(data.excluded),
        n_train=int(len(split.train)), n_val=int(len(split.val)), n_test=int(len(split.test)),
        metrics=classification_metrics(data.y[split.test], pred, spec.num_classes),
        predictions=pred.tolist(), curves=fitted.curves, git=source.git, versions=package_versions(),
        device=device.type, hardware=hardware(device), wall_time_s=round(seconds, 3),
        finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), phases=phases)


def attempt(sub: Submission, spec: DatasetSpec, run: Run, device: torch.device, data_root: Path | None,
            on_epoch=lambda epoch, row: None, on_step=lambda epoch, step, steps: None,
            source: Origin | None = None) -> Record:
    """One run as a record: its result, or a failed record saying why (never an exception)."""
    try:
        return run_one(sub, spec, run, device, data_root, on_epoch, on_step=on_step, source=source)
    except Exception as err:  # one failed run must not stop or lose the others
        return FailedRecord(run, describe_failure(err, sub), traceback.format_exc(limit=-3))


def check_output_shape(sub: Submission, model: nn.Module, probe: torch.Tensor, num_classes: int) -> None:
    """One forward pass on two items before training: a wrong head fails at once, by name."""
    with torch.no_grad():
        model.eval()
        shape = tuple(model(probe).shape)
    if shape != (len(probe), num_classes):
        raise SubmissionError(f"{sub.source_file}: model {sub.model_name} returns shape {shape} for a batch of "
                              f"{len(probe)}, expected ({len(probe)}, {num_classes}) (batch, num_classes)")


def describe_failure(err: BaseException, sub: Submission) -> str:
    """One line: where in the submission it broke (file:line), what, and what to try."""
    where = user_frame(err, Path(sub.source_file)) if sub.source_file else ""
    text = f"{type(err).__name__}: {err}"
    if isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower():
        half = max(1, sub.recipe.batch_size // 2)
        text = (f"out of memory at batch size {sub.recipe.batch_size}; try Recipe(batch_size={half}) "
                f"in {sub.source_file or 'the submission'}")
    return f"{where}: {text}" if where and where != sub.source_file else text
