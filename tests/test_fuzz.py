"""Fuzzing: the audio reader and the metadata parsers raise only their own clear errors."""
import io
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.data.catalog import TOP_KEYS, CatalogError, parse_spec
from harness.data.audio import decode_audio
from harness.data.datasets import DatasetError, list_clips

from conftest import memory_ceiling, with_header_rate

FUZZ = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _valid_wav() -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.sin(np.arange(400) / 5).astype(np.float32), 8000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


VALID = _valid_wav()
mutated_wav = st.builds(
    lambda cut, flips: bytes(b ^ flips.get(i, 0) for i, b in enumerate(VALID[:cut])),
    st.integers(0, len(VALID)), st.dictionaries(st.integers(0, len(VALID) - 1), st.integers(1, 255), max_size=8))
# odd sample rates on purpose: each made a polyphase resampler's kernel grow without bound
odd_rate_wav = st.builds(lambda rate: with_header_rate(VALID, rate),
                         st.one_of(st.integers(1000, 384_000), st.integers(0, 2**32 - 1)))


@FUZZ
@given(st.one_of(st.binary(max_size=2048), mutated_wav, odd_rate_wav), st.sampled_from([None, 4000]))
def test_audio_reader_never_raises_anything_but_dataset_error(payload, clip):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.wav"
        path.write_bytes(payload)
        try:
            with memory_ceiling(256 * 2**20):  # a MemoryError here fails the test, it does not kill the machine
                wave = decode_audio(path, 8000, clip)
        except DatasetError as err:
            assert "clip.wav" in str(err)
        else:
            assert wave.dtype == np.float32 and wave.ndim == 1 and np.isfinite(wave).all()


scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 100), st.floats(allow_nan=True), st.text(max_size=8))
values = st.one_of(scalars, st.lists(scalars, max_size=4), st.dictionaries(st.text(max_size=6), scalars, max_size=4))
tables = st.dictionaries(st.sampled_from(sorted(TOP_KEYS) + ["bogus", "smaple_rate"]), values, max_size=12)
base = {"version": "1", "kind": "audio", "num_classes": 2, "class_names": ["a", "b"],
        "metadata": {"format": "csv", "path": "m.csv", "audio": "{f}", "label": "l", "fold": "k"},
        "folds": {"protocol": "official", "k": 2}}


@FUZZ
@given(st.one_of(tables, tables.map(lambda t: {**base, **t})))
def test_catalog_parser_raises_only_catalog_errors(table):
    try:
        spec = parse_spec("fuzz", table)
    except CatalogError as err:
        assert "datasets.toml [fuzz]" in str(err)
    else:
        assert spec.num_classes > 0 and spec.num_folds >= 2


cells = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=10)
rows = st.lists(st.tuples(cells, st.sampled_from(["a", "b", "c", "1", ""]), st.one_of(cells, st.sampled_from(["1", "2", "0", "9"]))),
                max_size=8)


@FUZZ
@given(rows, st.booleans())
def test_csv_metadata_parser_raises_only_dataset_errors(rows, good_header):
    spec = parse_spec("fuzz", {**base, "metadata": {"format": "csv", "path": "m.csv", "audio": "{f}", "label": "l", "fold": "k"}})
    header = "f,l,k" if good_header else "x,y"
    text = header + "\n" + "\n".join(",".join(f'"{c}"' for c in row) for row in rows) + "\n"
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "m.csv").write_text(text)
        try:
            table = list_clips(spec, Path(tmp))
        except DatasetError:
            pass
        else:
            assert len(table.files) == len(table.labels) == len(table.folds) and set(table.folds) <= {1, 2}


@FUZZ
@given(st.lists(st.text(alphabet="0123456789_abz.wav", min_size=1, max_size=14), max_size=12, unique=True))
def test_filename_metadata_parser_raises_only_dataset_errors(names):
    spec = parse_spec("fuzz", {**base, "metadata": {"format": "filename", "pattern": r"^(?P<l>[ab])_(?P<i>\d+)\.wav$", "label": "l"},
                               "folds": {"protocol": "by_index", "k": 2, "field": "i", "size": 5}})
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            if name not in (".", ".."):
                (Path(tmp) / name).write_bytes(b"")
        try:
            table = list_clips(spec, Path(tmp))
        except DatasetError:
            pass
        else:
            assert set(table.folds) <= {1, 2}
