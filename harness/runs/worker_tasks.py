"""What a sandboxed worker does for the driver (``harness.runs.worker`` starts it):

- ``describe``: the submission as each run would train it (overrides and weights applied), as
  plain data: its settings, the front-end to compute features with, its docstring and figures;
- ``fit``: train on the training (and validation) features and labels the driver sends;
- ``predict``: the fitted model's predictions for the test features, sent only now;
- ``embed``: a frozen protocol's embeddings of every clip, sent without a label and in an order
  the worker cannot know; answered as raw float32 bytes after a message giving their shape;
- ``contract``: ``bench check``'s steps on the harness's tiny synthetic data.

Only this module and what it imports run a submission's code; the driver never imports a
submission file. Every answer is JSON (``worker.reply``).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from harness.core.errors import HarnessError
from harness.core.seeds import seed_everything
from harness.runs.models import build_model, check_output_shape, describe_failure, model_gflop
from harness.runs.run import RunError
from harness.runs.protocol import failure, receive_arrays, reply, throttled
from harness.training.device import CompiledModels, autocast, place_model, switches
from harness.training.features import move_home
from harness.training.loop import Progress, TrainContext, fit_default, predict
from harness.training.overrides import apply_overrides, resolve_overrides
from harness.training.probe import embedding_of
from harness.training.submission import Submission, SubmissionError, get_submission, load_submission_file

HARNESS_FRONTENDS = "harness.frontends.features"


def serve(conn) -> int:
    """Answer requests until the driver says stop or goes away; the exit code of the worker."""
    model, compiled = None, CompiledModels()  # the models this worker compiled, for its life
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return 0
        if message["op"] == "stop":
            return 0
        try:
            sub = load(message["file"], message["name"])
        except Exception as err:
            reply(conn, failure(err))
            continue
        try:
            if message["op"] == "describe":
                reply(conn, describe(sub, message["variants"]))
            elif message["op"] == "fit":
                model = fit(conn, sub, message, compiled)
            elif message["op"] == "embed":
                embed(conn, sub, message)
            elif message["op"] == "predict":
                reply(conn, {"event": "predictions", "predictions": predictions(conn, sub, model, message)})
            elif message["op"] == "contract":
                from harness.runs.contract import contract

                reply(conn, {"event": "contract", "findings": [dataclasses.asdict(f) for f in contract(sub)]})
        except Exception as err:  # one line, where in the submission it broke
            reply(conn, {**failure(err), "error": describe_failure(err, sub)})


def load(file: str, name: str) -> Submission:
    """The submission ``name`` from ``file`` alone (no other submission file is imported here)."""
    module = f"submissions.{Path(file).stem}"
    import sys

    if module not in sys.modules:
        load_submission_file(Path(file))
    sub = get_submission(name, load_folder=False)
    if Path(sub.source_file).resolve() != Path(file).resolve():
        raise SubmissionError(f"{file}: submission {name!r} is registered from {sub.source_file}, not from the "
                              f"file that declares it")
    return sub


# --- describe --------------------------------------------------------------------------------------

def trained_as(sub: Submission, overrides, weights: str, checkpoint: str = "", from_random: bool = False) -> Submission:
    """``sub`` as a run with these overrides (full names) and weights trains it (``from_random``:
    a pretrained model without its weights, as ``bench check`` and the locks build it)."""
    kind = weights.partition(":")[0]
    if kind == "sha256" and not checkpoint:
        raise RunError(f"{weights[:19]}…: name the checkpoint file of this run with `--weights FILE`")
    pretrained = {"scratch": sub.pretrained, "random": False, "pretrained": True, "sha256": checkpoint, "hf": True}[kind]
    return dataclasses.replace(apply_overrides(sub, overrides), pretrained=False if from_random else pretrained)


def built(sub: Submission, variant: dict[str, Any]) -> dict[str, Any]:
    """One variant's settings as data, or why it cannot be built."""
    try:
        overrides = resolve_overrides(sub, dict(variant.get("overrides") or ())) if variant.get("resolve") \
            else tuple(tuple(pair) for pair in variant.get("overrides") or ())
        trained = trained_as(sub, overrides, variant.get("weights", "scratch"), variant.get("checkpoint", ""),
                             bool(variant.get("from_random")))
    except HarnessError as err:
        return {"error": str(err)}
    frontend, spec = trained.frontend, variant.get("spec")
    return {"overrides": [list(pair) for pair in overrides], "params": trained.params(),
            "gflop": model_gflop(trained, spec) if spec is not None else None,
            "model_name": trained.model_name,
            # a checkpoint file the submission names is not said: the driver reads only what the user names
            "pretrained": trained.pretrained if isinstance(trained.pretrained, bool) else "checkpoint",
            "epochs": trained.recipe.epochs, "frontend": frontend.params(), "frontend_summary": frontend.summary(),
            "harness_frontend": type(frontend).__module__ == HARNESS_FRONTENDS}


def describe(sub: Submission, variants: list[dict[str, Any]]) -> dict[str, Any]:
    return {"event": "described", "name": sub.name, "source_file": sub.source_file, "source_hash": sub.source_hash(),
            "doc": sub.doc, "seed": sub.seed, "tta": sub.tta,
            "published": {d: [dataclasses.asdict(p) for p in pubs] for d, pubs in sub.published.items()},
            "variants": [built(sub, v) for v in variants]}


# --- fit and predict --------------------------------------------------------------------------------

def _tensors(conn, specs, device: torch.device) -> dict[str, torch.Tensor]:
    return {name: move_home(torch.from_numpy(array), device) for name, array in receive_arrays(conn, specs).items()}


def _features_for(conn, device: torch.device):
    """A stage's other front-end: the driver computes its features (as it computes every feature)."""
    def features_for(frontend: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
        reply(conn, {"event": "features", "frontend": frontend.params(),
                     "harness_frontend": type(frontend).__module__ == HARNESS_FRONTENDS})
        answer = conn.recv()
        if answer.get("error"):
            raise SubmissionError(answer["error"])
        got = _tensors(conn, answer["arrays"], device)
        return got["x"], got.get("x_val")
    return features_for


def _progress(conn) -> Progress:
    """Each epoch's row to the driver; steps inside an epoch: the first and last always, the others
    at most twice a second."""
    some = throttled(lambda message: reply(conn, message))

    def on_step(epoch: int, number: int, steps: int) -> None:
        message = {"event": "step", "epoch": epoch, "step": number, "steps": steps}
        reply(conn, message) if number in (1, steps) else some(message)
    return Progress(on_epoch=lambda epoch, row: reply(conn, {"event": "epoch", "row": row}), on_step=on_step)


def fit(conn, sub: Submission, message: dict[str, Any], compiled: CompiledModels | None = None) -> nn.Module:
    """Train as the run says on the arrays that follow the message; report epochs, then the curves
    (``compiled``: the worker's compiled models)."""
    run, device = message["run"], torch.device(message["device"])
    trained = _trained(sub, message)
    start = time.perf_counter()
    with switches(device):
        generator = seed_everything(run.seed)
        data = _tensors(conn, message["arrays"], device)
        model = build_model(trained, message["num_classes"], input_shape=tuple(data["x"].shape[1:])).to(device)
        check_output_shape(trained, model, data["x"][:2].to(device), message["num_classes"])
        model = place_model(model, device, data["x"].dim(), run.precision, run.compiled, compiled)
        ctx = TrainContext(submission=trained, model=model, x=data["x"], y=data["y"].long(), x_val=data.get("x_val"),
                           y_val=data["y_val"].long() if "y_val" in data else None, epochs=run.epochs,
                           num_classes=message["num_classes"], device=device, generator=generator,
                           progress=_progress(conn), features_for=_features_for(conn, device),
                           dataset=message["dataset"], precision=run.precision)
        fitted = (trained.fit or fit_default)(ctx)
    first = ctx.marks.get("first_step")
    reply(conn, {"event": "fitted", "curves": fitted.curves,
                 "first_step_s": None if first is None else first - start})
    return fitted.model


def _trained(sub: Submission, message: dict[str, Any]) -> Submission:
    """The submission as the message's run trains it, with the weights the driver fetched."""
    run = message["run"]
    torch.set_num_threads(message["threads"])
    trained = trained_as(sub, run.overrides, run.weights, run.checkpoint, bool(message.get("from_random")))
    if message.get("weights_file") and trained.pretrained:  # fetched by the driver: no network here
        trained = dataclasses.replace(trained, pretrained=message["weights_file"])
    return trained


def embed(conn, sub: Submission, message: dict[str, Any]) -> None:
    """The frozen model's embedding of every clip sent (``harness.training.probe.embedding_of``),
    batch by batch in eval mode; steps are reported as one epoch's."""
    run, device = message["run"], torch.device(message["device"])
    trained = _trained(sub, message)
    with switches(device), torch.no_grad():
        seed_everything(message["seed"])
        x = _tensors(conn, message["arrays"], device)["x"]
        model = build_model(trained, message["num_classes"], input_shape=tuple(x.shape[1:])).to(device).eval()
        if (embedding := embedding_of(model)) is None:
            raise SubmissionError(f"{sub.name}: the {run.protocol} protocol reads the model's frozen embedding: give "
                                  f"the model embed(x) -> (batch, width), or use a timm model")
        progress, size, out = _progress(conn), trained.recipe.batch_size, []
        steps = -(-len(x) // size)
        with autocast(device, run.precision):
            for step, i in enumerate(range(0, len(x), size), 1):
                out.append(embedding(x[i:i + size].to(device)).float().cpu())
                progress.on_step(1, step, steps)
    embedded = torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)
    reply(conn, {"event": "embedded", "shape": list(embedded.shape)})
    conn.send_bytes(np.ascontiguousarray(embedded, dtype=np.float32).tobytes())


def predictions(conn, sub: Submission, model: nn.Module | None, message: dict[str, Any]) -> list[int]:
    if model is None:
        raise RunError("predict before fit")
    run, device = message["run"], torch.device(message["device"])
    with switches(device):
        x_test = _tensors(conn, message["arrays"], device)["x"]
        return predict(model, x_test, device, run.precision).argmax(1).cpu().tolist()
