"""Run a submission on a dataset: one (fold, trial) at a time, each stored as it finishes."""
from __future__ import annotations

import inspect
import signal
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from harness import augment as A
from harness import owners
from harness import results as R
from harness.catalog import DatasetSpec
from harness.datasets import Dataset, load_dataset
from harness.errors import DatasetError, HarnessError
from harness.folds import validation_mask
from harness.metrics import classification_metrics
from harness.provenance import run_config, with_weights
from harness.run import Run
from harness.seeds import seed_everything
from harness.submission import Submission, SubmissionError, config_hash
from harness.training import TrainContext, compute_features, fit_default, predict


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceUnavailable("--device cuda was asked for, but torch sees no CUDA device; use --device cpu")
    return torch.device(name)


class DeviceUnavailable(HarnessError):
    """A device was asked for that this machine does not have."""


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


def tune_for_device(model: nn.Module, device: torch.device, input_dims: int, precision: str = "fp32",
                    compile_model: bool = False) -> nn.Module:
    """cuDNN autotuning on CUDA; channels_last for image-like input on CUDA and in bf16 (oneDNN's
    fast layout on CPU); optionally torch.compile. fp32 on CPU stays exactly as plain PyTorch runs it.

    ``precision`` is resolved already: "bf16" or "fp32".
    """
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if input_dims == 4 and (device.type == "cuda" or precision == "bf16"):
        model = model.to(memory_format=torch.channels_last)
    return torch.compile(model) if compile_model else model


def run_one(sub: Submission, spec: DatasetSpec, run: Run, device: torch.device, data_root: Path | None = None,
            on_epoch=lambda epoch, row: None, data: Dataset | None = None) -> dict:
    """Train on every fold but ``run.fold``, then evaluate on it; returns the result record.

    ``data`` replaces loading ``spec`` from the data root (in-memory check and lock data).
    """
    start = time.perf_counter()
    base, sub = sub, with_weights(sub, run)
    fold, epochs, seed, precision = run.fold, run.epochs, run.seed, run.precision
    generator = seed_everything(seed, deterministic=device.type == "cpu")
    data = data or load_dataset(spec, data_root, sub.frontend.sample_rate)
    train_idx, test_idx = np.flatnonzero(data.folds != fold), np.flatnonzero(data.folds == fold)
    if not len(test_idx):
        raise DatasetError(f"fold {fold} of {spec.name} is empty; it has folds 1..{spec.num_folds}")
    is_val = validation_mask(data.y[train_idx], sub.recipe.val_fraction, seed)
    fit_idx, val_idx = train_idx[~is_val], train_idx[is_val]

    def prepare(frontend: nn.Module):
        """Training and validation features through ``frontend``, normalised by training statistics."""
        raw = compute_features(frontend, data.x, fit_idx, device)
        norm = _normalizer(sub.recipe.normalize, raw)
        return norm(raw), norm(compute_features(frontend, data.x, val_idx, device)) if len(val_idx) else None, norm

    features, x_val, normalize = prepare(sub.frontend)
    y = lambda idx: torch.from_numpy(data.y[idx]).to(device)
    model = build_model(sub, spec.num_classes, input_shape=tuple(features.shape[1:])).to(device)
    check_output_shape(sub, model, features[:2].to(device), spec.num_classes)
    model = tune_for_device(model, device, features.dim(), precision, run.compiled)
    ctx = TrainContext(sub, model, features, y(fit_idx), x_val, y(val_idx) if len(val_idx) else None,
                       epochs, spec.num_classes, device, generator, on_epoch, lambda fe: prepare(fe)[:2], spec.name,
                       precision)
    fitted = (sub.fit or fit_default)(ctx)
    del ctx, features

    # the test fold reaches the model only here, after training and model selection are over
    x_test = normalize(compute_features(sub.frontend, data.x, test_idx, device))
    pred = predict(fitted.model, x_test, device, precision).argmax(1).cpu().numpy()
    config = run_config(base, spec, run)
    return {
        "schema": R.SCHEMA, "status": "ok", "run": run.identity(),
        "submission": sub.name, "dataset": spec.name, "dataset_version": spec.version,
        "epochs": epochs, "fold": fold, "trial": run.trial, "seed": seed,
        "config": config, "config_hash": config_hash(config), "source_hash": sub.source_hash(),
        "fold_fingerprint": data.fold_fingerprint,
        "model": sub.model_name, "frontend": sub.frontend.summary(), "pretrained": bool(sub.pretrained),
        "tta": sub.tta,
        "excluded_files": list(data.excluded),
        "n_train": int(len(fit_idx)), "n_val": int(len(val_idx)), "n_test": int(len(test_idx)),
        "metrics": classification_metrics(data.y[test_idx], pred, spec.num_classes),
        "predictions": pred.tolist(), "curves": fitted.curves,
        "git": R.git_state(), "versions": R.package_versions(), "device": device.type, "precision": precision,
        "compiled": run.compiled,
        "hardware": R.hardware(device), "wall_time_s": round(time.perf_counter() - start, 3),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


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
    from harness.submission import _user_frame

    where = _user_frame(err, Path(sub.source_file)) if sub.source_file else ""
    text = f"{type(err).__name__}: {err}"
    if isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower():
        half = max(1, sub.recipe.batch_size // 2)
        text = (f"out of memory at batch size {sub.recipe.batch_size}; try Recipe(batch_size={half}) "
                f"in {sub.source_file or 'the submission'}")
    return f"{where}: {text}" if where and where != sub.source_file else text


class GridInterrupted(KeyboardInterrupt):
    """SIGTERM during a grid: handled like Ctrl-C, finished runs stay, the current one is dropped."""


@dataclass
class GridReport:
    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    busy: list[tuple[Path, str]] = field(default_factory=list)  # claimed by another live process: (path, who)


def plan(sub: Submission, spec: DatasetSpec, runs: list[Run], results_root: Path) -> tuple[list[Run], list[Run]]:
    """(missing, finished): a run is finished when its result is sealed, successful, of this config
    and of this submission code (an edited submission file makes its stored runs stale)."""
    done = {run for run in runs
            if R.is_finished(run.path(results_root), config_hash(run_config(sub, spec, run)), sub.source_hash())}
    return [run for run in runs if run not in done], [run for run in runs if run in done]


def run_grid(sub: Submission, spec: DatasetSpec, runs: list[Run], device: torch.device, results_root: Path,
             data_root: Path | None = None, workers: int = 1) -> GridReport:
    """Run every missing run; finished ones are skipped, failures recorded and listed.

    ``workers`` > 1 runs that many jobs at once in worker processes sharing the device, for
    models too small to keep a GPU busy alone; results are still written one by one here.
    """
    def on_sigterm(signum, frame):
        raise GridInterrupted("terminated (SIGTERM); finished runs are kept, re-run to resume")

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        return _run_jobs(sub, spec, runs, device, results_root, data_root, workers)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _attempt(sub: Submission, spec: DatasetSpec, run: Run, device: torch.device, data_root: Path | None,
             on_epoch=lambda epoch, row: None) -> dict:
    """One run as a record: its result, or a failed record saying why (never an exception)."""
    try:
        return run_one(sub, spec, run, device, data_root, on_epoch)
    except Exception as err:  # one failed run must not stop or lose the others
        return {"schema": R.SCHEMA, "status": "failed", "run": run.identity(), "submission": sub.name,
                "dataset": spec.name, "epochs": run.epochs, "fold": run.fold, "trial": run.trial,
                "error": describe_failure(err, sub), "traceback": traceback.format_exc(limit=-3)}


def _attempt_in_worker(name: str, spec: DatasetSpec, run: Run, device: str, data_root: Path | None,
                       threads: int) -> dict:
    from harness.submission import get_submission

    torch.set_num_threads(threads)
    return _attempt(get_submission(name), spec, run, torch.device(device), data_root)


def _run_jobs(sub, spec, runs, device, results_root, data_root, workers) -> GridReport:
    from tqdm import tqdm

    report = GridReport()
    owners.clean(results_root / spec.name / sub.name)  # temporary results and claims of crashed runs
    jobs, finished = plan(sub, spec, runs, results_root)
    report.skipped = [run.path(results_root) for run in finished]
    bar = tqdm(total=len(jobs), desc=f"{sub.name} on {spec.name}", unit="run")

    def take(run: Run) -> bool:
        """Claim a run; False when another live process holds it or has finished it meanwhile."""
        path = run.path(results_root)
        if holder := owners.claim(path):
            report.busy.append((path, holder))
        elif plan(sub, spec, [run], results_root)[1]:
            owners.release(path)
            report.skipped.append(path)
        else:
            return True
        bar.update()
        return False

    def store(run: Run, record: dict) -> None:
        path = run.path(results_root)
        R.write_json_atomic(path, R.seal(record))
        owners.release(path)
        bar.update()
        if record["status"] == "ok":
            report.done.append(path)
            bar.write(f"  fold {run.fold} trial {run.trial}: accuracy {record['metrics']['accuracy']:.4f} "
                      f"macro-F1 {record['metrics']['macro_f1']:.4f} ({record['wall_time_s']:.1f} s)")
        else:
            report.failed.append((path, record["error"]))

    if workers <= 1:
        for run in jobs:
            if not take(run):
                continue
            show = lambda epoch, row: bar.set_postfix_str(
                f"fold {run.fold} trial {run.trial} epoch {epoch} (budget {run.epochs}) loss {row['train_loss']:.3f}")
            try:
                store(run, _attempt(sub, spec, run, device, data_root, show))
            finally:
                owners.release(run.path(results_root))
    else:
        _run_in_workers(sub, spec, [run for run in jobs if take(run)], device, data_root, workers, store, results_root)
    bar.close()
    return report


def _run_in_workers(sub, spec, jobs, device, data_root, workers, store, results_root) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, torch.get_num_threads() // workers) if device.type == "cpu" else 1
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        futures = {pool.submit(_attempt_in_worker, sub.name, spec, run, str(device), data_root, threads): run
                   for run in jobs}
        for future in as_completed(futures):
            store(futures[future], future.result())
    finally:  # on Ctrl-C or SIGTERM: drop queued jobs; finished ones are already stored
        pool.shutdown(wait=False, cancel_futures=True)
        for run in jobs:
            owners.release(run.path(results_root))
