"""``care-terminal bench platform``: a city of simulated terminals against
``platform serve`` on PostgreSQL with several workers, on loopback
(:mod:`sync.platform.load`); records/s, latency, server RSS, lost/duplicated."""

from __future__ import annotations

import argparse
import json
from typing import Any

from terminal.core.errors import TerminalError


def add_bench_parser(bsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``bench platform`` to the ``bench`` sub-commands."""
    b = bsub.add_parser(
        "platform",
        help="simulated terminals uploading and pulling against platform serve on PostgreSQL: "
        "records/s, p50/p99 latency, server RSS, lost and duplicated records",
    )
    b.add_argument("--json", action="store_true", help="(output is always JSON)")
    b.add_argument("--terminals", type=int, default=2000, help="simulated terminals (devices)")
    b.add_argument("--centres", type=int, default=200, help="centres they belong to")
    b.add_argument("--rounds", type=int, default=2, help="batches each terminal uploads")
    b.add_argument("--batch", type=int, default=5, help="records per batch")
    b.add_argument("--workers", type=int, default=2, help="platform worker processes")
    b.add_argument("--client-processes", type=int, default=2)
    b.add_argument(
        "--connections",
        type=int,
        default=16,
        help="HTTP connections (requests in flight) per client process",
    )
    b.add_argument(
        "--db",
        help="an empty PostgreSQL database (postgresql+psycopg://...); default: a throw-away "
        "cluster from the machine's PostgreSQL binaries",
    )
    b.set_defaults(handler=cmd_bench_platform)


def cmd_bench_platform(args: argparse.Namespace) -> int:
    from sync.platform.load import run_load

    options: dict[str, Any] = {
        "terminals": args.terminals,
        "centres": args.centres,
        "rounds": args.rounds,
        "batch": args.batch,
        "workers": args.workers,
        "client_processes": args.client_processes,
        "connections": args.connections,
    }
    if args.db:
        doc = run_load(args.db, **options)
    else:
        from sync.platform.pgtemp import PgUnavailable, pg_server

        try:
            with pg_server() as pg:
                doc = run_load(pg.url(pg.create_database("bench")), **options)
        except PgUnavailable as exc:
            raise TerminalError(f"no PostgreSQL for the bench ({exc}); pass --db") from exc
    print(json.dumps(doc, ensure_ascii=False, indent=2))
    return 0 if doc["lost"] == doc["duplicated"] == doc["extra"] == 0 else 1
