"""Submissions: one file in ``submissions/`` registers a factory with ``@register_submission``.

    @register_submission
    def small_cnn() -> Submission:
        return Submission(frontend=LogMel(8000, n_mels=64), model=SmallCNN, recipe=Recipe(lr=3e-3))

The factory's name is the submission's name and its docstring is its documentation.
Everything a run depends on is readable through ``Submission.params()``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import inspect
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, get_args, get_origin, get_type_hints

from torch import nn

from harness.core.paths import PROJECT_ROOT
from harness.core.errors import SubmissionError
from harness.frontends.features import Frontend
from harness.core.registry import DuplicateNameError, Registry, did_you_mean

SUBMISSIONS_DIR = PROJECT_ROOT / "submissions"


@dataclass(frozen=True)
class Recipe:
    """The training recipe the harness's default loop follows.

    Args:
        epochs: default epoch budget (a run's ``--epochs`` overrides it).
        batch_size: items per step; the last incomplete batch of an epoch is dropped.
        optimizer: ``adamw`` | ``adam`` | ``sgd`` (momentum 0.9).
        lr: peak learning rate. weight_decay: decoupled for adamw, L2 otherwise.
        schedule: ``onecycle`` (cosine one-cycle, 25% warm-up) | ``constant``.
        mixup: Beta(alpha, alpha) mixup; 0 disables it.
        normalize: ``global`` (mean/std of the training features) | ``minmax`` (per item) | ``none``.
        freq_mask, time_mask: SpecAugment mask widths in bins (0 disables).
        time_shift: random roll up to this fraction of the width, filled with ``time_shift_fill``.
        val_fraction: carve this stratified share of the training folds for choosing the best epoch.
    """

    epochs: int = 10
    batch_size: int = 32
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: Literal["onecycle", "constant"] = "onecycle"
    mixup: float = 0.0
    normalize: Literal["global", "minmax", "none"] = "global"
    freq_mask: int = 0
    time_mask: int = 0
    time_shift: float = 0.0
    time_shift_fill: float = 0.0
    val_fraction: float = 0.0

    def __post_init__(self):
        """Checked when made: a misspelt choice or an impossible value never reaches training."""
        for name, hint in get_type_hints(Recipe).items():
            value, choices = getattr(self, name), get_args(hint)
            if get_origin(hint) is Literal and value not in choices:
                raise SubmissionError(f"Recipe({name}={value!r}): use one of {', '.join(choices)}."
                                      f"{did_you_mean(str(value), list(choices))}")
        for name, low, high in (("epochs", 1, None), ("batch_size", 1, None), ("lr", 0, None),
                                ("weight_decay", 0, None), ("mixup", 0, None), ("freq_mask", 0, None),
                                ("time_mask", 0, None), ("time_shift", 0, 1), ("val_fraction", 0, 0.99)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low or (
                    high is not None and value > high) or (name == "lr" and value == 0):
                bounds = f"from {low} to {high}" if high is not None else f"{'above' if name == 'lr' else 'at least'} {low}"
                raise SubmissionError(f"Recipe({name}={value!r}): must be a number {bounds}")


@dataclass(frozen=True)
class Published:
    """A figure a seed document reports: accuracy in % after ``epochs`` epochs, under its own protocol.

    Submissions may write one as a dict with these keys; ``Submission`` turns it into this value.
    """

    epochs: int
    accuracy: float
    accuracy_std: float | None = None
    protocol: str = ""

    def __post_init__(self):
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise SubmissionError(f"published epochs={self.epochs!r}: a whole number of at least 1")
        for name in ("accuracy", "accuracy_std"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not 0 <= value <= 100):
                raise SubmissionError(f"published {name}={value!r}: a percentage from 0 to 100")

    @classmethod
    def of(cls, entry: "Published | dict[str, Any]") -> "Published":
        if isinstance(entry, cls):
            return entry
        fields = [f.name for f in dataclasses.fields(cls)]
        if not isinstance(entry, dict) or set(entry) - set(fields):
            unknown = sorted(set(entry) - set(fields)) if isinstance(entry, dict) else [repr(entry)]
            raise SubmissionError(f"published entry {entry!r}: unknown {', '.join(map(str, unknown))}; "
                                  f"use {', '.join(fields)}.{did_you_mean(str(unknown[0]), fields)}")
        return cls(**entry)


@dataclass
class Submission:
    """A front-end, a model factory and a recipe; optionally a replacement training loop.

    Args:
        frontend: a ``harness.frontends.features.Frontend`` (``LogMel``, ``Waveform``, ``Image``).
        model: a timm model name, or a callable ``model(num_classes=..., **model_kwargs)``.
        recipe: the ``Recipe`` for the default loop.
        model_kwargs: extra arguments for the model factory.
        pretrained: False, True (timm's ImageNet weights) or a path to a local checkpoint.
        fit: optional ``fit(ctx) -> FitResult`` replacing ``harness.training.loop.fit_default``.
        published: figures the seed publishes per dataset, each a ``Published`` or a dict of its
            fields, one or a list of them: ``{"esc50": {"epochs": 80, "accuracy": 89.54}}``.
        seed: the seed document the recipe comes from.
        tta: whether evaluation uses test-time augmentation (shown on the leaderboard).
    """

    frontend: Frontend
    model: str | Callable[..., nn.Module]
    recipe: Recipe = field(default_factory=Recipe)
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    pretrained: bool | str = False
    fit: Callable | None = None
    published: dict[str, tuple[Published, ...]] = field(default_factory=dict)
    seed: str = ""
    tta: bool = False
    name: str = ""
    doc: str = ""
    source_file: str = ""

    def __post_init__(self):
        if not isinstance(self.frontend, Frontend):
            raise SubmissionError(f"Submission(frontend={self.frontend!r}): use a harness front-end "
                                  f"(LogMel, Waveform, Image, TrimmedMel)")
        if not (isinstance(self.model, str) or callable(self.model)):
            raise SubmissionError(f"Submission(model={self.model!r}): a timm model name or a callable")
        if not isinstance(self.recipe, Recipe):
            raise SubmissionError(f"Submission(recipe={self.recipe!r}): use harness.Recipe(...)")
        self.published = {dataset: tuple(map(Published.of, entries if isinstance(entries, (list, tuple))
                                             else [entries])) for dataset, entries in self.published.items()}

    def published_for(self, dataset: str, epochs: int) -> Published | None:
        return next((p for p in self.published.get(dataset, ()) if p.epochs == epochs), None)

    @property
    def model_name(self) -> str:
        return self.model if isinstance(self.model, str) else getattr(self.model, "__name__", repr(self.model))

    def params(self) -> dict[str, Any]:
        """Every hyperparameter, JSON-ready: what is logged, hashed and compared."""
        return {
            "frontend": self.frontend.params(),
            "model": self.model_name,
            "model_kwargs": self.model_kwargs,
            "pretrained": self.pretrained if isinstance(self.pretrained, bool) else "checkpoint",
            "recipe": dataclasses.asdict(self.recipe),
            "fit": None if self.fit is None else (self.fit.params() if hasattr(self.fit, "params")
                                                  else getattr(self.fit, "__qualname__", repr(self.fit))),
            "tta": self.tta,
        }

    def source_hash(self) -> str:
        """sha256 of the submission's file: any edit to it changes the hash."""
        return hashlib.sha256(Path(self.source_file).read_bytes()).hexdigest() if self.source_file else ""

    def with_recipe(self, **changes) -> "Submission":
        return dataclasses.replace(self, recipe=dataclasses.replace(self.recipe, **changes))


def _origin(factory: Callable) -> str:
    return f"{inspect.getsourcefile(factory)}:{factory.__code__.co_firstlineno}"


SUBMISSIONS: Registry[Callable[[], Submission]] = Registry("submission", _origin)


def register_submission(factory: Callable[[], Submission]) -> Callable[[], Submission]:
    """Register a submission factory under its function name (one line, like timm's)."""
    SUBMISSIONS.add(factory.__name__, factory)
    return factory


def user_frame(err: BaseException, path: Path) -> str:
    frames = [f for f in traceback.extract_tb(err.__traceback__) if Path(f.filename) == path]
    return f"{path}:{frames[-1].lineno}" if frames else str(path)


def load_submission_file(path: Path) -> None:
    """Import one submission file; errors name the file and line."""
    name = f"submissions.{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        sys.modules.pop(name, None)
        raise SubmissionError(f"{user_frame(err, path)}: cannot import submission ({type(err).__name__}: {err})") from err


class SubmissionFolder:
    """A folder of submission files as this process imports them, and the files of it that cannot
    be imported (``broken``: file -> why), each said once on stderr and not tried again by this
    object. ``folder`` None: no folder, only what the registry holds (a sandboxed worker, which
    imports the one file that declares its submission, ``harness.runs.worker_tasks``)."""

    def __init__(self, folder: Path | None = SUBMISSIONS_DIR):
        self.folder = folder
        self.broken: dict[str, str] = {}

    def load(self) -> Registry[Callable[[], Submission]]:
        """Import every ``*.py`` of the folder not imported yet (once) and return the registry.

        A file that cannot be imported is left out, so one broken plug-in does not stop commands
        that do not need it. A name registered twice stays an error naming both files.
        """
        for path in sorted(self.folder.glob("*.py")) if self.folder is not None else ():
            if not path.name.startswith("_") and f"submissions.{path.stem}" not in sys.modules \
                    and str(path) not in self.broken:
                try:
                    load_submission_file(path)
                except SubmissionError as err:
                    if isinstance(err.__cause__, DuplicateNameError):
                        raise  # two plug-ins under one name: which one a run means is not for us to guess
                    self.broken[str(path)] = str(err)
                    print(f"skipped a broken submission file: {err}", file=sys.stderr)
        return SUBMISSIONS

    def get(self, name: str) -> Submission:
        """Build a registered submission, filled in with its name, docstring and source file."""
        registry = self.load()
        if name not in registry and self.broken:
            raise SubmissionError(f"unknown submission {name!r}; it may be in a file that cannot be imported: "
                                  + "; ".join(self.broken.values()))
        factory = registry.get(name)
        path = Path(inspect.getsourcefile(factory))
        try:
            sub = factory()
        except Exception as err:
            raise SubmissionError(f"{user_frame(err, path)}: {name}() failed ({type(err).__name__}: {err})") from err
        if not isinstance(sub, Submission):
            raise SubmissionError(f"{path}: {name}() must return a harness.Submission, got {type(sub).__name__}")
        sub.name, sub.source_file = name, str(path)
        sub.doc = inspect.getdoc(factory) or ""
        return sub


def load_submissions(folder: Path | None = None) -> Registry[Callable[[], Submission]]:
    """Import every submission file of ``folder`` (default: the project's ``submissions/``) and
    return the registry (``SubmissionFolder.load``)."""
    return SubmissionFolder(Path(folder or SUBMISSIONS_DIR)).load()


def get_submission(name: str, load_folder: bool = True) -> Submission:
    """Build a registered submission (``SubmissionFolder.get``).

    ``load_folder``: import every file of the project's submissions folder first; a sandboxed
    worker imports only the one file that declares ``name`` (``harness.runs.worker_tasks``).
    """
    return SubmissionFolder(SUBMISSIONS_DIR if load_folder else None).get(name)
