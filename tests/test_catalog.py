import pytest

from harness.data.catalog import CatalogError, load_catalog, parse_spec

BASE = {"version": "1", "kind": "audio", "num_classes": 2, "class_names": ["a", "b"],
        "metadata": {"format": "folders"}, "folds": {"protocol": "stratified", "k": 5}}


def test_project_catalog_declares_the_required_datasets():
    catalog = load_catalog()
    for name in ("esc50", "esc10", "urbansound8k", "fsdd", "fsdd_speaker", "voice24", "synthetic"):
        assert name in catalog
    assert catalog.get("esc50").num_folds == 5 and catalog.get("urbansound8k").num_folds == 10
    assert catalog.get("fsdd_speaker").source == "fsdd"


@pytest.mark.parametrize("change, message", [
    ({"smaple_rate": 8000}, "unknown key 'smaple_rate'. Did you mean 'sample_rate'"),
    ({"folds": {"protocol": "stratifed", "k": 5}}, "Did you mean 'stratified'"),
    ({"kind": "audo"}, "Did you mean 'audio'"),
    ({"class_names": ["a"]}, "1 class_names but num_classes = 2"),
    ({"folds": {"protocol": "official", "k": 1}}, "at least 2"),
])
def test_bad_entries_are_named_with_a_suggestion(change, message):
    with pytest.raises(CatalogError, match=message):
        parse_spec("mine", {**BASE, **change})


def test_unknown_dataset_suggests_the_closest(tmp_path):
    with pytest.raises(KeyError, match="Did you mean 'fsdd'"):
        load_catalog().get("fsd")
