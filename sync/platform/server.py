"""The reference platform server: a real HTTP server implementing ``sync/spec``.

Built on the standard library's ``ThreadingHTTPServer`` rather than an ASGI
framework, on purpose:

* no extra dependency on the device image or in CI, and a platform vendor can
  read the whole request path (auth, idempotency, sequence, chain) top to bottom;
* fault injection needs the raw socket: a connection reset (``SO_LINGER`` 0) or
  a response dropped *after* the database commit cannot be expressed through an
  ASGI app's response object.

Throughput is ample for a loopback test double (HTTP/1.1 keep-alive, one
thread per connection, at most ``MAX_HANDLERS`` at once, each read bounded by
``READ_TIMEOUT_S``; the signature headers are checked before a body is read).
It stores everything in a real database through :mod:`sync.platform.store`
(SQLite by default, PostgreSQL by URL).

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
import re
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
    parse_signature_headers,
    server_ssl_context,
    verify_request,
)
from sync.platform.store import (
    Device,
    PlatformStore,
    PlatformStoreError,
    PlatformUnavailable,
    StoredAnswer,
)
from sync.retry import is_retryable_status
from terminal.core.clock import CHINA_TZ
from terminal.core.log import get_logger

log = get_logger(__name__)

MAX_BODY = 32 * 1024 * 1024  # the spec's request body limit (413 above it)
MAX_JSON_DEPTH = 32  # nesting of arrays/objects in a request body (400 deeper)
MAX_CURSOR = 128  # the spec's maxLength of a consent-changes cursor
READ_TIMEOUT_S = 15.0  # a client silent this long while sending is disconnected
MAX_HANDLERS = 32  # connections served at once; beyond them 503 with Retry-After
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


class BadRequest(Exception):
    """A request body the platform refuses before processing (400 malformed_request)."""


_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"')
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def json_too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True if ``body`` nests arrays/objects deeper than ``limit``: a linear scan
    (strings removed, then only brackets counted), no recursion, before parsing."""
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKET)
    if brackets.count(b"[") + brackets.count(b"{") <= limit:
        return False
    depth = 0
    for b in brackets:
        if b in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def parse_json_body(body: bytes) -> Any:
    """Parse a request body, refusing with :class:`BadRequest` what the spec does
    not allow: not UTF-8 JSON, nested deeper than :data:`MAX_JSON_DEPTH`, or a
    string with a lone surrogate escape (``"\\ud800"``, not Unicode text)."""
    if json_too_deep(body):
        raise BadRequest(f"the body nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest("the body is not JSON") from None
    try:
        json.dumps(doc, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(
            "the body has a string that is not Unicode text (lone surrogate)"
        ) from None
    return doc


# Endpoints and their methods (405 with Allow for another method on a known path).
_DEVICE_STREAM = re.compile(r"^/v1/devices/[^/]+/streams/[^/]+$")
_CENTRE_DATASET = re.compile(r"^/v1/centres/[^/]+/datasets/[^/]+$")


def allowed_methods(path: str) -> str | None:
    """The methods a path answers, or None for a path the platform does not have."""
    if path == "/v1/batches":
        return "POST"
    if path == "/healthz" or _DEVICE_STREAM.match(path) or _CENTRE_DATASET.match(path):
        return "GET"
    return None


_ETAG = re.compile(r'\s*(?:W/)?"([\x21\x23-\x7e\x80-\xff]*)"\s*(?:,|$)')


def if_none_match(header: str | None, etag: str) -> bool:
    """RFC 9110 section 13.1.2: does ``If-None-Match`` match the strong ``etag``
    (its opaque text, unquoted)? ``*`` matches; a list matches if one tag does;
    comparison is weak (``W/"x"`` matches ``"x"``). An unreadable header does not
    match (the full answer is sent)."""
    if header is None:
        return False
    text = header.strip()
    if text == "*":
        return True
    pos = 0
    while pos < len(text):
        m = _ETAG.match(text, pos)
        if m is None:
            return False
        if m.group(1) == etag:
            return True
        pos = m.end()
    return False


def consent_page_etag(page: dict[str, Any]) -> str:
    """A consent-changes page's ETag: from its content, so the same page is the
    same tag (also across restarts) and any change to it (new changes, has_more)
    a new one."""
    text = json.dumps(page, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return f"consent-{page['next_cursor']}-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:16]}"


def _status_code(status: int) -> str:
    return {
        400: "malformed_request",
        404: "not_found",
        405: "method_not_allowed",
        408: "request_timeout",
        413: "payload_too_large",
        414: "payload_too_large",
        431: "payload_too_large",
        501: "method_not_allowed",
        503: "unavailable",
    }.get(status, "malformed_request" if status < 500 else "internal_error")


def _error_doc(
    status: int, code: str, message: str, retry_after: str | None = None
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "error": code,
        "message": message[:500],
        "retryable": is_retryable_status(status),
    }
    if retry_after is not None:
        doc["retry_after_s"] = float(retry_after) if retry_after.isdigit() else None
    schemas.validate("Error", doc, "platform error reply")
    return doc


def _busy_reply() -> bytes:
    body = json.dumps(
        _error_doc(503, "unavailable", "the platform is busy; retry later", "1"),
        separators=(",", ":"),
    ).encode("utf-8")
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


_BUSY_REPLY = _busy_reply()


class PlatformHTTPServer(ThreadingHTTPServer):
    """One handler thread per connection, at most ``max_handlers`` at once: a
    connection beyond them is answered 503 with Retry-After by the accepting
    thread and closed, so slow or stalled clients cannot make the server spawn
    threads without limit. A handler whose client is silent for
    ``read_timeout_s`` gives up the connection."""

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
        *,
        read_timeout_s: float = READ_TIMEOUT_S,
        max_handlers: int = MAX_HANDLERS,
    ) -> None:
        super().__init__(addr, _Handler)
        self.store = store
        self.faults = faults
        self.window_s = window_s
        self.ssl_context = ssl_context
        self.clock_offset_s = 0  # tests move the platform clock
        self.read_timeout_s = read_timeout_s
        self.max_handlers = max_handlers
        self.busy_refusals = 0
        self._slots = threading.BoundedSemaphore(max_handlers)

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = super().get_request()
        if self.ssl_context is not None:
            sock = self.ssl_context.wrap_socket(
                sock, server_side=True, do_handshake_on_connect=False
            )
        return sock, addr

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.busy_refusals += 1
            if self.ssl_context is None:  # over TLS there is no answer without a handshake
                with contextlib.suppress(OSError):
                    request.setblocking(False)
                    with contextlib.suppress(BlockingIOError):
                        request.recv(65536)  # what already came, so the close is no reset
                    request.send(_BUSY_REPLY)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def _now() -> datetime:
    return datetime.now(CHINA_TZ)


BAD_SIGNATURE = "signature does not verify"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: PlatformHTTPServer
    server_version = "care-platform-reference/1"
    _body_read = False

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.read_timeout_s)  # every read: headers, body

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
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _error(
        self,
        status: int,
        code: str,
        message: str,
        retry_after: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        hdrs = dict(headers or {})
        if retry_after is not None:
            hdrs["Retry-After"] = retry_after
        self._send_json(status, _error_doc(status, code, message, retry_after), hdrs)

    def _refuse(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        """Answer an error before the body was read. A body still on its way is not
        read: the connection closes after the answer (see :meth:`_discard_unread`)."""
        pending = self._body_pending()
        if pending:
            self.close_connection = True
        self._error(status, code, message, headers=headers)
        if pending:
            self._discard_unread()

    def _body_pending(self) -> bool:
        if getattr(self, "_body_read", False) or not hasattr(self, "headers"):
            return False
        length = self.headers.get("Content-Length", "0").strip()
        return "Transfer-Encoding" in self.headers or length not in ("", "0")

    def _discard_unread(self) -> None:
        """Closing a socket with unread data resets it, and the client may lose the
        answer: send it, half-close, and discard what still arrives, at most 1 MiB
        for at most 1 s (read and dropped, never kept), then close."""
        self.close_connection = True
        with contextlib.suppress(OSError, ValueError):
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(0.2)
            deadline, left = time.monotonic() + 1.0, 1 << 20
            while left > 0 and time.monotonic() < deadline:
                chunk = self.connection.recv(min(65536, left))
                if not chunk:
                    break
                left -= len(chunk)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard library's own refusals (a bad request line, headers too long,
        a method without a ``do_`` handler) in the spec's JSON error shape, not an
        HTML page; a method the platform does not have is 405 with ``Allow``."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # an unreadable request line: answer 1.1
            self.request_version = "HTTP/1.1"
        path = urlsplit(getattr(self, "path", "") or "").path
        if code == 501:
            allow = allowed_methods(path)
            if allow is None:
                self._error(404, "not_found", "no such endpoint")
            else:
                self._error(
                    405,
                    "method_not_allowed",
                    f"{path} answers {allow} only",
                    headers={"Allow": allow},
                )
            return
        self._error(code, _status_code(code), message or explain or "request refused")

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
    def _content_length(self) -> int | None:
        """The body's length from its header (None: refused, 400/411/413)."""
        if "Transfer-Encoding" in self.headers:
            self._refuse(411, "length_required", "send the body with a Content-Length")
            return None
        raw = self.headers.get("Content-Length")
        if raw is None:
            return 0
        if not re.fullmatch(r"[0-9]{1,20}", raw.strip()):
            self._refuse(400, "malformed_request", "Content-Length is not a number")
            return None
        length = int(raw.strip())
        if length > MAX_BODY:
            self._refuse(
                413,
                "payload_too_large",
                f"the body is {length} bytes; the limit is {MAX_BODY} bytes",
            )
            return None
        return length

    def _read_body(self, length: int) -> bytes | None:
        """Read the body after the headers were authenticated (None: the client
        stalled or went away; the connection is closed)."""
        try:
            body = self.rfile.read(length) if length else b""
        except TimeoutError:
            self.close_connection = True
            self._body_read = True
            with contextlib.suppress(OSError):
                self._error(408, "request_timeout", "the body did not arrive in time")
            return None
        self._body_read = True
        if len(body) < length:
            self.close_connection = True
            return None
        return body

    def _pre_authenticate(self) -> Device | None:
        """What needs no body: readable signature headers, a timestamp within the
        window and a registered device. An unknown device gets exactly the answer of
        a bad signature, so the answer does not tell which device ids exist."""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            signed = parse_signature_headers(headers)
        except AuthError as exc:
            self._refuse(401, "bad_signature", str(exc))
            return None
        now = int(time.time()) + self.server.clock_offset_s
        if abs(now - signed.created) > self.server.window_s:
            self._refuse(
                401,
                "clock_skew",
                f"request time is {now - signed.created:+d} s from the platform's clock "
                f"(allowed {self.server.window_s} s)",
            )
            return None
        device = self.server.store.device(signed.keyid)
        if device is None:
            self._refuse(401, "bad_signature", BAD_SIGNATURE)
            return None
        return device

    def _authenticate(self, device: Device, body: bytes) -> Device | None:
        parts = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
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
        if device.status != "active":
            self._error(403, "device_revoked", "this device has been revoked")
            return None
        if not self.server.store.remember_nonce(
            device.device_id, signed.nonce, signed.created, now, self.server.window_s
        ):
            self._error(
                401, "replayed_request", "this request was already received (replayed nonce)"
            )
            return None
        return device

    def _receive(self) -> tuple[Device, bytes, str | None] | None:
        """Headers checked, body read, fault drawn, signature verified: the device,
        the body and the fault to apply after processing (None: answered)."""
        length = self._content_length()
        if length is None:
            return None
        device = self._pre_authenticate()
        if device is None:
            return None
        body = self._read_body(length)
        if body is None:
            return None
        fault = self._fault_before()
        if fault == "answered":
            return None
        if self._authenticate(device, body) is None:
            return None
        return device, body, fault

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
        self._body_read = False
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
        """Route a request: 404 for a path the platform does not have, 405 with
        ``Allow`` for another method. A database that cannot be reached (a
        PostgreSQL server restarting or across a lost network) is a retryable 503,
        an unforeseen failure a 500, both JSON answers, never a dropped connection
        with a traceback in the server's log."""
        path = urlsplit(self.path).path
        allow = allowed_methods(path)
        if allow is None:
            self._refuse(404, "not_found", "no such endpoint")
            return
        if self.command != allow:
            self._refuse(
                405, "method_not_allowed", f"{path} answers {allow} only", {"Allow": allow}
            )
            return
        try:
            route()
        except PlatformUnavailable as exc:
            log.warning("platform_db_unavailable", path=path)
            self._refuse(503, "unavailable", str(exc))  # the body may not be read yet
        except (_Reset, OSError):
            raise
        except Exception:
            log.exception("platform_request_failed", path=path)
            self.close_connection = True
            self._refuse(500, "internal_error", "the platform failed on this request")

    def _post(self) -> None:
        """``POST /v1/batches``. Once the request is authenticated and carries a valid
        Idempotency-Key, every final answer (the processed batch, and a 400, 403, 409
        or 422 about the body) is stored under the device's key and replayed for the
        same key and body; the same key with another body is ``422
        idempotency_key_reused`` (not stored). Answers before that point (401, 403
        device_revoked, 411, 413, a bad key) and transient ones (408, 429, 5xx) are
        not stored: the same request is processed when it comes again."""
        received = self._receive()
        if received is None:
            return
        device, body, fault = received
        key = self.headers.get("Idempotency-Key", "")
        if not key or len(key) > 255 or not all(0x21 <= ord(c) <= 0x7E for c in key):
            self._error(400, "malformed_request", "a valid Idempotency-Key header is required")
            return
        body_sha = hashlib.sha256(body).hexdigest()
        store = self.server.store

        def final(status: int, code: str, message: str) -> StoredAnswer:
            doc = _error_doc(status, code, message)
            return store.remember_answer(device.device_id, key, body_sha, status, doc, _now())

        try:
            answer = store.idempotent_answer(device.device_id, key, body_sha)
            if answer is None:
                answer = self._process(device, body, key, body_sha, final)
        except PlatformStoreError as exc:
            self._error(422, exc.code, str(exc))
            return
        if answer.status == 200 and fault == "drop_after_commit":
            self._reset()
        if answer.status == 200 and fault == "bad_reply":
            broken = dict(answer.body)
            broken["results"] = [{**r, "result": "maybe"} for r in broken["results"]]
            self._send_json(200, broken)
            return
        schemas.validate(
            "BatchResponse" if answer.status == 200 else "Error", answer.body, "platform reply"
        )
        self._send_json(
            answer.status, answer.body, {"Idempotent-Replayed": "true"} if answer.replayed else None
        )

    def _process(
        self,
        device: Device,
        body: bytes,
        key: str,
        body_sha: str,
        final: Callable[[int, str, str], StoredAnswer],
    ) -> StoredAnswer:
        """Check the batch as a whole, then apply it (the answer is stored either way)."""
        try:
            doc = parse_json_body(body)
        except BadRequest as exc:
            return final(400, "malformed_request", str(exc))
        # the batch's own fields; each record is checked on its own (per record)
        problems = schemas.batch_shell_problems(doc)
        if problems:
            return final(422, "schema_invalid", "; ".join(problems[:3]))
        if doc["device_id"] != device.device_id:
            return final(403, "forbidden", "the batch is for another device")
        if doc["centre_id"] != device.centre_id:
            return final(409, "centre_mismatch", "the device is registered to another centre")
        return self.server.store.process_batch(
            device, doc["stream"], doc["records"], key, body_sha, _now()
        )

    def _not_modified(self, etag: str) -> bool:
        """Answer 304 if ``If-None-Match`` matches the strong ``etag`` (RFC 9110)."""
        if not if_none_match(self.headers.get("If-None-Match"), etag):
            return False
        self.send_response(304)
        self.send_header("ETag", f'"{etag}"')
        self.send_header("Content-Length", "0")
        self.end_headers()
        return True

    def _get(self) -> None:
        parts = urlsplit(self.path)
        segs = [p for p in parts.path.split("/") if p]
        if parts.path == "/healthz":
            pending = self._body_pending()  # not read: close after answering
            self.close_connection = self.close_connection or pending
            self._send_json(200, {"status": "ok"})
            if pending:
                self._discard_unread()
            return
        received = self._receive()
        if received is None:
            return
        device, _body, fault = received
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
                if cursor is not None and len(cursor) > MAX_CURSOR:
                    self._error(
                        400,
                        "malformed_request",
                        f"the cursor is longer than {MAX_CURSOR} characters",
                    )
                    return
                page = self.server.store.consent_page(centre, cursor)
                schemas.validate("ConsentChangesPage", page, "platform reply")
                etag = consent_page_etag(page)
                if self._not_modified(etag):
                    return
                self._send_json(200, page, {"ETag": f'"{etag}"'})
                return
            ds = self.server.store.dataset(centre, kind)
            if ds is None:
                self._error(404, "not_found", f"no {kind} published for this centre yet")
                return
            if self._not_modified(ds["etag"]):
                return
            etag = f'"{ds["etag"]}"'
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
    read_timeout_s: float = READ_TIMEOUT_S,
    max_handlers: int = MAX_HANDLERS,
) -> PlatformHandle:
    """Start the server in a background thread; ``port=0`` picks a free port."""
    store = PlatformStore(db_url)
    if seed:
        store.seed(seed, _now())
    server = PlatformHTTPServer(
        (host, port),
        store,
        faults or Faults(),
        window_s,
        ssl_context,
        read_timeout_s=read_timeout_s,
        max_handlers=max_handlers,
    )
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
    s.add_argument(
        "--read-timeout-s",
        type=float,
        default=READ_TIMEOUT_S,
        help="disconnect a client silent this long while sending a request",
    )
    s.add_argument(
        "--max-handlers",
        type=int,
        default=MAX_HANDLERS,
        help="connections served at once; more are answered 503 with Retry-After",
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
        args.host,
        args.port,
        args.db,
        faults,
        seed=seed,
        window_s=args.window_s,
        ssl_context=ctx,
        read_timeout_s=args.read_timeout_s,
        max_handlers=args.max_handlers,
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
