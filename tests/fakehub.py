"""A Hugging Face hub on 127.0.0.1 for tests: ``/<owner>/<name>/resolve/<commit>/<file>`` serves
the files of folders registered per (repo, commit), with the headers ``huggingface_hub`` reads
(``X-Repo-Commit``, ``ETag``, ``Content-Length``); anything else is 404 ``EntryNotFound``. Every
request is logged, so a test can say what was downloaded."""
from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class FakeHub:
    def __init__(self):
        self.repos: dict[tuple[str, str], Path] = {}
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self.answer(body=False)

            def do_GET(self):
                self.answer(body=True)

            def answer(self, body: bool) -> None:
                hub.requests.append(f"{self.command} {self.path}")
                owner, name, verb, commit, *rest = self.path.lstrip("/").split("?")[0].split("/") + [""] * 4
                folder = hub.repos.get((f"{owner}/{name}", commit))
                file = folder / "/".join(r for r in rest if r) if folder and verb == "resolve" else None
                if file is None or not file.is_file():
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound" if folder else "RepoNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = file.read_bytes()
                self.send_response(200)
                self.send_header("X-Repo-Commit", commit)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, repo: str, commit: str, folder: Path) -> None:
        self.repos[(repo, commit)] = Path(folder)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
