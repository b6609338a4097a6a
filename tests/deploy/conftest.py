"""Fixtures for the deployment tests: a simulated device and a feedback sink."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from device_sim import SimDevice

# The CI interpreter (Python 3.11.7) has the tarfile flaw CVE-2024-6232, so
# extraction is allowed here explicitly; test_archive_hardening.py checks the
# refusal itself with this variable removed.
os.environ.setdefault("CARE_OTA_ALLOW_FLAWED_TARFILE", "1")


@pytest.fixture
def release_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def sim_factory(tmp_path: Path) -> Iterator[Any]:
    made: list[SimDevice] = []

    def make(**kw: Any) -> SimDevice:
        dev = SimDevice(tmp_path / f"dev{len(made)}", **kw)
        made.append(dev)
        return dev

    yield make
    for dev in made:
        dev.stop()


class FeedbackSink:
    """A loopback HTTP server that records DDI feedback POSTs."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(n) or b"{}")
                sink.posts.append((self.path, body, dict(self.headers)))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}')

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def closed(self) -> list[dict[str, Any]]:
        return [b for _, b, _ in self.posts if b["status"]["execution"] == "closed"]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def feedback_sink() -> Iterator[FeedbackSink]:
    sink = FeedbackSink()
    yield sink
    sink.stop()
