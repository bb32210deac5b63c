"""Where the project itself lies: its root, the folder holding ``harness/``, ``submissions/``,
``locks/``, the published ``results/`` and the locked environment ``requirements.lock``."""
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
