"""The red team: hostile submissions, each a participant's file run through `bench run` and
`bench check`. Each attempt must fail with a line naming the rule that stopped it, and leave every
other stored result and every lock byte-identical; the driver must survive all of them.

``BENCH_REDTEAM_TABLE=FILE`` also writes each attempt's outcome there (the README's table).
"""
import hashlib
import json
import os
import re
import socket
import textwrap
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli.commands import main
from harness.core.paths import PROJECT_ROOT

pytestmark = pytest.mark.slow

HEADER = '''
import ctypes, gc, os, signal, socket, subprocess, sys, time
import numpy as np
import torch
from torch import nn
from harness import LogMel, Recipe, Submission, register_submission
from harness.training.loop import fit_default


class Model(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.fc = nn.Linear(1, num_classes)

    def forward(self, x):
        return self.fc(x.mean((1, 2, 3))[:, None])
'''

FOOTER = '''

@register_submission
def {name}():
    """A hostile submission of the red-team suite: {what}."""
    return Submission(frontend=LogMel(8000, n_mels=16), model=Model, recipe=Recipe(batch_size=8), fit=attack)
'''

# name -> (what it tries, the code of its fit before training normally, module-level code)
ATTACKS = {
    "steal_labels": ("walk the stack and the heap for the test labels", '''
        frame = sys._getframe()
        while frame is not None:
            if any(hasattr(value, "folds") and hasattr(value, "y") for value in frame.f_locals.values()):
                raise RuntimeError("red team: found the dataset's labels on the stack")
            frame = frame.f_back
        if any(type(o).__name__ in ("Dataset", "Split") for o in gc.get_objects()):
            raise RuntimeError("red team: found the dataset's labels on the heap")
        raise RuntimeError("red team: no test labels anywhere in this process")
    ''', ""),
    "rewrite_results": ("re-seal another entry's results in the store", '''
        for root, _, files in os.walk("__RESULTS__"):
            for name in files:
                open(os.path.join(root, name), "a").write(" ")
        os.listdir("__RESULTS__")
    ''', ""),
    "forge_result": ("write a result file for a run that never happened", '''
        os.makedirs("__RESULTS__/synthetic/forged/e7/scratch-fp32", exist_ok=True)
        open("__RESULTS__/synthetic/forged/e7/scratch-fp32/fold1-trial1.json", "w").write("{}")
    ''', ""),
    "read_results": ("read another entry's stored result", '''
        open("__VICTIM__").read()
    ''', ""),
    "read_data_root": ("read the data root's files directly", '''
        open("__SECRET__").read()
    ''', ""),
    "import_data": ("load the labels with harness.data", '''
        from harness.data.catalog import load_catalog
        from harness.data.datasets import load_dataset
        load_dataset(load_catalog().get("synthetic"), "__DATA__")
    ''', ""),
    "edit_locks": ("zero a rival's lock", '''
        open("__LOCK__", "a").write(" ")
    ''', ""),
    "patch_harness": ("patch the harness's code for later runs", '''
        open("__HARNESS__", "a").write("# patched")
    ''', ""),
    "driver_proc": ("read the driver's /proc", '''
        open("/proc/__PID__/environ", "rb").read()
    ''', ""),
    "signal_driver": ("kill the driver", '''
        os.kill(__PID__, signal.SIGKILL)
    ''', ""),
    "ptrace_driver": ("ptrace the driver", '''
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syscall(101, 16, __PID__, 0, 0) != 0:  # PTRACE_ATTACH
            raise PermissionError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    ''', ""),
    "network": ("send the training labels to a listener on 127.0.0.1", '''
        with socket.create_connection(("127.0.0.1", __PORT__), timeout=3) as s:
            s.sendall(ctx.y.numpy().tobytes())
    ''', ""),
    "unix_socket": ("connect to a named Unix socket of the machine", '''
        s = socket.socket(socket.AF_UNIX)
        s.connect("__UNIX__")
    ''', ""),
    "environ": ("read the driver's tokens from the environment the process began with", '''
        began = open("/proc/self/environ", "rb").read()
        if b"red-team-token" in began or b"environ-results" in began:
            raise RuntimeError("red team: found the driver's token in /proc/self/environ")
        raise RuntimeError("red team: no token or path of the driver's in the environment this process began with")
    ''', ""),
    "sleep": ("hang the sweep", '''
        time.sleep(3600)
    ''', ""),
    "exit": ("end the driver's process", '''
        os._exit(3)
    ''', ""),
    "children": ("leave processes behind", '''
        subprocess.Popen(["sleep", "400"])
        time.sleep(3600)
    ''', ""),
    "memory": ("take the machine's memory", '''
        hog = bytearray(8 * 2**30)
    ''', ""),
    "stash": ("keep what one run learnt for a later run", '''
        stash = os.path.join(os.environ["HOME"], "..", "red-team-stash")
        for place in (os.environ["HOME"], os.environ.get("TORCHINDUCTOR_CACHE_DIR", "")):
            if place and os.path.exists(os.path.join(place, "red-team-stash.npy")):
                raise RuntimeError("red team: a stash from an earlier run survived")
            if place:
                os.makedirs(place, exist_ok=True)
                np.save(os.path.join(place, "red-team-stash.npy"), ctx.y.numpy())
    ''', ""),
    "order": ("label the test clips by their position (clips are listed by name, names begin with the class)", '''
        import harness.runs.worker_tasks as tasks
        counts = np.bincount(ctx.y.cpu().numpy(), minlength=ctx.num_classes)
        bounds = np.cumsum(counts / counts.sum())

        def by_position(model, x, device, precision="fp32", batch_size=256):
            n = len(x)
            classes = np.minimum(np.searchsorted(bounds * n, np.arange(n) + 0.5), ctx.num_classes - 1)
            return torch.nn.functional.one_hot(torch.as_tensor(classes), ctx.num_classes).float()
        tasks.predict = by_position
    ''', ""),
    "checkpoint_file": ("have the driver read a file it names as its weights", "", ""),
    "checkpoint_zero": ("hang the driver hashing /dev/zero as its weights", "", ""),
    "inherited_fds": ("reach the unconfined resource tracker and fork server through inherited pipes", '''
        import stat
        written = []
        for fd in range(3, 256):  # the resource tracker's and the fork server's pipes, if they were passed on
            try:
                if stat.S_ISFIFO(os.fstat(fd).st_mode):
                    os.write(fd, b"REGISTER:/__SHM__:shared_memory\\n")
                    written.append(fd)
            except OSError:
                pass
        print("\\x1b[2J FAKE: accuracy 1.0000", flush=True)
        raise RuntimeError(f"red team: wrote to descriptors {written}" if written else "red team: no descriptor to write")
    ''', ""),
    "huge_features": ("make the driver compute 190 GB of features", "", ""),
    "slow_features": ("make the driver compute features past the time limit", "", ""),
    "huge_rate": ("make the driver decode every clip at a terahertz", "", '''
_frontend = LogMel(8000, n_mels=16)
_frontend.sample_rate = 10**12  # set after the front-end checked its arguments
'''),
    "deep_json": ("crash the driver with an answer nested past its stack", "", '''
from multiprocessing.connection import Connection
for _object in gc.get_objects():
    if isinstance(_object, Connection) and not _object.closed:
        _object.send_bytes(b'{"event": "described", "x": ' + b"[" * 100000 + b"]" * 100000 + b"}")
'''),
    "top_level": ("run code when the board or the list is made", "", '''
open("__MARKER__", "w").write("ran")
'''),
    "name_escape": ("register under a name that climbs out of the store", "", '''
def _climb(factory):
    factory.__name__ = "../synthetic/small_cnn"
    return factory
'''),
}


def source(name: str, values: dict[str, str]) -> str:
    what, body, top = ATTACKS[name]
    fit = "def attack(ctx):\n" + textwrap.indent(textwrap.dedent(body).strip() or "pass", "    ") + \
          "\n    return fit_default(ctx)\n"
    footer = FOOTER.format(name=f"attack_{name}", what=what)
    if name == "name_escape":
        footer = footer.replace("@register_submission\n", "@register_submission\n@_climb\n")
    footer = footer.replace("recipe=Recipe(batch_size=8), fit=attack", {
        "checkpoint_file": "recipe=Recipe(batch_size=8), pretrained='__SECRET__'",
        "checkpoint_zero": "recipe=Recipe(batch_size=8), pretrained='/dev/zero'",
        "huge_features": "recipe=Recipe(batch_size=8)", "slow_features": "recipe=Recipe(batch_size=8)",
    }.get(name, "recipe=Recipe(batch_size=8), fit=attack"))
    footer = footer.replace("frontend=LogMel(8000, n_mels=16)", {
        "huge_features": "frontend=LogMel(8000, n_fft=512, hop_length=1, n_mels=2000)",
        "slow_features": "frontend=LogMel(8000, n_fft=8192, hop_length=64, n_mels=4096)",
        "huge_rate": "frontend=_frontend",
    }.get(name, "frontend=LogMel(8000, n_mels=16)"))
    text = HEADER + top + "\n\n" + fit + footer
    for key, value in values.items():
        text = text.replace(f"__{key}__", str(value))
    return text


def fingerprint(*folders: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for folder in folders for p in sorted(folder.rglob("*"))
            if p.is_file()}


def live_sleepers() -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x00400\x00":
                found.append(int(pid))
        except OSError:
            continue
    return found


class Listener:
    """A TCP and a Unix listener that record whatever reaches them."""

    def __init__(self, folder: Path):
        self.received: list[bytes] = []
        self.tcp = socket.create_server(("127.0.0.1", 0))
        self.unix_path = str(folder / "listener.sock")
        self.unix = socket.socket(socket.AF_UNIX)
        self.unix.bind(self.unix_path)
        self.unix.listen()
        for server in (self.tcp, self.unix):
            server.settimeout(0.5)
            threading.Thread(target=self._serve, args=(server,), daemon=True).start()

    def _serve(self, server):
        while True:
            try:
                conn, _ = server.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.received.append(conn.recv(1 << 20) or b"(connected)")

    def close(self):
        self.tcp.close()
        self.unix.close()


@pytest.fixture(scope="module")
def arena(tmp_path_factory):
    """A store with an honest entry's result, a data root with a file, the attack files, listeners."""
    root = tmp_path_factory.mktemp("arena")
    results, data = root / "results", root / "data"
    out = CliRunner().invoke(main, ["--results", str(results), "--data-root", str(data), "run", "-s", "small_cnn",
                                    "--folds", "1", "--epochs", "1", "--device", "cpu"])
    assert out.exit_code == 0, out.output
    data.mkdir(exist_ok=True)
    (data / "secret.txt").write_text("labels")
    listener = Listener(root)
    victim = next(results.rglob("fold1-trial1.json"))
    values = {"RESULTS": results, "DATA": data, "SECRET": data / "secret.txt", "VICTIM": victim, "PID": os.getpid(),
              "PORT": listener.tcp.getsockname()[1], "UNIX": listener.unix_path, "MARKER": root / "marker",
              "SHM": f"red-team-{os.getpid()}",
              "LOCK": PROJECT_ROOT / "locks" / "small_cnn.json", "HARNESS": PROJECT_ROOT / "harness" / "core" / "seeds.py"}
    folder = root / "attacks"
    folder.mkdir()
    for name in ATTACKS:
        (folder / f"attack_{name}.py").write_text(source(name, values))
    before = fingerprint(results, PROJECT_ROOT / "locks", PROJECT_ROOT / "harness")
    yield {"root": root, "results": results, "folder": folder, "listener": listener, "marker": root / "marker"}
    listener.close()
    assert fingerprint(results, PROJECT_ROOT / "locks", PROJECT_ROOT / "harness") == {
        k: v for k, v in before.items()}, "an attack changed a stored result, a lock or the harness"


OUTCOMES: dict[str, str] = {}


def bench(arena, *args, limits=("--time-limit", "60")) -> tuple[int, str]:
    command = ["--submissions", str(arena["folder"]), *args]
    if args[0] in ("run", "check"):
        command += list(limits)
    out = CliRunner().invoke(main, command)
    return out.exit_code, out.output


def run_attack(arena, name: str, *limits: str, folds: str = "1") -> str:
    code, output = bench(arena, "run", "-s", f"attack_{name}", "--folds", folds, "--epochs", "1", "--device", "cpu",
                         limits=limits or ("--time-limit", "60"))
    assert code == 1 and "FAILED" in output, output
    OUTCOMES[name] = next(line for line in output.splitlines() if "FAILED" in line).split("FAILED", 1)[1].strip()
    return output


REFUSED = "refused by the sandbox: a submission may read only Python, the harness and its own file"


@pytest.mark.parametrize("name, says", [
    ("steal_labels", "no test labels anywhere in this process"),
    ("rewrite_results", "Permission denied"), ("forge_result", "Permission denied"),
    ("read_results", "Permission denied"), ("read_data_root", "Permission denied"),
    ("import_data", "Permission denied"), ("edit_locks", "Permission denied"), ("patch_harness", "Permission denied"),
    ("driver_proc", "Permission denied"), ("signal_driver", "ProcessLookupError"),
    ("ptrace_driver", "Operation not permitted"), ("network", "Operation not permitted"),
    ("unix_socket", "Operation not permitted"),
])
def test_an_attack_on_labels_results_or_the_machine_is_refused_and_named(arena, name, says):
    output = run_attack(arena, name)
    assert says in OUTCOMES[name], output
    if name != "steal_labels":
        assert REFUSED in OUTCOMES[name], output
    assert not arena["listener"].received, "something reached the listener"


def test_a_sleeping_submission_is_killed_at_its_limit_and_the_sweep_goes_on(arena):
    start = time.monotonic()
    output = run_attack(arena, "sleep", "--time-limit", "6", folds="1,2")
    assert output.count("FAILED") >= 2 and "over the time limit" in OUTCOMES["sleep"], output
    assert time.monotonic() - start < 60


def test_a_submission_that_exits_ends_its_run_not_the_driver(arena):
    run_attack(arena, "exit")
    assert "exit code 3" in OUTCOMES["exit"] and "nothing it did can end the run's driver" in OUTCOMES["exit"]


def test_processes_a_submission_starts_die_with_it(arena):
    before = set(live_sleepers())
    run_attack(arena, "children", "--time-limit", "8")
    deadline = time.monotonic() + 10  # SIGKILL is delivered at once; a loaded machine may take a moment to reap
    while set(live_sleepers()) - before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not set(live_sleepers()) - before, "a child of the submission outlived it"
    OUTCOMES["children"] += "; no child left"


def test_a_submission_over_its_memory_limit_fails_naming_the_limit(arena):
    run_attack(arena, "memory", "--memory-limit", "6")
    assert "MemoryError" in OUTCOMES["memory"] and "limit of 6.0 GiB" in OUTCOMES["memory"]


def test_nothing_a_run_writes_reaches_a_later_run(arena):
    code, output = bench(arena, "run", "-s", "attack_stash", "--folds", "1,2", "--epochs", "1", "--device", "cpu")
    assert code == 0 and "survived" not in output, output
    OUTCOMES["stash"] = "both runs finished; no run found an earlier run's stash"


def test_top_level_code_never_runs_outside_the_sandbox(arena):
    for command in (["list"], ["leaderboard", "--output", str(arena["root"] / "board.md")]):
        code, output = bench(arena, *command)
        assert code == 0, output
        assert not arena["marker"].exists(), f"`bench {command[0]}` ran a submission's top-level code unconfined"
    assert "attack_top_level" in output or "attack_top_level" in bench(arena, "list")[1]
    OUTCOMES["top_level"] = "`bench list` and `bench leaderboard` ran it only in the sandbox, where its write failed"


def test_a_name_that_climbs_out_of_the_store_is_refused(arena):
    code, output = bench(arena, "check", str(arena["folder"] / "attack_name_escape.py"))
    assert code == 1 and "'../synthetic/small_cnn'" in output and "is not an identifier" in output, output
    OUTCOMES["name_escape"] = next(line for line in output.splitlines() if "identifier" in line).strip()


@pytest.mark.parametrize("name", ["steal_labels", "read_results", "network", "exit"])
def test_bench_check_fails_an_attack_like_bench_run(arena, name):
    code, output = bench(arena, "check", str(arena["folder"] / f"attack_{name}.py"))
    assert code == 1 and "FAILED" in output and "runs:" in output, output


def test_the_test_clips_arrive_in_an_order_the_submission_cannot_know(arena):
    """Synthetic clips are listed class by class: labelling by position alone scored 100 %."""
    code, output = bench(arena, "run", "-s", "attack_order", "--folds", "1,2", "--epochs", "1", "--device", "cpu")
    assert code == 0, output
    accuracy = float(output.rsplit("accuracy ", 1)[1].split()[0])
    assert accuracy < 60, output  # chance on 6 classes is 17 %; by position with the clips in order: 100 %
    OUTCOMES["order"] = f"accuracy {accuracy:.2f} % over 2 runs (by position, with the clips in order: 100 %)"


@pytest.mark.parametrize("name", ["checkpoint_file", "checkpoint_zero"])
def test_a_submission_cannot_have_the_driver_read_a_file(arena, name):
    start = time.monotonic()
    code, output = bench(arena, "run", "-s", f"attack_{name}", "--folds", "1", "--epochs", "1", "--device", "cpu")
    assert code == 1 and "names a local checkpoint file" in output and "labels" not in output, output
    assert time.monotonic() - start < 60
    OUTCOMES[name] = next(line for line in output.splitlines() if "checkpoint" in line).strip()


def test_inherited_descriptors_are_closed_and_prints_never_reach_the_driver(arena):
    shm = Path("/dev/shm") / f"red-team-{os.getpid()}"
    shm.write_text("precious")
    try:
        output = run_attack(arena, "inherited_fds")
        assert "no descriptor to write" in OUTCOMES["inherited_fds"] and "FAKE" not in output, output
        from multiprocessing import resource_tracker
        resource_tracker._resource_tracker._stop() if hasattr(resource_tracker._resource_tracker, "_stop") else None
        assert shm.read_text() == "precious"
    finally:
        shm.unlink(missing_ok=True)


def test_features_a_front_end_asks_for_are_bounded_in_size_and_time(arena):
    run_attack(arena, "huge_features", "--memory-limit", "8")
    assert "GiB of features" in OUTCOMES["huge_features"] and "half its --memory-limit" in OUTCOMES["huge_features"]
    start = time.monotonic()
    run_attack(arena, "slow_features", "--time-limit", "5")
    assert "past what is left of the run's time limit" in OUTCOMES["slow_features"] and time.monotonic() - start < 30


def test_a_sample_rate_the_driver_would_decode_at_is_bounded(arena):
    code, output = bench(arena, "run", "-s", "attack_huge_rate", "--folds", "1", "--epochs", "1", "--device", "cpu")
    assert code == 1 and "sample rate as 1000000000000: an integer from 1,000 to 384,000 Hz" in output, output
    OUTCOMES["huge_rate"] = output.strip().splitlines()[-1]  # refused when planned: nothing is decoded


def test_an_answer_nested_past_the_drivers_stack_is_refused_not_fatal(arena):
    code, output = bench(arena, "list")
    assert code == 0 and "small_cnn" in output and "attack_deep_json" in output, output
    code, output = bench(arena, "run", "-s", "attack_deep_json", "--folds", "1", "--epochs", "1", "--device", "cpu")
    assert code == 1 and "not a message of the harness's protocol" in output, output
    OUTCOMES["deep_json"] = next(line for line in output.splitlines() if "protocol" in line).strip()


# --- attacks on the store itself, by hand (no submission involved) -------------------------------

def _resealed(path: Path, change) -> None:
    from harness.runs.records import seal

    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(seal({k: v for k, v in record.items() if k != "checksum"})))


def test_an_accuracy_edited_and_resealed_by_hand_is_damaged_on_the_board_and_in_doctor(tmp_path):
    results = tmp_path / "results"
    out = CliRunner().invoke(main, ["run", "-s", "small_cnn", "--folds", "1", "--epochs", "1", "--device", "cpu"])
    assert out.exit_code == 0, out.output
    path = next(results.rglob("fold1-trial1.json"))
    _resealed(path, lambda r: r["metrics"].update(accuracy=0.10))
    board = tmp_path / "board.md"
    assert CliRunner().invoke(main, ["leaderboard", "--output", str(board)]).exit_code == 0
    text = board.read_text()
    assert "damaged: its accuracy 0.1 does not follow from its predictions" in text and "[small_cnn]" not in text
    doctor = CliRunner().invoke(main, ["doctor"]).output
    assert "1 damaged result file(s)" in doctor and "does not follow from its predictions" in doctor
    OUTCOMES["resealed"] = "damaged: its accuracy 0.1 does not follow from its predictions (board and doctor)"


def test_a_result_forged_consistently_is_exposed_by_re_running_it(tmp_path):
    """A forger with the labels can write predictions and metrics that agree: only a re-run (CI's
    `bench verify --result` of every result file a pull request adds) exposes it."""
    from harness.data.catalog import load_catalog
    from harness.data.datasets import answer_key
    from harness.training.metrics import classification_metrics

    out = CliRunner().invoke(main, ["run", "-s", "small_cnn", "--folds", "1", "--epochs", "1", "--device", "cpu"])
    assert out.exit_code == 0, out.output
    path = next((tmp_path / "results").rglob("fold1-trial1.json"))
    key = answer_key(load_catalog().get("synthetic"))
    truth = key.labels[key.folds == 1].tolist()
    _resealed(path, lambda r: r.update(predictions=truth, metrics=classification_metrics(truth, truth, 6)))
    board = tmp_path / "board.md"
    assert CliRunner().invoke(main, ["leaderboard", "--output", str(board)]).exit_code == 0
    assert "100.00 (1 run)" in board.read_text()  # consistent, so ranked: the board cannot tell
    out = CliRunner().invoke(main, ["verify", "--result", str(path)])
    assert out.exit_code == 1 and "OUTSIDE the cpu tolerance 0.0" in out.output, out.output
    OUTCOMES["forged"] = "ranked until re-run: `bench verify --result` (CI, for every added result file) fails it"


def test_the_drivers_environment_never_reaches_a_worker(arena):
    """Every worker is a fork of the fork server, and a process can read the environment it began
    with: the fork server must begin with the workers' environment, not the driver's (a fresh
    driver process here, so that its fork server starts under the token)."""
    import subprocess
    import sys

    results = arena["root"] / "environ-results"
    command = ["--submissions", str(arena["folder"]), "--results", str(results), "run", "-s",
               "attack_environ", "--folds", "1", "--epochs", "1", "--device", "cpu"]
    out = subprocess.run([sys.executable, "-c", "from harness.cli.commands import main; main()", *command],
                         capture_output=True, text=True, timeout=600,
                         env={**os.environ, "HF_TOKEN": "red-team-token", "BENCH_RESULTS": str(results)})
    assert out.returncode == 1 and "no token or path of the driver's" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]
    OUTCOMES["environ"] = next(line for line in out.stdout.splitlines() if "FAILED" in line).split("FAILED", 1)[1].strip()


def _plain(outcome: str, arena) -> str:
    """An outcome as the README shows it: paths of this machine and process ids left out."""
    outcome = outcome.replace(f"{arena['folder']}/", "").replace(f"{arena['root']}/", "")
    outcome = re.sub(r"\(refused by the sandbox: [^)]*\)", "(refused by the sandbox)", outcome.replace(f"{PROJECT_ROOT}/", ""))
    return re.sub(r"/proc/\d+/", "/proc/DRIVER/", outcome)


def test_the_outcomes_table(arena):
    """Runs last, after the whole module: every attempt has an outcome, written for the README."""
    target = os.environ.get("BENCH_REDTEAM_TABLE")
    if not target:
        pytest.skip("set BENCH_REDTEAM_TABLE=FILE and run the whole module to write the outcomes table")
    what = {**{name: ATTACKS[name][0] for name in ATTACKS}, "resealed": "edit a stored accuracy and re-seal it",
            "forged": "forge a result whose predictions and metrics agree"}
    assert set(what) == set(OUTCOMES), f"attempts without an outcome: {sorted(set(what) - set(OUTCOMES))}"
    rows = [f"| `{name}`: {what[name]} | {_plain(OUTCOMES[name], arena)} |" for name in what]
    Path(target).write_text("| attempt | outcome |\n|---|---|\n" + "\n".join(rows) + "\n")


def test_the_driver_never_imports_a_submission_file(tmp_path):
    """`bench list`, `run` and `leaderboard` in one driver process: afterwards no submission module
    is in it (names and docstrings come from the files' syntax, the rest from workers)."""
    import subprocess
    import sys

    code = ("import sys\nfrom harness.cli.commands import main\n"
            "for args in (['list'], ['run', '-s', 'small_cnn', '--folds', '1', '--epochs', '1', '--device', 'cpu'],"
            " ['leaderboard', '--output', sys.argv[1]]):\n"
            "    try:\n        main(args)\n    except SystemExit as done:\n        assert not done.code, args\n"
            "print('IMPORTED', sorted(m for m in sys.modules if m.startswith('submissions')))\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "board.md")], capture_output=True, text=True,
                         timeout=600, env={**os.environ, "BENCH_RESULTS": str(tmp_path / "results")})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "IMPORTED []" in out.stdout, out.stdout[-2000:]
