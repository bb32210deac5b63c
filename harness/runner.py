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
from harness.audio import RESAMPLER
from harness import results as R
from harness.catalog import DatasetSpec
from harness.datasets import Dataset, load_dataset
from harness.folds import validation_mask
from harness.metrics import classification_metrics
from harness.seeds import seed_everything, seed_for
from harness.submission import Submission, SubmissionError, config_hash
from harness.training import TrainContext, compute_features, fit_default, predict, resolve_precision


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but torch sees no CUDA device; use --device cpu")
    return torch.device(name)


class WeightsUnavailable(RuntimeError):
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


def run_config(sub: Submission, spec: DatasetSpec, epochs: int, fold: int, trial: int) -> dict:
    """Everything that determines a run's outcome; its hash decides whether a stored run is reusable.

    A run that resamples the dataset's audio names the resampler: another one gives other
    input, so a result computed through it is another run's result.
    """
    resamples = spec.kind == "audio" and (sub.frontend.sample_rate or spec.sample_rate) != spec.sample_rate
    return {"submission": sub.name, "params": sub.params(), "dataset": spec.name,
            "dataset_version": spec.version, "epochs": epochs, "fold": fold, "trial": trial,
            "seed": seed_for(fold, trial), **({"resampler": RESAMPLER} if resamples else {})}


def _normalizer(recipe_normalize: str, train_features: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    if recipe_normalize == "global":
        mean, std = A.global_stats(train_features)
        return lambda x: A.normalize_global(x, mean, std)
    if recipe_normalize == "minmax":
        return A.normalize_minmax
    return lambda x: x


@dataclass(frozen=True)
class Engine:
    """How runs execute, as opposed to what they compute: recorded in every result, never hashed.

    Args:
        precision: ``"auto"`` (default: bf16 on CUDA, fp32 on CPU, see
            ``harness.training.resolve_precision``), ``"bf16"`` or ``"fp32"``.
        compile: ``torch.compile`` the model (default False); the graph compiled for the first
            fold is reused by the next folds' fresh models of the same shapes.
    """

    precision: str = "auto"
    compile: bool = False


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


def run_one(sub: Submission, spec: DatasetSpec, fold: int, trial: int, epochs: int, device: torch.device,
            data_root: Path | None = None, on_epoch=lambda epoch, row: None, data: Dataset | None = None,
            engine: Engine = Engine()) -> dict:
    """Train on every fold but ``fold``, then evaluate on ``fold``; returns the result record.

    ``data`` replaces loading ``spec`` from the data root (in-memory check and lock data).
    """
    start = time.perf_counter()
    seed = seed_for(fold, trial)
    generator = seed_everything(seed, deterministic=device.type == "cpu")
    precision = resolve_precision(engine.precision, device)
    data = data or load_dataset(spec, data_root, sub.frontend.sample_rate)
    train_idx, test_idx = np.flatnonzero(data.folds != fold), np.flatnonzero(data.folds == fold)
    if not len(test_idx):
        raise ValueError(f"fold {fold} of {spec.name} is empty; it has folds 1..{spec.num_folds}")
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
    model = tune_for_device(model, device, features.dim(), precision, engine.compile)
    ctx = TrainContext(sub, model, features, y(fit_idx), x_val, y(val_idx) if len(val_idx) else None,
                       epochs, spec.num_classes, device, generator, on_epoch, lambda fe: prepare(fe)[:2], spec.name,
                       precision)
    fitted = (sub.fit or fit_default)(ctx)
    del ctx, features

    # the test fold reaches the model only here, after training and model selection are over
    x_test = normalize(compute_features(sub.frontend, data.x, test_idx, device))
    pred = predict(fitted.model, x_test, device, precision).argmax(1).cpu().numpy()
    config = run_config(sub, spec, epochs, fold, trial)
    return {
        "schema": R.SCHEMA, "status": "ok",
        "submission": sub.name, "dataset": spec.name, "dataset_version": spec.version,
        "epochs": epochs, "fold": fold, "trial": trial, "seed": seed,
        "config": config, "config_hash": config_hash(config), "source_hash": sub.source_hash(),
        "fold_fingerprint": data.fold_fingerprint,
        "model": sub.model_name, "frontend": sub.frontend.summary(), "pretrained": bool(sub.pretrained),
        "tta": sub.tta,
        "excluded_files": list(data.excluded),
        "n_train": int(len(fit_idx)), "n_val": int(len(val_idx)), "n_test": int(len(test_idx)),
        "metrics": classification_metrics(data.y[test_idx], pred, spec.num_classes),
        "predictions": pred.tolist(), "curves": fitted.curves,
        "git": R.git_state(), "versions": R.package_versions(), "device": device.type, "precision": precision,
        "compiled": engine.compile,
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


def run_grid(sub: Submission, spec: DatasetSpec, folds: list[int], trials: int, epochs: int,
             device: torch.device, results_root: Path, data_root: Path | None = None,
             workers: int = 1, engine: Engine = Engine()) -> GridReport:
    """Run every missing (fold, trial); finished ones are skipped, failures recorded and listed.

    ``workers`` > 1 runs that many jobs at once in worker processes sharing the device, for
    models too small to keep a GPU busy alone; results are still written one by one here.
    """
    def on_sigterm(signum, frame):
        raise GridInterrupted("terminated (SIGTERM); finished runs are kept, re-run to resume")

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        return _run_jobs(sub, spec, folds, trials, epochs, device, results_root, data_root, workers, engine)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _attempt(sub: Submission, spec: DatasetSpec, fold: int, trial: int, epochs: int, device: torch.device,
             data_root: Path | None, engine: Engine, on_epoch=lambda epoch, row: None) -> dict:
    """One run as a record: its result, or a failed record saying why (never an exception)."""
    try:
        return run_one(sub, spec, fold, trial, epochs, device, data_root, on_epoch, engine=engine)
    except Exception as err:  # one failed run must not stop or lose the others
        return {"schema": R.SCHEMA, "status": "failed", "submission": sub.name, "dataset": spec.name,
                "epochs": epochs, "fold": fold, "trial": trial, "error": describe_failure(err, sub),
                "traceback": traceback.format_exc(limit=-3)}


def _attempt_in_worker(name: str, pretrained, spec: DatasetSpec, fold: int, trial: int, epochs: int, device: str,
                       data_root: Path | None, engine: Engine, threads: int) -> dict:
    import dataclasses

    from harness.submission import get_submission

    torch.set_num_threads(threads)
    sub = dataclasses.replace(get_submission(name), pretrained=pretrained)
    return _attempt(sub, spec, fold, trial, epochs, torch.device(device), data_root, engine)


def _run_jobs(sub, spec, folds, trials, epochs, device, results_root, data_root, workers, engine) -> GridReport:
    from tqdm import tqdm

    report = GridReport()
    owners.clean(results_root / spec.name / sub.name)  # temporary results and claims of crashed runs

    def finished(fold: int, trial: int, path: Path) -> bool:
        # an edited submission file makes its stored runs stale: they run again
        return R.is_finished(path, config_hash(run_config(sub, spec, epochs, fold, trial)), sub.source_hash())

    jobs = [(f, t, R.result_path(results_root, spec.name, sub.name, epochs, f, t))
            for t in range(1, trials + 1) for f in folds]
    report.skipped = [path for f, t, path in jobs if finished(f, t, path)]
    jobs = [job for job in jobs if job[2] not in report.skipped]
    bar = tqdm(total=len(jobs), desc=f"{sub.name} on {spec.name} ({epochs} ep)", unit="run")

    def take(fold: int, trial: int, path: Path) -> bool:
        """Claim a run; False when another live process holds it or has finished it meanwhile."""
        if holder := owners.claim(path):
            report.busy.append((path, holder))
        elif finished(fold, trial, path):
            owners.release(path)
            report.skipped.append(path)
        else:
            return True
        bar.update()
        return False

    def store(fold: int, trial: int, path: Path, record: dict) -> None:
        R.write_json_atomic(path, R.seal(record))
        owners.release(path)
        bar.update()
        if record["status"] == "ok":
            report.done.append(path)
            bar.write(f"  fold {fold} trial {trial}: accuracy {record['metrics']['accuracy']:.4f} "
                      f"macro-F1 {record['metrics']['macro_f1']:.4f} ({record['wall_time_s']:.1f} s)")
        else:
            report.failed.append((path, record["error"]))

    if workers <= 1:
        for fold, trial, path in jobs:
            if not take(fold, trial, path):
                continue
            show = lambda epoch, row: bar.set_postfix_str(
                f"fold {fold} trial {trial} epoch {epoch} (budget {epochs}) loss {row['train_loss']:.3f}")
            try:
                store(fold, trial, path, _attempt(sub, spec, fold, trial, epochs, device, data_root, engine, show))
            finally:
                owners.release(path)
    else:
        _run_in_workers(sub, spec, [job for job in jobs if take(*job)], epochs, device, data_root, workers, engine, store)
    bar.close()
    return report


def _run_in_workers(sub, spec, jobs, epochs, device, data_root, workers, engine, store) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, torch.get_num_threads() // workers) if device.type == "cpu" else 1
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        futures = {pool.submit(_attempt_in_worker, sub.name, sub.pretrained, spec, fold, trial, epochs, str(device),
                               data_root, engine, threads): (fold, trial, path) for fold, trial, path in jobs}
        for future in as_completed(futures):
            store(*futures[future], future.result())
    finally:  # on Ctrl-C or SIGTERM: drop queued jobs; finished ones are already stored
        pool.shutdown(wait=False, cancel_futures=True)
        for _, _, path in jobs:
            owners.release(path)
