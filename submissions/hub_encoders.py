"""Pretrained audio encoders from the Hugging Face hub, each pinned to one commit, for any protocol:
``bench run -s hubert_base -d fsdd --protocol linear`` (a probe on frozen, cached embeddings),
``--protocol knn``, or ``finetune`` (the encoder trained end to end with a linear head).

They need the ``hub`` extra (``transformers``; ``make install`` installs it). The driver downloads
the weights once (``hf:<repo>@<commit>`` is the run's identity); ``--weights DIR`` names a local
folder of ``save_pretrained`` files instead; ``--random-init`` builds the same architecture with
random weights (``config``). The layer is a setting: ``--set layer=weighted`` (a learned softmax
over layers, SUPERB's), ``--set layer=6``, default ``last``; every layer is mean-pooled over the
clip's frames. Sized for short clips such as FSDD's digits (about a second).

Deviations from each model's own feature extractor (``harness.training.encoders``):
- AST: torchaudio's Hann-window mel filterbank (``LogMel``, power in dB, turned into natural log
  power; 20 Hz to Nyquist as Kaldi's) in place of Kaldi's fbank (Povey window, pre-emphasis,
  dither): at a 512-point FFT a few of its lowest of 128 bands hold no FFT bin (torchaudio warns),
  where Kaldi's interpolated bands do not; the checkpoint's own statistics and its 128-frame
  length (speech commands: 1.28 s) as its extractor has them.
- HuBERT: the waveform normalised per clip to zero mean and unit variance only where the model's
  feature encoder uses layer norm (``feat_extract_norm``, group norm for hubert-base).
- Whisper: torchaudio's mel filterbank (HTK scale) where Whisper's uses librosa's (Slaney), with
  Whisper's log10, 8-below-maximum floor and scaling; padded to its 30 s input, and pooled over the
  clip's frames only.
- ``recipe.normalize`` is ``none``: each encoder normalises its input itself.
"""
from harness import LogMel, Recipe, Submission, Waveform, register_submission
from harness.training.encoders import HubEncoder

FINETUNE = Recipe(epochs=10, batch_size=16, optimizer="adamw", lr=5e-5, weight_decay=0.01, normalize="none")


@register_submission
def ast_speech_commands() -> Submission:
    """AST (Audio Spectrogram Transformer, ViT-Base) fine-tuned on Speech Commands v2 by its authors, as an encoder."""
    return Submission(
        frontend=LogMel(16000, n_fft=512, win_length=400, hop_length=160, n_mels=128, f_min=20, top_db=None),
        model=HubEncoder, pretrained=True, recipe=FINETUNE,
        model_kwargs={"kind": "ast", "repo": "MIT/ast-finetuned-speech-commands-v2",
                      "revision": "315b0b847a3ca207e68b718503ad72066612eacd", "layer": "last",
                      "config": {"max_length": 128}, "input_stats": [-6.845978, 5.5654526]},
        seed="issue 30: pretrained encoders under frozen-embedding protocols (AST, Gong et al. 2021)",
    )


@register_submission
def hubert_base() -> Submission:
    """HuBERT Base (self-supervised on LibriSpeech 960 h) as an encoder of 16 kHz waveforms."""
    return Submission(
        frontend=Waveform(16000), model=HubEncoder, pretrained=True, recipe=FINETUNE,
        model_kwargs={"kind": "hubert", "repo": "facebook/hubert-base-ls960",
                      "revision": "dba3bb02fda4248b6e082697eee756de8fe8aa8a", "layer": "last", "config": None},
        seed="issue 30: pretrained encoders under frozen-embedding protocols (HuBERT, Hsu et al. 2021)",
    )


@register_submission
def whisper_tiny_encoder() -> Submission:
    """Whisper tiny's encoder (multilingual speech recognition, 680k h) as an encoder of log-mels."""
    return Submission(
        frontend=LogMel(16000, n_fft=400, hop_length=160, n_mels=80, top_db=None),
        model=HubEncoder, pretrained=True, recipe=FINETUNE,
        model_kwargs={"kind": "whisper", "repo": "openai/whisper-tiny",
                      "revision": "169d4a4341b33bc18d8881c4b69c2e104e1cc0af", "layer": "last",
                      "config": {"d_model": 384, "encoder_layers": 4, "encoder_attention_heads": 6,
                                 "encoder_ffn_dim": 1536}},
        seed="issue 30: pretrained encoders under frozen-embedding protocols (Whisper, Radford et al. 2022)",
    )
