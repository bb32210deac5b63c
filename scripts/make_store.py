"""Make a result store of N sealed results, and the sweep file that names them, to measure how
planning and the leaderboard scale (README, "How it scales").

    python scripts/make_store.py OUT [--trials 100]

writes OUT/scale.yaml (small_cnn on synthetic: n_mels 40 and 32 x epochs 1..10 x 5 folds x
TRIALS trials, 10,000 runs at 100 trials) and OUT/results/ with one result per run: half are the
submission as registered (ranked), half a variant (n_mels=32, never ranked). Each is a real
record of one real 1-epoch run, re-keyed to its run with its own config hash and random metrics,
so `bench sweep OUT/scale.yaml --dry-run --results OUT/results` finds every run finished.
"""
from __future__ import annotations

import argparse
import dataclasses
import random
from pathlib import Path

import torch

from harness.data.catalog import load_catalog
from harness.runs import store
from harness.runs.execute import run_one
from harness.runs.provenance import config_hash, run_config
from harness.runs.sweep import read_sweep
from harness.training.submission import get_submission

SWEEP = """method: grid
parameters:
  submission: {{value: small_cnn}}
  dataset: {{value: synthetic}}
  n_mels: {{values: [40, 32]}}
  epochs: {{min: 1, max: 10}}
  fold: {{values: [1, 2, 3, 4, 5]}}
  trial: {{min: 1, max: {trials}}}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--trials", type=int, default=100)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.yaml").write_text(SWEEP.format(trials=args.trials))
    sweep = read_sweep(args.out / "scale.yaml")
    sub, spec = get_submission("small_cnn"), load_catalog().get("synthetic")
    runs = [run for point in sweep.points for run in point.cell.runs(sub, spec, "fp32", False)]
    template = run_one(sub, spec, runs[0], torch.device("cpu"))
    rng = random.Random(0)
    for n, run in enumerate(runs, 1):
        accuracy = rng.uniform(0.4, 0.95)
        config = run_config(sub, spec, run)
        record = dataclasses.replace(template, run=run, config=config, config_hash=config_hash(config),
                                     metrics={"accuracy": accuracy, "macro_f1": accuracy - 0.02})
        store.write_record(run.path(args.out / "results"), record)
        if n % 1000 == 0:
            print(f"{n} of {len(runs)} results written")


if __name__ == "__main__":
    main()
