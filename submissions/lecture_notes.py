"""Seed 002: lecture notes on an ESC-50 class subset (4 classes, 128 training / 32 validation clips).

Three models, all on 16 kHz audio (the notes load clips with ``librosa.load(sr=16000)``):
- an LSTM on the raw waveform: ``LSTM(input_size=samples, hidden 16)``, then 16 -> 8 -> classes
  with a ReLU (5,121,324 parameters for 5 s clips and 4 classes, as in the notes);
- a small ConvNet on mel spectrograms with random time shifts of up to 20% of the width in
  either direction, the vacated part filled with -80 dB;
- an ImageNet ResNet-18 (torchvision weights) with every layer frozen but a new last layer,
  the spectrogram repeated to 3 channels. We load it with one input channel: timm sums the
  first conv's RGB filters, which gives exactly the output of the 3 repeated channels.

Deviations and choices:
- The notes pass (batch, samples) to ``nn.LSTM(batch_first=True)``, which PyTorch reads as one
  unbatched sequence whose steps are the batch's clips, so clips leak into each other's
  predictions. We feed each clip as a sequence of one step: same parameters, no leak.
- The ConvNet's layers are not shown (only its 134,020 parameters); ours has four 3x3
  conv-ReLU-max-pool layers (16-32-64-128) and a 128 -> 256 -> classes head, 131,204
  parameters for 4 classes.
- Spectrograms: librosa's defaults (n_fft 2048, hop 512, 128 mels) in dB against each clip's
  maximum, floored at -80 dB (``power_to_db(ref=np.max)``), computed with torchaudio.
- The notes' optimiser, learning rate and epochs are not shown: Adam at 1e-3, batch 16,
  constant rate, 10 epochs.
"""
from torch import nn

from harness import LogMel, Recipe, Submission, Waveform, register_submission
from harness.training import FitResult, Stage, TrainContext, fit_stages

SEED = "002 lecture notes: ESC-50 subset (LSTM, ConvNet, transfer learning)"


def _mel() -> LogMel:
    return LogMel(16000, n_fft=2048, hop_length=512, n_mels=128, top_db=80.0, ref_max=True)


def _recipe(**changes) -> Recipe:
    return Recipe(**{"epochs": 10, "batch_size": 16, "optimizer": "adam", "lr": 1e-3, "schedule": "constant",
                     "normalize": "none", **changes})


class WaveLSTM(nn.Module):
    """The notes' RNN: an LSTM over the waveform as one step, two linear layers with a ReLU."""

    def __init__(self, num_classes: int, input_shape: tuple[int, ...], hidden_size: int = 16):
        super().__init__()
        self.rnn = nn.LSTM(input_shape[-1], hidden_size, batch_first=True)
        self.fc1 = nn.Linear(hidden_size, hidden_size // 2)
        self.fc2 = nn.Linear(hidden_size // 2, num_classes)

    def forward(self, x):
        out, _ = self.rnn(x.unsqueeze(1))  # (batch, 1 step, samples)
        return self.fc2(self.fc1(out[:, -1]).relu())


class LectureConvNet(nn.Module):
    """Four conv-ReLU-max-pool layers (16-32-64-128), global average pool, 128 -> 256 -> classes."""

    def __init__(self, num_classes: int):
        super().__init__()
        layers, c_in = [], 1
        for c_out in (16, 32, 64, 128):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2, ceil_mode=True)]
            c_in = c_out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(128, 256), nn.ReLU(inplace=True), nn.Linear(256, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


def train_last_layer(ctx: TrainContext) -> FitResult:
    """Every layer frozen but the new last one, at the recipe's constant rate."""
    return fit_stages(ctx, [Stage(ctx.epochs, (ctx.recipe.lr,), frozen=True, pct_start=0.01, div=1.0)])


@register_submission
def lecture_lstm() -> Submission:
    """Seed 002's LSTM on the raw 16 kHz waveform (the notes report it overfits: near-chance validation)."""
    return Submission(frontend=Waveform(16000), model=WaveLSTM, recipe=_recipe(), seed=SEED)


@register_submission
def lecture_convnet() -> Submission:
    """Seed 002's small ConvNet on mel spectrograms (dB, ref max) with random time shifts filled with -80 dB."""
    return Submission(frontend=_mel(), model=LectureConvNet, recipe=_recipe(time_shift=0.2, time_shift_fill=-80.0),
                      seed=SEED)


@register_submission
def lecture_resnet18_frozen() -> Submission:
    """Seed 002's transfer learning: frozen ImageNet ResNet-18, new last layer trained, spectrogram x3 channels."""
    return Submission(frontend=_mel(), model="resnet18.tv_in1k", pretrained=True, fit=train_last_layer,
                      recipe=_recipe(), seed=SEED)
