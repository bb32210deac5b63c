"""A dataset of one's own, in each layout the README shows: a CSV with a fold column, a filename
pattern (in nested folders), class folders of audio, class folders of images. Each is generated
here, declared in a catalog of its own, imported with `bench fetch --from` and trained on; every
registered layout must have an example here. The README's worked example of a new layout, run as
written, is checked and listed like the harness's own."""
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from PIL import Image

from harness.cli.commands import main
from harness.data.catalog import LAYOUTS, CatalogError, Layout, load_catalog
from harness.data.datasets import list_clips

ROOT = Path(__file__).resolve().parents[1]

CLASSES = ("calm", "happy", "sad")
COMMON = 'version = "1"\nnum_classes = 3\n'
AUDIO = COMMON + 'kind = "audio"\nsample_rate = 8000\nclip_seconds = 0.25\n'
EXAMPLES = {
    "csv_folds": AUDIO + 'metadata = { format = "csv", path = "meta.csv", audio = "wav/{file}", label = "emotion", '
                         'fold = "fold" }\nfolds = { protocol = "official", k = 2 }\n',
    "by_pattern": AUDIO + "metadata = { format = \"filename\", pattern = '^(?P<emotion>[a-z]+)-(?P<n>\\d+)\\.wav$', "
                          'label = "emotion", recursive = true }\nfolds = { protocol = "stratified", k = 2 }\n',
    "audio_folders": AUDIO + 'metadata = { format = "folders" }\nfolds = { protocol = "stratified", k = 2 }\n',
    "image_folders": COMMON + 'kind = "image"\nimage_size = [16, 16]\nmetadata = { format = "folders" }\n'
                              'folds = { protocol = "stratified", k = 2 }\n',
}


def tone(label: int, n: int) -> np.ndarray:
    t = np.arange(2000) / 8000
    return (0.3 * np.sin(2 * np.pi * (300 + 400 * label) * t) + 0.01 * n).astype(np.float32)


def make(layout: str, folder):
    """Six clips per class in ``layout``; actors' sub-folders where a layout allows nesting."""
    rows = ["file,emotion,fold"]
    for label, name in enumerate(CLASSES):
        for n in range(6):
            if layout == "csv_folds":
                path, _ = folder / "wav" / f"{name}{n}.wav", rows.append(f"{name}{n}.wav,{name},{n % 2 + 1}")
            elif layout == "by_pattern":
                path = folder / f"actor_{n % 2}" / f"{name}-{n}.wav"
            elif layout == "audio_folders":
                path = folder / name / f"actor_{n % 2}" / f"{n}.wav"
            else:
                path = folder / name / f"{n}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            if layout == "image_folders":
                Image.fromarray(np.full((16, 16), 40 * label + n, dtype=np.uint8)).save(path)
            else:
                sf.write(path, tone(label, n), 8000)
    if layout == "csv_folds":
        (folder / "meta.csv").write_text("\n".join(rows) + "\n")


@pytest.mark.parametrize("layout", EXAMPLES)
def test_a_dataset_of_ones_own_imports_and_trains_in_every_layout(tmp_path, layout):
    catalog = tmp_path / "datasets.toml"
    catalog.write_text(f"[{layout}]\n{EXAMPLES[layout]}")
    make(layout, tmp_path / "src")
    bench = ["--datasets", str(catalog), "--data-root", str(tmp_path / "data"), "--results", str(tmp_path / "r")]
    out = CliRunner().invoke(main, bench + ["fetch", layout, "--from", str(tmp_path / "src")])
    assert out.exit_code == 0 and f"{layout} imported" in out.output, out.output
    submission = "specaug_cnn_image" if layout == "image_folders" else "small_cnn"
    out = CliRunner().invoke(main, bench + ["run", "-s", submission, "-d", layout, "--epochs", "1", "--device", "cpu"])
    assert out.exit_code == 0 and "2 runs, 0 already finished, 0 failed" in out.output, out.output


def test_class_names_left_out_are_read_from_the_data_sorted(tmp_path):
    catalog = tmp_path / "datasets.toml"
    catalog.write_text(f"[audio_folders]\n{EXAMPLES['audio_folders']}")
    make("audio_folders", tmp_path / "src")
    table = list_clips(load_catalog(catalog).get("audio_folders"), tmp_path / "src")
    assert table.class_names == CLASSES and len(table.files) == 18 and table.files[0] == "calm/actor_0/0.wav"
    assert list_clips(load_catalog(catalog).get("audio_folders"), tmp_path / "src").fingerprint == table.fingerprint
    (tmp_path / "src" / "sad").rename(tmp_path / "src" / "angry")  # other names, other labels: another split
    assert list_clips(load_catalog(catalog).get("audio_folders"), tmp_path / "src").fingerprint != table.fingerprint


def test_a_csv_filter_on_a_number_matches_the_csv_text(tmp_path):
    catalog = tmp_path / "datasets.toml"
    declared = EXAMPLES["csv_folds"].replace('fold = "fold" }', 'where = { fold = 2 } }')
    catalog.write_text("[fold2]\n" + declared.replace('protocol = "official"', 'protocol = "stratified"'))
    make("csv_folds", tmp_path / "src")
    table = list_clips(load_catalog(catalog).get("fold2"), tmp_path / "src")  # CSV cells are text: "2" == 2
    assert len(table.files) == 9 and all(int(f[-5]) % 2 == 1 for f in table.files)  # clips 1, 3, 5 of each class


def test_a_partial_copy_of_a_declared_dataset_is_refused(tmp_path):
    catalog = tmp_path / "datasets.toml"
    catalog.write_text(f"[csv_folds]\nclips = 2000\n{EXAMPLES['csv_folds']}")
    make("csv_folds", tmp_path / "src")
    out = CliRunner().invoke(main, ["--datasets", str(catalog), "--data-root", str(tmp_path / "data"),
                                    "fetch", "csv_folds", "--from", str(tmp_path / "src")])
    assert out.exit_code == 1 and "18 clips listed, csv_folds has 2000: a partial or different copy" in out.output
    assert not (tmp_path / "data" / "csv_folds").exists()


@pytest.mark.parametrize("fmt", list(LAYOUTS))
def test_every_registered_layout_lists_its_example(tmp_path, fmt):
    """Generated from the registry: a new layout fails here until EXAMPLES holds a table in it."""
    examples = [name for name, table in EXAMPLES.items() if f'format = "{fmt}"' in table]
    assert examples, f"layout {fmt!r} has no example: add a table to EXAMPLES and its files to make()"
    for name in examples:
        (tmp_path / f"{name}.toml").write_text(f"[{name}]\n{EXAMPLES[name]}")
        make(name, tmp_path / name)
        table = list_clips(load_catalog(tmp_path / f"{name}.toml").get(name), tmp_path / name)
        assert table.class_names == CLASSES and np.bincount(table.labels).tolist() == [6, 6, 6]
        assert all(CLASSES[label] in file for file, label in zip(table.files, table.labels))
        assert sorted(set(table.folds.tolist())) == [1, 2]


def readme_example() -> str:
    """The python block of the README's "A dataset layout"."""
    section = (ROOT / "README.md").read_text().split("#### A dataset layout", 1)[1]
    return section.split("```python", 1)[1].split("```", 1)[0]


@pytest.fixture
def lines_layout(monkeypatch) -> Layout:
    """The README's worked example run as written, its layout registered for one test only."""
    monkeypatch.setattr(LAYOUTS, "_items", dict(LAYOUTS._items))
    exec(compile(readme_example(), str(ROOT / "README.md"), "exec"), {})
    return LAYOUTS.get("lines")


def test_a_layout_registered_in_one_call_is_checked_and_listed(tmp_path, lines_layout):
    src, lines = tmp_path / "src", []
    for label, name in enumerate(CLASSES):
        for n in range(4):
            (src / "wav").mkdir(parents=True, exist_ok=True)
            sf.write(src / "wav" / f"{name}{n}.wav", tone(label, n), 8000)
            lines.append(f"wav/{name}{n}.wav {name}")
    (src / "clips.txt").write_text("\n".join(lines) + "\n")
    catalog, metadata = tmp_path / "datasets.toml", '{ format = "lines", path = "clips.txt" }'
    declared = f'[mine]\n{AUDIO}metadata = {metadata}\nfolds = {{ protocol = "stratified", k = 2 }}\n'
    catalog.write_text(declared)
    table = list_clips(load_catalog(catalog).get("mine"), src)
    assert table.class_names == CLASSES and table.files[:2] == ["wav/calm0.wav", "wav/calm1.wav"]
    assert table.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4 and sorted(set(table.folds.tolist())) == [1, 2]
    from harness.data.fetch import fetch

    folder, _ = fetch(load_catalog(catalog).get("mine"), tmp_path / "data", from_path=src)  # its list comes along
    assert (folder / "clips.txt").is_file()
    assert list_clips(load_catalog(catalog).get("mine"), folder).fingerprint == table.fingerprint
    for changed, message in [
        ('{ format = "lines", pth = "clips.txt" }',
         "unknown key 'pth' in metadata of format 'lines'. Did you mean 'path'? Its keys: format, path."),
        ('{ format = "lines" }', "metadata of format 'lines' needs path"),
        ('{ format = "lines", path = "../clips.txt" }', "metadata.path = '../clips.txt' has a '..' part"),
    ]:
        catalog.write_text(declared.replace(metadata, changed))
        with pytest.raises(CatalogError) as err:
            load_catalog(catalog)
        assert str(err.value).startswith(f"{catalog} [mine]: {message}")
