"""The choices of the two settings that several layers read, defined once: a run's precision and
whether its model is compiled. The command line offers them, a cell or a run checks a value
against them when it is made, and ``harness.training.device`` resolves ``auto`` for a device.
No torch here: the command line lists them before it imports torch."""

RESOLVED_PRECISIONS = ("bf16", "fp32")          # what a run trains in: ``auto`` resolved for its device
PRECISIONS = ("auto", *RESOLVED_PRECISIONS)     # what a user may ask for
COMPILE_CHOICES = ("auto", "on", "off")
