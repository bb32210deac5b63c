"""A dataset of one's own, in each layout the README shows: a CSV with a fold column, a filename
pattern (in nested folders), class folders of audio, class folders of images. Each is generated
here, declared in a catalog of its own, imported with `bench fetch --from` and trained on."""
import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from PIL import Image

from harness.cli.commands import main

CLASSES = ("calm", "happy", "sad")
COMMON = 'version = "1"\nnum_classes = 3\n'
AUDIO = COMMON + 'kind = "audio"\nsample_rate = 8000\nclip_seconds = 0.25\n'
LAYOUTS = {
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


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_dataset_of_ones_own_imports_and_trains_in_every_layout(tmp_path, layout):
    catalog = tmp_path / "datasets.toml"
    catalog.write_text(f"[{layout}]\n{LAYOUTS[layout]}")
    make(layout, tmp_path / "src")
    bench = ["--datasets", str(catalog), "--data-root", str(tmp_path / "data"), "--results", str(tmp_path / "r")]
    out = CliRunner().invoke(main, bench + ["fetch", layout, "--from", str(tmp_path / "src")])
    assert out.exit_code == 0 and f"{layout} imported" in out.output, out.output
    submission = "specaug_cnn_image" if layout == "image_folders" else "small_cnn"
    out = CliRunner().invoke(main, bench + ["run", "-s", submission, "-d", layout, "--epochs", "1", "--device", "cpu"])
    assert out.exit_code == 0 and "2 runs, 0 already finished, 0 failed" in out.output, out.output


def test_class_names_left_out_are_read_from_the_data_sorted(tmp_path):
    from harness.data.catalog import load_catalog
    from harness.data.datasets import list_clips

    catalog = tmp_path / "datasets.toml"
    catalog.write_text(f"[audio_folders]\n{LAYOUTS['audio_folders']}")
    make("audio_folders", tmp_path / "src")
    table = list_clips(load_catalog(catalog).get("audio_folders"), tmp_path / "src")
    assert table.class_names == CLASSES and len(table.files) == 18 and table.files[0] == "calm/actor_0/0.wav"
    assert list_clips(load_catalog(catalog).get("audio_folders"), tmp_path / "src").fingerprint == table.fingerprint
    (tmp_path / "src" / "sad").rename(tmp_path / "src" / "angry")  # other names, other labels: another split
    assert list_clips(load_catalog(catalog).get("audio_folders"), tmp_path / "src").fingerprint != table.fingerprint


def test_a_csv_filter_on_a_number_matches_the_csv_text(tmp_path):
    from harness.data.catalog import load_catalog
    from harness.data.datasets import list_clips

    catalog = tmp_path / "datasets.toml"
    declared = LAYOUTS["csv_folds"].replace('fold = "fold" }', 'where = { fold = 2 } }')
    catalog.write_text("[fold2]\n" + declared.replace('protocol = "official"', 'protocol = "stratified"'))
    make("csv_folds", tmp_path / "src")
    table = list_clips(load_catalog(catalog).get("fold2"), tmp_path / "src")  # CSV cells are text: "2" == 2
    assert len(table.files) == 9 and all(int(f[-5]) % 2 == 1 for f in table.files)  # clips 1, 3, 5 of each class


def test_a_partial_copy_of_a_declared_dataset_is_refused(tmp_path):
    catalog = tmp_path / "datasets.toml"
    catalog.write_text(f"[csv_folds]\nclips = 2000\n{LAYOUTS['csv_folds']}")
    make("csv_folds", tmp_path / "src")
    out = CliRunner().invoke(main, ["--datasets", str(catalog), "--data-root", str(tmp_path / "data"),
                                    "fetch", "csv_folds", "--from", str(tmp_path / "src")])
    assert out.exit_code == 1 and "18 clips listed, csv_folds has 2000: a partial or different copy" in out.output
    assert not (tmp_path / "data" / "csv_folds").exists()
