"""Records: what one run left behind, and the checks a result file passes to be read as one.

A ``RunRecord`` is a finished run (its metrics, predictions, curves and provenance); a
``FailedRecord`` says why a run did not finish. Both hold their ``Run`` and turn into the JSON
of a result file and back. Reading checks the schema, the checksum, that every field is there
and agrees with its run, and that each registered metric (``harness.training.metrics``) the
record has is a finite number from 0 to 1, accuracy and macro-F1 always; so a damaged,
hand-edited or older file is an error naming the file, never a record read half right. The other
fields are taken as written: whether the predictions are one class per test clip and the
metrics follow from them is checked against the dataset's labels
(``harness.runs.provenance.metrics_problem``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, ClassVar

from harness.core.errors import HarnessError
from harness.runs.run import Run, RunError

SCHEMA = 2  # 2: records hold their run identity (harness.runs.run) and live at Run.path
IDENTITY = ("submission", "dataset", "epochs", "fold", "trial")  # copied beside "run" for readers of the JSON
OPTIONAL = ("migrated_from", "phases", "sandbox", "class_names")  # absent from records written before they existed
REQUIRED_METRICS = ("accuracy", "macro_f1")  # every record has them; metrics registered later may be absent


class RecordError(HarnessError):
    """A stored result that cannot be read as a record of this schema."""


def _digest(data: dict[str, Any]) -> str:
    body = {k: v for k, v in data.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def seal(data: dict[str, Any]) -> dict[str, Any]:
    """Add a checksum over the record, so a hand-edited result is detected and not ranked."""
    return {**data, "checksum": _digest(data)}


def is_sealed(data: dict[str, Any]) -> bool:
    return data.get("checksum") == _digest(data)


def precision_of(data: dict[str, Any]) -> str:
    """The precision a run trained in; results from before it was recorded ran bf16 on CUDA, fp32 on CPU."""
    return data.get("precision") or ("bf16" if data.get("device") == "cuda" else "fp32")


@dataclass(frozen=True)
class RunRecord:
    """A finished run: what it scored on its test fold, and everything needed to trust that."""

    run: Run
    config: dict[str, Any]
    config_hash: str
    source_hash: str
    dataset_version: str
    fold_fingerprint: str
    model: str
    frontend: str
    pretrained: bool
    tta: bool
    excluded_files: list[str]
    n_train: int
    n_val: int
    n_test: int
    metrics: dict[str, float]
    predictions: list[int]
    curves: list[dict[str, Any]]
    git: dict[str, Any]
    versions: dict[str, str]
    device: str
    hardware: str
    wall_time_s: float
    finished_at: str
    migrated_from: str | None = None
    phases: dict[str, float] | None = None  # seconds from the run's start: data loaded, features, first step;
    # process_s: how long its process had run before (the first run's process_s + first_step_s is
    # the time from the command to the first training step)
    sandbox: str | None = None  # what confined the submission's code (harness.runs.execute.SANDBOX), "off
    # (--unsandboxed)", or None: run before submissions were sandboxed
    class_names: list[str] | None = None  # the split's class names, index by index; None: recorded before
    # records held them (the board takes the dataset's, where its split is still the record's)
    status: ClassVar[str] = "ok"

    def __post_init__(self):
        # imported when a record is made, not with this module: harness.training imports torch, and
        # commands that only import this module (bench fetch, bench doctor's start) start without it
        from harness.training.metrics import METRICS

        where = f"record of {self.run.variant} fold {self.run.fold}"
        if not isinstance(self.metrics, dict):
            raise RecordError(f"{where} has no metrics")
        for metric in REQUIRED_METRICS:
            if metric not in self.metrics:
                raise RecordError(f"{where} has no {metric}")
        for metric in filter(self.metrics.__contains__, METRICS):
            value = self.metrics[metric]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise RecordError(f"{where} has {metric} {value!r}, not a number from 0 to 1")
        names = self.class_names
        if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise RecordError(f"{where} has class names that are not a list of names")

    @property
    def accuracy(self) -> float:
        return float(self.metrics["accuracy"])

    @property
    def macro_f1(self) -> float:
        return float(self.metrics["macro_f1"])

    def to_json(self) -> dict[str, Any]:
        body = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "run"}
        for optional in OPTIONAL:
            if body[optional] is None:
                del body[optional]
        return {**_header(self.run, self.status), **body, "seed": self.run.seed,
                "precision": self.run.precision, "compiled": self.run.compiled}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RunRecord":
        names = [f.name for f in dataclasses.fields(cls) if f.name != "run"]
        if missing := [n for n in names if n not in data and n not in OPTIONAL]:
            raise RecordError(f"no provenance (missing {', '.join(missing)})")
        return cls(_run_of(data, cls.status), **{n: data.get(n) for n in names})


@dataclass(frozen=True)
class FailedRecord:
    """A run that did not finish: where it broke and the end of its traceback."""

    run: Run
    error: str
    traceback: str = ""
    status: ClassVar[str] = "failed"

    def to_json(self) -> dict[str, Any]:
        return {**_header(self.run, self.status), "error": self.error, "traceback": self.traceback}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "FailedRecord":
        return cls(_run_of(data, cls.status), str(data.get("error", "unknown error")), str(data.get("traceback", "")))


Record = RunRecord | FailedRecord


def _header(run: Run, status: str) -> dict[str, Any]:
    return {"schema": SCHEMA, "status": status, "run": run.identity(),
            **{key: getattr(run, key) for key in IDENTITY}}


def _run_of(data: dict[str, Any], status: str) -> Run:
    if data.get("schema") != SCHEMA and "run" in data:
        raise RecordError(f"schema {data.get('schema')!r}, this harness reads schema {SCHEMA}; run `bench migrate`")
    if "run" not in data:
        raise RecordError("stored before runs had identities (weights, precision, compile); run `bench migrate`")
    if data.get("status") != status:
        raise RecordError(f"status {data.get('status')!r} is not {status!r}")
    try:
        run = Run.from_identity(data["run"], checkpoint="(recorded)")  # a checkpoint's digest is its identity
    except (KeyError, TypeError, RunError) as err:
        raise RecordError(f"no readable run identity ({err})") from None
    if any(data.get(key) != getattr(run, key) for key in IDENTITY):
        raise RecordError("its fields disagree with its run identity")
    return run


def from_json(data: Any) -> Record:
    """The record a result file holds; ``RecordError`` says why it is not one."""
    if not isinstance(data, dict):
        raise RecordError("not a JSON object")
    if not is_sealed(data):
        raise RecordError("checksum mismatch: edited by hand or damaged")
    return (RunRecord if data.get("status") == "ok" else FailedRecord).from_json(data)
