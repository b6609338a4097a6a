"""Face commands: ``enroll``, ``identify``, ``face compare``, ``face eval``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from terminal.app.output import emit
from terminal.app.services import Services
from terminal.core.errors import NoFaceError, TerminalError
from terminal.db.engine import write_session
from terminal.db.roster import audit

if TYPE_CHECKING:
    from face.pipeline import Image, Observation
    from face.recognise import Recogniser


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    e = sub.add_parser("enroll", help="enrol a resident from 1-5 face images (consent recorded)")
    e.add_argument("--resident-id", required=True)
    e.add_argument("--name", required=True)
    e.add_argument(
        "--no-face-pay-consent",
        action="store_true",
        help="enrol for attendance only (face payment not consented)",
    )
    e.add_argument("--attendance-consent", action="store_true")
    e.add_argument(
        "--allow-duplicate-face",
        action="store_true",
        help="enrol even if the face already matches another resident",
    )
    e.add_argument("--staff", default="cli", help="staff id recorded in the audit trail")
    e.add_argument(
        "--category",
        action="append",
        default=None,
        help="senior category, repeatable (age_80_89, dibao, 低保, ...)",
    )
    e.add_argument(
        "--card", action="append", default=None, help="IC / resident card id, repeatable"
    )
    e.add_argument("--phone-last4")
    e.add_argument("--json", action="store_true")
    e.add_argument("images", nargs="+", type=Path)
    e.set_defaults(handler=cmd_enroll)

    i = sub.add_parser("identify", help="who is the (largest) face in this image?")
    i.add_argument("image", type=Path)
    i.add_argument("--json", action="store_true")
    i.set_defaults(handler=cmd_identify)

    f = sub.add_parser("face", help="face tools: compare two images, evaluate on a pairs list")
    fsub = f.add_subparsers(dest="action", required=True)
    c = fsub.add_parser("compare", help="similarity of the largest faces of two images")
    c.add_argument("image_a", type=Path)
    c.add_argument("image_b", type=Path)
    c.add_argument("--json", action="store_true")
    c.set_defaults(handler=cmd_compare)
    ev = fsub.add_parser(
        "eval", help="ROC AUC and TAR@FAR on a folder of images and a pairs CSV (a,b,same)"
    )
    ev.add_argument("--images", required=True, type=Path)
    ev.add_argument("--pairs", required=True, type=Path)
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(handler=cmd_eval)
    lv = fsub.add_parser(
        "liveness-eval",
        help="the liveness challenge on synthetic genuine heads and presentation attacks, "
        "tuning and held-out halves",
    )
    lv.add_argument(
        "--images",
        type=Path,
        default=Path("tests/data/faces"),
        help="labelled face photos (labels.csv: file,identity); default: the repository's",
    )
    lv.add_argument("--seeds", type=int, default=4, help="seeds per identity (even: tuning)")
    lv.add_argument(
        "--genuine-per-seed",
        type=int,
        default=1,
        help="genuine clips per identity and seed, each a different head, turn, light and camera",
    )
    lv.add_argument("--attacks", default="", help="comma-separated attack kinds (default: all)")
    lv.add_argument("--json", action="store_true")
    lv.set_defaults(handler=cmd_liveness_eval)


def _engine_only(svc: Services) -> Recogniser:
    from face.recognise import Recogniser

    return Recogniser.from_settings(svc.settings.face_pack_dir, svc.settings.face)


def _load(path: Path) -> Image:
    from face.pipeline import load_image

    return load_image(path)


def _largest_face(rec: Recogniser, path: Path) -> Observation:
    """The largest face of an image file, embedded (one ``observe`` pass)."""
    obs = rec.observe(_load(path), embed=True)
    if obs.embedding is None:
        raise NoFaceError(f"no face found in {path.name}")
    return obs


def cmd_enroll(args: argparse.Namespace) -> int:
    from face.enrol import apply_to_gallery, enrol

    if len(args.images) > 10:
        raise TerminalError("give at most 10 images; the best 5 are kept")
    svc = Services()
    try:
        rec = svc.recogniser
        loaded: list[tuple[str, Image | None, str | None]] = []
        for p in args.images:
            try:
                loaded.append((str(p), _load(p), None))
            except TerminalError as exc:
                loaded.append((str(p), None, str(exc)))
        plan = rec.plan_enrolment(loaded)
        now = svc.clock.now()
        with write_session(svc.db.sessions) as session:
            ids = enrol(
                session,
                svc.roster,
                svc.templates,
                svc.outbox,
                rec,
                plan,
                args.resident_id,
                args.name,
                now,
                consent_face_pay=not args.no_face_pay_consent,
                consent_attendance=args.attendance_consent,
                allow_duplicate_face=args.allow_duplicate_face,
                staff_id=args.staff,
            )
            if args.category or args.card or args.phone_last4:
                svc.roster.upsert(
                    session,
                    args.resident_id,
                    args.name,
                    now,
                    categories=args.category,
                    card_ids=args.card,
                    phone_last4=args.phone_last4,
                )
            audit(session, now, args.staff, "enrol", args.resident_id, {"templates": len(ids)})
        apply_to_gallery(rec, args.resident_id, plan)
        doc = {
            "resident_id": args.resident_id,
            "templates": len(ids),
            "used": [
                {"image": c.source, "quality": round(c.quality, 3), "note": c.problem}
                for c in plan.chosen
            ],
            "rejected": [{"image": c.source, "reason": c.problem} for c in plan.rejected],
        }
        lines = [f"enrolled {args.resident_id} with {len(ids)} template(s)"]
        lines += [f"  skipped {c.source}: {c.problem}" for c in plan.rejected]
        emit(args, doc, "\n".join(lines))
        return 0
    finally:
        svc.close()


def cmd_identify(args: argparse.Namespace) -> int:
    from face.recognise import IdentifyResult

    svc = Services()
    try:
        obs = svc.recogniser.observe(_load(args.image), identify=True)
        result = IdentifyResult.of(obs)  # NoFaceError without a face
        doc = result.as_dict()
        ident = result.identification
        if ident.decision == "identified":
            with svc.db.sessions() as session:
                info = svc.roster.find(session, ident.resident_id or "")
            doc["name_masked"] = info.name_masked if info else None
        text = f"{ident.decision}: {ident.resident_id or '-'} (score {ident.score:.3f}, second {ident.second_score:.3f})"
        if result.faces_found > 1:
            text += f"\nnote: {result.faces_found} faces found; used the largest"
        if not result.quality_ok:
            text += f"\nquality: {result.quality_text_en} / {result.quality_text_zh}"
        emit(args, doc, text)
        return 0 if ident.decision == "identified" else 1
    finally:
        svc.close()


def cmd_compare(args: argparse.Namespace) -> int:
    svc = Services()
    rec = _engine_only(svc)
    a = _largest_face(rec, args.image_a)
    b = _largest_face(rec, args.image_b)
    assert a.embedding is not None and b.embedding is not None
    sim = float(a.embedding @ b.embedding)
    s = svc.settings.face
    decision = (
        "same"
        if sim >= s.accept_threshold
        else ("uncertain" if sim >= s.uncertain_threshold else "different")
    )
    doc = {
        "similarity": round(sim, 4),
        "decision": decision,
        "threshold": s.accept_threshold,
        "uncertain_threshold": s.uncertain_threshold,
        "faces_found": {"a": a.faces_found, "b": b.faces_found},
    }
    emit(args, doc, f"{decision} (similarity {sim:.3f}, threshold {s.accept_threshold})")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from face.eval import evaluate

    svc = Services()
    rec = _engine_only(svc)
    doc = evaluate(args.images, args.pairs, rec.engine)
    emit(args, doc)
    return 0


def cmd_liveness_eval(args: argparse.Namespace) -> int:
    import sys

    from face.liveness_eval import evaluate
    from face.liveness_synth import ATTACKS

    if not (args.images / "labels.csv").is_file():
        raise TerminalError(f"{args.images} has no labels.csv (file,identity)")
    attacks = [a.strip() for a in args.attacks.split(",") if a.strip()] or list(ATTACKS)
    unknown = sorted(set(attacks) - set(ATTACKS))
    if unknown:
        raise TerminalError(f"unknown attack kinds {unknown}; known: {', '.join(ATTACKS)}")
    if not 1 <= args.seeds <= 50:
        raise TerminalError("--seeds must be 1..50")
    if not 1 <= args.genuine_per_seed <= 9:
        raise TerminalError("--genuine-per-seed must be 1..9")
    svc = Services()
    rec = _engine_only(svc)
    doc = evaluate(
        rec,
        args.images,
        seeds=range(args.seeds),
        attacks=attacks,
        genuine_per_seed=args.genuine_per_seed,
        progress=lambda m: print(m, file=sys.stderr),
    )
    lines = []
    for half, h in doc["halves"].items():
        lines.append(f"{half}: {h['attacks_passed']} of {h['attacks']} attacks passed")
        for kind, e in h["scenarios"].items():
            extra = ""
            if kind == "genuine":
                extra = (
                    f", needed a second try {e['needed_second_try']}, "
                    f"sent to the card {e['failed_over_to_card']}"
                )
            lines.append(f"  {kind:14s} {e['passed']}/{e['attempts']} passed{extra}")
    emit(args, doc, "\n".join(lines))
    return 0
