"""The choices of the settings that several layers read, defined once: a run's precision, whether
its model is compiled, and the protocol it is evaluated by. The command line offers them, a cell or a run checks a value
against them when it is made, and ``harness.training.device`` resolves ``auto`` for a device.
No torch here: the command line lists them before it imports torch."""
from dataclasses import dataclass

from harness.core.registry import Registry

RESOLVED_PRECISIONS = ("bf16", "fp32")          # what a run trains in: ``auto`` resolved for its device
PRECISIONS = ("auto", *RESOLVED_PRECISIONS)     # what a user may ask for
COMPILE_CHOICES = ("auto", "on", "off")


@dataclass(frozen=True)
class Protocol:
    """How a run is evaluated (``harness.training.probe`` trains the frozen ones' heads): ``frozen``
    (the encoder's embeddings only, the encoder never trained), the epoch budget when a run names
    none (None: the recipe's), and the share of the training folds kept for validation when the
    recipe keeps none (what a probe's settings are chosen on)."""

    name: str
    doc: str
    frozen: bool
    epochs: int | None = None
    val_fraction: float = 0.0


PROTOCOLS: Registry[Protocol] = Registry("protocol")
for _protocol in (Protocol("finetune", "the model trained end to end by its recipe", frozen=False),
                  Protocol("linear", "a linear or one-hidden-layer head on frozen embeddings, chosen on validation",
                           frozen=True, epochs=100, val_fraction=0.2),
                  Protocol("knn", "the k nearest training clips by cosine similarity of frozen embeddings",
                           frozen=True, epochs=1)):
    PROTOCOLS.add(_protocol.name, _protocol)
