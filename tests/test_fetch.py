"""Download, import and verification, against a real HTTP server on 127.0.0.1."""
import hashlib
import http.server
import tarfile
import threading

import pytest

from harness.data.catalog import load_catalog
from harness.data.datasets import DatasetError, load_dataset
from harness.data.datasets import MARKER
from harness.data.fetch import content_fingerprint, fetch

from conftest import make_digit_folder


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves one archive from memory, honouring ``Range: bytes=N-`` like a real host."""

    payload = b""
    served = []

    def do_GET(self):
        start = int(self.headers.get("Range", "bytes=0-")[6:].rstrip("-") or 0)
        body = self.payload[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.served.append(len(body))

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    RangeHandler.served = []
    yield httpd
    httpd.shutdown()


@pytest.fixture
def archive(tmp_path):
    """A tiny FSDD-shaped tar.gz plus the fingerprint its recordings must have."""
    src = make_digit_folder(tmp_path / "src" / "tiny-1.0" / "recordings")
    path = tmp_path / "tiny.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        tf.add(tmp_path / "src" / "tiny-1.0", arcname="tiny-1.0")
    return path, content_fingerprint(src)


def serve(server, data: bytes) -> str:
    RangeHandler.payload = data
    return f"http://127.0.0.1:{server.server_port}/tiny.tar.gz"


def test_download_verifies_and_imports(server, archive, tiny_catalog, tmp_path):
    path, fingerprint = archive
    data = path.read_bytes()
    url = serve(server, data)
    spec = load_catalog(tiny_catalog(url, hashlib.sha256(data).hexdigest(), fingerprint)).get("tiny")
    folder, report = fetch(spec, tmp_path / "data")
    assert (folder / MARKER).read_text().strip() == fingerprint
    assert len(list(folder.glob("*.wav"))) == 40 and "imported" in report
    ds = load_dataset(spec, tmp_path / "data")
    assert ds.x.shape == (40, 4000) and sorted(set(ds.folds)) == [1, 2]
    # a second fetch re-checks the fingerprint and reuses the folder
    assert "already present and verified" in fetch(spec, tmp_path / "data")[1]


def test_corrupted_download_is_rejected_and_removed(server, archive, tiny_catalog, tmp_path):
    path, fingerprint = archive
    data = bytearray(path.read_bytes())
    good_sha = hashlib.sha256(data).hexdigest()
    data[100] ^= 0xFF
    spec = load_catalog(tiny_catalog(serve(server, bytes(data)), good_sha, fingerprint)).get("tiny")
    with pytest.raises(DatasetError, match="corrupt.*removed"):
        fetch(spec, tmp_path / "data")
    assert not (tmp_path / "data" / "tiny").exists()
    assert not list((tmp_path / "data" / "downloads").iterdir())  # no partial or bad archive left


def test_partial_download_resumes_from_where_it_stopped(server, archive, tiny_catalog, tmp_path):
    path, fingerprint = archive
    data = path.read_bytes()
    spec = load_catalog(tiny_catalog(serve(server, data), hashlib.sha256(data).hexdigest(), fingerprint)).get("tiny")
    part = tmp_path / "data" / "downloads" / "tiny.tar.gz.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:1000])
    fetch(spec, tmp_path / "data")
    assert RangeHandler.served == [len(data) - 1000]
    assert (tmp_path / "data" / "tiny" / MARKER).exists()


def test_wrong_content_fingerprint_imports_nothing(archive, tiny_catalog, tmp_path):
    path, _ = archive
    spec = load_catalog(tiny_catalog(fingerprint="0" * 64)).get("tiny")
    with pytest.raises(DatasetError, match="does not match the declared"):
        fetch(spec, tmp_path / "data", from_path=path)
    assert not (tmp_path / "data" / "tiny").exists()


def test_offline_download_says_what_to_do(tiny_catalog, tmp_path):
    spec = load_catalog(tiny_catalog(url="http://127.0.0.1:9/tiny.tar.gz")).get("tiny")
    with pytest.raises(DatasetError, match="bench fetch tiny --from"):
        fetch(spec, tmp_path / "data")


def test_import_from_local_folder_pins_fingerprint_on_first_use(tiny_catalog, tmp_path):
    src = make_digit_folder(tmp_path / "copy" / "recordings")
    spec = load_catalog(tiny_catalog()).get("tiny")
    folder, report = fetch(spec, tmp_path / "data", from_path=tmp_path / "copy")
    assert "pinned locally" in report and content_fingerprint(src) in report
    (folder / "0_anna_0.wav").write_bytes(b"tampered")
    with pytest.raises(DatasetError, match="files changed since import"):
        fetch(spec, tmp_path / "data")


def test_missing_dataset_names_the_fetch_command(tiny_catalog, tmp_path):
    spec = load_catalog(tiny_catalog()).get("tiny")
    with pytest.raises(DatasetError, match="bench fetch tiny"):
        load_dataset(spec, tmp_path / "data")
