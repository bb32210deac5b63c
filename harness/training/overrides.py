"""Overrides: change any hyperparameter a submission reads back, by its dotted name.

``Submission.params()`` names every setting: ``frontend.n_fft``, ``recipe.mixup``, ``model``,
``model_kwargs.drop_rate``, ``fit.lr_mult``. An override names one of them, or only its last part
when that is unique (``n_fft``, ``mixup``). The changed parts are rebuilt through their own
constructors (scikit-learn's ``clone`` + ``set_params``), so a rebuilt front-end or recipe is
checked exactly like one written in a submission file.

    resolve_overrides(sub, {"n_fft": 2048, "mixup": 0})   # -> (("frontend.n_fft", 2048), ("recipe.mixup", 0.0))
    apply_overrides(sub, (("frontend.n_fft", 2048),))    # -> a Submission with LogMel(n_fft=2048, ...)
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Iterable

from harness.core.errors import SubmissionError
from harness.core.registry import did_you_mean
from harness.training.submission import Submission

PARTS = ("frontend", "recipe", "model_kwargs", "fit")


class OverrideError(SubmissionError):
    """An override that names no setting, names several, or gives a value its setting refuses."""


def settings(sub: Submission) -> dict[str, Any]:
    """Every overridable setting of ``sub`` by dotted name, with its value.

    The epoch budget is not here: it is a run's own field (``--epochs``, a sweep's ``epochs``).
    """
    params = sub.params()
    names = {f"frontend.{k}": v for k, v in params["frontend"].items() if k != "name"}
    names["model"] = sub.model_name
    names.update({f"model_kwargs.{k}": v for k, v in sub.model_kwargs.items()})
    names.update({f"recipe.{k}": v for k, v in params["recipe"].items() if k != "epochs"})
    if dataclasses.is_dataclass(sub.fit):
        names.update({f"fit.{f.name}": getattr(sub.fit, f.name) for f in dataclasses.fields(sub.fit)})
    return names


def _dotted(name: str, known: dict[str, Any], sub: Submission) -> str:
    """The full name of ``name``: itself, or the one setting whose last part it is."""
    if name in known or (name.startswith("model_kwargs.") and name.count(".") == 1):
        return name  # model_kwargs.<new> passes a new argument to the model factory
    if name in ("epochs", "recipe.epochs"):
        raise OverrideError(f"{sub.name}: the epoch budget is a run's own setting; use --epochs (or a sweep's `epochs`)")
    matches = [full for full in known if full.rsplit(".", 1)[-1] == name]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise OverrideError(f"{sub.name}: {name!r} is ambiguous ({', '.join(matches)}); use the full name")
    leaves = sorted({full.rsplit(".", 1)[-1] for full in known})
    raise OverrideError(f"{sub.name}: no setting {name!r}; settings: {', '.join(sorted(known))}."
                        f"{did_you_mean(name, sorted(set(known) | set(leaves)))}")


def _same_kind(value: Any, current: Any) -> Any:
    """1 and 1.0 for a float setting are one setting, so one run: make them one value."""
    if isinstance(value, bool) or isinstance(current, bool):
        return value
    if isinstance(current, float) and isinstance(value, int):
        return float(value)
    if isinstance(current, int) and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def resolve_overrides(sub: Submission, changes: dict[str, Any] | Iterable[tuple[str, Any]]) -> tuple[tuple[str, Any], ...]:
    """Full names and values of ``changes`` that differ from ``sub``, sorted; checked by rebuilding.

    An override equal to the submission's own value is dropped: the same setting is the same run.
    """
    known, resolved = settings(sub), {}
    for name, value in dict(changes).items():
        full = _dotted(str(name), known, sub)
        if full in resolved:
            raise OverrideError(f"{sub.name}: {full} is set twice")
        resolved[full] = _same_kind(value, known.get(full))
    out = tuple(sorted((k, v) for k, v in resolved.items() if k not in known or known[k] != v))
    apply_overrides(sub, out)
    return out


def apply_overrides(sub: Submission, overrides: Iterable[tuple[str, Any]]) -> Submission:
    """``sub`` with ``overrides`` (full names) applied; each changed part rebuilt and so checked."""
    changes = {part: {} for part in PARTS}
    model, known = sub.model, settings(sub)
    for name, value in overrides:
        part, _, key = name.partition(".")
        if name not in known and part != "model_kwargs":
            raise OverrideError(f"{sub.name}: no setting {name!r}; settings: {', '.join(sorted(known))}."
                                f"{did_you_mean(name, sorted(known))}")
        if name == "model":
            model = value
        else:
            changes[part][key] = value
    described = ", ".join(f"{k}={json.dumps(v)}" for k, v in overrides)
    try:
        frontend = sub.frontend
        if changes["frontend"]:
            params = {k: v for k, v in sub.frontend.params().items() if k != "name"}
            frontend = type(sub.frontend)(**{**params, **changes["frontend"]})
        recipe = dataclasses.replace(sub.recipe, **changes["recipe"])
        fit = dataclasses.replace(sub.fit, **changes["fit"]) if changes["fit"] else sub.fit
        return dataclasses.replace(sub, frontend=frontend, recipe=recipe, model=model, fit=fit,
                                   model_kwargs={**sub.model_kwargs, **changes["model_kwargs"]})
    except (SubmissionError, TypeError, ValueError) as err:
        raise OverrideError(f"{sub.name} with {described}: {err}") from None


def parse_value(text: str) -> Any:
    """A value as written on the command line: JSON (2048, 1e-2, true, [1, 2], null), else a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return {"True": True, "False": False, "None": None}.get(text, text)
