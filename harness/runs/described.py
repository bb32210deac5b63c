"""The driver's view of the submissions, without running one line of them.

Names, files and docstrings are read from each file's syntax tree (``declared``); everything
else (settings, model, front-end, published figures) is described by a sandboxed worker and
arrives as data (``Described``, ``Built``), checked when made. Planning, staleness, the board
and the CLI work from these; only a worker imports a submission file.
"""
from __future__ import annotations

import ast
import dataclasses
import hashlib
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.errors import SubmissionError
from harness.core.paths import PROJECT_ROOT
from harness.core.registry import Registry, check_name
from harness.data.audio import MAX_RATE, MIN_RATE
from harness.runs.sandboxed import Settings, Worker, WorkerFailed

SUBMISSIONS_DIR = PROJECT_ROOT / "submissions"
DESCRIBE_TIMEOUT = 120.0  # seconds for a worker to import a file and build its submissions


@dataclass(frozen=True)
class Declaration:
    """A submission as its file declares it: ``@register_submission`` over ``def name():``."""

    name: str
    file: Path
    line: int
    doc: str

    @property
    def origin(self) -> str:
        return f"{self.file}:{self.line}"


def _registers(node: ast.AST) -> bool:
    decorators = getattr(node, "decorator_list", [])
    return any((d.id if isinstance(d, ast.Name) else getattr(d, "attr", "")) == "register_submission" for d in decorators)


def declarations_in(path: Path) -> list[Declaration]:
    """The submissions ``path`` declares at its top level, read from its syntax (never run)."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError) as err:
        raise SubmissionError(f"{path}: cannot be read as Python ({type(err).__name__}: {err})") from None
    return [Declaration(check_name("submission", node.name, str(path)), path, node.lineno, ast.get_docstring(node) or "")
            for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _registers(node)]


def declared(folders: tuple[Path, ...] = (SUBMISSIONS_DIR,), files: tuple[Path, ...] = (),
             broken: dict[str, str] | None = None) -> Registry[Declaration]:
    """Every submission in ``folders`` (files starting with ``_`` are helpers) and in ``files``; a
    name declared twice is an error naming both places. A file that cannot be read as Python is
    left out and put in ``broken`` (file -> why), so that one broken file does not stop the rest."""
    registry: Registry[Declaration] = Registry("submission", lambda d: d.origin)
    paths = [p for folder in folders for p in sorted(Path(folder).glob("*.py")) if not p.name.startswith("_")]
    paths += list(files)
    for path in dict.fromkeys(p.resolve() for p in paths):
        try:
            found = declarations_in(path)
        except SubmissionError as err:
            if broken is None:
                raise
            broken[str(path)] = str(err)
            continue
        for declaration in found:
            registry.add(declaration.name, declaration)
    return registry


def file_hash(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --- what a worker says ------------------------------------------------------------------------------

def _typed(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise WorkerFailed(f"the worker described {what} as {type(value).__name__}, not {kind}")
    return value


HUB_ENCODER = "HubEncoder"  # the model name of harness.training.encoders.HubEncoder


@dataclass(frozen=True)
class Built:
    """A submission as one (overrides, weights) trains it: its settings and the front-end whose
    features the driver computes. ``gflop``: per training sample on the dataset it was sized for."""

    overrides: tuple[tuple[str, Any], ...]
    params: dict[str, Any]
    model_name: str
    pretrained: bool | str
    epochs: int
    frontend: dict[str, Any]
    frontend_summary: str
    harness_frontend: bool
    gflop: float | None = None

    @classmethod
    def of(cls, data: dict[str, Any]) -> "Built":
        overrides = tuple((str(k), _plain(v)) for k, v in _typed(data.get("overrides", []), list, "overrides"))
        params = _typed(data.get("params"), dict, "its settings")
        recipe = _typed(params.get("recipe"), dict, "its recipe")
        gflop = data.get("gflop")
        return cls(overrides, params, _typed(data.get("model_name"), str, "its model"),
                   _typed(data.get("pretrained"), (bool, str), "its weights"), _typed(recipe.get("epochs"), int, "epochs"),
                   _typed(data.get("frontend"), dict, "its front-end"), _typed(data.get("frontend_summary"), str, "a summary"),
                   _typed(data.get("harness_frontend"), bool, "its front-end's origin"),
                   float(gflop) if isinstance(gflop, (int, float)) and math.isfinite(gflop) else None)

    def __post_init__(self):
        rate = self.frontend.get("sample_rate")
        if rate is not None and (not isinstance(rate, int) or isinstance(rate, bool) or not MIN_RATE <= rate <= MAX_RATE):
            # the driver decodes every clip at this rate: a hostile value would size its arrays
            raise WorkerFailed(f"the worker described its front-end's sample rate as {rate!r}: an integer from "
                               f"{MIN_RATE:,} to {MAX_RATE:,} Hz (or none, the dataset's own rate)")

    @property
    def recipe(self) -> dict[str, Any]:
        return self.params["recipe"]

    @property
    def sample_rate(self) -> int | None:
        return self.frontend.get("sample_rate")

    @property
    def hub_source(self) -> str | None:
        """``<repo>@<revision>`` of a hub encoder (``harness.training.encoders.HubEncoder``), else None."""
        if self.model_name != HUB_ENCODER:
            return None
        kwargs = self.params.get("model_kwargs") or {}
        return f"{kwargs.get('repo', '')}@{kwargs.get('revision', '')}"


def _plain(value: Any) -> Any:
    return tuple(map(_plain, value)) if isinstance(value, list) else value


@dataclass(frozen=True)
class Described:
    """What a submission says of itself, through a worker: documentation and published figures.

    ``registered``: the submission as written (no overrides, its own weights)."""

    name: str
    source_file: str
    source_hash: str
    doc: str
    seed: str
    tta: bool
    published: dict[str, tuple[Any, ...]]
    registered: Built

    def published_for(self, dataset: str, epochs: int):
        return next((p for p in self.published.get(dataset, ()) if p.epochs == epochs), None)

    @property
    def model_name(self) -> str:
        return self.registered.model_name

    @property
    def pretrained(self) -> bool | str:
        return self.registered.pretrained


# --- describing, once per variant ---------------------------------------------------------------------

@dataclass(frozen=True)
class Variant:
    """What a run changes in a submission: ``overrides`` (full names, or short ones with ``resolve``),
    its weights and checkpoint; ``spec`` when its model's FLOPs on a dataset are wanted;
    ``from_random``: a pretrained model built without its weights (``bench check`` and the locks)."""

    overrides: tuple[tuple[str, Any], ...] = ()
    weights: str = "scratch"
    checkpoint: str = ""
    resolve: bool = False
    spec: Any = None
    from_random: bool = False

    def key(self) -> tuple:
        return (self.overrides, self.weights, self.checkpoint, self.resolve, getattr(self.spec, "name", None),
                self.from_random)


@dataclass
class Submissions:
    """The submissions of the project's folder, of ``folders`` (``bench --submissions DIR``) and of
    ``files``, described in sandboxed workers on demand and remembered per (name, variant) for the
    life of this object (one command)."""

    settings: Settings = field(default_factory=Settings)
    folders: tuple[Path, ...] = ()
    files: tuple[Path, ...] = ()
    project: bool = True  # include the project's own submissions/ (tests of an edited copy leave it out)
    broken: dict[str, str] = field(default_factory=dict)  # file -> why it cannot be read
    _declared: Registry[Declaration] | None = None
    _described: dict[str, Described | str] = field(default_factory=dict)
    _built: dict[tuple, Built | str] = field(default_factory=dict)

    @property
    def declared(self) -> Registry[Declaration]:
        if self._declared is None:
            self.broken.clear()
            self._declared = declared(((SUBMISSIONS_DIR,) if self.project else ()) + self.folders, self.files,
                                      self.broken)
            for why in self.broken.values():
                print(f"skipped a broken submission file: {why}", file=sys.stderr)
        return self._declared

    def __iter__(self):
        return iter(self.declared)

    def __contains__(self, name: str) -> bool:
        return name in self.declared

    def add_file(self, path: Path) -> None:
        """Also take the submissions ``path`` declares (``bench check FILE`` outside the folder)."""
        self.files += (Path(path),)
        self._declared = None

    def declaration(self, name: str) -> Declaration:
        if name not in self.declared and self.broken:
            raise SubmissionError(f"unknown submission {name!r}; it may be in a file that cannot be read: "
                                  + "; ".join(self.broken.values()))
        return self.declared.get(name)

    def describe(self, name: str, variants: list[Variant] = ()) -> Described:
        """``name`` as written, and each of ``variants`` built (kept for ``built``)."""
        todo = [v for v in variants if (name, v.key()) not in self._built]
        if name not in self._described or todo:
            self._ask(name, todo)
        found = self._described[name]
        if isinstance(found, str):
            raise SubmissionError(found)
        return found

    def built(self, name: str, variant: Variant = Variant()) -> Built:
        """``name`` as ``variant`` trains it; ``SubmissionError`` says why it cannot be built."""
        self.describe(name, [variant])
        found = self._built[(name, variant.key())]
        if isinstance(found, str):
            raise SubmissionError(found)
        return found

    def problem(self, name: str) -> str | None:
        """Why ``name`` cannot be built now (its results are then stale), or None."""
        try:
            self.describe(name)
        except (SubmissionError, WorkerFailed) as err:
            return f"submission cannot be built ({err})"
        return None

    def _ask(self, name: str, variants: list[Variant]) -> None:
        declaration = self.declaration(name)
        memo = (str(declaration.file), file_hash(declaration.file), self.settings.confined)
        if (found := _MEMO.get((*memo, name))) and all((*memo, name, v.key()) in _MEMO for v in variants):
            self._described[name] = found
            self._built.update({(name, v.key()): _MEMO[(*memo, name, v.key())] for v in variants})
            return
        asked = [Variant(), *variants]
        try:
            with Worker(declaration.file, self.settings) as worker:
                answer = worker.ask({"op": "describe", "name": name, "variants": [_request(v) for v in asked]},
                                    time.monotonic() + DESCRIBE_TIMEOUT, f"describing {name}", until="described")
            self._described[name] = _described(name, declaration, answer)
            for variant, data in zip(asked, _typed(answer.get("variants"), list, "its variants")):
                built = self._built[(name, variant.key())] = _built_or_error(data)
                if variant.resolve and isinstance(built, Built):  # the same build under its full names, as runs ask
                    resolved = dataclasses.replace(variant, overrides=built.overrides, resolve=False)
                    self._built.setdefault((name, resolved.key()), built)
        except (WorkerFailed, SubmissionError) as err:
            self._described[name] = f"{declaration.file}: {err}"
            for variant in asked:
                self._built.setdefault((name, variant.key()), f"{declaration.file}: {err}")
        _MEMO[(*memo, name)] = self._described[name]
        _MEMO.update({(*memo, name, key): built for (owner, key), built in self._built.items() if owner == name})


# What a file's code said of itself, by (file, its content's hash, confined, name[, variant]): a
# description is data computed from the file alone, so a process describes each version of a file
# once, however many commands (or tests) ask.
_MEMO: dict[tuple, Any] = {}


def _request(variant: Variant) -> dict[str, Any]:
    return {"overrides": [list(p) for p in variant.overrides], "weights": variant.weights,
            "checkpoint": variant.checkpoint, "resolve": variant.resolve, "spec": variant.spec,
            "from_random": variant.from_random}


def _built_or_error(data: Any) -> Built | str:
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return data["error"][:2000]
    return Built.of(_typed(data, dict, "a variant"))


def _described(name: str, declaration: Declaration, answer: dict[str, Any]) -> Described:
    from harness.training.submission import Published

    source = file_hash(declaration.file)
    if answer.get("name") != name or answer.get("source_hash") != source:
        raise WorkerFailed(f"the worker described {answer.get('name')!r} from code other than {declaration.file}")
    variants = _typed(answer.get("variants"), list, "its variants")
    registered = _built_or_error(variants[0] if variants else None)
    if isinstance(registered, str):
        raise SubmissionError(registered)
    published = {str(d): tuple(Published.of(p) for p in _typed(pubs, list, "published figures"))
                 for d, pubs in _typed(answer.get("published", {}), dict, "published figures").items()}
    return Described(name, str(declaration.file), source, _typed(answer.get("doc", ""), str, "its docstring"),
                     _typed(answer.get("seed", ""), str, "its seed"), _typed(answer.get("tta", False), bool, "tta"),
                     published, registered)
