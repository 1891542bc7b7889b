"""A loopback HTTP server (127.0.0.1 only) serving files the tests make: plain files with Range support, faults on
request (a connection cut after N bytes, a slow body), and a Hugging Face Hub look-alike for HF_ENDPOINT
(`/ORG/REPO/resolve/REV/FILE` with the X-Repo-Commit / ETag / X-Error-Code headers huggingface_hub reads)."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_HUB = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")


@dataclass
class Files:
    files: dict[str, bytes] = field(default_factory=dict)  # URL path -> body
    hub: dict[str, dict[str, bytes]] = field(default_factory=dict)  # "ORG/REPO" -> file name -> body
    cut_once: dict[str, int] = field(default_factory=dict)  # path -> bytes sent before the next GET is cut
    delay: float = 0.0  # seconds between 64 KB chunks of every body
    no_length: set[str] = field(default_factory=set)  # paths whose body comes without Content-Length (ends at close)
    gets: Counter = field(default_factory=Counter)  # path -> GET requests
    ranges: list[str] = field(default_factory=list)  # Range headers received
    url: str = ""


def _handler(state: Files) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _body(self) -> tuple[bytes | None, dict[str, str]]:
            path = self.path.split("?")[0]
            if (m := _HUB.match(path)) is not None:
                repo = state.hub.get(m["repo"])
                if repo is None:
                    return None, {"X-Error-Code": "RepoNotFound"}
                body = repo.get(m["file"])
                if body is None:
                    return None, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT}
                return body, {"X-Repo-Commit": COMMIT, "ETag": f'"{hashlib.sha256(body).hexdigest()}"'}
            return state.files.get(path), {}

        def do_HEAD(self) -> None:
            body, headers = self._body()
            self.send_response(200 if body is not None else 404)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)) if body is not None else "0")
            self.end_headers()

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            state.gets[path] += 1
            body, headers = self._body()
            if body is None:
                self.send_response(404)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start = 0
            if (r := self.headers.get("Range")) is not None:
                state.ranges.append(r)
                start = int(re.match(r"bytes=(\d+)-", r)[1])
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            for k, v in headers.items():
                self.send_header(k, v)
            if path not in state.no_length:
                self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            stop = len(body)
            if path in state.cut_once:
                stop = start + state.cut_once.pop(path)
            for i in range(start, stop, 1 << 16):
                self.wfile.write(body[i:min(i + (1 << 16), stop)])
                time.sleep(state.delay)
            if stop < len(body):
                self.close_connection = True  # the client sees a body shorter than Content-Length

    return Handler


@contextmanager
def serving(state: Files | None = None) -> Iterator[Files]:
    state = state or Files()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
