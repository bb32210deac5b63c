"""The steps of ``bench check`` that call a submission's code, inside a sandboxed worker
(``harness.runs.worker_tasks``), on the harness's tiny synthetic data; ``harness.runs.check`` runs
them there and adds the determinism step."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from harness.data import synthetic
from harness.data.catalog import DatasetSpec, parse_spec
from harness.data.datasets import Dataset
from harness.data.folds import fold_fingerprint, stratified_folds
from harness.frontends.features import Image
from harness.frontends.render import spectrogram_image
from harness.training.loop import NonFiniteLossError
from harness.training.submission import Submission


@dataclass
class Finding:
    step: str
    ok: bool
    message: str = ""


def tiny_data(sample_rate: int | None, image: bool) -> tuple[DatasetSpec, Dataset]:
    """24 half-second synthetic clips in 2 folds, as audio (at ``sample_rate``, by default 8 kHz) or
    (for image front-ends) as 32x32 images."""
    spec = parse_spec("synthetic_tiny", {
        "version": "1", "kind": "synthetic", "sample_rate": 8000, "clip_seconds": 0.5, "num_classes": 6, "per_class": 4,
        "class_names": ["tone", "chirp_up", "chirp_down", "noise_burst", "click_train", "am_tone"],
        "folds": {"protocol": "stratified", "k": 2, "seed": 0}})
    rate = sample_rate or spec.sample_rate
    x, y = synthetic.generate(spec, rate)
    if image:
        x = np.stack([spectrogram_image(w, rate, 32) for w in x]).astype(np.float32) / 255
        spec = dataclasses.replace(spec, kind="image", image_size=(32, 32))
    ids = [f"clip{i:02d}" for i in range(len(y))]
    folds = stratified_folds(y, 2, 0)
    return spec, Dataset(spec, x, y, folds, ids, spec.class_names, rate, fold_fingerprint(ids, folds))


def _steps(sub: Submission, where: str):
    """The contract's steps that call the submission's code (the submission's types were checked
    when it was made); inside a sandboxed worker."""
    from harness.runs.models import build_model

    spec, data = tiny_data(sub.frontend.sample_rate, isinstance(sub.frontend, Image))
    feats = yield from _frontend_steps(sub, where, torch.from_numpy(np.ascontiguousarray(data.x[:4])))
    torch.manual_seed(0)
    model = build_model(sub, spec.num_classes, tuple(feats.shape[1:]))
    if not (yield from _model_steps(model, feats, torch.from_numpy(data.y[:4]), spec.num_classes, where)):
        return
    try:
        json.dumps(sub.params())
        yield Finding("hyperparameters", True)
    except TypeError as err:
        yield Finding("hyperparameters", False, f"{where}: hyperparameters cannot be read back as plain data ({err})")


@torch.no_grad()
def _frontend_steps(sub: Submission, where: str, batch: torch.Tensor):
    """Declared shape, and a batch equal to its items one by one; returns the batch's features."""
    feats = sub.frontend(batch)
    declared = (4, *sub.frontend.output_shape(tuple(batch.shape[1:])))
    yield Finding("front-end shape", tuple(feats.shape) == declared,
                  f"{where}: front-end {type(sub.frontend).__name__} returns {tuple(feats.shape)}, declares {declared}")
    one_by_one = torch.cat([sub.frontend(item[None]) for item in batch])
    yield Finding("front-end batch = items", torch.allclose(feats, one_by_one, atol=1e-4),
                  f"{where}: the front-end's output for a batch differs from its items processed one by one "
                  f"(max difference {float((feats - one_by_one).abs().max()):.3g}); per-item work must not mix items")
    return feats


def _model_steps(model: torch.nn.Module, feats: torch.Tensor, y: torch.Tensor, num_classes: int, where: str):
    """Output shape, a batch equal to its items in eval mode, finite loss and gradients; False stops the check."""
    model.eval()
    with torch.no_grad():
        logits = model(feats)
        if tuple(logits.shape) != (len(feats), num_classes):
            yield Finding("model output shape", False, f"{where}: model returns shape {tuple(logits.shape)} for a "
                                                       f"batch of {len(feats)}, expected ({len(feats)}, {num_classes})")
            return False
        yield Finding("model output shape", True)
        items = torch.cat([model(f[None]) for f in feats])
    yield Finding("model batch = items", torch.allclose(logits, items, atol=1e-4, equal_nan=True),
                  f"{where}: in eval mode the model's output for a batch differs from its items one by one")
    model.train()
    loss = F.cross_entropy(model(feats), y)
    loss.backward()
    grads_finite = all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    yield Finding("forward and backward", bool(torch.isfinite(loss)) and grads_finite,
                  f"{where}: the loss or a gradient is not finite (loss {float(loss.detach()):.3g}) on one batch of synthetic data")
    return True


def documented(sub: Submission) -> Finding:
    """A submission says what it is: its factory's docstring is its documentation."""
    return Finding("docstring", bool(sub.doc.strip()), f"{sub.source_file}: {sub.name}() needs a docstring saying "
                                                       f"what it is (its seed, model and recipe)")


def contract(sub: Submission) -> list[Finding]:
    """The steps of the contract that need the submission's objects (in a worker); stops at the
    first step that makes the rest meaningless."""
    from harness.runs.models import describe_failure

    sub = dataclasses.replace(sub, pretrained=False)
    findings = [Finding("loads", True), documented(sub)]
    if not findings[-1].ok:
        return findings
    try:
        findings += list(_steps(sub, sub.source_file))
    except NonFiniteLossError as err:
        findings.append(Finding("finite loss", False, f"{sub.source_file}: {err} on synthetic data"))
    except Exception as err:
        findings.append(Finding("runs", False, describe_failure(err, sub)))
    return findings
