"""``--log wandb``: each finished run of a sweep is logged to Weights & Biases, offline here; the
files it writes are read back record by record and checked against the stored results."""
import json
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli.commands import main
from harness.training.metrics import METRICS

SWEEP = """method: grid
parameters:
  submission: {value: small_cnn}
  dataset: {value: synthetic}
  epochs: {value: 2}
  mixup: {values: [0.0, 0.2]}
  fold: {value: 1}
"""


def wandb_records(path: Path) -> list:
    """The protobuf records of a ``.wandb`` file (LevelDB log framing: 32 KiB blocks, 7-byte headers)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, chunk, records = path.read_bytes(), 7, b"", []  # 7: the file's own header, ":W&B" + magic + version
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:
            break
        chunk, pos = chunk + data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4):  # FULL or LAST: a whole record
            record = pb.Record()
            record.ParseFromString(chunk)
            records.append(record)
            chunk = b""
    return records


def logged_run(path: Path) -> dict:
    """A W&B run file as config, history rows and final summary (JSON values decoded)."""
    config, history, summary, group, records = {}, [], {}, None, wandb_records(path)
    kinds = [record.WhichOneof("record_type") for record in records]
    assert {"run", "exit"} <= set(kinds), f"{path} is incomplete ({path.stat().st_size} bytes): {kinds}"
    for record in records:
        kind = record.WhichOneof("record_type")
        if kind == "run":
            group = record.run.run_group
            config.update({item.key: json.loads(item.value_json) for item in record.run.config.update})
        elif kind == "config":
            config.update({item.key: json.loads(item.value_json) for item in record.config.update})
        elif kind == "history":
            history.append({"/".join(item.nested_key) or item.key: json.loads(item.value_json)
                            for item in record.history.item})
        elif kind == "summary":
            summary.update({"/".join(item.nested_key) or item.key: json.loads(item.value_json)
                            for item in record.summary.update})
    return {"config": config, "history": history, "summary": summary, "group": group}


def child_processes() -> list[str]:
    """Names of this process's children (Linux)."""
    names = []
    for pid in (pid for f in Path("/proc/self/task").glob("*/children") for pid in f.read_text().split()):
        try:
            names.append(Path(f"/proc/{pid}/comm").read_text().strip())
        except FileNotFoundError:  # it exited meanwhile
            pass
    return names


def test_a_sweep_logged_to_wandb_offline_has_each_runs_config_curves_and_metrics(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="--log wandb needs pip install -e '.[wandb]' (make install does)")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "tracked.yaml").write_text(SWEEP)
    out = CliRunner().invoke(main, ["sweep", str(tmp_path / "tracked.yaml"), "--device", "cpu", "--log", "wandb"])
    assert out.exit_code == 0, out.output
    # wandb's service has written and closed every run file (finish() alone leaves that for later)
    assert "wandb-core" not in child_processes()

    records = [json.loads(p.read_text()) for p in (tmp_path / "results").rglob("fold*.json")]
    stored = {dict(r["run"].get("overrides", [])).get("recipe.mixup", 0.0): r for r in records}  # 0.0: its own value
    logged = [logged_run(path) for path in sorted(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))]
    assert len(logged) == len(stored) == 2
    for run in logged:
        record = stored[run["config"]["overrides"].get("recipe.mixup", 0.0)]
        assert run["group"] == "tracked"
        assert {k: run["config"][k] for k in ("submission", "dataset", "fold", "trial", "seed", "config_hash")} == \
            {"submission": "small_cnn", "dataset": "synthetic", "fold": 1, "trial": 1, "seed": 1001,
             "config_hash": record["config_hash"]}
        assert run["config"]["params"]["frontend"]["n_mels"] == record["config"]["params"]["frontend"]["n_mels"]
        assert run["config"]["hardware"] == record["hardware"]
        losses = [row["train_loss"] for row in run["history"] if "train_loss" in row]
        assert losses == pytest.approx([row["train_loss"] for row in record["curves"]])
        for name in METRICS:  # every registered metric, as the run stored it
            assert run["summary"][name] == pytest.approx(record["metrics"][name])


def test_without_wandb_installed_the_option_says_what_to_install(monkeypatch):
    import builtins

    real = builtins.__import__
    monkeypatch.setattr(builtins, "__import__",
                        lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name)) if name == "wandb" else real(name, *a, **k))
    out = CliRunner().invoke(main, ["run", "-s", "small_cnn", "--folds", "1", "--epochs", "1", "--log", "wandb"])
    assert out.exit_code == 1 and "pip install -e '.[wandb]'" in out.output
