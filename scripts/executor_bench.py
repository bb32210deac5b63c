"""Wall time and throughput of one sweep through several executors, each into a fresh store, and
whether they all computed the same results.

    python scripts/executor_bench.py sweeps/executors/small_cnn_cpu.yaml --device cpu \\
        --config local --config local:workers=2 --config ray:workers=2

A config is ``EXECUTOR[:OPTION=VALUE,...]``, the options being ``bench sweep``'s without dashes
(``runs-per-gpu``, ``workers``, ``gpus``, ``address``). The datasets are decoded into their cache
before the first config, so that no config pays for decoding. Prints a markdown table; ``--json``
also writes the figures.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from harness.data.catalog import load_catalog
from harness.data.datasets import data_root, load_dataset
from harness.runs.described import Submissions, Variant
from harness.runs.sweep import read_sweep


def flags(config: str) -> list[str]:
    executor, _, options = config.partition(":")
    pairs = [option.partition("=") for option in options.split(",") if option]
    return ["--executor", executor, *[arg for name, _, value in pairs for arg in (f"--{name}", value)]]


def warm_cache(sweep: Path) -> None:
    catalog, subs = load_catalog(), Submissions()
    for point in read_sweep(sweep).points:
        spec = catalog.get(point.cell.dataset)
        if spec.kind != "synthetic":
            rate = subs.built(point.cell.submission, Variant(point.cell.overrides, resolve=True)).sample_rate
            load_dataset(spec, data_root(), rate)


def outcome(results: Path) -> dict:
    keep = ("metrics", "predictions")
    return {p.relative_to(results).as_posix(): {k: json.loads(p.read_text())[k] for k in keep}
            for p in sorted(results.rglob("fold*.json"))}


def differing(results: dict, reference: dict) -> str:
    """How many test predictions differ from the reference's, of how many."""
    pairs = [(a, b) for path in reference for a, b in zip(results.get(path, {}).get("predictions", []),
                                                         reference[path]["predictions"])]
    return f"{sum(a != b for a, b in pairs)} of {len(pairs)}"


def measure(sweep: Path, device: str, config: str, store: Path) -> dict:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", "from harness.cli import main; main()", "sweep", str(sweep), "--device", device,
                           "--results", str(store), *flags(config)], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise click.ClickException(f"{config}: exit {done.returncode}\n{done.stderr[-2000:]}")
    results = outcome(store)
    accuracy = [r["metrics"]["accuracy"] for r in results.values()]
    return {"config": config, "runs": len(results), "wall_s": round(wall, 1),
            "runs_per_min": round(60 * len(results) / wall, 2), "mean_accuracy": sum(accuracy) / len(accuracy),
            "results": results}


@click.command()
@click.argument("sweep", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--device", default="cpu", show_default=True)
@click.option("--config", "configs", multiple=True, required=True)
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path))
def main(sweep: Path, device: str, configs: tuple[str, ...], json_out: Path | None):
    warm_cache(sweep)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for index, config in enumerate(configs):
            rows.append(measure(sweep, device, config, Path(tmp) / str(index)))
            click.echo(f"{config}: {rows[-1]['runs']} runs in {rows[-1]['wall_s']} s", err=True)
    for row in rows:
        row["predictions_differing"] = differing(row["results"], rows[0]["results"])
    same = all(row["results"] == rows[0]["results"] for row in rows)
    click.echo("| executor | runs | wall s | runs/min | mean accuracy % | predictions unlike the first row's |\n"
               "|---|---|---|---|---|---|")
    for row in rows:
        click.echo(f"| `{' '.join(flags(row['config']))}` | {row['runs']} | {row['wall_s']} | {row['runs_per_min']} "
                   f"| {100 * row['mean_accuracy']:.2f} | {row['predictions_differing']} |")
    click.echo(f"\nmetrics and predictions identical across executors: {'yes' if same else 'NO'}")
    if json_out:
        json_out.write_text(json.dumps({"sweep": str(sweep), "device": device, "identical": same,
                                        "rows": [{k: v for k, v in r.items() if k != "results"} for r in rows]},
                                       indent=2))


if __name__ == "__main__":
    main()
