"""A run as a value: which submission, on which data and test fold, with which weights, precision
and compilation.

Everything that could change a run's numbers is a field, so two runs that could give different
results have different identities, and so different result paths and config hashes: a
``--random-init`` run never overwrites a pretrained one, nor a bf16 run an fp32 one.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from harness.core.choices import PROTOCOLS, RESOLVED_PRECISIONS
from harness.core.errors import HarnessError
from harness.data.fetch import sha256_tree
from harness.core.registry import did_you_mean
from harness.core.seeds import seed_for

WEIGHTS = re.compile(r"^(scratch|random|pretrained:[\w.\-]+|sha256:[0-9a-f]{64}|hf:\w[\w.\-]*/\w[\w.\-]*@[0-9a-f]{40})$")
OVERRIDABLE = re.compile(r"^((frontend|recipe|model_kwargs|fit)\.\w+|model)$")  # full names (training.overrides)


class RunError(HarnessError):
    """A run that cannot be made as asked (an impossible field, weights that do not apply)."""


@dataclass(frozen=True)
class Run:
    """One (fold, trial) of a submission on a dataset.

    Args:
        submission, dataset: registered names.
        epochs: the epoch budget. fold: the test fold (1-based). trial: 1-based; the seed is
            ``1000 * trial + fold``.
        weights: ``scratch`` (a model without pretrained weights), ``pretrained:<timm tag>``,
            ``random`` (a pretrained model trained from random initialisation, ``--random-init``)
            ``sha256:<digest>`` of a local checkpoint (``--weights FILE``, or a folder of a hub encoder's
            files) or ``hf:<repo>@<commit>``, a hub encoder's weights at one commit.
        precision: ``bf16`` or ``fp32``, resolved for the device already.
        compiled: trained through ``torch.compile``.
        protocol: how it is evaluated (``harness.core.choices.PROTOCOLS``): ``finetune`` (trained end
            to end), ``linear`` or ``knn`` (on the frozen encoder's embeddings).
        overrides: (full setting name, value) pairs the run changes in its submission, sorted by name
            (``harness.training.overrides``); empty for a submission as written.
        checkpoint: where the checkpoint of ``sha256:`` weights lies; not part of the identity.
    """

    submission: str
    dataset: str
    epochs: int
    fold: int
    trial: int
    weights: str = "scratch"
    precision: str = "fp32"
    compiled: bool = False
    protocol: str = "finetune"
    overrides: tuple[tuple[str, Any], ...] = ()
    checkpoint: str = field(default="", compare=False)

    def __post_init__(self):
        for name in ("epochs", "fold", "trial"):
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise RunError(f"a run's {name} must be a whole number of at least 1, got {getattr(self, name)!r}")
        if not WEIGHTS.match(self.weights) or ".." in self.weights:  # a hub name becomes a folder of its cache
            raise RunError(f"weights {self.weights!r}: use scratch, random, pretrained:<timm tag>, sha256:<digest> "
                           f"or hf:<owner>/<name>@<40-hex commit>")
        if self.protocol not in PROTOCOLS:
            raise RunError(f"protocol {self.protocol!r}: use {', '.join(PROTOCOLS)}.{did_you_mean(self.protocol, list(PROTOCOLS))}")
        if self.precision not in RESOLVED_PRECISIONS:
            raise RunError(f"precision {self.precision!r}: use bf16 or fp32 (resolve 'auto' for the device first)")
        plain = lambda v: tuple(map(plain, v)) if isinstance(v, (list, tuple)) else v  # hashable, and equal after JSON
        object.__setattr__(self, "overrides", tuple(sorted((str(k), plain(v)) for k, v in dict(self.overrides).items())))
        if bad := [k for k, _ in self.overrides if not OVERRIDABLE.match(k)]:
            raise RunError(f"override {bad[0]!r}: use a full setting name, frontend|recipe|model_kwargs|fit.<name> or model")
        try:
            json.dumps(self.overrides)
        except TypeError:
            raise RunError(f"overrides {self.overrides!r}: values must be plain data (numbers, strings, lists)") from None

    @property
    def seed(self) -> int:
        return seed_for(self.fold, self.trial)

    @property
    def variant(self) -> str:
        """The identity beyond (dataset, submission, epochs, fold, trial), as a folder name."""
        kind, _, detail = self.weights.partition(":")
        weights = f"ckpt-{detail[:12]}" if kind == "sha256" else f"hf-{detail.rpartition('@')[2][:12]}" \
            if kind == "hf" else kind
        changed = [f"o{hashlib.sha256(json.dumps(self.overrides).encode()).hexdigest()[:8]}"] if self.overrides else []
        protocol = [self.protocol] if self.protocol != "finetune" else []
        return "-".join(protocol + [weights, self.precision] + (["compiled"] if self.compiled else []) + changed)

    def path(self, root: Path) -> Path:
        """Where this run's result lives under the result store ``root``."""
        return root / self.dataset / self.submission / f"e{self.epochs}" / self.variant / \
            f"fold{self.fold}-trial{self.trial}.json"

    def identity(self) -> dict[str, Any]:
        """The fields that make this run this run, as JSON-ready data (no overrides: none written;
        the ``finetune`` protocol is not written either, as no run before protocols wrote one)."""
        identity = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.compare}
        if self.protocol == "finetune":
            del identity["protocol"]
        if self.overrides:
            identity["overrides"] = [list(pair) for pair in self.overrides]
        else:
            del identity["overrides"]
        return identity

    @classmethod
    def from_identity(cls, identity: dict[str, Any], checkpoint: str = "") -> "Run":
        overrides = tuple(tuple(pair) for pair in identity.get("overrides", ()))
        return cls(**{**identity, "overrides": overrides}, checkpoint=checkpoint)


def weights_for(model_name: str, pretrained: bool | str, checkpoint: Path | None = None,
                random_init: bool = False, hub_source: str | None = None) -> tuple[str, str]:
    """(weights, checkpoint path) of a submission with ``pretrained``, as ``bench run`` asked for it
    (``hub_source``: ``<repo>@<revision>`` of a hub encoder, ``harness.training.encoders``)."""
    if not pretrained:
        if checkpoint:
            raise RunError(f"{model_name} has no pretrained weights in this submission; --weights does not apply")
        return "scratch", ""
    if random_init:
        return "random", ""
    if checkpoint:
        return f"sha256:{sha256_tree(Path(checkpoint))}", str(checkpoint)
    if isinstance(pretrained, str):  # its code names a file: the driver reads only files the user names
        raise RunError(f"{model_name}: the submission names a local checkpoint file; pass that file with "
                       f"`--weights FILE` (the harness never reads a file a submission names)")
    if hub_source is not None:
        if not WEIGHTS.match(f"hf:{hub_source}") or ".." in hub_source:
            raise RunError(f"{model_name}: pin the hub weights as repo='<owner>/<name>', revision='<its 40-hex commit>' "
                           f"(got {hub_source!r}): a branch moves, and a run's identity must not")
        return f"hf:{hub_source}", ""
    return f"pretrained:{model_name}", ""


def grid(submission: str, dataset: str, folds: list[int], trials: int | Iterable[int], epochs: int,
         **identity) -> list[Run]:
    """Every (fold, trial) of one cell, trial by trial, as runs sharing the rest of their identity.

    ``trials``: a count N (trials 1..N) or the trial numbers themselves.
    """
    numbers = range(1, trials + 1) if isinstance(trials, int) else trials
    return [Run(submission, dataset, epochs, fold, trial, **identity) for trial in numbers for fold in folds]
