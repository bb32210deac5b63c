"""Settings are checked when they are made: a typo fails at construction and says what was meant."""
import pytest

from harness.frontends.features import LogMel, TrimmedMel, Waveform
from harness.training.submission import Recipe, SubmissionError, load_submissions


@pytest.mark.parametrize("setting, message", [
    ({"normalize": "globl"}, r"Recipe\(normalize='globl'\): use one of global, minmax, none\. Did you mean 'global'\?"),
    ({"optimizer": "adamW"}, r"Recipe\(optimizer='adamW'\): use one of adamw, adam, sgd\. Did you mean .*'adamw'"),
    ({"schedule": "one_cycle"}, r"Recipe\(schedule='one_cycle'\): use one of onecycle, constant\. Did you mean 'onecycle'"),
    ({"epochs": 0}, r"Recipe\(epochs=0\): must be a number at least 1"),
    ({"lr": 0.0}, r"Recipe\(lr=0.0\): must be a number above 0"),
    ({"val_fraction": 1.0}, r"Recipe\(val_fraction=1.0\): must be a number from 0 to 0.99"),
])
def test_a_misspelt_or_impossible_recipe_fails_at_construction(setting, message):
    with pytest.raises(SubmissionError, match=message):
        Recipe(**setting)


def test_a_second_submission_under_a_taken_name_fails_and_names_both_files(tmp_path):
    body = "from harness import LogMel, Submission, register_submission\n\n\n@register_submission\n" \
           "def twice_named():\n    return Submission(frontend=LogMel(8000), model='resnet18')\n"
    (tmp_path / "first.py").write_text(body)
    (tmp_path / "second.py").write_text(body)
    with pytest.raises(SubmissionError) as err:
        load_submissions(tmp_path)
    text = str(err.value)
    assert "submission 'twice_named' is registered twice" in text
    assert f"{tmp_path / 'first.py'}:4" in text and f"{tmp_path / 'second.py'}:4" in text


@pytest.mark.parametrize("make, message", [
    (lambda: LogMel(8000, n_mel=64), r"LogMel\(n_mel=...\): no such option; LogMel takes .* Did you mean 'n_mels'\?"),
    (lambda: LogMel(8000, hop_length=0), r"LogMel\(hop_length=0\): must be at least 1"),
    (lambda: LogMel(8000, f_max=5000), r"LogMel\(f_max=5000\): must lie above f_min=0.0 and at most at Nyquist, 4000 Hz"),
    (lambda: LogMel(8000, n_fft=256, win_length=512), r"LogMel\(win_length=512\): must not exceed n_fft=256"),
    (lambda: Waveform(500), r"Waveform\(sample_rate=500\): must be from 1000 to 384000"),
    (lambda: TrimmedMel(frames=0), r"TrimmedMel\(frames=0\): must be from 1 to 100000"),
    (lambda: LogMel(8000, n_fft=2**20), r"LogMel\(n_fft=1048576\): must be from 1 to 65536"),  # checked before a filterbank is built
])
def test_a_misspelt_option_or_impossible_value_of_a_frontend_fails_at_construction(make, message):
    with pytest.raises(SubmissionError, match=message):
        make()


def test_checked_frontends_still_read_their_parameters_back():
    assert LogMel(8000, n_mels=64, f_max=4000).params() == {
        "name": "LogMel", "sample_rate": 8000, "n_fft": 1024, "win_length": None, "hop_length": 256, "n_mels": 64,
        "f_min": 0.0, "f_max": 4000, "top_db": 80.0, "ref_max": False}


def test_the_cli_says_a_users_error_in_one_line_and_lets_a_bug_show_its_traceback(monkeypatch):
    from click.testing import CliRunner

    from harness.runs import plan as runner
    from harness.cli.commands import main

    out = CliRunner().invoke(main, ["run", "-s", "small_cnn", "--folds", "abc"])
    assert out.exit_code == 2 and "Invalid value for '--folds': 'abc': use 'all' or fold numbers" in out.output
    out = CliRunner().invoke(main, ["run", "-s", "small_cnn", "--folds", "9"])
    assert out.exit_code == 2 and "fold(s) [9] out of range 1..5 for synthetic" in out.output
    out = CliRunner().invoke(main, ["run", "-s", "smal_cnn"])
    assert out.exit_code == 1 and "Error: unknown submission 'smal_cnn'. Did you mean 'small_cnn'" in out.output
    monkeypatch.setattr(runner, "drive", lambda *args, **kwargs: {}["a bug"])
    out = CliRunner().invoke(main, ["run", "-s", "small_cnn"])
    assert out.exit_code == 1 and isinstance(out.exception, KeyError) and "Error:" not in out.output
