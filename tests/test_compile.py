"""Compiled training trains what eager training trains.

torch.compile (2.11) does not recompile when a parameter's ``requires_grad`` changes
(pytorch/pytorch#139476): a fine_tune-style recipe that froze the body for its first stage then
kept training the head only, and on an ESC-50-shaped fold scored 42.5 % instead of 100 %. These
tests train a staged recipe eagerly and compiled (inductor compiles on CPU too; on CUDA when
there is one) and require the same parameter groups, the same frozen set, a trained body, and
the same curve and accuracy within a stated tolerance.
"""
import pytest
import torch

from harness.data.catalog import load_catalog
from harness.runs import execute
from harness.runs.run import Run
from harness.training import device, loop, stages
from harness.training.submission import get_submission

from conftest import ThreadWorker, copy_submission, run_named, submissions

SYNTH = load_catalog().get("synthetic")
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
LOSS_TOLERANCE = 0.02  # relative, per epoch: compiled kernels round differently; on CPU they matched exactly
ACCURACY_TOLERANCE = 1 / 24  # one test clip of a synthetic fold


def STAGED(text: str) -> str:
    """small_cnn with a FineTune recipe and no dropout."""
    text = text.replace('model_kwargs={"width": 32},', 'model_kwargs={"dropout": 0.0}, '
                        'fit=FineTune(freeze_epochs=1, lr_mult=10, groups=3),')
    return text.replace("from harness import", "from harness.training.stages import FineTune\nfrom harness import", 1)


def staged_run(device: str, compiled: bool, monkeypatch, tmp_path) -> tuple:
    """A FineTune run of small_cnn: (record, groups per stage by parameter name, body trained?),
    trained in a thread of this process so that the spy below sees it."""
    # no dropout: compiled graphs draw dropout masks from inductor's own generator, so a model with
    # dropout trains on other (equally random) masks and its curve drifts by a few percent
    subs = submissions(copy_submission("small_cnn", tmp_path / "edited", STAGED).parent, project=False)
    monkeypatch.setattr(execute, "Worker", ThreadWorker)
    seen, start, real = [], {}, stages.trained_groups

    def spy(model, stage):
        groups = real(model, stage)
        names = {id(p): n.removeprefix("_orig_mod.") for n, p in model.named_parameters()}
        seen.append([sorted(names[id(p)] for p in g["params"]) for g in groups])
        start.setdefault("params", {n: p.detach().clone() for n, p in model.named_parameters()})
        start["model"] = model
        return groups

    monkeypatch.setattr(stages, "trained_groups", spy)
    record = run_named(Run("small_cnn", "synthetic", 2, 1, 1, compiled=compiled), SYNTH, device, subs)
    body_moved = all(not torch.equal(start["params"][n], p.detach()) for n, p in start["model"].named_parameters()
                     if "features" in n)
    return record, seen, body_moved


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_compiled_fine_tune_trains_the_same_parameters_as_eager(device, monkeypatch, tmp_path):
    eager, eager_groups, eager_body = staged_run(device, False, monkeypatch, tmp_path / "a")
    monkeypatch.undo()
    compiled, compiled_groups, compiled_body = staged_run(device, True, monkeypatch, tmp_path / "b")
    assert compiled_groups == eager_groups and len(eager_groups) == 2
    assert all("head" in name for group in eager_groups[0] for name in group)  # stage 1: the head alone
    assert sum(map(len, eager_groups[1])) > sum(map(len, eager_groups[0]))   # stage 2: everything
    assert eager_body and compiled_body, "the body must train once it is unfrozen"
    for a, b in zip(eager.curves, compiled.curves, strict=True):
        assert abs(a["train_loss"] - b["train_loss"]) <= LOSS_TOLERANCE * abs(a["train_loss"])
    assert abs(eager.accuracy - compiled.accuracy) <= ACCURACY_TOLERANCE + 1e-9


def test_a_frozen_stage_leaves_the_body_out_of_the_optimiser_eager_or_compiled():
    model = get_submission("small_cnn").model(num_classes=6)
    frozen = stages.trained_groups(model, stages.Stage(1, (1e-3,), frozen=True))
    head = {id(p) for p in model.head.parameters()}
    assert {id(p) for g in frozen for p in g["params"]} == head
    unfrozen = stages.trained_groups(model, stages.Stage(1, (1e-4, 1e-3, 1e-2)))
    assert [g["lr"] for g in unfrozen] == [1e-4, 1e-3, 1e-2]
    assert sum(len(g["params"]) for g in unfrozen) == len(list(model.parameters()))
    assert loop.steps_per_epoch(10, 4) == 2


def test_a_model_is_compiled_once_per_architecture_and_holder_and_each_run_gets_its_own_weights():
    make = lambda seed: torch.manual_seed(seed) and get_submission("small_cnn").model(num_classes=6)
    first, second, third = make(1), make(2), make(3)
    held = device.CompiledModels()
    a = device.place_model(first, torch.device("cpu"), 4, compile_model=True, compiled=held)
    b = device.place_model(second, torch.device("cpu"), 4, compile_model=True, compiled=held)
    assert b is a and a._orig_mod is first  # the same compiled module ...
    for name, value in second.state_dict().items():  # ... holding the second run's initial weights
        assert torch.equal(first.state_dict()[name], value)
    other = device.place_model(get_submission("small_cnn").model(num_classes=7), torch.device("cpu"), 4,
                               compile_model=True, compiled=held)
    assert other is not a  # another head size is another architecture
    # the cache is its holder's: another holder, or none, compiles afresh and leaves the first alone
    assert device.place_model(third, torch.device("cpu"), 4, compile_model=True) is not a
    assert device.place_model(make(4), torch.device("cpu"), 4, compile_model=True,
                              compiled=device.CompiledModels()) is not a
    assert not hasattr(device, "_compiled")


def test_compile_auto_is_on_for_cuda_where_it_works_and_says_why_not(monkeypatch):
    said = []
    assert device.resolve_compile("auto", torch.device("cpu"), said.append) is False
    assert device.resolve_compile("on", torch.device("cpu")) and not device.resolve_compile("off", torch.device("cuda"))
    monkeypatch.setattr(device, "compile_problem", lambda dev: "RuntimeError: no Triton")
    assert device.resolve_compile("auto", torch.device("cuda"), said.append) is False
    assert said == ["torch.compile does not work on cuda here (RuntimeError: no Triton); training eagerly (--compile off)"]
    monkeypatch.setattr(device, "compile_problem", lambda dev: None)
    assert device.resolve_compile("auto", torch.device("cuda"), said.append) is True


@pytest.mark.slow
def test_the_board_says_a_run_was_compiled(tmp_path):
    from harness.board.leaderboard import render
    from harness.runs import store
    record = run_named(Run("small_cnn", "synthetic", 1, 1, 1, compiled=True), SYNTH)
    store.write_record(record.run.path(tmp_path), record)
    text, _ = render(tmp_path, submissions(), load_catalog(), published=False)
    assert ", fp32, compiled |" in text
