import pytest

from harness.data.catalog import LAYOUTS, CatalogError, load_catalog, parse_spec

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


# --- every registered layout, its keys checked as it declares them (generated from the registry) ---

@pytest.mark.parametrize("fmt", list(LAYOUTS))
def test_a_key_outside_its_layout_is_refused_naming_file_dataset_and_its_keys(tmp_path, fmt):
    layout = LAYOUTS.get(fmt)
    typo = f"{sorted(layout.keys)[0]}s" if layout.keys else "label"
    path = tmp_path / "datasets.toml"
    path.write_text(f'[mine]\nversion = "1"\nkind = "audio"\nnum_classes = 2\nfolds = {{ protocol = "stratified", '
                    f'k = 2 }}\nmetadata = {{ format = "{fmt}", {typo} = "x" }}\n')
    keys = ", ".join(sorted({"format", *layout.keys}))
    hint = f" Did you mean '{typo[:-1]}'?" if layout.keys else ""
    with pytest.raises(CatalogError) as err:
        load_catalog(path)
    assert str(err.value) == f"{path} [mine]: unknown key {typo!r} in metadata of format {fmt!r}.{hint} Its keys: {keys}."


@pytest.mark.parametrize("fmt, key", [(fmt, key) for fmt in LAYOUTS for key in LAYOUTS.get(fmt).required])
def test_a_key_its_layout_requires_is_required(fmt, key):
    metadata = {"format": fmt, **{k: "x" for k in LAYOUTS.get(fmt).required if k != key}}
    with pytest.raises(CatalogError, match=f"metadata of format '{fmt}' needs {key}$"):
        parse_spec("mine", {**BASE, "metadata": metadata})


def test_a_format_that_is_no_registered_layout_is_refused_listing_the_layouts():
    with pytest.raises(CatalogError, match=f"metadata.format = 'csvv' is not one of {', '.join(LAYOUTS)}. "
                                           f"Did you mean 'csv'"):
        parse_spec("mine", {**BASE, "metadata": {"format": "csvv"}})


def test_a_catalog_of_ones_own_adds_to_the_projects(tmp_path):
    own = tmp_path / "mine.toml"
    own.write_text('[mine]\nversion = "1"\nkind = "synthetic"\nnum_classes = 2\nclass_names = ["a", "b"]\n'
                   'folds = { protocol = "stratified", k = 2 }\n')
    catalog = load_catalog(own)
    assert {"mine", "synthetic", "fsdd", "esc50"} <= set(catalog)
    assert catalog.get("mine").origin == str(own) and catalog.get("fsdd").origin.endswith("datasets.toml")


def test_a_name_in_both_catalogs_names_both_files(tmp_path):
    own = tmp_path / "mine.toml"
    own.write_text('[fsdd]\nversion = "1"\nkind = "synthetic"\nnum_classes = 2\nclass_names = ["a", "b"]\n'
                   'folds = { protocol = "stratified", k = 2 }\n')
    with pytest.raises(CatalogError, match=rf"^{own} \[fsdd\]: dataset 'fsdd' is also declared in \S*datasets.toml; "
                                           "a catalog of one's own adds to the project's"):
        load_catalog(own)


def test_an_import_names_the_catalog_that_declares_the_dataset(tmp_path, tiny_catalog):
    from harness.data.fetch import fetch

    from conftest import make_digit_folder

    catalog = tiny_catalog()
    _, report = fetch(load_catalog(catalog).get("tiny"), tmp_path / "data", from_path=make_digit_folder(tmp_path / "src"))
    assert f"to [tiny] in {catalog} to pin it for everyone" in report


def test_datasets_is_taken_after_the_subcommand_and_list_suggests_a_fetch_that_works(tmp_path):
    from click.testing import CliRunner

    from harness.cli.commands import main

    own = tmp_path / "mine.toml"
    table = ('version = "1"\nkind = "audio"\nsource = "x"\nsample_rate = 8000\nclip_seconds = 0.5\nnum_classes = 2\n'
             'metadata = { format = "folders" }\nfolds = { protocol = "stratified", k = 2 }\n')
    own.write_text(f"[first]\n{table}\n[second]\n{table}")
    out = CliRunner().invoke(main, ["list", "--datasets", str(own), "--data-root", str(tmp_path / "data")])
    assert out.exit_code == 0, out.output
    rows = {line.split("|")[1].strip(): line for line in out.output.splitlines() if line.startswith("|")}
    assert {"first", "second", "synthetic", "fsdd"} <= set(rows)
    assert "no: bench fetch first" in rows["first"] and "no: bench fetch second" in rows["second"]  # not `fetch x`
