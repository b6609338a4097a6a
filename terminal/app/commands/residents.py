"""``care-terminal residents list|remove``."""

from __future__ import annotations

import argparse

from terminal.app.output import emit
from terminal.app.services import Services
from terminal.db.engine import write_session
from terminal.db.roster import audit


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("residents", help="list or remove enrolled residents")
    rsub = p.add_subparsers(dest="action", required=True)
    ls = rsub.add_parser("list", help="list residents (masked names only)")
    ls.add_argument("--all", action="store_true", help="include removed residents")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=cmd_list)
    add = rsub.add_parser(
        "add", help="add or update a resident without a face (card / staff lookup)"
    )
    add.add_argument("--resident-id", required=True)
    add.add_argument("--name", required=True)
    add.add_argument("--category", action="append", default=None)
    add.add_argument("--card", action="append", default=None)
    add.add_argument("--phone-last4")
    add.add_argument("--attendance-consent", action="store_true")
    add.add_argument("--staff", default="cli")
    add.add_argument("--json", action="store_true")
    add.set_defaults(handler=cmd_add)
    rm = rsub.add_parser("remove", help="un-enrol: delete face templates, withdraw consents")
    rm.add_argument("resident_id")
    rm.add_argument("--staff", default="cli", help="staff id recorded in the audit trail")
    rm.add_argument(
        "--reason",
        default="resident_request",
        choices=[
            "resident_request",
            "consent_withdrawn",
            "left_centre",
            "deceased",
            "data_correction",
            "other",
        ],
    )
    rm.add_argument("--json", action="store_true")
    rm.set_defaults(handler=cmd_remove)


def cmd_list(args: argparse.Namespace) -> int:
    svc = Services()
    try:
        with svc.db.sessions() as session:
            rows = svc.roster.list(session, include_inactive=args.all)
            counts = {r.resident_id: svc.templates.count(session, r.resident_id) for r in rows}
        doc = [
            {
                "resident_id": r.resident_id,
                "name": r.name_masked,
                "templates": counts[r.resident_id],
                "consent_face_pay": r.consent_face_pay,
                "consent_attendance": r.consent_attendance,
                "active": r.active,
            }
            for r in rows
        ]
        text = (
            "\n".join(
                f"{d['resident_id']:<20} {d['name']:<8} templates={d['templates']} "
                f"face_pay={'yes' if d['consent_face_pay'] else 'no'}"
                f"{'' if d['active'] else ' (removed)'}"
                for d in doc
            )
            or "no residents enrolled"
        )
        emit(args, doc, text)
        return 0
    finally:
        svc.close()


def cmd_add(args: argparse.Namespace) -> int:
    svc = Services()
    try:
        now = svc.clock.now()
        with write_session(svc.db.sessions) as session:
            info = svc.roster.upsert(
                session,
                args.resident_id,
                args.name,
                now,
                categories=args.category,
                card_ids=args.card,
                phone_last4=args.phone_last4,
                consent_attendance=args.attendance_consent or None,
            )
            audit(session, now, args.staff, "resident_upsert", args.resident_id, {})
        emit(
            args,
            {
                "resident_id": info.resident_id,
                "name": info.name_masked,
                "categories": info.categories,
            },
            f"resident {info.resident_id} ({info.name_masked}) saved",
        )
        return 0
    finally:
        svc.close()


def cmd_remove(args: argparse.Namespace) -> int:
    from face.enrol import unenrol

    svc = Services()
    try:
        with write_session(svc.db.sessions) as session:
            removed = unenrol(
                session,
                svc.roster,
                svc.templates,
                svc.outbox,
                args.resident_id,
                svc.clock.now(),
                reason=args.reason,
                staff_id=args.staff,
            )
            audit(
                session,
                svc.clock.now(),
                args.staff,
                "unenrol",
                args.resident_id,
                {"templates_deleted": removed},
            )
        emit(
            args,
            {"resident_id": args.resident_id, "templates_deleted": removed},
            f"removed {args.resident_id}: {removed} face templates deleted",
        )
        return 0
    finally:
        svc.close()
