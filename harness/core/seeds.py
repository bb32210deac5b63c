"""Seeds: trial t (1-based) of test fold f (1-based) always runs with ``seed = 1000 * t + f``."""
from __future__ import annotations

import random

import numpy as np


def seed_for(fold: int, trial: int) -> int:
    """The fixed seed of one (fold, trial) run; e.g. fold 3 of trial 1 uses 1003."""
    return 1000 * trial + fold


def seed_everything(seed: int) -> "torch.Generator":
    """Seed Python, NumPy and torch (deterministic kernels are ``harness.training.device.switches``).

    Returns a CPU generator for the run's own draws (batch order, augmentation), so that
    library code consuming the global RNG cannot shift them.
    """
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
