"""The reference platform server: ``sync/spec`` over HTTP, Starlette on uvicorn.

The request handling is :mod:`sync.platform.core` (transport-independent); the
ASGI application, fault injection and the uvicorn protocol are
:mod:`sync.platform.asgi`; the database is :mod:`sync.platform.store`
(SQLite by default, PostgreSQL by URL). This module starts it:

* in-process: ``handle = serve("127.0.0.1", 0, "sqlite:///p.db", Faults(...))``
  runs uvicorn in a background thread; ``handle.url``; ``handle.stop()``. The
  demo, ``sync`` commands and the tests use it.
* ``care-terminal platform serve`` (:func:`main`): one process, or with
  ``--workers N`` a uvicorn supervisor and N worker processes sharing the
  listening socket (PostgreSQL only: SQLite takes one writer process).

Either way the database is migrated, seeded and devices registered before the
first request is served.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import ssl
import sys
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from sync.auth import DEFAULT_WINDOW_S, server_ssl_context
from sync.platform.asgi import (
    DB_THREADS,
    ENV_SETTINGS,
    PlatformApp,
    build_app,
    settings_for_workers,
    uvicorn_config,
)
from sync.platform.core import (
    MAX_BODY,
    MAX_CURSOR,
    MAX_HANDLERS,
    MAX_JSON_DEPTH,
    READ_TIMEOUT_S,
    PlatformCore,
    SettlementRules,
    _now,
    allowed_methods,
    consent_page_etag,
    if_none_match,
    json_too_deep,
    parse_json_body,
)
from sync.platform.faults import FAULT_KINDS, Faults
from sync.platform.store import (
    DEBIT_RELEASE_MIN_AGE,
    VISIT_PAYMENT_SOURCES,
    PlatformStore,
    PlatformStoreError,
)
from terminal.core.atomic import atomic_write_bytes
from terminal.core.log import get_logger
from terminal.db.crypto import load_or_create_key

log = get_logger(__name__)

__all__ = [
    "FAULT_KINDS",
    "MAX_BODY",
    "MAX_CURSOR",
    "MAX_HANDLERS",
    "MAX_JSON_DEPTH",
    "READ_TIMEOUT_S",
    "Faults",
    "PlatformHandle",
    "allowed_methods",
    "consent_page_etag",
    "if_none_match",
    "json_too_deep",
    "main",
    "parse_json_body",
    "serve",
]


@dataclass
class PlatformHandle:
    """A platform running in this process. ``server`` is the ASGI endpoint, whose
    ``faults`` and ``clock_offset_s`` tests may change while it runs."""

    server: PlatformApp
    thread: threading.Thread
    store: PlatformStore
    url: str
    _uvicorn: uvicorn.Server

    @property
    def faults(self) -> Faults:
        return self.server.faults

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.url.split("://", 1)[1].rsplit(":", 1)
        return host, int(port)

    def stop(self) -> None:
        self._uvicorn.should_exit = True
        self.thread.join(timeout=15)
        self.server.close()
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
    db_threads: int = DB_THREADS,
    settlement: SettlementRules | None = None,
) -> PlatformHandle:
    """Start the platform (uvicorn in a background thread); ``port=0`` picks a
    free port. Returns once it accepts connections."""
    store = PlatformStore(db_url)
    try:
        if seed:
            store.seed(seed, _now())
        platform = PlatformApp(
            PlatformCore(store, window_s=window_s, settlement=settlement),
            faults,
            read_timeout_s=read_timeout_s,
            max_handlers=max_handlers,
            db_threads=db_threads,
        )
    except BaseException:
        store.close()
        raise
    config = uvicorn_config(
        build_app(platform),
        host=host,
        port=port,
        read_timeout_s=read_timeout_s,
        ssl_context=ssl_context,
        graceful_s=3,
    )
    sock = config.bind_socket()
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="platform-http", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            platform.close()
            store.close()
            raise RuntimeError("the platform server did not start")
        time.sleep(0.01)
    scheme = "https" if ssl_context else "http"
    url = f"{scheme}://{host}:{sock.getsockname()[1]}"
    log.info("platform_listening", url=url, db=db_url.split("://", 1)[0])
    return PlatformHandle(platform, thread, store, url, server)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="care-terminal platform", description="Reference district platform server."
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the reference platform")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8470)
    s.add_argument(
        "--db", default="sqlite:///platform.db", help="SQLAlchemy URL (SQLite or PostgreSQL)"
    )
    s.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes (several need PostgreSQL; SQLite takes one writer process)",
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
        help="answer 408 and disconnect a client silent this long while sending a request",
    )
    s.add_argument(
        "--max-handlers",
        type=int,
        default=MAX_HANDLERS,
        help="requests in progress at once per worker; more are answered 503 with Retry-After",
    )
    s.add_argument(
        "--db-threads",
        type=int,
        default=DB_THREADS,
        help="database threads (and at most as many connections) per worker",
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
    s.add_argument(
        "--district-pepper",
        type=Path,
        help="the district pepper file (32 bytes, mode 0600) every terminal is provisioned "
        "with; a missing file is written with the platform's pepper (made once)",
    )
    s.add_argument(
        "--visit-payment-source",
        choices=VISIT_PAYMENT_SOURCES,
        help="district policy: where a visitor from another centre pays the amount due",
    )
    st = sub.add_parser("settlement", help="the district's settlement between centres for a period")
    st.add_argument("--db", default="sqlite:///platform.db", help="SQLAlchemy URL")
    st.add_argument("--from", dest="period_from", required=True, help="first day, YYYY-MM-DD")
    st.add_argument("--to", dest="period_to", required=True, help="last day, YYYY-MM-DD")
    st.add_argument("--centre", help="only the lines of this centre (claimant or debtor)")
    st.add_argument("--csv", action="store_true", help="CSV instead of JSON")
    w = sub.add_parser(
        "wallets",
        help="the district wallets (policy home_wallet): balances, and debits whose meal "
        "has not arrived (an answer lost and no meal made, or a terminal still offline)",
    )
    w.add_argument("--db", default="sqlite:///platform.db", help="SQLAlchemy URL")
    fix = w.add_mutually_exclusive_group()
    fix.add_argument(
        "--release-meal",
        metavar="RECORD_ID",
        help="give back the debit of a meal that never arrived (older than --min-age-days)",
    )
    fix.add_argument(
        "--reverse-topup",
        metavar="RECORD_ID",
        help="take back a mistaken top-up (the home centre returns the cash)",
    )
    w.add_argument("--staff", default="", help="district staff id (for a correction)")
    w.add_argument("--reason", default="", help="why (for a correction)")
    w.add_argument("--min-age-days", type=int, default=DEBIT_RELEASE_MIN_AGE.days)
    return p


def district_pepper_file(store: PlatformStore, path: Path, now: datetime) -> None:
    """Give the platform the district pepper from ``path``; when the file does not
    exist yet, write the platform's pepper (made now if it has none) to it, mode
    0600, for district IT to provision every terminal with."""
    if path.exists():
        store.set_district(now, pepper=load_or_create_key(path, create=False))
        return
    atomic_write_bytes(path, store.ensure_pepper(now), mode=0o600, overwrite=False)


def _prepare(args: argparse.Namespace) -> None:
    """Migrate (a fresh database is created), seed and register, before serving."""
    seed = json.loads(args.seed.read_text(encoding="utf-8")) if args.seed else None
    store = PlatformStore(args.db)
    try:
        # the district's settings first: the seed's rosters are made into the
        # district roster with them
        if args.district_pepper is not None:
            district_pepper_file(store, args.district_pepper, _now())
        if args.visit_payment_source is not None:
            store.set_district(_now(), payment_source=args.visit_payment_source)
        if seed:
            store.seed(seed, _now())
        for spec in args.register:
            device_id, centre_id, pub = spec.split(":", 2)
            store.register_device(device_id, centre_id, pub, _now())
    finally:
        store.close()


def _settlement(args: argparse.Namespace, settlement: SettlementRules | None) -> int:
    """``platform settlement``: the report on stdout (JSON, or CSV with --csv)."""
    try:
        start, end = date.fromisoformat(args.period_from), date.fromisoformat(args.period_to)
    except ValueError:
        print("error: --from and --to are dates (YYYY-MM-DD)", file=sys.stderr)
        return 2
    if end < start:
        print("error: the period ends before it starts", file=sys.stderr)
        return 2
    store = PlatformStore(args.db)
    try:
        core = PlatformCore(store, settlement=settlement)
        doc = core.settlement_report(start, end, args.centre)
    finally:
        store.close()
    if args.csv and settlement is not None:
        sys.stdout.write(settlement.to_csv(doc["lines"], True))
    else:
        print(json.dumps(doc, ensure_ascii=False, indent=2))
    return 0


def _wallets(args: argparse.Namespace) -> int:
    """``platform wallets``: the audit, or one hand correction by district staff."""
    store = PlatformStore(args.db)
    try:
        if args.release_meal:
            doc = store.release_district_debit(
                args.release_meal,
                args.staff,
                args.reason,
                _now(),
                min_age=timedelta(days=args.min_age_days),
            )
        elif args.reverse_topup:
            doc = store.reverse_district_topup(args.reverse_topup, args.staff, args.reason, _now())
        else:
            doc = store.district_wallets_audit()
    except PlatformStoreError as exc:  # InsufficientBalance is one: the money is spent
        print(f"error: {exc} ({exc.code})", file=sys.stderr)
        return 2
    finally:
        store.close()
    print(json.dumps(doc, ensure_ascii=False, indent=2))
    return 0


def _announce(args: argparse.Namespace, url: str) -> None:
    if args.print_url:
        print(json.dumps({"url": url}), flush=True)
    else:
        print(f"reference platform listening on {url}", flush=True)


def main(
    argv: list[str] | None = None,
    *,
    settlement: SettlementRules | None = None,
    worker_factory: str = "sync.platform.asgi:app_from_env",
) -> int:
    """``care-terminal platform serve ...`` (runs until SIGTERM/SIGINT) and
    ``care-terminal platform settlement ...``. ``settlement`` are the settlement
    rules the composition root wires in; ``worker_factory`` builds a worker
    process's application (with the same rules) when there are several."""
    args = _parser().parse_args(argv)
    if args.cmd == "wallets":
        return _wallets(args)
    if args.cmd == "settlement":
        try:
            return _settlement(args, settlement)
        except PlatformStoreError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
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
    if (args.tls_cert is None) != (args.tls_key is None):
        print("error: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    if args.workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return 2
    if args.workers > 1 and args.db.startswith("sqlite"):
        print(
            "error: several workers need PostgreSQL (--db postgresql+psycopg://...); "
            "SQLite takes one writer process",
            file=sys.stderr,
        )
        return 2
    try:
        _prepare(args)
    except PlatformStoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tls = (args.tls_cert, args.tls_key, args.client_ca) if args.tls_cert else None
    scheme = "https" if tls else "http"
    if args.workers == 1:
        return _serve_one(args, faults, scheme, settlement)
    os.environ[ENV_SETTINGS] = settings_for_workers(
        args.db,
        faults,
        window_s=args.window_s,
        read_timeout_s=args.read_timeout_s,
        max_handlers=args.max_handlers,
        db_threads=args.db_threads,
    )
    config = uvicorn_config(
        worker_factory,
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        read_timeout_s=args.read_timeout_s,
        tls=tls,
        graceful_s=10,
    )
    sock = config.bind_socket()
    sock.listen(config.backlog)  # connections wait for the first worker, not refused
    _announce(args, f"{scheme}://{args.host}:{sock.getsockname()[1]}")
    Multiprocess(config, sockets=[sock]).run()
    return 0


def _serve_one(
    args: argparse.Namespace, faults: Faults, scheme: str, settlement: SettlementRules | None
) -> int:
    ctx = (
        server_ssl_context(args.tls_cert, args.tls_key, args.client_ca)
        if scheme == "https"
        else None
    )
    handle = serve(
        args.host,
        args.port,
        args.db,
        faults,
        window_s=args.window_s,
        ssl_context=ctx,
        read_timeout_s=args.read_timeout_s,
        max_handlers=args.max_handlers,
        db_threads=args.db_threads,
        settlement=settlement,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    _announce(args, handle.url)
    stop.wait()
    handle.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
