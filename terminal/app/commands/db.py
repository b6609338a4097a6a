"""``care-terminal db check|migrate|backup``: storage maintenance for district IT."""

from __future__ import annotations

import argparse

from terminal.app.output import emit
from terminal.app.services import Services
from terminal.db.engine import backup, pragma
from terminal.db.migrate import current_revision, head_revision
from terminal.db.outbox import queue_stats, verify_outbox


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("db", help="database maintenance")
    dsub = p.add_subparsers(dest="action", required=True)
    c = dsub.add_parser("check", help="quick_check, migrate, verify the outbox hash chain")
    c.add_argument("--json", action="store_true")
    c.set_defaults(handler=cmd_check)
    b = dsub.add_parser("backup", help="write a consistent copy of the database")
    b.add_argument("--dest", help="folder (default: <data dir>/backups)")
    b.add_argument("--json", action="store_true")
    b.set_defaults(handler=cmd_backup)


def cmd_check(args: argparse.Namespace) -> int:
    svc = Services()
    try:
        db = svc.db
        with db.sessions() as session:
            problem = verify_outbox(session, svc.settings.centre.device_id)
            stats = queue_stats(session)
        doc = {
            "path": str(db.path),
            "boot": "ok" if db.boot.ok else "quarantined",
            "quarantined_to": str(db.boot.quarantined_to) if db.boot.quarantined_to else None,
            "revision": current_revision(db.engine),
            "head": head_revision(),
            "journal_mode": pragma(db.engine, "journal_mode"),
            "synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(
                pragma(db.engine, "synchronous")
            ),
            "outbox": stats,
            "chain": "ok"
            if problem is None
            else {"seq": problem.seq, "record_id": problem.record_id, "problem": problem.problem},
        }
        emit(args, doc)
        return 0 if problem is None and db.boot.ok else 2
    finally:
        svc.close()


def cmd_backup(args: argparse.Namespace) -> int:
    from pathlib import Path

    svc = Services()
    try:
        path = svc.db.path
        if path is None:
            emit(args, {"error": "not a file database"})
            return 2
        dest = Path(args.dest) if args.dest else path.parent / "backups"
        made = backup(path, dest, label="manual", keep=20)
        emit(args, {"backup": str(made)}, f"backup written to {made}")
        return 0
    finally:
        svc.close()
