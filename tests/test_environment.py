"""The installed environment is the lock's, the lock satisfies pyproject.toml, and `make install`
installs the lock alone: a range in pyproject.toml does not choose a version."""
import re
import tomllib

import pytest
from packaging.requirements import Requirement

from harness.core.paths import PROJECT_ROOT
from harness.runs import environment as env

LOCK = PROJECT_ROOT / "requirements.lock"


def test_the_installed_packages_are_the_locks():
    drifted = env.drift()
    assert not drifted, "installed packages differ from requirements.lock (run `make install`): " + \
        "; ".join(map(str, drifted))


def test_a_wrong_torchaudio_is_named_with_both_versions(tmp_path):
    locked = env.locked_versions()
    wrong = "2.11.1" if locked["torchaudio"] != "2.11.1" else "2.11.0"
    lock = tmp_path / "requirements.lock"
    lock.write_text(re.sub(r"^torchaudio==\S+", f"torchaudio=={wrong}", LOCK.read_text(), flags=re.M))
    installed = env.installed_version("torchaudio")
    assert [str(d) for d in env.drift(lock)] == [f"torchaudio: {installed} installed, {wrong} locked"]


def test_a_package_missing_from_the_lock_or_the_machine_is_drift(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text("numpy==1.0.0 \\\n    --hash=sha256:00\n")
    found = {d.package: d for d in env.drift(lock, ("numpy", "no-such-package-here"))}
    assert found["numpy"].locked == "1.0.0" and found["numpy"].installed == env.installed_version("numpy")
    assert str(found["no-such-package-here"]) == "no-such-package-here: not installed, not in the lock"


@pytest.mark.parametrize("installed, locked, same", [
    ("2.11.0+cu130", "2.11.0", True), ("2.11.0+cpu", "2.11.0", True), ("2.11.1", "2.11.0", False),
    (None, "2.11.0", False)])
def test_a_build_tag_is_the_same_release(installed, locked, same):
    assert env.same_release(installed, locked) is same


def test_a_record_made_with_another_torch_is_named():
    locked = env.locked_versions()
    versions = {"torch": "2.99.0", "torchaudio": locked["torchaudio"], "python": "3.11.7"}
    assert [(d.package, d.installed, d.locked) for d in env.record_drift(versions)] == \
        [("torch", "2.99.0", locked["torch"])]


def _dependencies() -> list[Requirement]:
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    extras = [r for reqs in project["optional-dependencies"].values() for r in reqs]
    return [Requirement(r) for r in project["dependencies"] + extras]


def test_the_lock_satisfies_every_range_of_pyproject():
    """A range changed in pyproject.toml without `make lock` fails here, naming the package."""
    pins = env.locked_versions()
    unmet = [f"{r}: lock has {pins.get(env.normalized(r.name), 'nothing')}" for r in _dependencies()
             if env.normalized(r.name) not in pins or not r.specifier.contains(pins[env.normalized(r.name)])]
    assert not unmet, "requirements.lock does not satisfy pyproject.toml (run `make lock`): " + "; ".join(unmet)


def test_every_pin_of_the_lock_is_exact_and_hashed():
    blocks = re.split(r"\n(?=[a-z0-9])", LOCK.read_text().split("\n", 2)[2])
    pinned = [b for b in blocks if env.PIN.match(b)]
    assert len(pinned) == len(env.locked_versions()) > 50
    assert all("--hash=sha256:" in b for b in pinned)


def test_make_install_takes_versions_from_the_lock_alone():
    """pip installs the lock with --no-deps: pyproject's ranges are never resolved by `make install`."""
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    install = makefile.split("$(STAMP): ", 1)[1].split("\n\n", 1)[0]
    pip_lines = [line for line in install.splitlines() if "pip install" in line]
    assert len(pip_lines) == 2
    assert all("--no-deps" in line for line in pip_lines)
    assert "--require-hashes" in pip_lines[0] and "-r $(LOCK)" in pip_lines[0]
    assert pip_lines[1].rstrip().endswith("-e .") and "--no-build-isolation" in pip_lines[1]
    workflow = (PROJECT_ROOT / ".github" / "workflows" / "ci.yml").read_text()
    assert "cache-dependency-path: requirements.lock" in workflow and "make install" in workflow


def test_doctor_says_the_environment_is_the_locks_or_names_what_differs(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from harness.cli.commands import main

    args = ["--data-root", str(tmp_path / "data"), "doctor", "--results", str(tmp_path / "results")]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    assert out.output.splitlines()[0] == f"environment: {', '.join(env.CHECKED)} as requirements.lock pins them"
    wrong = tmp_path / "requirements.lock"
    wrong.write_text(re.sub(r"^torchaudio==\S+", "torchaudio==2.0.1", LOCK.read_text(), flags=re.M))
    monkeypatch.setattr(env, "LOCK_FILE", wrong)
    line = CliRunner().invoke(main, args).output.splitlines()[0]
    assert line.startswith("environment differs from requirements.lock: torchaudio: "
                           f"{env.installed_version('torchaudio')} installed, 2.0.1 locked.")


def test_torchaudio_is_used_by_one_module_only():
    """A move away from torchaudio (maintenance mode since 2.9) is one file: harness/frontends/spectral.py."""
    users = sorted(str(p.relative_to(PROJECT_ROOT)) for folder in ("harness", "submissions")
                   for p in (PROJECT_ROOT / folder).rglob("*.py")
                   if re.search(r"^\s*(import|from)\s+torchaudio\b", p.read_text(), flags=re.M))
    assert users == ["harness/frontends/spectral.py"]
