"""Features: a front-end run once over a run's clips, kept where training reads them fastest.

They stay on the GPU when they fit in a share of its free memory; otherwise they are gathered in
pinned host memory and the training loop copies one batch at a time.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

DEVICE_MEMORY_SHARE = 0.5  # features may take this share of the free device memory; beyond it they stream


def _feature_home(device: torch.device, nbytes: int) -> torch.device:
    """Keep features on the GPU when they fit, else in (pinned) host memory, saying so once."""
    if device.type != "cuda" or nbytes <= DEVICE_MEMORY_SHARE * torch.cuda.mem_get_info(device)[0]:
        return device
    print(f"features need {nbytes / 2**30:.1f} GiB, more than {DEVICE_MEMORY_SHARE:.0%} of free GPU memory: "
          f"streaming batches from pinned host memory instead")
    return torch.device("cpu")


@torch.no_grad()
def compute_features(frontend: nn.Module, x: np.ndarray, indices: np.ndarray, device: torch.device,
                     batch_size: int = 256) -> torch.Tensor:
    """Run the front-end over the selected clips in batches on ``device``.

    The result stays on ``device`` when it fits there; otherwise it is gathered in pinned host
    memory and the training loop copies one batch at a time.
    """
    frontend = frontend.to(device)
    parts, home = [], None
    for i in range(0, len(indices), batch_size):
        part = frontend(torch.from_numpy(np.ascontiguousarray(x[indices[i:i + batch_size]])).to(device))
        home = home or _feature_home(device, part[0].numel() * part.element_size() * len(indices))
        parts.append(part.to(home))
    if not parts:
        return torch.empty(0, device=device)
    out = torch.cat(parts)
    return out.pin_memory() if home != device and device.type == "cuda" else out


