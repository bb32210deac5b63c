"""Pretrained weights: timm's download path against 127.0.0.1, a local checkpoint, and a clear failure."""
import dataclasses
import functools
import http.server
import threading

import pytest
import timm
import torch

from harness.runs.models import WeightsUnavailable, build_model
from harness.training.submission import get_submission


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A resnet18 ImageNet-shaped checkpoint made here (3 input channels, 1000 classes)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "resnet18-local.pth"
    torch.save(timm.create_model("resnet18", num_classes=1000).state_dict(), path)
    return path


def sub_with(**changes):
    return dataclasses.replace(get_submission("voice_resnet18"), **changes)


def check_adapted(model, state):
    # one input channel: timm sums the RGB filters; the new head has our classes
    assert torch.allclose(model.conv1.weight, state["conv1.weight"].sum(1, keepdim=True))
    assert torch.equal(model.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    assert model.fc.out_features == 6


def test_local_checkpoint_is_loaded_and_adapted(checkpoint):
    model = build_model(sub_with(pretrained=str(checkpoint)), 6, (1, 64, 64))
    check_adapted(model, torch.load(checkpoint))


def test_download_path_against_a_local_server(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(checkpoint.parent))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_port}/{checkpoint.name}"
        sub = sub_with(pretrained=True, model_kwargs={"pretrained_cfg_overlay": {"url": url, "hf_hub_id": ""}})
        check_adapted(build_model(sub, 6, (1, 64, 64)), torch.load(checkpoint))
    finally:
        httpd.shutdown()
    assert list((tmp_path / "torch").rglob(checkpoint.name)), "weights were not cached by the download path"


def test_unavailable_weights_fail_with_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    sub = sub_with(pretrained=True, model_kwargs={"pretrained_cfg_overlay": {"url": "http://127.0.0.1:9/none.pth", "hf_hub_id": ""}})
    with pytest.raises(WeightsUnavailable, match="--weights FILE.*--random-init"):
        build_model(sub, 6, (1, 64, 64))


def test_random_init_is_recorded_as_not_pretrained():
    sub = sub_with(pretrained=False)
    assert sub.params()["pretrained"] is False and get_submission("voice_resnet18").params()["pretrained"] is True


PRETRAINED_SUBMISSION = '''
from harness import LogMel, Recipe, Submission, register_submission


@register_submission
def pretrained_net():
    """A timm model with pretrained weights from a URL of its own."""
    return Submission(frontend=LogMel(8000, n_mels=32), model="resnet18", pretrained=True, recipe=Recipe(batch_size=8),
                      model_kwargs={{"pretrained_cfg_overlay": {overlay}}})
'''


def test_a_sandboxed_run_gets_its_pretrained_weights_from_the_driver(checkpoint, tmp_path, monkeypatch):
    """The worker has no network: the driver downloads the weights (here from 127.0.0.1) and hands
    the worker that one file; a submission naming a local file as its weights is refused."""
    import json

    from click.testing import CliRunner

    from harness.cli.commands import main

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(checkpoint.parent))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    folder = tmp_path / "subs"
    folder.mkdir()
    url = f"http://127.0.0.1:{httpd.server_port}/{checkpoint.name}"
    (folder / "pretrained_net.py").write_text(PRETRAINED_SUBMISSION.format(overlay=repr({"url": url, "hf_hub_id": ""})))
    run = ["--submissions", str(folder), "run", "-s", "pretrained_net", "--folds", "1", "--epochs", "1", "--device", "cpu"]
    try:
        out = CliRunner().invoke(main, run)
    finally:
        httpd.shutdown()
    assert out.exit_code == 0, out.output
    record = json.loads(next((tmp_path / "results").rglob("fold1-trial1.json")).read_text())
    assert record["run"]["weights"] == "pretrained:resnet18" and record["pretrained"] is True
    assert list((tmp_path / "torch").rglob(checkpoint.name)), "the driver did not fetch the weights"
    (folder / "pretrained_net.py").write_text(PRETRAINED_SUBMISSION.format(overlay=repr({"file": "/etc/passwd"})))
    out = CliRunner().invoke(main, run)
    assert out.exit_code == 1 and "a local file is a checkpoint" in out.output, out.output
