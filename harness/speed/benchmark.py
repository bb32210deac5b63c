"""``bench speed``: the training engine against a reference pipeline written like the seeds'.

Both train the same model with the same batch size, optimiser and number of steps on the same
WAV files, in one process:
- reference: a ``DataLoader`` decodes every item from its WAV file every epoch (soundfile,
  resampled when needed), and the mel front-end runs per batch, in fp32 with PyTorch's default
  memory layout, as in the seeds' notebooks (none of the four uses mixed precision);
- engine: the clips are decoded once, the front-end runs once over the whole set on the
  device, and batches are drawn by indexing that tensor (``harness.training.loop.train_epochs``),
  at the engine's precision (``--precision``; ``auto`` is bf16 with channels_last on CUDA and
  fp32 on CPU). ``--precision fp32`` isolates the gain of the data path.
Audio is synthetic: throughput depends on the shapes, not on what the clips contain.
"""
from __future__ import annotations

import dataclasses
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from harness.data.audio import fit_length
from harness.frontends.augment import global_stats, normalize_global
from harness.frontends.features import LogMel
from harness.runs.models import build_model
from harness.speed.reference import WavItems, plain_step
from harness.runs.flops import flops_per_sample
from harness.speed.minimal import minimal_loop
from harness.training.device import autocast, place_model, resolve_precision
from harness.training.features import compute_features
from harness.training.loop import TrainContext, train_epochs
from harness.training.submission import Recipe, Submission, get_submission


@dataclass(frozen=True)
class Workload:
    """One benchmark shape: what a run of it trains."""

    name: str
    sample_rate: int
    seconds: float
    submission: Submission
    batch_size: int
    train_clips: int = 1600  # one fold's training set, for the projections
    epochs: int = 80
    grid_runs: int = 25


def _small_cnn() -> Submission:
    return get_submission("small_cnn")


def esc50_resnet18() -> Workload:
    """ESC-50-shaped: 5 s at 44.1 kHz, 224 mels x 716 frames, ResNet-18, batch 64 (seed 000's recipe)."""
    sub = Submission(frontend=LogMel(44100, n_fft=4096, win_length=2205, hop_length=308, n_mels=224, f_max=18000),
                     model="resnet18", recipe=Recipe(batch_size=64, lr=1e-2, mixup=0.1), name="fastaudio-shaped")
    return Workload("esc50-resnet18", 44100, 5.0, sub, 64)


def fsdd_small_cnn() -> Workload:
    """FSDD-shaped: 1 s at 8 kHz, the small CNN submission, its batch size."""
    sub = _small_cnn()
    return Workload("fsdd-small-cnn", 8000, 1.0, sub, sub.recipe.batch_size, train_clips=2400, epochs=5, grid_runs=5)


def write_wavs(folder: Path, count: int, sample_rate: int, seconds: float) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = folder / f"clip{i:04d}.wav"
        sf.write(path, (0.3 * rng.standard_normal(int(sample_rate * seconds))).astype(np.float32), sample_rate,
                 subtype="PCM_16")
        paths.append(path)
    return paths


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak_memory(device: torch.device) -> None:
    """Start a new peak, so each pipeline reports its own: CUDA's allocator counter, or on Linux
    the process's peak resident size (``clear_refs`` 5). Elsewhere the process peak carries over."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_memory(device: torch.device) -> float:
    """Peak GiB since the last reset: allocated device memory on CUDA, resident size on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 2**20
    except (OSError, StopIteration, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _setup(work: Workload, device: torch.device, num_classes: int, input_shape, precision: str | None,
           compiled: bool = False):
    """Model and optimiser; ``precision`` None is the reference's plain fp32 model, untuned."""
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(work.submission, pretrained=False), num_classes, input_shape).to(device)
    if precision is not None:
        model = place_model(model, device, 1 + len(input_shape), precision, compiled)
    return model, torch.optim.AdamW(model.parameters(), lr=work.submission.recipe.lr)


def run_reference(work: Workload, paths: list[Path], labels: np.ndarray, steps: int, device: torch.device) -> float:
    """Seconds for ``steps`` training steps of the per-item pipeline (after one warm-up step)."""
    frontend = work.submission.frontend.to(device)
    items = WavItems(paths, labels, int(work.sample_rate * work.seconds))
    loader = torch.utils.data.DataLoader(items, batch_size=work.batch_size, shuffle=True, drop_last=True,
                                         generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        shape = frontend(items[0][0][None].to(device)).shape[1:]
    model, opt = _setup(work, device, int(labels.max()) + 1, tuple(shape), None)
    gen = torch.Generator().manual_seed(0)
    batches = iter(loader)
    start = None
    for step in range(steps + 1):
        if step == 1:
            _sync(device)
            start = time.perf_counter()
        wave, y = next(batches)
        with torch.no_grad():
            x = frontend(wave.to(device))
            x = (x - x.mean()) / (x.std() + 1e-8)
        plain_step(model, opt, x, y.to(device), work.submission.recipe, int(labels.max()) + 1, gen)
    _sync(device)
    return time.perf_counter() - start


def run_engine(work: Workload, paths: list[Path], labels: np.ndarray, steps: int, device: torch.device,
               precision: str = "fp32", compiled: bool = False) -> dict[str, float]:
    """Seconds of the engine: ``prepare`` (decode once + features once), ``first_step`` (model,
    compile and one step after that), ``train`` (``steps`` further steps), and the model's
    ``flops`` per training sample; ``minimal`` is the minimal loop's ``steps`` on the same features.

    ``precision`` is resolved already: "bf16" or "fp32".
    """
    start = time.perf_counter()
    n = int(work.sample_rate * work.seconds)
    clips = np.stack([fit_length(sf.read(str(p), dtype="float32")[0], n, "pad") for p in paths])
    feats = compute_features(work.submission.frontend, clips, np.arange(len(clips)), device)
    mean, std = global_stats(feats)
    feats = normalize_global(feats, mean, std)
    _sync(device)
    prepare = time.perf_counter() - start
    setup = time.perf_counter()
    model, opt = _setup(work, device, int(labels.max()) + 1, tuple(feats.shape[1:]), precision, compiled)
    sub = work.submission.with_recipe(batch_size=work.batch_size)
    y = torch.from_numpy(labels).to(device)
    ctx = lambda count: TrainContext(submission=sub, model=model, x=feats[:count], y=y[:count], epochs=1,
                                     num_classes=int(labels.max()) + 1, device=device,
                                     generator=torch.Generator().manual_seed(0), precision=precision)
    constant = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    train_epochs(ctx(work.batch_size), model, opt, constant, 1)  # warm-up step
    _sync(device)
    first_step = time.perf_counter() - setup
    start = time.perf_counter()
    train_epochs(ctx(steps * work.batch_size), model, opt, constant, 1)
    _sync(device)
    seconds = {"prepare": prepare, "first_step": first_step, "train": time.perf_counter() - start}
    probe = feats[:work.batch_size].to(device)
    fresh = lambda: build_model(dataclasses.replace(work.submission, pretrained=False), int(labels.max()) + 1,
                                tuple(feats.shape[1:])).to(device)
    with autocast(device, precision):
        seconds["flops"] = flops_per_sample(fresh(), probe)
    seconds["minimal_first_step"], seconds["minimal"] = minimal_loop(
        fresh(), feats, y, work.batch_size, steps, device, precision, compiled)
    return seconds


def measure(work: Workload, steps: int, device: torch.device, precision: str = "auto", compiled: bool = False) -> dict:
    """Both pipelines and the minimal loop on the same files: throughputs, their ratios, FLOPs,
    memory, time to the first step and projected wall times."""
    precision = resolve_precision(precision, device)
    n_items = (steps + 1) * work.batch_size
    labels = np.arange(n_items) % 10
    with tempfile.TemporaryDirectory() as tmp:
        pool = write_wavs(Path(tmp), min(n_items, 256), work.sample_rate, work.seconds)
        paths = [pool[i % len(pool)] for i in range(n_items)]
        _reset_peak_memory(device)
        ref_s = run_reference(work, paths, labels, steps, device)
        ref_mem = _peak_memory(device)
        _reset_peak_memory(device)
        engine = run_engine(work, paths, labels, steps, device, precision, compiled)
        engine_mem = _peak_memory(device)
    samples = steps * work.batch_size
    ref_tput, engine_tput, minimal_tput = samples / ref_s, samples / engine["train"], samples / engine["minimal"]
    run_samples = work.train_clips * work.epochs
    prepare_per_clip = engine["prepare"] / n_items
    engine_run = run_samples / engine_tput + prepare_per_clip * work.train_clips * 1.25  # + features of the test fold
    return {
        "workload": work.name, "device": str(device), "steps": steps, "batch_size": work.batch_size,
        "reference_precision": "fp32", "engine_precision": precision, "compiled": compiled,
        "reference_samples_per_s": ref_tput, "engine_samples_per_s": engine_tput, "ratio": engine_tput / ref_tput,
        "minimal_samples_per_s": minimal_tput, "engine_vs_minimal": engine_tput / minimal_tput,
        "gflop_per_sample": engine["flops"] / 1e9, "engine_tflop_per_s": engine["flops"] * engine_tput / 1e12,
        "reference_peak_gib": ref_mem, "engine_peak_gib": engine_mem, "engine_prepare_s": engine["prepare"],
        "engine_first_step_s": engine["first_step"], "minimal_first_step_s": engine["minimal_first_step"],
        "projected_run_s": {"reference": run_samples / ref_tput, "engine": engine_run},
        "projected_grid_s": {"reference": work.grid_runs * run_samples / ref_tput, "engine": work.grid_runs * engine_run},
        "run": f"{work.epochs} epochs x {work.train_clips} clips", "grid_runs": work.grid_runs,
    }


WORKLOADS = {"esc50-resnet18": esc50_resnet18, "fsdd-small-cnn": fsdd_small_cnn}


def _engine_in_worker(name: str, steps: int, device: str, threads: int, precision: str) -> tuple[float, int]:
    torch.set_num_threads(threads)
    work = WORKLOADS[name]()
    n_items = (steps + 1) * work.batch_size
    with tempfile.TemporaryDirectory() as tmp:
        pool = write_wavs(Path(tmp), min(n_items, 256), work.sample_rate, work.seconds)
        seconds = run_engine(work, [pool[i % len(pool)] for i in range(n_items)], np.arange(n_items) % 10, steps,
                             torch.device(device), precision)["train"]
    return seconds, steps * work.batch_size


def side_by_side(name: str, steps: int, device: torch.device, workers: int, precision: str = "auto") -> dict:
    """Aggregate training throughput of ``workers`` engine runs at once vs one run alone.

    Each run is a worker process on the same device (``bench run --runs-per-gpu``, ``--workers``
    on CPU); on CPU the cores are split between them.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    precision = resolve_precision(precision, device)
    total_threads = torch.get_num_threads()
    results = {}
    for count in (1, workers):
        threads = max(1, total_threads // count) if device.type == "cpu" else 1
        with ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("spawn")) as pool:
            runs = list(pool.map(_engine_in_worker, [name] * count, [steps] * count, [str(device)] * count,
                                 [threads] * count, [precision] * count))
        # runs overlap; the slowest bounds the aggregate
        results[count] = sum(samples for _, samples in runs) / max(seconds for seconds, _ in runs)
    return {"workload": name, "workers": workers, "precision": precision, "one_run_samples_per_s": results[1],
            "aggregate_samples_per_s": results[workers], "gain": results[workers] / results[1]}




def speed_table(rows: list[dict], device_type: str) -> str:
    """The figures of ``measure`` as one markdown table."""
    from tabulate import tabulate

    mem = "peak GPU GiB" if device_type == "cuda" else "peak RSS GiB"
    return tabulate([[r["workload"], r["steps"], r["batch_size"], f"{r['gflop_per_sample']:.2f}",
                      f"{r['reference_samples_per_s']:.1f}", f"{r['engine_samples_per_s']:.1f}",
                      f"{r['minimal_samples_per_s']:.1f}", f"{r['ratio']:.2f}x", f"{r['engine_vs_minimal']:.2f}x",
                      f"{r['engine_tflop_per_s']:.1f}", f"{r['engine_prepare_s']:.1f} + {r['engine_first_step_s']:.1f}",
                      f"{r['reference_peak_gib']:.2f} / {r['engine_peak_gib']:.2f}",
                      f"{r['projected_run_s']['reference']:.0f} / {r['projected_run_s']['engine']:.0f}",
                      f"{r['projected_grid_s']['reference'] / 60:.1f} / {r['projected_grid_s']['engine'] / 60:.1f}"]
                     for r in rows],
                    ["workload", "steps", "batch", "GFLOP/sample", "reference samples/s", "engine samples/s",
                     "minimal loop samples/s", "engine/reference", "engine/minimal", "engine TFLOP/s",
                     "time to first step s (features + first step)", f"{mem} (ref / engine)",
                     "one run s (ref / engine)", "grid min (ref / engine)"], tablefmt="github")
