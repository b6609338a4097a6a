"""The reference platform as an ASGI application (Starlette) served by uvicorn.

Layers, outermost first:

* :class:`PlatformProtocol`, uvicorn's h11 protocol with three additions: a
  request whose headers do not arrive within the read timeout is answered 408
  and closed (uvicorn itself only times out idle keep-alive connections); an
  unreadable request is answered 400 with the spec's JSON error body (not
  uvicorn's plain text); and each request gets the ASGI extension
  ``care.abort``, which resets its connection (``SO_LINGER`` 0, then abort),
  for fault injection.
* :class:`FaultInjection`, ASGI middleware drawing one fault per request from a
  :class:`~sync.platform.faults.Faults`: an error or back-pressure answer, a
  delay, a reset before processing, the reply dropped after the commit, or a
  200 reply that violates the spec.
* Starlette, whose router hands every path to :class:`PlatformApp` (the core
  answers 404 and 405 itself, as JSON), with a JSON answer for anything that
  escapes.
* :class:`PlatformApp`: at most ``max_handlers`` requests in progress (503 with
  Retry-After beyond), the core's two steps (:mod:`sync.platform.core`) on a
  fixed pool of database threads, and the body read only after the headers
  passed, each read within the read timeout (408 and close otherwise).

Several worker processes (``platform serve --workers N``) each build their app
with :func:`app_from_env` from the settings the parent put in the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import socket
import ssl
import struct
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import h11
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request as StarletteRequest
from starlette.responses import Response
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol

from sync.auth import DEFAULT_WINDOW_S, server_ssl_context
from sync.platform.core import (
    MAX_HANDLERS,
    READ_TIMEOUT_S,
    SERVER_NAME,
    Pending,
    PlatformCore,
    Reply,
    Request,
    SettlementRules,
    busy_reply,
    error_doc,
    http_date,
)
from sync.platform.faults import Faults
from sync.platform.store import PlatformStore
from terminal.core.log import get_logger

log = get_logger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
T = TypeVar("T")

BODY_DEADLINE_S = 120.0  # a whole body, however steadily it trickles in
DB_THREADS = 8  # database threads per worker (each holds at most one connection)
ABORT = "care.abort"  # the ASGI extension that resets the request's connection
ENV_SETTINGS = "CARE_PLATFORM_SERVE"  # settings handed to worker processes


def _warm(executor: ThreadPoolExecutor, n: int) -> None:
    """Start all ``n`` threads now, so the thread count stays flat under load."""
    gate = threading.Barrier(n)
    for f in [executor.submit(gate.wait, 10) for _ in range(n)]:
        f.result()


class PlatformApp:
    """The ASGI endpoint: bounded requests, the core on database threads, bodies
    read after the headers passed, every answer from the core."""

    def __init__(
        self,
        core: PlatformCore,
        faults: Faults | None = None,
        *,
        read_timeout_s: float = READ_TIMEOUT_S,
        max_handlers: int = MAX_HANDLERS,
        db_threads: int = DB_THREADS,
        body_deadline_s: float = BODY_DEADLINE_S,
    ) -> None:
        self.core = core
        self.faults = faults or Faults()
        self.read_timeout_s = read_timeout_s
        self.max_handlers = max_handlers
        self.body_deadline_s = body_deadline_s
        self.in_flight = 0
        self.busy_refusals = 0
        self.executor = ThreadPoolExecutor(db_threads, thread_name_prefix="platform-db")
        _warm(self.executor, db_threads)

    @property
    def clock_offset_s(self) -> int:
        return self.core.clock_offset_s

    @clock_offset_s.setter
    def clock_offset_s(self, value: int) -> None:
        self.core.clock_offset_s = value

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def send_reply(self, send: Send, reply: Reply) -> None:
        headers: list[tuple[bytes, bytes]] = [
            (b"Date", self.core.date().encode("latin-1")),
            (b"Server", SERVER_NAME.encode("latin-1")),
        ]
        if reply.status != 304 and "Content-Type" not in reply.headers:
            headers.append((b"Content-Type", b"application/json; charset=utf-8"))
        headers.append((b"Content-Length", str(len(reply.body)).encode("ascii")))
        headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers.items()]
        if reply.close:
            headers.append((b"Connection", b"close"))
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body, "more_body": False})

    async def read_body(self, receive: Receive, limit: int | None = None) -> bytes | str:
        """The whole body, or why not: ``"timeout"`` (a read waited longer than the
        read timeout, or the body took longer than its deadline) or ``"gone"``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_deadline_s
        buf = bytearray()
        while True:
            wait = min(self.read_timeout_s, deadline - loop.time())
            if wait <= 0:
                return "timeout"
            try:
                msg = await asyncio.wait_for(receive(), wait)
            except TimeoutError:
                return "timeout"
            if msg["type"] == "http.disconnect":
                return "gone"
            if limit is None or len(buf) < limit:
                buf += msg.get("body", b"")
            if not msg.get("more_body", False):
                return bytes(buf)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.in_flight >= self.max_handlers:
            self.busy_refusals += 1
            await self.send_reply(send, busy_reply())
            return
        self.in_flight += 1
        try:
            await self._handle(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        req = request_of(scope)
        first = await self._run(self.core.head, req)
        if isinstance(first, Reply):
            await self.send_reply(send, first)
            return
        assert isinstance(first, Pending)
        body = await self.read_body(receive)
        if body == "gone":
            return
        if isinstance(body, str):
            await self.send_reply(
                send,
                Reply.error(408, "request_timeout", "the body did not arrive in time", close=True),
            )
            return
        await self.send_reply(send, await self._run(self.core.finish, req, first, body))


def request_of(scope: Scope) -> Request:
    """The core's view of an ASGI request: the raw path (what was signed)."""
    raw = scope.get("raw_path") or scope["path"].encode("utf-8")
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    return Request(
        method=scope["method"],
        path=raw.decode("latin-1"),
        query=scope.get("query_string", b"").decode("latin-1"),
        headers=headers,
    )


class FaultInjection:
    """ASGI middleware: one draw per request (``/healthz`` excepted) from the
    platform's current :class:`Faults` (tests swap it while the server runs)."""

    def __init__(self, app: Callable[..., Awaitable[None]], platform: PlatformApp) -> None:
        self.app = app
        self.platform = platform

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        faults = self.platform.faults
        if scope["type"] != "http" or scope["path"] == "/healthz" or faults.total_rate <= 0:
            await self.app(scope, receive, send)
            return
        kind = faults.draw()
        if kind is None:
            await self.app(scope, receive, send)
        elif kind == "latency":
            await asyncio.sleep(faults.jitter())
            await self.app(scope, receive, send)
        elif kind in ("error", "retry_after"):
            await self._refuse(faults, kind, receive, send)
        elif kind == "reset":
            _abort(scope)
        elif kind == "drop_after_commit":
            await self.app(scope, receive, _discard)
            _abort(scope)
        else:  # bad_reply
            await self._bad_reply(scope, receive, send)

    async def _refuse(self, faults: Faults, kind: str, receive: Receive, send: Send) -> None:
        """An injected 5xx/408, or 429/503 with Retry-After, after the body was read
        (the connection stays usable, as after a real answer)."""
        body = await self.platform.read_body(receive, limit=0)
        if body == "gone":
            return
        if kind == "error":
            status = faults.pick([500, 502, 503, 504, 408])
            reply = Reply.error(
                status, "unavailable" if status != 500 else "internal_error", "injected failure"
            )
        else:
            if faults.retry_after_http_date:
                now = self.platform.core.now_s()
                value = http_date(now + faults.retry_after_s + 1)
            else:
                value = str(faults.retry_after_s)
            status = faults.pick([429, 503])
            reply = Reply.error(
                status,
                "rate_limited" if status == 429 else "unavailable",
                "injected back-pressure",
                retry_after=value,
            )
        await self.platform.send_reply(send, reply)

    async def _bad_reply(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Process normally, then answer a 200 whose body violates the spec: every
        record result ``maybe``, a dataset version ``latest``."""
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, hold)
        if not held:
            return
        start, body = held[0], b"".join(m.get("body", b"") for m in held[1:])
        if start.get("status") == 200 and body:
            doc = json.loads(body)
            if isinstance(doc.get("results"), list):
                doc["results"] = [{**r, "result": "maybe"} for r in doc["results"]]
            elif "version" in doc and "data" in doc:
                doc["version"] = "latest"
            body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            start = dict(start)
            start["headers"] = [
                (k, str(len(body)).encode("ascii") if k.lower() == b"content-length" else v)
                for k, v in start["headers"]
            ]
        await send(start)
        await send({"type": "http.response.body", "body": body, "more_body": False})


async def _discard(message: Message) -> None:
    return None


def _abort(scope: Scope) -> None:
    abort = scope.get("extensions", {}).get(ABORT)
    if abort is None:  # pragma: no cover - only under another server than ours
        raise RuntimeError("connection resets need the platform's uvicorn protocol")
    abort()


async def _json_500(request: StarletteRequest, exc: Exception) -> Response:
    """Anything that escaped the core: still the spec's JSON error."""
    log.error("platform_asgi_failed", error=type(exc).__name__)
    body = json.dumps(
        error_doc(500, "internal_error", "the platform failed on this request"),
        separators=(",", ":"),
    )
    return Response(
        body, 500, {"Connection": "close"}, media_type="application/json; charset=utf-8"
    )


def build_app(platform: PlatformApp, *, on_shutdown: Callable[[], None] | None = None) -> Starlette:
    """The Starlette application: fault injection around the platform endpoint,
    which the router hands every path (it answers 404/405 itself)."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        if on_shutdown is not None:
            on_shutdown()

    app = Starlette(
        middleware=[Middleware(FaultInjection, platform=platform)],
        exception_handlers={Exception: _json_500},
        lifespan=lifespan,
    )
    app.router.default = platform
    return app


# -- uvicorn -----------------------------------------------------------------------------


def _json_answer(status: int, code: str, message: str) -> bytes:
    body = json.dumps(error_doc(status, code, message), separators=(",", ":")).encode("utf-8")
    reason = {400: "Bad Request", 408: "Request Timeout"}[status]
    head = (
        f"HTTP/1.1 {status} {reason}\r\nDate: {http_date(time.time())}\r\n"
        f"Server: {SERVER_NAME}\r\nContent-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class PlatformProtocol(H11Protocol):
    """uvicorn's h11 protocol plus a header deadline, JSON 400s and ``care.abort``."""

    def __init__(self, config: Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.read_timeout_s = float(getattr(config, "care_read_timeout_s", READ_TIMEOUT_S))
        self._header_deadline: asyncio.TimerHandle | None = None
        app = self.app

        async def with_abort(scope: Scope, receive: Receive, send: Send) -> None:
            scope.setdefault("extensions", {})[ABORT] = self.abort
            await app(scope, receive, send)

        self.app = with_abort

    # -- a request's headers must arrive within the read timeout -------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm_header_deadline()

    def _arm_header_deadline(self) -> None:
        self._cancel_header_deadline()
        self._header_deadline = self.loop.call_later(
            self.read_timeout_s, self._header_timeout, self.cycle
        )

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _header_timeout(self, cycle_when_armed: object) -> None:
        """No new request started since the deadline was armed: close, with a 408
        if part of a request came (an idle keep-alive connection just closes)."""
        self._header_deadline = None
        waiting = self.cycle is None or self.cycle.response_complete
        if self.cycle is not cycle_when_armed or not waiting or self.transport.is_closing():
            return
        if self.conn.trailing_data[0]:
            self.transport.write(
                _json_answer(408, "request_timeout", "the request did not arrive in time")
            )
        self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

    # -- the spec's error body for requests h11 cannot read ------------------------------
    def send_400_response(self, msg: str) -> None:
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            self.transport.write(
                _json_answer(400, "malformed_request", "not a readable HTTP/1.1 request")
            )
        self.transport.close()

    # -- care.abort ----------------------------------------------------------------------
    def abort(self) -> None:
        """Reset this connection now (RST, not FIN): what a crashed or unreachable
        platform looks like to a terminal. The running request sends nothing more."""
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if self.cycle is not None:
            self.cycle.disconnected = True
        self.transport.abort()


def uvicorn_config(
    app: Any,
    *,
    host: str,
    port: int,
    read_timeout_s: float,
    workers: int = 1,
    factory: bool = False,
    ssl_context: ssl.SSLContext | None = None,
    tls: tuple[Path, Path, Path | None] | None = None,
    graceful_s: int = 5,
) -> Config:
    """uvicorn settings for the platform: our protocol, no uvicorn logging set-up,
    no Date/Server headers of its own (the platform's Date follows its clock)."""
    ctx_factory: Callable[..., ssl.SSLContext] | None = None
    if ssl_context is not None:
        ctx_factory = functools.partial(_given_context, ssl_context)
    elif tls is not None:
        ctx_factory = functools.partial(_tls_context, *tls)
    config = Config(
        app,
        host=host,
        port=port,
        workers=workers,
        factory=factory,
        http=PlatformProtocol,
        lifespan="on",
        log_config=None,
        access_log=False,
        date_header=False,
        server_header=False,
        proxy_headers=False,
        timeout_keep_alive=max(1, int(read_timeout_s)),
        timeout_graceful_shutdown=graceful_s,
        ssl_context_factory=ctx_factory,
        timeout_worker_healthcheck=60,  # a worker starting on a busy machine is not hung
    )
    config.care_read_timeout_s = read_timeout_s  # type: ignore[attr-defined]
    return config


def _given_context(ctx: ssl.SSLContext, _config: Config, _default: object) -> ssl.SSLContext:
    return ctx


def _tls_context(
    cert: Path, key: Path, client_ca: Path | None, _config: Config, _default: object
) -> ssl.SSLContext:
    return server_ssl_context(cert, key, client_ca)


# -- worker processes --------------------------------------------------------------------


def settings_for_workers(
    db_url: str,
    faults: Faults,
    *,
    window_s: int = DEFAULT_WINDOW_S,
    read_timeout_s: float = READ_TIMEOUT_S,
    max_handlers: int = MAX_HANDLERS,
    db_threads: int = DB_THREADS,
) -> str:
    """The JSON a worker's :func:`app_from_env` reads from :data:`ENV_SETTINGS`."""
    return json.dumps(
        {
            "db": db_url,
            "window_s": window_s,
            "read_timeout_s": read_timeout_s,
            "max_handlers": max_handlers,
            "db_threads": db_threads,
            "faults": {
                "error_rate": faults.error_rate,
                "retry_after_rate": faults.retry_after_rate,
                "reset_rate": faults.reset_rate,
                "drop_after_commit_rate": faults.drop_after_commit_rate,
                "bad_reply_rate": faults.bad_reply_rate,
                "latency_rate": faults.latency_rate,
                "latency_s": faults.latency_s,
                "retry_after_s": faults.retry_after_s,
                "retry_after_http_date": faults.retry_after_http_date,
                "seed": faults.seed,
            },
        }
    )


def app_from_env(settlement: SettlementRules | None = None) -> Starlette:
    """A worker process's application (uvicorn factory): its own store (its own
    connection pool) and database threads; the parent already migrated, seeded
    and registered."""
    cfg = json.loads(os.environ[ENV_SETTINGS])
    faults = Faults(**cfg["faults"])
    if faults.seed is not None:  # each worker its own sequence, still reproducible
        faults = Faults(**{**cfg["faults"], "seed": faults.seed * 1000 + os.getpid() % 1000})
    store = PlatformStore(cfg["db"])
    platform = PlatformApp(
        PlatformCore(store, window_s=cfg["window_s"], settlement=settlement),
        faults,
        read_timeout_s=cfg["read_timeout_s"],
        max_handlers=cfg["max_handlers"],
        db_threads=cfg["db_threads"],
    )

    def shutdown() -> None:
        platform.close()
        store.close()

    return build_app(platform, on_shutdown=shutdown)
