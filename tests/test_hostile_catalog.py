"""Hostile and broken catalogs (issue 27): every path a catalog value makes stays inside its root,
`bench fetch` removes only what it made itself, the fingerprint covers every file a dataset reads,
and bad bytes, malformed templates and numbers out of bounds are one line when the catalog loads.

Every test checks that each file outside the dataset's own folder is byte-identical afterwards."""
import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli.commands import main
from harness.data.catalog import LAYOUTS

from conftest import write_wav

CSV = {"format": "csv", "path": "meta.csv", "audio": "wav/{file}", "label": "label", "fold": "fold"}
BASE = {"version": "1", "kind": "audio", "sample_rate": 8000, "clip_seconds": 0.25, "num_classes": 2,
        "metadata": CSV, "folds": {"protocol": "official", "k": 2}}


def toml(value) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # nan, inf
    return json.dumps(value)  # strings, numbers and lists are written alike in JSON and TOML


def catalog(tmp_path: Path, name: str, **changes) -> Path:
    """A catalog of one table: ``BASE`` with ``changes`` (None leaves a key out)."""
    table = {k: v for k, v in {**BASE, **changes}.items() if v is not None}
    path = tmp_path / "datasets.toml"
    path.write_text(f"[{json.dumps(name)}]\n" + "".join(f"{k} = {toml(v)}\n" for k, v in table.items()))
    return path


def make_source(folder: Path, wavs: Path | None = None, prefix: str = "", rows: list[str] = ()) -> Path:
    """meta.csv in ``folder`` listing six clips (two classes, two folds), written to ``wavs`` (default
    ``folder/wav``); ``rows`` replace the listed file names."""
    lines = ["file,label,fold"]
    for i in range(6):
        name = rows[i] if rows else f"{prefix}c{i}.wav"
        write_wav((wavs or folder / "wav") / Path(name).name, seconds=0.25, freq=300 + 100 * i)
        lines.append(f"{name},{'ab'[i % 2]},{i // 3 + 1}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "meta.csv").write_text("\n".join(lines) + "\n")
    return folder


def files(top: Path, leave_out: Path | None = None) -> dict[str, bytes]:
    """Every file under ``top`` (links not followed) but those under ``leave_out``, with its bytes."""
    return {p.relative_to(top).as_posix(): p.read_bytes() for p in sorted(top.rglob("*"))
            if p.is_file() and not p.is_symlink() and not (leave_out and p.is_relative_to(leave_out))}


def bench(tmp_path: Path, cat: Path, *args: str):
    return CliRunner().invoke(main, ["--datasets", str(cat), "--data-root", str(tmp_path / "data"), *args])


def refused(out, message: str) -> None:
    """One line with ``message``, exit status 1, no traceback."""
    assert out.exit_code == 1 and isinstance(out.exception, SystemExit), out.output
    assert message in out.output and "Traceback" not in out.output, out.output


# --- 1. source: the dataset's folder in the data root ---------------------------------------

@pytest.mark.parametrize("source, problem", [
    ("../victim_dir", "has a '..' part: it must be a relative path inside the data root"),
    ("ABSOLUTE", "is an absolute path: it must be a relative path inside the data root"),
    ("", "is empty: it must be a relative path inside the data root"),
    ("cache", "is a folder the harness keeps in the data root: use the name of the folder"),
    ("victim dir", "is not a dataset name: use the name of the folder in the data root"),
], ids=["dotdot", "absolute", "empty", "reserved", "not-a-name"])
def test_a_source_outside_the_data_root_is_refused_at_load(tmp_path, source, problem):
    source = str(tmp_path / "victim_dir") if source == "ABSOLUTE" else source
    (tmp_path / "victim_dir").mkdir()
    (tmp_path / "victim_dir" / "precious.txt").write_text("keep me")
    (tmp_path / "data" / "cache").mkdir(parents=True)
    (tmp_path / "data" / "cache" / "decoded.npy").write_bytes(b"cached")
    make_source(tmp_path / "src_e")
    cat = catalog(tmp_path, "evil_e", source=source)
    before = files(tmp_path)
    out = bench(tmp_path, cat, "fetch", "evil_e", "--from", str(tmp_path / "src_e"))
    refused(out, f"{cat} [evil_e]: source = {source!r} {problem}")
    assert files(tmp_path) == before


def test_a_dataset_name_with_dotdot_is_refused(tmp_path):
    make_source(tmp_path / "src")
    cat = catalog(tmp_path, "../escaped")
    before = files(tmp_path)
    out = bench(tmp_path, cat, "fetch", "../escaped", "--from", str(tmp_path / "src"))
    refused(out, f"dataset name '../escaped' (in {cat}; a dataset's name is a folder of the data root and the "
                 f"result store) is not an identifier")
    assert files(tmp_path) == before


# --- 2., 3. the audio template and the files a dataset lists --------------------------------

@pytest.mark.parametrize("template, problem", [
    ("../outside/{file}", "has a '..' part"),
    ("ABSOLUTE/{file}", "is an absolute path"),
], ids=["dotdot", "absolute"])
def test_an_audio_template_outside_the_dataset_folder_is_refused_at_load(tmp_path, template, problem):
    template = template.replace("ABSOLUTE", str(tmp_path / "outside"))
    make_source(tmp_path / "src_e", wavs=tmp_path / "outside")  # where the template points: old code copied there
    cat = catalog(tmp_path, "evil", metadata={**CSV, "audio": template})
    before = files(tmp_path)
    out = bench(tmp_path, cat, "fetch", "evil", "--from", str(tmp_path / "src_e"))
    refused(out, f"{cat} [evil]: metadata.audio = {template!r} {problem}: it must be a relative path inside "
                 f"the dataset's folder")
    assert files(tmp_path) == before


def test_a_row_that_leads_outside_the_folder_is_refused_and_nothing_is_written(tmp_path):
    rows = ["c0.wav", "c1.wav", "c2.wav", "c3.wav", "c4.wav", "../../outside.wav"]
    src = make_source(tmp_path / "src", rows=rows)
    write_wav(tmp_path / "outside.wav", seconds=0.25)  # what the row names: old code copied it into the data root
    cat = catalog(tmp_path, "rows")
    before = files(tmp_path)
    out = bench(tmp_path, cat, "fetch", "rows", "--from", str(src))
    refused(out, f"{src / 'meta.csv'}: listed file = 'wav/../../outside.wav' has a '..' part: it must be a "
                 f"relative path inside {src}")
    assert files(tmp_path) == before


def test_a_symbolic_link_out_of_the_source_folder_is_refused(tmp_path):
    src = make_source(tmp_path / "src", wavs=tmp_path / "elsewhere")
    (src / "wav").symlink_to(tmp_path / "elsewhere")
    cat = catalog(tmp_path, "linked")
    before = files(tmp_path)
    out = bench(tmp_path, cat, "fetch", "linked", "--from", str(src))
    refused(out, f"{src / 'meta.csv'}: listed file = 'wav/c0.wav' leads outside {src} through a symbolic link "
                 f"(to {(tmp_path / 'elsewhere' / 'c0.wav').resolve()}); copy the files in instead of linking them")
    assert files(tmp_path) == before and not (tmp_path / "data" / "linked").exists()


def test_a_dataset_folder_linked_out_of_the_data_root_is_refused(tmp_path):
    (tmp_path / "victim_dir").mkdir()
    (tmp_path / "victim_dir" / "precious.txt").write_text("keep me")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "linked").symlink_to(tmp_path / "victim_dir")
    src = make_source(tmp_path / "src")
    cat = catalog(tmp_path, "linked")
    before = files(tmp_path)
    out = bench(tmp_path, cat, "fetch", "linked", "--from", str(src), "--force")
    refused(out, f"dataset 'linked': source = 'linked' leads outside the data root through a symbolic link "
                 f"(to {(tmp_path / 'victim_dir').resolve()})")
    assert files(tmp_path) == before


# --- fetch removes only what it made --------------------------------------------------------

def test_a_folder_that_fetch_did_not_make_is_refused_not_emptied(tmp_path):
    mine = tmp_path / "data" / "mine"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("my own files, in the data root")
    src = make_source(tmp_path / "src")
    cat = catalog(tmp_path, "mine")
    before = files(tmp_path)
    for force in ([], ["--force"]):
        out = bench(tmp_path, cat, "fetch", "mine", "--from", str(src), *force)
        refused(out, f"{mine} exists and was not made by `bench fetch` (no .fingerprint in it), so it is left as "
                     f"it is and nothing was imported: move it out of the data root, or give mine another source")
        assert files(tmp_path) == before
    (mine / "notes.txt").rename(tmp_path / "notes.txt")
    mine.rmdir()
    for force in ([], ["--force"]):  # its own folder, fetch replaces
        out = bench(tmp_path, cat, "fetch", "mine", "--from", str(src), *force)
        assert out.exit_code == 0 and f"mine imported into {mine}" in out.output, out.output


# --- the fingerprint covers every file a dataset reads --------------------------------------

@pytest.mark.parametrize("change", ["clip", "hidden_clip", "excluded_list"])
def test_changing_a_file_the_dataset_reads_is_seen_by_the_next_fetch(tmp_path, change):
    prefix = "." if change == "hidden_clip" else ""  # a clip named .c0.wav: hidden files were not fingerprinted
    src = make_source(tmp_path / "src", prefix=prefix)
    if change == "excluded_list":
        (src / "wav" / "c5.wav").write_bytes(b"not audio")
    cat = catalog(tmp_path, "mine")
    folder = tmp_path / "data" / "mine"
    out = bench(tmp_path, cat, "fetch", "mine", "--from", str(src), *(["--skip-bad"] if change == "excluded_list" else []))
    assert out.exit_code == 0 and "mine imported" in out.output, out.output
    assert "already present and verified" in bench(tmp_path, cat, "fetch", "mine").output
    before = files(tmp_path, leave_out=folder)
    if change == "excluded_list":
        (folder / ".excluded.tsv").write_text("")  # c5 listed again: the dataset reads another set of clips
    else:
        write_wav(folder / "wav" / f"{prefix}c0.wav", seconds=0.25, freq=999)
    out = bench(tmp_path, cat, "fetch", "mine")
    refused(out, f"{folder}: files changed since import; re-import with `bench fetch mine --force`")
    assert files(tmp_path, leave_out=folder) == before


# --- 4. bytes that are not UTF-8 ------------------------------------------------------------

def test_a_catalog_that_is_not_utf8_is_one_line_naming_the_byte(tmp_path):
    data = '[mine]\nversion = "1"\ndescription = "caf'.encode() + b"\xe9" + b'"\n'
    cat = tmp_path / "datasets.toml"
    cat.write_bytes(data)
    before = files(tmp_path)
    out = bench(tmp_path, cat, "fetch", "mine")
    refused(out, f"{cat}: not UTF-8 text (byte 0xe9 at offset {data.index(0xe9)}, line 3); save the catalog as UTF-8")
    assert files(tmp_path) == before


# --- 5. templates, patterns and other path values, checked at load --------------------------

PATTERN = {"format": "filename", "pattern": r"^(?P<label>[ab])_(?P<n>\d+)\.wav$", "label": "label"}


@pytest.mark.parametrize("changes, message", [
    ({"metadata": {**CSV, "audio": "{file"}},
     "metadata.audio = '{file' is not a well-formed template (expected '}' before end of string)"),
    ({"metadata": {**CSV, "audio": "wav/}{file}"}},
     "metadata.audio = 'wav/}{file}' is not a well-formed template (Single '}' encountered in format string)"),
    ({"metadata": {**CSV, "audio": "wav/{0}"}}, "metadata.audio = 'wav/{0}': a field must be a CSV column's name"),
    ({"metadata": {**CSV, "audio": "wav/{}"}}, "metadata.audio = 'wav/{}': a field must be a CSV column's name"),
    ({"metadata": {**CSV, "audio": "wav/{file.__class__}"}},
     "metadata.audio = 'wav/{file.__class__}': a field must be a CSV column's name"),
    ({"metadata": {**CSV, "audio": "wav/{file!r}"}}, "metadata.audio = 'wav/{file!r}': a field must be a CSV column's name"),
    ({"metadata": {**CSV, "audio": "wav/{file:>20}"}},
     "metadata.audio = 'wav/{file:>20}': a field must be a CSV column's name, as {column} (no position, index, "
     "attribute, conversion or format)"),
    ({"metadata": {**CSV, "audio": "wav/c0.wav"}}, "metadata.audio = 'wav/c0.wav' names no CSV column"),
    ({"metadata": {**CSV, "path": "../meta.csv"}}, "metadata.path = '../meta.csv' has a '..' part"),
    ({"metadata": {**CSV, "path": "/etc/passwd"}}, "metadata.path = '/etc/passwd' is an absolute path"),
    ({"metadata": {**CSV, "path": 5}}, "metadata.path must be of type str, got 5"),
    ({"metadata": {k: v for k, v in CSV.items() if k != "audio"}}, "metadata of format 'csv' needs audio"),
    ({"metadata": {**PATTERN, "pattern": "(["}}, "metadata.pattern = '([' is not a valid regular expression"),
    ({"metadata": {**PATTERN, "pattern": "^(?P<n>[0-9]+)[.]wav$"}},
     "metadata.pattern = '^(?P<n>[0-9]+)[.]wav$' has no group (?P<label>...)"),
    ({"archive_root": "../elsewhere"}, "archive_root = '../elsewhere' has a '..' part: it must be a relative path "
                                       "inside the archive"),
    ({"url": "file:///etc/passwd"}, "url = 'file:///etc/passwd' must start with https:// or http://"),
    ({"url": "https://example.org/.."}, "url's file name = '..' has a '..' part"),
    ({"metadata": {"format": "folders"}, "class_names": ["../a", "b"]}, "class_names entry = '../a' has a '..' part"),
], ids=["unclosed", "lone-brace", "positional", "empty-field", "attribute", "conversion", "format-spec",
        "no-field", "path-dotdot", "path-absolute", "path-type", "no-audio", "bad-regex", "no-label-group",
        "archive-root", "url-scheme", "url-name", "class-folder"])
def test_templates_patterns_and_paths_are_checked_at_load(tmp_path, changes, message):
    make_source(tmp_path / "src")
    cat = catalog(tmp_path, "mine", **changes)
    before = files(tmp_path)
    out = bench(tmp_path, cat, "fetch", "mine", "--from", str(tmp_path / "src"))
    refused(out, f"{cat} [mine]: {message}")
    assert files(tmp_path) == before


@pytest.mark.parametrize("fmt, key", [(fmt, key) for fmt in LAYOUTS for key in LAYOUTS.get(fmt).paths])
@pytest.mark.parametrize("value, problem", [("../outside", "has a '..' part"), ("/etc/passwd", "is an absolute path")])
def test_every_layouts_paths_stay_inside_the_dataset_folder(tmp_path, fmt, key, value, problem):
    """Generated from the layout registry: each key a layout declares a file of the folder."""
    metadata = {"format": fmt, **{k: "x" for k in LAYOUTS.get(fmt).required}, key: value}
    cat = catalog(tmp_path, "mine", metadata=metadata)
    before = files(tmp_path)
    refused(bench(tmp_path, cat, "fetch", "mine"), f"{cat} [mine]: metadata.{key} = {value!r} {problem}: it must be "
                                                   f"a relative path inside the dataset's folder")
    assert files(tmp_path) == before


# --- 6. numbers within stated bounds --------------------------------------------------------

STATED = {  # the bounds the README states, as the messages write them
    "sample_rate": "1,000 and at most 384,000 Hz", "clip_seconds": "0.01 and at most 600 s",
    "num_classes": "2 and at most 100,000", "clips": "1 and at most 10,000,000", "per_class": "1 and at most 1,000",
    "folds.k": "2 and at most 100", "folds.size": "1 and at most 1,000,000", "folds.seed": "0 and at most 4,294,967,295",
    "folds.test_fraction": "0.01 and at most 0.5",
}
IMAGE = {"kind": "image", "metadata": {"format": "folders"}}
SYNTHETIC = {"kind": "synthetic", "metadata": None, "class_names": ["a", "b"]}


@pytest.mark.parametrize("key, value, changes", [
    ("clip_seconds", 1e6, {}), ("clip_seconds", 0.0, {}), ("clip_seconds", math.nan, {}),
    ("clip_seconds", math.inf, {}), ("sample_rate", 999, {}), ("sample_rate", 10**7, {}),
    ("num_classes", 1, {}), ("num_classes", 10**6, {}), ("clips", 0, {}), ("clips", 10**9, {}),
    ("per_class", 10**6, SYNTHETIC),
    ("folds.k", 1000, {}), ("folds.seed", -1, {"folds": {"protocol": "stratified", "k": 2}}),
    ("folds.size", 0, {"folds": {"protocol": "by_index", "k": 2, "field": "fold"}}),
    ("folds.test_fraction", 0.9, {"folds": {"protocol": "holdout", "k": 2, "seed": 0}}),
])
def test_a_number_out_of_bounds_is_refused_at_load_naming_key_value_and_bound(tmp_path, key, value, changes):
    make_source(tmp_path / "src")
    if key.startswith("folds."):
        changes = {"folds": {**changes.get("folds", BASE["folds"]), key.split(".")[1]: value}}
    else:
        changes = {**changes, key: value}
    cat = catalog(tmp_path, "big", **changes)
    before = files(tmp_path)
    out = bench(tmp_path, cat, "fetch", "big", "--from", str(tmp_path / "src"))
    refused(out, f"{cat} [big]: {key} = {value!r} is out of bounds: it must be at least {STATED[key]}")
    assert files(tmp_path) == before


@pytest.mark.parametrize("size", [[0, 128], [128, 100_000], [128], [128, 1.5]])
def test_an_image_size_out_of_bounds_is_refused_at_load(tmp_path, size):
    cat = catalog(tmp_path, "pics", **IMAGE, image_size=size)
    out = bench(tmp_path, cat, "fetch", "pics")
    ok_shape = len(size) == 2 and all(isinstance(n, int) for n in size)
    refused(out, f"{cat} [pics]: image_size = " + (f"{min(size) if min(size) < 8 else max(size)} is out of bounds: "
                                                   f"it must be at least 8 and at most 4,096 pixels" if ok_shape
                                                   else f"{size!r} must be two whole numbers [height, width]"))


def test_a_clip_a_million_seconds_long_is_refused_before_any_file_is_read(tmp_path):
    src = make_source(tmp_path / "src")
    cat = catalog(tmp_path, "big", clip_seconds=1e6)
    out = bench(tmp_path, cat, "fetch", "big", "--from", str(src))
    refused(out, f"{cat} [big]: clip_seconds = 1000000.0 is out of bounds: it must be at least 0.01 and at most 600 s")
    assert "bad" not in out.output and "allocate" not in out.output
