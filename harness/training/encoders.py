"""Pretrained audio encoders from the Hugging Face hub (``transformers``, the ``hub`` extra) as models.

    Submission(frontend=Waveform(16000), model=HubEncoder, pretrained=True,
               model_kwargs={"kind": "hubert", "repo": "facebook/hubert-base-ls960", "revision": "<commit>"})

A ``HubEncoder`` takes the harness front-end's features, turns them into what its model was trained
on (``EncoderKind.prepare``), and pools one hidden layer over time: ``layer`` is ``"last"``, a layer
number (0: the embeddings before the first block) or ``"weighted"``, a learned softmax-weighted sum
over every layer, as SUPERB does. ``embed`` is what the frozen protocols (``linear``, ``knn``) read;
``forward`` adds a linear head (``finetune``).

Weights: ``pretrained`` a folder (what ``save_pretrained`` writes; the driver downloads
``hf:<repo>@<revision>`` into one, or the user names one with ``--weights DIR``); ``True`` loads
``from_pretrained(repo, revision=revision)`` itself (outside the sandbox, with a network); ``False``
builds the model from ``config`` (settings over the kind's default configuration) with random weights.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from harness.core.registry import Registry
from harness.training.submission import SubmissionError

DB_TO_LN = math.log(10) / 10  # a dB value (10 log10 of power) as a natural log of power
AST_MEAN, AST_STD = -4.2677393, 4.5689974  # AudioSet fbank statistics ASTFeatureExtractor normalises by


@dataclass(frozen=True)
class EncoderKind:
    """A family of hub encoders: its ``transformers`` model class, the config it reads its size from,
    and how a harness front-end's features become the model's inputs (``prepare``: features, config
    -> (keyword arguments of the model, how many output frames hold the clip, or None for all))."""

    name: str
    model_class: str
    config_class: str
    prepare: Callable[[torch.Tensor, Any], tuple[dict[str, torch.Tensor], int | None]]
    part: str = ""  # the attribute of the loaded model that is the encoder ("encoder" for Whisper)
    random_class: str = ""  # "module:Class" built from a config when the weights are random (the encoder alone)
    tiny: tuple[tuple[str, Any], ...] = ()  # config="tiny": a few thousand weights, for tests and offline checks
    doc: str = ""


def _mel_check(x: torch.Tensor, config: Any, kind: str) -> None:
    if x.dim() != 4 or x.shape[2] != config.num_mel_bins:
        raise SubmissionError(f"{kind}: expects log-mel features with {config.num_mel_bins} mel bands "
                              f"(LogMel(16000, n_mels={config.num_mel_bins}, top_db=None)), got shape {tuple(x.shape)}")


def _ast_inputs(x: torch.Tensor, config: Any) -> tuple[dict[str, torch.Tensor], int | None]:
    """dB log-mels (batch, 1, mels, frames) -> AST's normalised fbank frames (batch, max_length, mels),
    zero-padded or cut to ``max_length`` as ASTFeatureExtractor does, normalised by the statistics
    its checkpoint was trained with (``config.input_stats``, set by ``HubEncoder``)."""
    _mel_check(x, config, "ast")
    frames = x[:, 0].transpose(1, 2) * DB_TO_LN
    frames = nn.functional.pad(frames, (0, 0, 0, max(0, config.max_length - frames.shape[1])))[:, :config.max_length]
    mean, std = getattr(config, "input_stats", None) or (AST_MEAN, AST_STD)
    return {"input_values": (frames - mean) / (2 * std)}, None


def _whisper_inputs(x: torch.Tensor, config: Any) -> tuple[dict[str, torch.Tensor], int | None]:
    """dB log-mels -> Whisper's log10 mels, floored 8 below each clip's maximum and scaled as
    WhisperFeatureExtractor does, padded with that floor (its zero-padded audio) to the encoder's
    fixed length; only the output frames of the clip itself are pooled."""
    _mel_check(x, config, "whisper")
    mels = x[:, 0] / 10
    floor = mels.amax(dim=(1, 2), keepdim=True) - 8
    mels = (torch.maximum(mels, floor) + 4) / 4
    length = 2 * config.max_source_positions
    frames = min(mels.shape[-1], length)
    padded = ((floor + 4) / 4).expand(-1, mels.shape[1], length).clone()
    padded[..., :frames] = mels[..., :frames]
    return {"input_features": padded}, math.ceil(frames / 2)


def _waveform_inputs(x: torch.Tensor, config: Any) -> tuple[dict[str, torch.Tensor], int | None]:
    """A waveform (batch, samples) at 16 kHz, zero-mean and unit-variance per clip (the feature
    extractors' ``do_normalize``) where the model's layer norm expects it."""
    if x.dim() != 2:
        raise SubmissionError(f"a waveform encoder expects Waveform(16000) features, got shape {tuple(x.shape)}")
    if getattr(config, "feat_extract_norm", "group") == "layer":
        x = (x - x.mean(1, keepdim=True)) / (x.var(1, keepdim=True, unbiased=False) + 1e-7).sqrt()
    return {"input_values": x}, None


KINDS: Registry[EncoderKind] = Registry("encoder kind")


def register_encoder_kind(kind: EncoderKind) -> EncoderKind:
    KINDS.add(kind.name, kind)
    return kind


TINY = (("hidden_size", 32), ("num_hidden_layers", 2), ("num_attention_heads", 2), ("intermediate_size", 64))
TINY_CONV = (("conv_dim", (32,) * 7), ("num_conv_pos_embeddings", 16), ("num_conv_pos_embedding_groups", 2))
register_encoder_kind(EncoderKind("ast", "ASTModel", "ASTConfig", _ast_inputs, tiny=TINY + (("max_length", 128),),
                                  doc="Audio Spectrogram Transformer: LogMel(16000, n_fft=400, hop_length=160, "
                                      "n_mels=128, top_db=None)"))
register_encoder_kind(EncoderKind("hubert", "HubertModel", "HubertConfig", _waveform_inputs, tiny=TINY + TINY_CONV,
                                  doc="Waveform(16000)"))
register_encoder_kind(EncoderKind("wav2vec2", "Wav2Vec2Model", "Wav2Vec2Config", _waveform_inputs,
                                  tiny=TINY + TINY_CONV, doc="Waveform(16000)"))
register_encoder_kind(EncoderKind("wavlm", "WavLMModel", "WavLMConfig", _waveform_inputs, tiny=TINY + TINY_CONV,
                                  doc="Waveform(16000)"))
register_encoder_kind(EncoderKind("whisper", "WhisperModel", "WhisperConfig", _whisper_inputs, part="encoder",
                                  random_class="transformers.models.whisper.modeling_whisper:WhisperEncoder",
                                  tiny=(("d_model", 32), ("encoder_layers", 2), ("encoder_attention_heads", 2),
                                        ("encoder_ffn_dim", 64), ("max_source_positions", 1500)),
                                  doc="Whisper's encoder: LogMel(16000, n_fft=400, hop_length=160, n_mels=80, "
                                      "top_db=None)"))


def _transformers():
    try:
        import transformers
    except ImportError:
        raise SubmissionError("hub encoders need the `hub` extra: pip install -e '.[hub]' (make install does)") from None
    return transformers


def load_encoder(kind: EncoderKind, pretrained: bool | str, repo: str, revision: str,
                 config: dict[str, Any] | str | None) -> nn.Module:
    """The encoder with its weights (a folder, or the hub when ``pretrained`` is True: their own
    configuration), or with random weights from ``config`` over the kind's default configuration."""
    import importlib

    transformers = _transformers()
    if not pretrained:
        if isinstance(config, str) and config != "tiny":
            raise SubmissionError(f"HubEncoder(config={config!r}): a dict of settings, or 'tiny'")
        settings = getattr(transformers, kind.config_class)(**(dict(kind.tiny) if config == "tiny" else config or {}))
        if kind.random_class:
            module, _, name = kind.random_class.partition(":")
            return getattr(importlib.import_module(module), name)(settings)
        return getattr(transformers, kind.model_class)(settings)
    source = pretrained if isinstance(pretrained, str) else repo
    if not source:
        raise SubmissionError(f"HubEncoder({kind.name}): pretrained=True needs repo='<owner>/<name>'")
    extra = {"revision": revision} if pretrained is True and revision else {}
    model = getattr(transformers, kind.model_class).from_pretrained(source, **extra)
    return getattr(model, kind.part) if kind.part else model


class HubEncoder(nn.Module):
    """A hub encoder, pooled over time at one layer, with a linear head (see the module's text).

    Args:
        num_classes: the head's outputs. kind: ``ast`` | ``hubert`` | ``wav2vec2`` | ``wavlm`` | ``whisper``.
        repo, revision: the hub model (``owner/name``) and its commit, 40 hex digits (the run's
            identity: ``hf:<repo>@<revision>``). layer: ``last`` | a layer number | ``weighted``.
        config: the configuration's settings over the kind's defaults when the weights are random
            (``--random-init``, ``bench check``): the pretrained model's architecture, or ``"tiny"``
            (``EncoderKind.tiny``: ``--set config=tiny`` for offline checks); pretrained weights bring their own.
        input_stats: (mean, std) of the inputs the checkpoint was trained on (AST's feature extractor).
        pretrained: a folder of ``save_pretrained`` output, True (the hub) or False (random weights).
    """

    def __init__(self, num_classes: int, kind: str, repo: str = "", revision: str = "", layer: str | int = "last",
                 config: dict[str, Any] | str | None = None, input_stats: tuple[float, float] | None = None,
                 pretrained: bool | str = False):
        super().__init__()
        self.kind = KINDS.get(kind)
        self.encoder = load_encoder(self.kind, pretrained, repo, revision, config)
        settings = self.encoder.config
        settings.input_stats = tuple(input_stats) if input_stats else None
        self.layers = getattr(settings, "encoder_layers", None) or settings.num_hidden_layers
        width = getattr(settings, "d_model", None) or settings.hidden_size
        if not (layer in ("last", "weighted") or isinstance(layer, int) and not isinstance(layer, bool)
                and 0 <= layer <= self.layers):
            raise SubmissionError(f"HubEncoder(layer={layer!r}): use 'last', 'weighted' or a layer number from 0 "
                                  f"to {self.layers}")
        self.layer = layer
        if layer == "weighted":
            self.layer_weights = nn.Parameter(torch.zeros(self.layers + 1))
        self.head = nn.Linear(width, num_classes)

    def _pooled_layers(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, layers + 1, width): every hidden state, averaged over the clip's frames."""
        inputs, frames = self.kind.prepare(x, self.encoder.config)
        states = self.encoder(**inputs, output_hidden_states=True).hidden_states
        return torch.stack([s[:, :frames].mean(1) for s in states], dim=1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen embedding of each clip: (batch, width) at one layer, or (batch, layers + 1, width)
        for ``weighted`` (the probe learns the weights)."""
        pooled = self._pooled_layers(x)
        if self.layer == "weighted":
            return pooled
        return pooled[:, -1] if self.layer == "last" else pooled[:, self.layer]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.embed(x)
        if self.layer == "weighted":
            pooled = (torch.softmax(self.layer_weights, 0)[None, :, None] * pooled).sum(1)
        return self.head(pooled)
