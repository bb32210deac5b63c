"""Experiment tracking, optional: every finished run logged to Weights & Biases.

The driver logs a run after its result is stored (so every executor's runs are logged alike,
and a tracking failure never loses a result): its identity and overrides, the submission's
settings and the hardware as config, its per-epoch curves as history (a validation metric's
summary is its best epoch), every registered metric it has as summary; a sweep's runs share a
group. Offline (files under ``wandb/``, to `wandb sync` later) unless the user has logged in or
set ``WANDB_MODE``. ``pip install -e '.[wandb]'``.
"""
from __future__ import annotations

import os
from pathlib import Path

from harness.core.errors import HarnessError
from harness.runs.records import RunRecord
from harness.training.metrics import METRICS, registered


def _wandb():
    try:
        import wandb
    except ImportError:
        raise HarnessError("--log wandb needs Weights & Biases: pip install -e '.[wandb]'") from None
    return wandb


def _mode() -> str:
    """online when the user has logged in (``wandb login`` writes ~/.netrc), else offline."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    netrc = Path.home() / ".netrc"
    logged_in = bool(os.environ.get("WANDB_API_KEY")) or (netrc.is_file() and "api.wandb.ai" in netrc.read_text())
    return "online" if logged_in else "offline"


def run_config(record: RunRecord) -> dict:
    """What identifies and describes a run, as W&B config."""
    run = record.run
    return {"submission": run.submission, "dataset": run.dataset, "epochs": run.epochs, "fold": run.fold,
            "trial": run.trial, "seed": run.seed, "weights": run.weights, "precision": run.precision,
            "compiled": run.compiled, "variant": run.variant, "overrides": dict(run.overrides),
            "params": record.config.get("params", {}), "config_hash": record.config_hash,
            "source_hash": record.source_hash, "commit": record.git.get("commit"), "device": record.device,
            "hardware": record.hardware, "dataset_version": record.dataset_version}


class WandbLogger:
    """Logs each stored run as one W&B run. ``group``: the sweep's name (W&B groups its runs)."""

    def __init__(self, group: str, project: str = "audio-bench"):
        self.group = group
        self.project = project
        _wandb()  # fail before the first run, not after it

    def __call__(self, record: RunRecord) -> None:
        run = record.run
        logged = _wandb().init(project=self.project, group=self.group, job_type=run.dataset, mode=_mode(),
                               name=f"{run.submission} {run.variant} e{run.epochs} fold {run.fold} trial {run.trial}",
                               config=run_config(record), reinit="create_new")
        try:
            for spec in registered():  # a validation curve's summary: its best epoch
                logged.define_metric(f"val_{spec.name}", summary="max" if spec.higher_is_better else "min")
            for row in record.curves:
                logged.log({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])
            logged.summary.update({**{name: value for name, value in record.metrics.items() if name in METRICS},
                                   "wall_time_s": record.wall_time_s, "n_test": record.n_test})
        finally:
            logged.finish()
            # finish() returns before wandb's service has written the run's file (it only informs the
            # service, which closes the file later); teardown waits for it. So each logged run is on
            # disk when the next training starts, and `wandb sync` or a reader never finds it
            # incomplete (seen once in CI: a run read back right after the sweep had an empty
            # config). Costs about 0.1 s per run.
            _wandb().teardown()
