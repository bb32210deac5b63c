"""Generated from the submission registry: every submission, including ones added later, is tested."""
import json
import math

import pytest

from harness.data.catalog import load_catalog, parse_spec
from harness.data.fetch import fetch
from harness.frontends.render import render_images
from harness.runs.run import Run
from harness.runs.contract import documented
from harness.training.submission import Published, get_submission, load_submissions
from harness.data.datasets import load_dataset

from conftest import run_named, submissions

NAMES = list(load_submissions())


@pytest.mark.parametrize("name", NAMES)
def test_submission_declares_itself(name):
    sub = get_submission(name)
    assert documented(sub).ok, documented(sub).message  # the contract bench check applies
    params = json.loads(json.dumps(sub.params()))  # every hyperparameter reads back as plain data
    assert params["recipe"]["epochs"] > 0 and params["frontend"]["name"]
    for dataset, entries in sub.published.items():  # each entry was checked as a Published when made
        assert entries and all(isinstance(p, Published) for p in entries)
        assert dataset in load_catalog(), f"{name}: published for an undeclared dataset {dataset!r}"


@pytest.fixture(scope="module")
def image_dataset(tmp_path_factory):
    """The synthetic audio rendered as class folders of PNGs and imported as an image dataset."""
    root = tmp_path_factory.mktemp("images")
    render_images(load_dataset(load_catalog().get("synthetic")), root / "png", size=64)
    spec = parse_spec("synthetic_images", {"version": "1", "kind": "image", "num_classes": 6, "image_size": [64, 64],
                                           "metadata": {"format": "folders"}, "folds": {"protocol": "stratified", "k": 5}})
    fetch(spec, root / "data", from_path=root / "png")
    return spec, root / "data"


@pytest.mark.slow
def test_image_submission_runs_on_an_imported_image_dataset(image_dataset):
    """The image path end to end: PNG folders imported, decoded, trained on, evaluated."""
    spec, root = image_dataset
    record = run_named(Run("specaug_cnn_image", spec.name, 1, 1, 1), spec, data_root=root)
    assert record.n_test == 24
    assert record.curves and all(math.isfinite(row["train_loss"]) for row in record.curves)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_submission_passes_checks_contract_and_runs(name):
    """bench check's steps for every registered submission: builds, shapes, batch = items, finite
    loss, readable hyperparameters, and an end-to-end run on the synthetic data (CPU). Its
    determinism step (a second run) is left to the submission's committed lock, which `bench verify
    --all` re-runs in a fresh process (`.ci/run`, the workflow), a stronger test of the same thing;
    `test_check_takes_a_submission_file_as_ci_does_for_a_pull_request` runs the whole check."""
    from harness.runs.check import check_submission

    findings = check_submission(name, submissions(), runs=1)
    failures = [f"{f.step}: {f.message}" for f in findings if not f.ok]
    assert not failures and findings[-1].step == "runs", failures


def test_check_takes_a_submission_file_as_ci_does_for_a_pull_request():
    from click.testing import CliRunner

    from harness.core.paths import PROJECT_ROOT
    from harness.cli.commands import main

    out = CliRunner().invoke(main, ["check", str(PROJECT_ROOT / "submissions" / "small_cnn.py")])
    assert out.exit_code == 0 and out.output.startswith("small_cnn: OK"), out.output
    out = CliRunner().invoke(main, ["check", str(PROJECT_ROOT / "harness" / "cli" / "commands.py")])
    assert out.exit_code == 2 and "harness/cli/commands.py registers no submission" in out.output


def test_the_github_workflow_runs_the_readmes_test_command_the_locks_and_bench_check():
    from harness.core.paths import PROJECT_ROOT

    workflow = (PROJECT_ROOT / ".github" / "workflows" / "ci.yml").read_text()
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert "make test" in readme and "run: make test" in workflow
    assert "bench verify --all" in workflow and 'bench check "$file"' in workflow
    assert 'bench verify --result "$file"' in workflow  # every result file a pull request adds or changes


@pytest.mark.parametrize("name", ["fastaudio_resnet18", "fastaudio_resnet34", "fastaudio_densenet161"])
def test_seed_000_log_mels_have_no_db_floor_as_fastaudio_had(name):
    """The report's ``train.py`` builds fastaudio's ``AudioToSpec`` (``AmplitudeToDB(top_db=None)``):
    a quiet bin keeps its level instead of being lifted to 80 dB below the clip's maximum."""
    import torch

    frontend = get_submission(name).frontend
    assert frontend.top_db is None
    t = torch.arange(44100) / 44100
    clip = torch.cat([torch.sin(2 * torch.pi * 440 * t), 1e-6 * torch.sin(2 * torch.pi * 440 * t)])[None]
    db = frontend(clip)
    assert db.max() - db.min() > 100  # an 80 dB floor would cap the range at 80
