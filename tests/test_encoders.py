"""Hub encoders (``harness.training.encoders``), generated from the kind registry: each builds
tiny, embeds at every layer setting, and loads a ``save_pretrained`` folder; a run loads weights
from a local folder (``--weights DIR``) or from a hub on 127.0.0.1 (``HF_ENDPOINT``), pinned to a
commit, through the same code a user's ``from_pretrained(<hub name>)`` takes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.data.catalog import load_catalog
from harness.data.datasets import load_dataset
from harness.data.fetch import fetch, sha256_tree
from harness.frontends.features import LogMel, Waveform
from harness.runs.run import Run, RunError, weights_for
from harness.training.encoders import KINDS, HubEncoder, load_encoder
from harness.training.submission import SubmissionError

from conftest import TINY_CATALOG, make_digit_folder, run_named

transformers = pytest.importorskip("transformers")
HUBERT = ("facebook/hubert-base-ls960", "dba3bb02fda4248b6e082697eee756de8fe8aa8a")  # submissions/hub_encoders.py
FRONTENDS = {"ast": LogMel(16000, n_fft=512, win_length=400, hop_length=160, n_mels=128, top_db=None),
             "whisper": LogMel(16000, n_fft=400, hop_length=160, n_mels=80, top_db=None)}


def features(kind: str, clips: int = 3) -> torch.Tensor:
    wave = torch.randn(clips, 8000, generator=torch.Generator().manual_seed(0)) * 0.1
    return FRONTENDS.get(kind, Waveform(16000))(wave)


def saved_tiny(kind: str, folder: Path) -> Path:
    """A tiny model of the kind with random weights, written as a hub repository holds it (Whisper:
    the whole encoder-decoder model, as openai/whisper-* are)."""
    spec = KINDS.get(kind)
    config = getattr(transformers, spec.config_class)(**dict(spec.tiny), **(
        {"decoder_layers": 1, "decoder_attention_heads": 2, "decoder_ffn_dim": 32, "vocab_size": 64,
         "max_target_positions": 16, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2,
         "decoder_start_token_id": 1} if kind == "whisper" else {}))
    torch.manual_seed(0)
    getattr(transformers, spec.model_class)(config).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_embeds_at_each_layer_setting(kind):
    x = features(kind)
    last = HubEncoder(5, kind, config="tiny").eval()
    with torch.no_grad():
        assert last.embed(x).shape == (3, 32) and last(x).shape == (3, 5)
        weighted = HubEncoder(5, kind, config="tiny", layer="weighted").eval()
        assert weighted.embed(x).shape == (3, last.layers + 1, 32) and weighted(x).shape == (3, 5)
        assert HubEncoder(5, kind, config="tiny", layer=0).embed(x).shape == (3, 32)
    one = HubEncoder(5, kind, config="tiny").eval()
    with torch.no_grad():  # in eval mode a clip's embedding does not depend on its batch
        assert torch.allclose(one.embed(x)[:1], one.embed(x[:1]), atol=1e-5)


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_loads_a_save_pretrained_folder_with_its_weights(kind, tmp_path):
    folder = saved_tiny(kind, tmp_path / kind)
    loaded = HubEncoder(5, kind, pretrained=str(folder)).eval()
    reference = getattr(transformers, KINDS.get(kind).model_class).from_pretrained(folder)
    reference = reference.encoder if kind == "whisper" else reference
    for name, tensor in reference.state_dict().items():
        assert torch.equal(loaded.encoder.state_dict()[name], tensor), name
    random = HubEncoder(5, kind, config="tiny").eval()
    with torch.no_grad():
        assert not torch.allclose(loaded.embed(features(kind)), random.embed(features(kind)))


def test_a_layer_out_of_range_and_features_of_another_front_end_are_refused_in_one_line():
    with pytest.raises(SubmissionError, match="layer number from 0 to 2"):
        HubEncoder(5, "hubert", config="tiny", layer=7)
    with pytest.raises(SubmissionError, match="80 mel bands"):
        HubEncoder(5, "whisper", config="tiny").embed(features("ast"))
    with pytest.raises(Exception, match="Did you mean 'hubert'"):
        HubEncoder(5, "hubret", config="tiny")


def test_hub_weights_are_pinned_to_a_commit_in_the_runs_identity():
    weights, _ = weights_for("HubEncoder", True, hub_source=f"{HUBERT[0]}@{HUBERT[1]}")
    assert weights == f"hf:{HUBERT[0]}@{HUBERT[1]}"
    assert Run("hubert_base", "fsdd", 1, 1, 1, weights=weights).variant == f"hf-{HUBERT[1][:12]}-fp32"
    for source in (f"{HUBERT[0]}@main", f"../..@{HUBERT[1]}", f"a/..@{HUBERT[1]}", f"a/b/c@{HUBERT[1]}"):
        with pytest.raises(RunError, match="40-hex commit"):  # a moving branch, or a name that leaves the hub's cache
            weights_for("HubEncoder", True, hub_source=source)
    with pytest.raises(RunError, match="weights"):
        Run("hubert_base", "fsdd", 1, 1, 1, weights=f"hf:../x@{HUBERT[1]}")


@pytest.fixture
def tiny_data(tmp_path):
    catalog = tmp_path / "datasets.toml"
    catalog.write_text(TINY_CATALOG.format(url="", sha="", fingerprint=""))
    spec = load_catalog(catalog).get("tiny")
    fetch(spec, tmp_path / "data", from_path=make_digit_folder(tmp_path / "src"))
    return catalog, spec, tmp_path / "data"


def in_process_embeddings(folder: Path, spec, root: Path) -> np.ndarray:
    data = load_dataset(spec, root, 16000)
    with torch.no_grad():
        return HubEncoder(2, "hubert", pretrained=str(folder)).eval().embed(torch.from_numpy(data.x)).numpy()


def cached(root: Path) -> np.ndarray:
    files = list((root / "cache" / "embeddings").glob("*.npy"))
    assert len(files) == 1
    return np.load(files[0])


@pytest.mark.slow
def test_a_run_loads_weights_from_a_local_folder(tiny_data, tmp_path):
    _, spec, root = tiny_data
    folder = saved_tiny("hubert", tmp_path / "mine")
    run = Run("hubert_base", "tiny", 1, 1, 1, weights=f"sha256:{sha256_tree(folder)}", checkpoint=str(folder),
              protocol="knn")
    record = run_named(run, spec, data_root=root)
    assert record.run.variant.startswith("knn-ckpt-") and record.pretrained
    assert np.allclose(cached(root), in_process_embeddings(folder, spec, root), atol=1e-4)


@pytest.mark.slow
def test_a_run_downloads_pinned_hub_weights_through_hf_endpoint(tiny_data, tmp_path):
    """`bench run -s hubert_base` as a user runs it, its hub a server on 127.0.0.1 holding a tiny
    model under the submission's own repository and commit."""
    from fakehub import FakeHub

    catalog, spec, root = tiny_data
    folder = saved_tiny("hubert", tmp_path / "hub-files")
    hub = FakeHub()
    hub.add(*HUBERT, folder)
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "BENCH_DATA_ROOT": str(root)}
    env.pop("HF_HUB_OFFLINE", None)
    try:
        done = subprocess.run([sys.executable, "-c", "from harness.cli import main; main()", "--datasets", str(catalog), "run", "-s", "hubert_base",
                               "-d", "tiny", "--folds", "1", "--protocol", "knn", "--results", str(tmp_path / "res")],
                              env=env, capture_output=True, text=True, timeout=600)
    finally:
        hub.close()
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"GET /{HUBERT[0]}/resolve/{HUBERT[1]}/model.safetensors" in hub.requests
    record = json.loads(next((tmp_path / "res").rglob("fold1-trial1.json")).read_text())
    assert record["run"]["weights"] == f"hf:{HUBERT[0]}@{HUBERT[1]}" and record["run"]["protocol"] == "knn"
    assert np.allclose(cached(root), in_process_embeddings(folder, spec, root), atol=1e-4)
