"""Evaluation protocols: ``finetune`` (as every run before them), ``linear`` and ``knn`` on frozen
embeddings computed once per encoder and dataset, by a worker that never sees a label."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.core.choices import PROTOCOLS
from harness.data.catalog import load_catalog
from harness.data.fetch import fetch
from harness.runs import execute
from harness.runs.cells import Cell, CellError
from harness.runs.provenance import config_hash, run_fields
from harness.runs.run import Run, RunError
from harness.training import probe

from conftest import make_digit_folder, run_named, submissions

TINY_HUBERT = (("model_kwargs.config", "tiny"),)


def test_a_finetune_run_keeps_the_identity_and_path_it_had_before_protocols():
    run = Run("small_cnn", "synthetic", 2, 1, 1)
    assert "protocol" not in run.identity() and "protocol" not in run_fields(run)
    assert run.variant == "scratch-fp32"
    linear = Run("small_cnn", "synthetic", 2, 1, 1, protocol="linear")
    assert linear.variant == "linear-scratch-fp32" and linear.path(Path("r")) != run.path(Path("r"))
    assert config_hash(run_fields(linear)) != config_hash(run_fields(run))
    assert Run.from_identity(json.loads(json.dumps(linear.identity()))) == linear


def test_a_misspelt_protocol_is_refused_with_the_choices():
    with pytest.raises(RunError, match="Did you mean 'linear'"):
        Run("small_cnn", "synthetic", 1, 1, 1, protocol="linaer")
    with pytest.raises(CellError, match="Did you mean 'knn'") as err:
        Cell("small_cnn", "synthetic", protocol="kn")
    assert err.value.option == "--protocol"
    with pytest.raises(CellError, match="no epochs"):
        Cell("small_cnn", "synthetic", protocol="knn", epochs=5)


def test_the_registry_states_each_protocol():
    assert list(PROTOCOLS) == ["finetune", "knn", "linear"]
    assert not PROTOCOLS.get("finetune").frozen and PROTOCOLS.get("linear").frozen
    assert PROTOCOLS.get("linear").val_fraction > 0 and PROTOCOLS.get("linear").epochs == 100


def test_the_probe_is_chosen_on_validation_and_learns_separable_embeddings():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 16, generator=g) * 4
    y = torch.arange(3).repeat(40)
    e = centers[y] + torch.randn(len(y), 16, generator=g)
    result = probe.fit_probe(e[:80], y[:80], e[80:100], y[80:100], 3, epochs=30, seed=1)
    assert result.chosen in [{**s, "val_acc": result.chosen["val_acc"], "epochs": result.chosen["epochs"]}
                             for s in probe.PROBE_GRID]
    assert (probe.probe_predict(result.probe, e[100:]) == y[100:].numpy()).mean() > 0.9
    assert result.curves and all({"epoch", "train_loss", "val_acc"} <= set(r) for r in result.curves)


def test_the_probe_stops_early_when_validation_stops_improving():
    e, y = torch.randn(60, 4), torch.randint(0, 2, (60,))  # noise: validation accuracy soon stops rising
    result = probe.fit_probe(e[:40], y[:40], e[40:], y[40:], 2, epochs=500, seed=1)
    assert result.chosen["epochs"] < 500


def test_a_weighted_layer_probe_learns_a_weight_per_layer():
    e = torch.randn(30, 3, 8)
    p = probe.Probe(e.mean(0), e.std(0), 2, hidden=0)
    assert p.layer_weights.shape == (3,) and p(e).shape == (30, 2)


def test_knn_takes_the_majority_of_the_nearest_and_breaks_ties_by_similarity():
    train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    labels = torch.tensor([0, 0, 1, 1])
    test = torch.tensor([[1.0, 0.05], [0.05, 1.0], [0.6, 0.4]])
    assert probe.knn_predict(train, labels, test, 2, k=2).tolist() == [0, 1, 0]
    # k = 4: two votes each; the nearer pair wins
    assert probe.knn_predict(train, labels, test, 2, k=4).tolist() == [0, 1, 0]


def test_a_model_without_an_embedding_is_refused_under_a_frozen_protocol(tmp_path):
    path = tmp_path / "plain.py"
    path.write_text('''"""A model with neither embed() nor timm's heads."""
from torch import nn
from harness import LogMel, Submission, register_submission


class Plain(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.f = nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))

    def forward(self, x):
        return self.f(x)


@register_submission
def plain() -> Submission:
    """A plain module."""
    return Submission(frontend=LogMel(8000, n_mels=16), model=Plain)
''')
    from harness.data.catalog import load_catalog as catalog

    subs = submissions(tmp_path, project=False)
    spec = catalog().get("synthetic")
    with pytest.raises(execute.WorkerError, match="embed"):
        run_named(Run("plain", "synthetic", 1, 1, 1, protocol="knn"), spec, subs=subs)


POSITIONAL = '''"""An encoder that embeds each clip by where it stands in what it is sent (one-hot of its
position): it scores above chance only if the order of clips says their class."""
import torch
from torch import nn
from harness import Submission, Waveform, register_submission


class Position(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.seen = 0
        self.head = nn.Linear(1, num_classes)

    def embed(self, x):
        out = torch.zeros(len(x), 2000)
        out[torch.arange(len(x)), torch.arange(self.seen, self.seen + len(x)) // 20] = 1.0
        self.seen += len(x)
        return out

    def forward(self, x):
        return self.head(x[:, :1])


@register_submission
def positional() -> Submission:
    """Position as embedding."""
    return Submission(frontend=Waveform(8000), model=Position)
'''


def test_the_encoder_gets_the_clips_in_an_order_that_does_not_say_their_class(tmp_path):
    """Synthetic clips are listed class by class (20 each): sent in that order, position alone would
    give every clip's class to kNN (its neighbours share its block of 20)."""
    (tmp_path / "positional.py").write_text(POSITIONAL)
    subs = submissions(tmp_path, project=False)
    spec = load_catalog().get("synthetic")
    record = run_named(Run("positional", "synthetic", 1, 1, 1, protocol="knn"), spec, subs=subs)
    assert record.accuracy < 0.5  # 6 classes: chance is 1/6; in listing order it would be near 1


def _tiny_dataset(tmp_path):
    from conftest import TINY_CATALOG

    catalog = tmp_path / "datasets.toml"
    catalog.write_text(TINY_CATALOG.format(url="", sha="", fingerprint=""))
    spec = load_catalog(catalog).get("tiny")
    fetch(spec, tmp_path / "data", from_path=make_digit_folder(tmp_path / "src"))
    return spec, tmp_path / "data"


class CountingWorker(execute.Worker):
    asked: list[str] = []

    def ask(self, message, *args, **kwargs):
        CountingWorker.asked.append(message["op"])
        return super().ask(message, *args, **kwargs)


@pytest.mark.slow
def test_embeddings_are_computed_once_and_every_later_run_reads_them(tmp_path, monkeypatch):
    spec, root = _tiny_dataset(tmp_path)
    monkeypatch.setattr(execute, "Worker", CountingWorker)
    CountingWorker.asked = []
    first = run_named(Run("hubert_base", "tiny", 5, 1, 1, weights="random", protocol="linear",
                          overrides=TINY_HUBERT), spec, data_root=root)
    assert CountingWorker.asked == ["embed"]
    cached = list((root / "cache" / "embeddings").glob("*.npy"))
    assert len(cached) == 1 and np.load(cached[0]).shape == (40, 32)
    second = run_named(Run("hubert_base", "tiny", 1, 2, 1, weights="random", protocol="knn",
                           overrides=TINY_HUBERT), spec, data_root=root)
    assert CountingWorker.asked == ["embed"]  # no worker for the second: the probe started at once
    assert second.phases["first_step_s"] <= first.phases["first_step_s"]
    assert first.n_val > 0 and second.n_val == 0  # the probe chose on validation; kNN has nothing to choose
    assert first.run.variant.startswith("linear-random") and second.run.variant.startswith("knn-random")


@pytest.mark.slow
def test_an_encoder_that_announces_other_embeddings_than_it_sends_fails_its_run_in_one_line(tmp_path):
    text = POSITIONAL.replace("out = torch.zeros(len(x), 2000)", "out = torch.zeros(len(x), 2000)\n"
                              "        out[0, 0] = float('nan')")
    (tmp_path / "positional.py").write_text(text)
    subs = submissions(tmp_path, project=False)
    spec = load_catalog().get("synthetic")
    with pytest.raises(Exception, match="NaN"):
        run_named(Run("positional", "synthetic", 1, 1, 1, protocol="knn"), spec, subs=subs)


def test_a_sweep_sweeps_the_protocol(tmp_path):
    from harness.runs.sweep import read_sweep

    path = tmp_path / "sweep.yaml"
    path.write_text("method: grid\nparameters:\n  submission: {value: hubert_base}\n  dataset: {value: fsdd}\n"
                    "  protocol: {values: [linear, knn]}\n")
    assert sorted(p.cell.protocol for p in read_sweep(path).points) == ["knn", "linear"]
    path.write_text(path.read_text().replace("[linear, knn]", "[linaer]"))
    with pytest.raises(Exception, match="Did you mean 'linear'"):
        read_sweep(path)
