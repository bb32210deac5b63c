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
from harness.data.datasets import answer_key
from harness.runs.described import Submissions, Variant
from harness.runs.execute import run_one, task_for
from harness.runs.provenance import config_hash, run_config
from harness.runs.sweep import read_sweep
from harness.training.metrics import classification_metrics

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
    subs, spec = Submissions(), load_catalog().get("synthetic")
    subs.describe("small_cnn", [Variant(p.cell.overrides, resolve=True) for p in sweep.points])
    runs = [run for point in sweep.points for run in point.cell.runs(point.cell.trained(subs), spec, "fp32", False)]
    template = run_one(task_for(subs, runs[0], spec), spec, runs[0], torch.device("cpu"))
    described, key, rng = subs.describe("small_cnn"), answer_key(spec), random.Random(0)
    for n, run in enumerate(runs, 1):
        truth = key.labels[key.folds == run.fold]  # predictions right with a random share, metrics that follow
        share = rng.uniform(0.4, 0.95)
        pred = [int(t) if rng.random() < share else int(rng.randrange(spec.num_classes)) for t in truth]
        config = run_config(described, subs.built("small_cnn", Variant(run.overrides)), spec, run)
        record = dataclasses.replace(template, run=run, config=config, config_hash=config_hash(config), predictions=pred,
                                     metrics=classification_metrics(truth, pred, spec.num_classes))
        store.write_record(run.path(args.out / "results"), record)
        if n % 1000 == 0:
            print(f"{n} of {len(runs)} results written")


if __name__ == "__main__":
    main()
