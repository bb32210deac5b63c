"""Pretrained weights for a sandboxed run, fetched by the driver: the worker has no network.

A run with ``pretrained:<tag>`` weights asks timm where the weights of that tag live (the
Hugging Face hub or a URL, with the submission's ``pretrained_cfg_overlay`` applied, as
``timm.create_model(pretrained=True)`` would), downloads them here into timm's usual caches
(``$TORCH_HOME``, ``$HF_HOME``) and hands the worker that one file to read; the worker builds the
model from it exactly as timm builds it from the hub (``pretrained_cfg_overlay={"file": ...}``:
the same filtering, input-channel and classifier adaptation).

A submission may name where weights come from only as an http(s) URL or a hub id: a local file
(or an in-memory state dict) is a checkpoint, which only the person running the benchmark names,
with ``--weights FILE`` (otherwise a submission could have the driver hand it any file to read).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from harness.runs.models import WeightsUnavailable

WHAT_TO_DO = ("Name a local checkpoint with `bench run --weights FILE`, or train from random initialisation with "
              "`bench run --random-init` (the leaderboard marks it not pretrained).")
SAFE_FIRST = ("model.safetensors", "pytorch_model.bin")  # timm's order on the hub


def pretrained_file(model_name: str, model_kwargs: dict[str, Any]) -> Path:
    """The local file of ``model_name``'s pretrained weights, downloaded once; ``WeightsUnavailable``
    says why not and what to do."""
    from timm.models import get_pretrained_cfg
    from timm.models._builder import _resolve_pretrained_source

    overlay = model_kwargs.get("pretrained_cfg_overlay") or {}
    if not isinstance(overlay, dict) or overlay.keys() & {"file", "state_dict", "source"}:
        raise WeightsUnavailable(f"{model_name}: a submission names its weights' source as a URL or a hub id only; "
                                 f"a local file is a checkpoint: {WHAT_TO_DO}")
    try:
        cfg = get_pretrained_cfg(model_name, allow_unregistered=False)
    except RuntimeError as err:
        raise WeightsUnavailable(f"{model_name}: timm has no pretrained weights for it ({err}). {WHAT_TO_DO}") from None
    load_from, location = _resolve_pretrained_source({**cfg.to_dict(), **overlay})
    try:
        if load_from == "url":
            return _from_url(location)
        if load_from == "hf-hub":
            return _from_hub(location)
    except WeightsUnavailable:
        raise
    except Exception as err:
        raise WeightsUnavailable(f"cannot download pretrained weights for {model_name} ({type(err).__name__}: "
                                 f"{err}). {WHAT_TO_DO}") from None
    raise WeightsUnavailable(f"{model_name}: timm names no source of pretrained weights ({load_from or 'none'}). "
                             f"{WHAT_TO_DO}")


def _from_url(url: str) -> Path:
    from timm.models._hub import download_cached_file

    if urlparse(url).scheme not in ("http", "https"):
        raise WeightsUnavailable(f"{url}: weights are downloaded over http(s) only. {WHAT_TO_DO}")
    return Path(download_cached_file(url, check_hash=False, progress=False))


def _from_hub(location: str | tuple[str, str]) -> Path:
    from huggingface_hub import hf_hub_download
    from timm.models._hub import hf_split

    model_id, names = (location[0], (location[1],)) if isinstance(location, tuple) else (location, SAFE_FIRST)
    repo, revision = hf_split(model_id)
    errors = []
    for name in names:
        try:
            return Path(hf_hub_download(repo_id=repo, filename=name, revision=revision))
        except Exception as err:  # the next name, as timm tries safetensors first
            errors.append(f"{name}: {type(err).__name__}")
    raise WeightsUnavailable(f"{model_id} on the Hugging Face hub: {'; '.join(errors)}. {WHAT_TO_DO}")


HUB_WEIGHTS = ("model.safetensors", "pytorch_model.bin")  # tried in this order, as transformers does


def hub_folder(source: str) -> Path:
    """The local folder of a hub encoder's files at ``<repo>@<revision>``, downloaded once into the
    hub's usual cache (``$HF_HOME``; ``$HF_ENDPOINT`` names another hub): its ``config.json`` and its
    weights, ``model.safetensors`` or else ``pytorch_model.bin`` (one file: a sharded model is not
    an audio encoder's size)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    repo, _, revision = source.rpartition("@")
    try:
        config = Path(hf_hub_download(repo_id=repo, filename="config.json", revision=revision))
        for name in HUB_WEIGHTS:
            try:
                hf_hub_download(repo_id=repo, filename=name, revision=revision)
                return config.parent
            except EntryNotFoundError:
                continue
        raise WeightsUnavailable(f"{repo} at {revision[:12]} has neither {' nor '.join(HUB_WEIGHTS)}")
    except WeightsUnavailable:
        raise
    except Exception as err:
        raise WeightsUnavailable(f"cannot download {repo} at {revision[:12]} from the Hugging Face hub "
                                 f"({type(err).__name__}: {err}). Name a folder of its files with "
                                 f"`bench run --weights DIR`, or train from random weights with --random-init") from None
