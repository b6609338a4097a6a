"""The reference platform server: a real HTTP server implementing ``sync/spec``.

Built on the standard library's ``ThreadingHTTPServer`` rather than an ASGI
framework, on purpose:

* no extra dependency on the device image or in CI, and a platform vendor can
  read the whole request path (auth, idempotency, sequence, chain) top to bottom;
* fault injection needs the raw socket: a connection reset (``SO_LINGER`` 0) or
  a response dropped *after* the database commit cannot be expressed through an
  ASGI app's response object.

Throughput is ample for a loopback test double (HTTP/1.1 keep-alive, one
thread per connection). It stores everything in a real database through
:mod:`sync.platform.store` (SQLite by default, PostgreSQL by URL).

Library use: ``handle = serve("127.0.0.1", 0, "sqlite:///p.db", Faults(...))``;
``handle.url``; ``handle.stop()``. Command line: :func:`main`
(``care-terminal platform serve``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import random
import signal
import socket
import ssl
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sync import schemas
from sync.auth import (
    DEFAULT_WINDOW_S,
    AuthError,
    parse_public_key,
    server_ssl_context,
    verify_request,
)
from sync.platform.store import Device, PlatformStore, PlatformStoreError, PlatformUnavailable
from terminal.core.clock import CHINA_TZ
from terminal.core.log import get_logger

log = get_logger(__name__)

MAX_BODY = 32 * 1024 * 1024
FAULT_KINDS = ("error", "retry_after", "reset", "drop_after_commit", "bad_reply", "latency")


@dataclass
class Faults:
    """Fault injection. Each request draws once: with probability ``error_rate`` a
    5xx/408 answer, ``retry_after_rate`` a 429/503 with Retry-After, ``reset_rate``
    a connection reset before processing, ``drop_after_commit_rate`` processing and
    committing then resetting instead of answering, ``bad_reply_rate`` committing
    then answering 200 with a reply that violates the spec, ``latency_rate`` a
    delay of up to ``latency_s`` before a normal answer."""

    error_rate: float = 0.0
    retry_after_rate: float = 0.0
    reset_rate: float = 0.0
    drop_after_commit_rate: float = 0.0
    bad_reply_rate: float = 0.0
    latency_rate: float = 0.0
    latency_s: float = 0.05
    retry_after_s: int = 1
    retry_after_http_date: bool = False
    seed: int | None = None
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        total = sum(self._rates())
        if any(r < 0 for r in self._rates()) or total > 1.0:
            raise ValueError("fault rates must be >= 0 and add up to at most 1")
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()

    def _rates(self) -> list[float]:
        return [
            self.error_rate,
            self.retry_after_rate,
            self.reset_rate,
            self.drop_after_commit_rate,
            self.bad_reply_rate,
            self.latency_rate,
        ]

    @property
    def total_rate(self) -> float:
        return sum(self._rates())

    def draw(self) -> str | None:
        with self._lock:
            r = self._rng.random()
            acc = 0.0
            for kind, rate in zip(FAULT_KINDS, self._rates(), strict=True):
                acc += rate
                if r < acc:
                    self.counts[kind] = self.counts.get(kind, 0) + 1
                    return kind
            self.counts["none"] = self.counts.get("none", 0) + 1
            return None

    def pick(self, options: list[int]) -> int:
        with self._lock:
            return self._rng.choice(options)

    def jitter(self) -> float:
        with self._lock:
            return self._rng.random() * self.latency_s


class _Reset(Exception):
    """Abort the connection with a TCP reset."""


class PlatformHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(
        self,
        addr: tuple[str, int],
        store: PlatformStore,
        faults: Faults,
        window_s: int = DEFAULT_WINDOW_S,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(addr, _Handler)
        self.store = store
        self.faults = faults
        self.window_s = window_s
        self.ssl_context = ssl_context
        self.clock_offset_s = 0  # tests move the platform clock

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = super().get_request()
        if self.ssl_context is not None:
            sock = self.ssl_context.wrap_socket(
                sock, server_side=True, do_handshake_on_connect=False
            )
        return sock, addr


def _now() -> datetime:
    return datetime.now(CHINA_TZ)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: PlatformHTTPServer
    server_version = "care-platform-reference/1"

    def log_message(self, format: str, *args: Any) -> None:
        return None

    # -- responses -------------------------------------------------------------------
    def _send_json(self, status: int, doc: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, code: str, message: str, retry_after: str | None = None) -> None:
        retryable = status in (408, 425, 429) or status >= 500
        doc: dict[str, Any] = {"error": code, "message": message, "retryable": retryable}
        headers = {}
        if retry_after is not None:
            headers["Retry-After"] = retry_after
            doc["retry_after_s"] = float(retry_after) if retry_after.isdigit() else None
        schemas.validate("Error", doc, "platform error reply")
        self._send_json(status, doc, headers)

    def _reset(self) -> None:
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        raise _Reset

    def send_response(self, code: int, message: str | None = None) -> None:
        super().send_response(code, message)
        # Date is added by send_response; make it follow the platform clock.

    def date_time_string(self, timestamp: float | None = None) -> str:
        now = time.time() + self.server.clock_offset_s if timestamp is None else timestamp
        return format_datetime(datetime.fromtimestamp(now, UTC), usegmt=True)

    # -- request plumbing ------------------------------------------------------------
    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        if not length.isdigit() or int(length) > MAX_BODY:
            self._error(
                413 if length.isdigit() else 400,
                "malformed_request",
                "body too large or bad length",
            )
            raise _Reset
        return self.rfile.read(int(length))

    def _authenticate(self, body: bytes) -> Device | None:
        parts = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        keyid = ""
        try:
            from sync.auth import parse_signature_headers

            keyid = parse_signature_headers(headers).keyid
        except AuthError as exc:
            self._error(401, "bad_signature", str(exc))
            return None
        device = self.server.store.device(keyid)
        if device is None:
            self._error(403, "unknown_device", "this device is not registered")
            return None
        if device.status != "active":
            self._error(403, "device_revoked", "this device has been revoked")
            return None
        now = int(time.time()) + self.server.clock_offset_s
        try:
            signed = verify_request(
                self.command,
                parts.path,
                parts.query,
                body,
                headers,
                parse_public_key(device.public_key),
                now,
                self.server.window_s,
            )
        except AuthError as exc:
            self._error(401, exc.code, str(exc))
            return None
        if not self.server.store.remember_nonce(
            device.device_id, signed.nonce, signed.created, now, self.server.window_s
        ):
            self._error(
                401, "replayed_request", "this request was already received (replayed nonce)"
            )
            return None
        return device

    def _fault_before(self) -> str | None:
        faults = self.server.faults
        kind = faults.draw() if faults.total_rate > 0 else None
        if kind == "latency":
            time.sleep(faults.jitter())
            return None
        if kind == "error":
            status = faults.pick([500, 502, 503, 504, 408])
            self._error(
                status, "unavailable" if status != 500 else "internal_error", "injected failure"
            )
            return "answered"
        if kind == "retry_after":
            if faults.retry_after_http_date:
                when = datetime.fromtimestamp(time.time() + faults.retry_after_s + 1, UTC)
                value = format_datetime(when, usegmt=True)
            else:
                value = str(faults.retry_after_s)
            status = faults.pick([429, 503])
            self._error(
                status,
                "rate_limited" if status == 429 else "unavailable",
                "injected back-pressure",
                retry_after=value,
            )
            return "answered"
        if kind == "reset":
            self._reset()
        return kind

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except _Reset:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.close()
        except (ConnectionError, ssl.SSLError, TimeoutError):
            self.close_connection = True

    # -- routes ----------------------------------------------------------------------
    def do_POST(self) -> None:
        self._guarded(self._post)

    def do_GET(self) -> None:
        self._guarded(self._get)

    def _guarded(self, route: Callable[[], None]) -> None:
        """Run a route; a database that cannot be reached (a PostgreSQL server
        restarting or across a lost network) is a retryable 503, not a dropped
        connection with a traceback in the server's log."""
        try:
            route()
        except PlatformUnavailable as exc:
            log.warning("platform_db_unavailable", path=urlsplit(self.path).path)
            self._error(503, "unavailable", str(exc))

    def _post(self) -> None:
        body = self._read_body()
        if urlsplit(self.path).path != "/v1/batches":
            self._error(404, "not_found", "no such endpoint")
            return
        fault = self._fault_before()
        if fault == "answered":
            return
        device = self._authenticate(body)
        if device is None:
            return
        key = self.headers.get("Idempotency-Key", "")
        if not key or len(key) > 255 or not all(0x21 <= ord(c) <= 0x7E for c in key):
            self._error(400, "malformed_request", "a valid Idempotency-Key header is required")
            return
        body_sha = hashlib.sha256(body).hexdigest()
        store = self.server.store
        try:
            answer = store.idempotent_answer(device.device_id, key, body_sha)
        except PlatformStoreError as exc:
            self._error(422, exc.code, str(exc))
            return
        if answer is None:
            try:
                doc = json.loads(body)
            except ValueError:
                self._error(400, "malformed_request", "the body is not JSON")
                return
            problems = (
                []
                if schemas.is_valid("BatchRequest", doc)
                else schemas.problems("BatchRequest", doc)
            )
            if problems:
                self._error(422, "schema_invalid", "; ".join(problems[:3]))
                return
            if doc["device_id"] != device.device_id:
                self._error(403, "forbidden", "the batch is for another device")
                return
            if doc["centre_id"] != device.centre_id:
                self._error(409, "centre_mismatch", "the device is registered to another centre")
                return
            try:
                answer = store.process_batch(
                    device, doc["stream"], doc["records"], key, body_sha, _now()
                )
            except PlatformStoreError as exc:
                self._error(422, exc.code, str(exc))
                return
        if fault == "drop_after_commit":
            self._reset()
        if fault == "bad_reply":
            broken = dict(answer.body)
            broken["results"] = [{**r, "result": "maybe"} for r in broken["results"]]
            self._send_json(200, broken)
            return
        schemas.validate("BatchResponse", answer.body, "platform reply")
        self._send_json(
            answer.status, answer.body, {"Idempotent-Replayed": "true"} if answer.replayed else None
        )

    def _get(self) -> None:
        body = self._read_body()
        parts = urlsplit(self.path)
        segs = [p for p in parts.path.split("/") if p]
        if parts.path == "/healthz":
            self._send_json(200, {"status": "ok"})
            return
        fault = self._fault_before()
        if fault == "answered":
            return
        device = self._authenticate(body)
        if device is None:
            return
        if len(segs) == 5 and segs[:2] == ["v1", "devices"] and segs[3] == "streams":
            if segs[2] != device.device_id or segs[4] not in schemas.STREAMS:
                self._error(403, "forbidden", "a device may only read its own streams")
                return
            doc = self.server.store.stream_head(device.device_id, segs[4])
            schemas.validate("StreamHead", doc, "platform reply")
            self._send_json(200, doc)
            return
        if len(segs) == 5 and segs[:2] == ["v1", "centres"] and segs[3] == "datasets":
            centre, kind = segs[2], segs[4]
            if centre != device.centre_id:
                self._error(403, "forbidden", "a device may only read its own centre's data")
                return
            if kind not in schemas.DATASET_KINDS:
                self._error(404, "not_found", "no such dataset kind")
                return
            if kind == "consent_changes":
                cursor = parse_qs(parts.query).get("cursor", [None])[0]
                page = self.server.store.consent_page(centre, cursor)
                schemas.validate("ConsentChangesPage", page, "platform reply")
                self._send_json(200, page, {"ETag": f'"{page["next_cursor"]}"'})
                return
            ds = self.server.store.dataset(centre, kind)
            if ds is None:
                self._error(404, "not_found", f"no {kind} published for this centre yet")
                return
            etag = f'"{ds["etag"]}"'
            if self.headers.get("If-None-Match", "").strip() == etag:
                self.send_response(304)
                self.send_header("ETag", etag)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            schemas.validate("DatasetDocument", ds, "platform reply")
            if fault == "bad_reply":
                self._send_json(200, {**ds, "version": "latest"}, {"ETag": etag})
                return
            self._send_json(200, ds, {"ETag": etag})
            return
        self._error(404, "not_found", "no such endpoint")


@dataclass
class PlatformHandle:
    server: PlatformHTTPServer
    thread: threading.Thread
    store: PlatformStore
    url: str

    @property
    def faults(self) -> Faults:
        return self.server.faults

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
        self.store.close()


def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    db_url: str = "sqlite:///platform.db",
    faults: Faults | None = None,
    *,
    seed: dict[str, Any] | None = None,
    window_s: int = DEFAULT_WINDOW_S,
    ssl_context: ssl.SSLContext | None = None,
) -> PlatformHandle:
    """Start the server in a background thread; ``port=0`` picks a free port."""
    store = PlatformStore(db_url)
    if seed:
        store.seed(seed, _now())
    server = PlatformHTTPServer((host, port), store, faults or Faults(), window_s, ssl_context)
    thread = threading.Thread(target=server.serve_forever, name="platform-http", daemon=True)
    thread.start()
    scheme = "https" if ssl_context else "http"
    url = f"{scheme}://{host}:{server.server_address[1]}"
    log.info("platform_listening", url=url, db=db_url.split("://", 1)[0])
    return PlatformHandle(server, thread, store, url)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="care-terminal platform", description="Reference district platform server."
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the reference platform on loopback")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8470)
    s.add_argument(
        "--db", default="sqlite:///platform.db", help="SQLAlchemy URL (SQLite or PostgreSQL)"
    )
    s.add_argument("--seed", type=Path, help="JSON seed file (devices, datasets, consent changes)")
    s.add_argument(
        "--register",
        action="append",
        default=[],
        metavar="DEVICE:CENTRE:PUBKEY",
        help="register a device public key (repeatable)",
    )
    s.add_argument(
        "--window-s", type=int, default=DEFAULT_WINDOW_S, help="signature timestamp window"
    )
    s.add_argument("--tls-cert", type=Path)
    s.add_argument("--tls-key", type=Path)
    s.add_argument("--client-ca", type=Path, help="require client certificates from this CA (mTLS)")
    for name in (
        "error-rate",
        "retry-after-rate",
        "reset-rate",
        "drop-after-commit-rate",
        "bad-reply-rate",
        "latency-rate",
    ):
        s.add_argument(f"--{name}", type=float, default=0.0)
    s.add_argument("--latency-s", type=float, default=0.05)
    s.add_argument("--retry-after-s", type=int, default=1)
    s.add_argument("--retry-after-http-date", action="store_true")
    s.add_argument("--fault-seed", type=int)
    s.add_argument(
        "--print-url", action="store_true", help="print the URL as a JSON line when ready"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """``care-terminal platform serve ...``; runs until SIGTERM/SIGINT."""
    args = _parser().parse_args(argv)
    faults = Faults(
        error_rate=args.error_rate,
        retry_after_rate=args.retry_after_rate,
        reset_rate=args.reset_rate,
        drop_after_commit_rate=args.drop_after_commit_rate,
        bad_reply_rate=args.bad_reply_rate,
        latency_rate=args.latency_rate,
        latency_s=args.latency_s,
        retry_after_s=args.retry_after_s,
        retry_after_http_date=args.retry_after_http_date,
        seed=args.fault_seed,
    )
    seed = json.loads(args.seed.read_text(encoding="utf-8")) if args.seed else None
    ctx = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            print("error: --tls-cert and --tls-key go together", file=sys.stderr)
            return 2
        ctx = server_ssl_context(args.tls_cert, args.tls_key, args.client_ca)
    handle = serve(
        args.host, args.port, args.db, faults, seed=seed, window_s=args.window_s, ssl_context=ctx
    )
    for spec in args.register:
        device_id, centre_id, pub = spec.split(":", 2)
        handle.store.register_device(device_id, centre_id, pub, _now())
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if args.print_url:
        print(json.dumps({"url": handle.url}), flush=True)
    else:
        print(f"reference platform listening on {handle.url}", flush=True)
    stop.wait()
    handle.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
