"""A small CNN on log-mels: the harness's simple reference entry."""
from torch import nn

from harness import LogMel, Recipe, Submission, register_submission


class SmallCNN(nn.Module):
    """Four conv-BN-ReLU blocks (16-32-64-128 channels), global average pooling, a linear head.

    Shape: (batch, 1, mels, frames) -> (batch, num_classes).
    """

    def __init__(self, num_classes: int, width: int = 16, dropout: float = 0.1):
        super().__init__()
        layers, c_in = [], 1
        for i in range(4):
            c_out = width * 2**i
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            layers += [nn.MaxPool2d(2)] if i < 3 else []
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c_in, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


@register_submission
def small_cnn() -> Submission:
    """Small CNN (4 conv blocks, width 32) on 40-band log-mels at 8 kHz, AdamW one-cycle, global normalisation.

    Not from a seed: the harness's own simple entry, sized for FSDD and CPU smoke runs.
    """
    return Submission(
        frontend=LogMel(8000, n_fft=512, win_length=256, hop_length=160, n_mels=40),
        model=SmallCNN,
        model_kwargs={"width": 32},
        recipe=Recipe(epochs=5, batch_size=16, optimizer="adamw", lr=5e-3, weight_decay=1e-4, schedule="onecycle"),
    )
