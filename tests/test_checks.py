"""Settings are checked when they are made: a typo fails at construction and says what was meant."""
import pytest

from harness.submission import Recipe, SubmissionError, load_submissions


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
