"""Executing one run, label-blind: the driver holds the data and the labels, a sandboxed worker
holds the submission's code, and only features, training labels and predictions pass between them.

1. The driver decodes the dataset, splits it by role (``split_for``) and computes every feature
   itself through the submission's front-end, rebuilt from its settings (a harness front-end:
   its code is the harness's), cached per (dataset, front-end) as before.
2. A fresh worker (``harness.runs.sandboxed``) gets the training and validation features and
   labels, builds the model and runs ``fit``; a stage asking for another front-end's features
   gets them from the driver the same way.
3. Only after ``fit`` has returned does the worker get the test fold's features, never their
   labels; it answers with one predicted class per clip.
4. The driver checks the predictions, scores them and writes the record.
"""
from __future__ import annotations

import secrets
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from harness.core import owners
from harness.core.choices import PROTOCOLS
from harness.core.faults import crash_point
from harness.core.errors import DatasetError, HarnessError, SubmissionError
from harness.data.catalog import DatasetSpec
from harness.data.datasets import Dataset, load_dataset
from harness.data.folds import Split, split_for
from harness.frontends import augment as A
from harness.frontends import features as frontends
from harness.runs.described import Built, Described, Submissions, Variant, file_hash
from harness.runs.embeddings import (cached_embeddings, checked_embeddings, embedding_path, encoder_seed,
                                     frozen_predictions, store_embeddings)
from harness.runs.provenance import Origin, config_hash, hardware, package_versions, run_config
from harness.runs.records import FailedRecord, Record, RunRecord
from harness.runs.run import Run
from harness.runs.sandboxed import (CPU_GFLOPS, CUDA_GFLOPS, Settings, Worker, WorkerError, WorkerFailed, memory_bytes,
                                    protected_roots, time_limit_for)
from harness.core.disk import DiskError
from harness.core.sandbox import SandboxUnavailable
from harness.training.device import compile_cache, switches
from harness.training.features import FeatureTable, cache_path, feature_table
from harness.training.loop import Progress
from harness.training.metrics import classification_metrics


@dataclass(frozen=True)
class Task:
    """What the driver knows of the submission a run trains, all of it data: the submission as
    described (documentation, code hash), as this run trains it, and the code's origin."""

    described: Described
    built: Built
    source: Origin
    from_random: bool = False  # a pretrained model built without its weights (bench check, the locks)

    @property
    def file(self) -> Path:
        return Path(self.described.source_file)


def task_for(subs: Submissions, run: Run, spec: DatasetSpec | None = None, source: Origin | None = None,
             from_random: bool = False) -> Task:
    """The task of ``run``: its submission described in a worker (``spec``: sized on that dataset)."""
    from harness.runs.provenance import origin_of

    described = subs.describe(run.submission)
    built = subs.built(run.submission, Variant(run.overrides, run.weights, run.checkpoint, spec=spec,
                                               from_random=from_random))
    return Task(described, built, source or origin_of(described), from_random)


@dataclass(frozen=True)
class Execution:
    """One run as the driver executes it: the submission as it trains (``task``), the dataset, the
    run, the device it trains on, the data root, the worker's limits, and who is told its progress
    (``harness.training.loop.Progress``)."""

    task: Task
    spec: DatasetSpec
    run: Run
    device: torch.device
    data_root: Path | None = None
    settings: Settings = Settings()
    progress: Progress = Progress()


@dataclass(frozen=True)
class Outcome:
    """What a run gave, as the driver holds it: its data and split, the predicted class of each test
    clip (in ``split.test``'s order), the worker's curves, its seconds and its phases."""

    data: Dataset
    split: Split
    predictions: np.ndarray
    curves: list[dict[str, Any]]
    seconds: float
    phases: dict[str, float]


def frontend_from(params: dict[str, Any], harness_frontend: bool) -> frontends.Frontend:
    """The harness front-end a worker described, rebuilt here from its settings (and so checked)."""
    name = params.get("name")
    cls = getattr(frontends, str(name), None)
    if not harness_frontend or not (isinstance(cls, type) and issubclass(cls, frontends.Frontend)) or cls is frontends.Frontend:
        raise SubmissionError(f"front-end {name!r} is not one of the harness's (LogMel, Waveform, Image, TrimmedMel): "
                              f"the harness computes every feature, so that the test fold's inputs reach a submission "
                              f"only after fit; add a front-end to harness/frontends/features.py")
    return cls(**{k: v for k, v in params.items() if k != "name"})


def _normalizer(recipe_normalize: str, train_features: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    if recipe_normalize == "global":
        mean, std = A.global_stats(train_features)
        return lambda x: A.normalize_global(x, mean, std)
    if recipe_normalize == "minmax":
        return A.normalize_minmax
    return lambda x: x


@dataclass
class Features:
    """Every feature of a run, computed by the driver: the submission's front-end's table, and any
    other front-end's that a stage asks for; normalised by the training folds' statistics."""

    built: Built
    data: Dataset
    split: Split
    device: torch.device
    deadline: float | None = None  # time.monotonic() by which they must be ready (the run's limit)
    max_bytes: int | None = None   # what one front-end's features may take (half the run's memory limit)
    tables: dict[str, FeatureTable] = field(default_factory=dict)

    def table(self, params: dict[str, Any], harness_frontend: bool = True) -> FeatureTable:
        key = repr(sorted(params.items()))
        if key not in self.tables:
            frontend = frontend_from(params, harness_frontend)
            self._check_size(frontend)
            self.tables[key] = feature_table(frontend, self.data, self.device, self.deadline)
        return self.tables[key]

    def _check_size(self, frontend: frontends.Frontend) -> None:
        """Refuse, before computing them, features larger than a run may hold or slower than its time
        limit allows (a front-end's settings are the submission's to choose: a hop of one sample makes
        160 times the features of a hop of 160)."""
        item, clips = tuple(self.data.x.shape[1:]), len(self.data.x)
        nbytes = 4 * clips * int(np.prod(frontend.output_shape(item)))
        if self.max_bytes is not None and nbytes > self.max_bytes:
            raise SubmissionError(f"front-end {frontend.summary()} makes {nbytes / 2**30:.1f} GiB of features for "
                                  f"{clips} clips, more than the {self.max_bytes / 2**30:.1f} GiB a run may "
                                  f"hold (half its --memory-limit)")
        seconds = clips * frontend.flops(item) / 1e9 / (CUDA_GFLOPS if self.device.type == "cuda" else CPU_GFLOPS)
        cached = (path := cache_path(frontend, self.data, self.device)) is not None and path.exists()
        if self.deadline is not None and not cached and time.monotonic() + seconds > self.deadline:
            raise SubmissionError(f"front-end {frontend.summary()} takes about {seconds:.0f} s of features for {clips} "
                                  f"clips, past what is left of the run's time limit (--time-limit)")

    def training(self, params: dict[str, Any], harness_frontend: bool = True):
        """(training features, validation features or None, the normaliser), through ``params``'s front-end."""
        table = self.table(params, harness_frontend)
        raw = table.take(self.split.train)
        norm = _normalizer(self.built.recipe["normalize"], raw)
        x_val = norm(table.take(self.split.val)) if len(self.split.val) else None
        return norm(raw), x_val, norm


def _numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _training_arrays(x, x_val, data: Dataset, split: Split) -> dict[str, np.ndarray]:
    arrays = {"x": _numpy(x), "y": data.y[split.train].astype(np.int64)}
    if x_val is not None:
        arrays |= {"x_val": _numpy(x_val), "y_val": data.y[split.val].astype(np.int64)}
    return arrays


def run_one(task: Task, spec: DatasetSpec, run: Run, device: torch.device, data_root: Path | None = None,
            progress: Progress = Progress(), data: Dataset | None = None, settings: Settings = Settings()) -> RunRecord:
    """Train on every fold but ``run.fold`` in a sandboxed worker, then score its predictions on it.

    ``data`` replaces loading ``spec`` from the data root (in-memory check and lock data).
    """
    ex = Execution(task, spec, run, device, data_root, settings, progress)
    start, age = time.perf_counter(), owners.process_age()
    if file_hash(task.file) != task.source.source_hash:
        raise SubmissionError(f"{task.file}: changed since it was planned (source hash); run it again")
    with switches(device):
        data = data or load_dataset(spec, data_root, task.built.sample_rate)
        marks = {"data": time.perf_counter()}
        if not (data.folds == run.fold).any():
            raise DatasetError(f"fold {run.fold} of {spec.name} is empty; it has folds 1..{spec.num_folds}")
        protocol = PROTOCOLS.get(run.protocol)
        val_fraction = task.built.recipe["val_fraction"] or protocol.val_fraction
        split = split_for(data.folds, data.y, run.fold, val_fraction, run.seed)
        limit = settings.time_limit or time_limit_for(run.epochs, len(split.train), task.built.gflop, device.type)
        deadline = time.monotonic() + limit - (time.perf_counter() - start)
        features = Features(task.built, data, split, device, deadline, memory_bytes(settings) // 2)
        pred, curves = (_frozen if protocol.frozen else _blind)(ex, features, marks, limit)
    phases = {f"{name}_s": round(at - start, 3) for name, at in marks.items()}
    if age is not None:
        phases["process_s"] = round(age, 3)  # how long the process ran before this run began
    return _record(ex, Outcome(data, split, pred, curves, time.perf_counter() - start, phases))


def _blind(ex: Execution, features: Features, marks: dict[str, float], limit: float) -> tuple[np.ndarray, list]:
    """Fit in a worker on the training folds; then, and only then, its predictions for the test fold."""
    task, spec, run = ex.task, ex.spec, ex.run
    x, x_val, normalize = features.training(task.built.frontend, task.built.harness_frontend)
    marks["features"] = time.perf_counter()
    split, data, deadline = features.split, features.data, features.deadline
    weights = _weights(task, run)
    request = _request(ex, weights)
    with _worker(ex, weights) as worker:
        fit_start = time.perf_counter()
        on_event = _events(worker, features, ex.progress)
        fitted = worker.ask({**request, "op": "fit"}, deadline, f"training (limit {limit:.0f} s)",
                            _training_arrays(x, x_val, data, split), on_event, until="fitted")
        if isinstance(fitted.get("first_step_s"), (int, float)):
            marks["first_step"] = fit_start + fitted["first_step_s"]
        # the test fold reaches the submission only here, after training and model selection are over,
        # in an order it cannot know (clips are listed by name, and names often begin with the class)
        shuffled = np.random.default_rng(secrets.randbits(128)).permutation(len(split.test))
        x_test = normalize(features.table(task.built.frontend).take(split.test[shuffled]))
        answer = worker.ask({**request, "op": "predict"}, deadline, f"predicting (limit {limit:.0f} s)",
                            {"x": _numpy(x_test)}, until="predictions")
    pred = np.empty(len(split.test), dtype=np.int64)
    pred[shuffled] = checked_predictions(answer.get("predictions"), len(split.test), spec.num_classes)
    return pred, checked_curves(fitted.get("curves"), run.epochs)


def _frozen(ex: Execution, features: Features, marks: dict[str, float], limit: float) -> tuple[np.ndarray, list]:
    """A frozen protocol: every clip's embedding (cached, or from a worker), then the harness's probe
    or kNN on the training folds' embeddings, which alone see labels; the worker sees none."""
    embedded = _embeddings(ex, features, limit)
    marks["features"] = marks["first_step"] = time.perf_counter()  # the probe starts on them at once
    e = torch.from_numpy(np.array(embedded, dtype=np.float32)).to(ex.device)
    return frozen_predictions(ex.run.protocol, e, features.data.y, features.split, ex.spec.num_classes,
                              ex.run.epochs, ex.run.seed)


def _embeddings(ex: Execution, features: Features, limit: float) -> np.ndarray:
    """Every clip's embedding by the run's frozen encoder, in the dataset's order."""
    task, run, data = ex.task, ex.run, features.data
    path = embedding_path(data, run, {"source": task.source.source_hash, "params": task.built.params}, ex.device)
    if (found := cached_embeddings(path)) is not None and len(found) == len(data.x):
        return found
    raw = features.table(task.built.frontend, task.built.harness_frontend).take(np.arange(len(data.x)))
    x = _normalizer(task.built.recipe["normalize"], raw)(raw)  # statistics of every clip: no label, no fold
    order = np.random.default_rng(secrets.randbits(128)).permutation(len(data.x))  # clip order follows the class
    weights = _weights(task, run)
    request = {**_request(ex, weights), "op": "embed", "seed": encoder_seed(run)}
    doing = f"embedding (limit {limit:.0f} s)"
    with _worker(ex, weights) as worker:
        answer = worker.ask(request, features.deadline, doing, {"x": _numpy(x[torch.from_numpy(order)])},
                            _events(worker, features, ex.progress), until="embedded")
        shape = checked_embeddings(answer.get("shape"), len(data.x), memory_bytes(ex.settings) // 4)
        got = worker.receive_array(features.deadline, doing, shape)
    embedded = np.empty_like(got)
    embedded[order] = got
    store_embeddings(path, embedded)
    return embedded


def _request(ex: Execution, weights: Path | None) -> dict[str, Any]:
    """What every request to a run's worker says: the run, its dataset's size, the device and the
    weights file the driver fetched."""
    return {"name": ex.run.submission, "run": ex.run, "num_classes": ex.spec.num_classes, "dataset": ex.spec.name,
            "device": ex.device.type, "threads": torch.get_num_threads(), "from_random": ex.task.from_random,
            "weights_file": str(weights) if weights else ""}


def _weights(task: Task, run: Run) -> Path | None:
    """The file the worker builds its pretrained model from: a checkpoint, or hub weights fetched here."""
    if run.checkpoint and run.checkpoint != "(recorded)":
        return Path(run.checkpoint)
    if run.weights.startswith("hf:") and not task.from_random:
        from harness.runs.weights import hub_folder

        return hub_folder(run.weights.removeprefix("hf:"))
    if run.weights.startswith("pretrained:") and not task.from_random:
        from harness.runs.weights import pretrained_file

        return pretrained_file(task.built.model_name, task.built.params.get("model_kwargs") or {})
    return None


def _worker(ex: Execution, weights: Path | None) -> Worker:
    readable = [weights] if weights else []
    if weights and weights.is_dir():  # a hub cache's files are links into its blobs: each target is allowed too
        readable += sorted({p.resolve() for p in weights.rglob("*") if p.is_file()})
    run, cache = ex.run, None
    if run.compiled and ex.data_root is not None:  # shared only by runs that test on the same fold (no label reaches it)
        cache = compile_cache(ex.data_root) / f"{run.submission}-{ex.task.source.source_hash[:12]}" / \
            f"{run.dataset}-fold{run.fold}"
    return Worker(ex.task.file, ex.settings, ex.device.type, protected_roots(ex.data_root), readable,
                  compile_cache=cache, compiled=run.compiled)


def _events(worker: Worker, features: Features, progress: Progress) -> Callable[[dict], None]:
    """What the driver does with a worker's messages during ``fit``."""
    def on_event(message: dict) -> None:
        kind = message["event"]
        if kind == "epoch" and isinstance(row := message.get("row"), dict):
            epoch = row.get("epoch")
            if isinstance(epoch, int) and isinstance(row.get("train_loss"), (int, float)):
                progress.on_epoch(epoch, row)
            crash_point("epoch")  # the chaos tests kill the driver here, while a run trains
        elif kind == "step" and all(isinstance(message.get(k), int) for k in ("epoch", "step", "steps")):
            progress.on_step(message["epoch"], message["step"], message["steps"])
        elif kind == "features":
            try:
                frontend = message.get("frontend")
                if not isinstance(frontend, dict):
                    raise SubmissionError("a stage asked for features without naming a front-end")
                x, x_val, _ = features.training(frontend, bool(message.get("harness_frontend")))
                arrays = {"x": _numpy(x)} | ({"x_val": _numpy(x_val)} if x_val is not None else {})
                worker.send({"op": "features"}, arrays)
            except HarnessError as err:
                worker.send({"op": "features", "error": str(err)})
    return on_event


def checked_predictions(predictions: Any, n_test: int, num_classes: int) -> np.ndarray:
    """One class index per test clip, or ``WorkerFailed`` saying what the worker sent instead."""
    if not isinstance(predictions, list) or len(predictions) != n_test:
        got = len(predictions) if isinstance(predictions, list) else type(predictions).__name__
        raise WorkerFailed(f"the worker sent {got} predictions for {n_test} test clips")
    if not all(isinstance(p, int) and not isinstance(p, bool) and 0 <= p < num_classes for p in predictions):
        raise WorkerFailed(f"the worker sent a prediction that is not a class index from 0 to {num_classes - 1}")
    return np.asarray(predictions, dtype=np.int64)


def checked_curves(curves: Any, epochs: int) -> list[dict[str, Any]]:
    """Per-epoch rows of plain values: numbers, names, lists of numbers (per-class scores); at most a
    hundred rows per epoch of the budget."""
    scalar = (int, float, str, bool, type(None))
    plain = lambda v: isinstance(v, scalar) or isinstance(v, list) and all(isinstance(x, scalar) for x in v)
    if not isinstance(curves, list) or len(curves) > 100 * max(1, epochs) or not all(
            isinstance(row, dict) and all(isinstance(k, str) and plain(v) for k, v in row.items()) for row in curves):
        raise WorkerFailed("the worker's training curves are not rows of plain values per epoch")
    return curves


def _record(ex: Execution, outcome: Outcome) -> RunRecord:
    """The one place a run's record is made: the submission as registered identifies the run (its
    config); as trained, it describes it."""
    task, spec, run, built, data, split = ex.task, ex.spec, ex.run, ex.task.built, outcome.data, outcome.split
    config = run_config(task.described, built, spec, run)
    return RunRecord(
        run, config, config_hash(config), task.source.source_hash, spec.version, data.fold_fingerprint,
        model=built.model_name, frontend=built.frontend_summary, pretrained=bool(built.pretrained),
        tta=task.described.tta, excluded_files=list(data.excluded),
        n_train=int(len(split.train)), n_val=int(len(split.val)), n_test=int(len(split.test)),
        metrics=classification_metrics(data.y[split.test], outcome.predictions, spec.num_classes),
        predictions=outcome.predictions.tolist(), curves=outcome.curves, git=task.source.git,
        versions=package_versions(), device=ex.device.type, hardware=hardware(ex.device),
        wall_time_s=round(outcome.seconds, 3), finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        phases=outcome.phases, sandbox=SANDBOX if ex.settings.confined else "off (--unsandboxed)",
        class_names=list(data.class_names))


SANDBOX = "landlock+seccomp+netns+pidns"  # what confined the run's worker (harness.core.sandbox)


def attempt(ex: Execution) -> Record:
    """One run as a record: its result, or a failed record saying why. Never an exception, but for
    what no later run could get past either, which stops the sweep with one line and stores nothing:
    ``SandboxUnavailable`` (no run may start where the sandbox cannot be set up) and ``DiskError``
    (the data root cannot take a cache)."""
    try:
        return run_one(ex.task, ex.spec, ex.run, ex.device, ex.data_root, ex.progress, settings=ex.settings)
    except (SandboxUnavailable, DiskError):
        raise
    except WorkerError as err:
        return FailedRecord(ex.run, _refused(_memory(str(err), ex), ex.settings), err.trace)
    except Exception as err:  # one failed run must not stop or lose the others
        return FailedRecord(ex.run, f"{type(err).__name__}: {err}" if not isinstance(err, HarnessError) else str(err),
                            traceback.format_exc(limit=-3))


RULE = ("a submission may read only Python, the harness and its own file, write only its scratch folder, and "
        "reach no network and no other process")
REFUSALS = ("PermissionError", "Permission denied", "Operation not permitted", "ProcessLookupError")


def _refused(line: str, settings: Settings) -> str:
    """A worker's error that the sandbox caused says so, naming the rule."""
    if settings.confined and any(word in line for word in REFUSALS):
        return f"{line} (refused by the sandbox: {RULE})"
    return line


def _memory(line: str, ex: Execution) -> str:
    if "MemoryError" not in line or ex.device.type == "cuda":
        return line
    return (f"{line} (out of memory: over the sandbox's limit of {memory_bytes(ex.settings) / 2**30:.1f} GiB of "
            f"address space; --memory-limit)")
