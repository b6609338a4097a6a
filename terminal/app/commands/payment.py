"""Headless payment commands for staff tools and tests:
``pay``, ``topup``, ``void``, ``ledger show|verify``, ``menu set|show``, ``policy set|show``."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path
from typing import Any

from terminal.app.output import emit
from terminal.app.services import Services
from terminal.core.errors import TerminalError
from terminal.core.money import Money
from terminal.db.engine import DiskFull


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "pay",
        help="pay a meal without the touch screen (staff tools, tests); shows the quote and "
        "asks y/N on a terminal, --yes confirms non-interactively",
    )
    p.add_argument(
        "--resident",
        help="resident id (not for a senior of another centre: --card or --visitor-name)",
    )
    p.add_argument(
        "--slot",
        choices=["breakfast", "lunch", "dinner"],
        help="meal slot (staff method only; otherwise the slot served now)",
    )
    p.add_argument(
        "--item",
        action="append",
        default=[],
        metavar="ITEM[:QTY]",
        help="menu item id, repeatable (default: the slot's set meal)",
    )
    p.add_argument("--method", choices=["face", "card", "staff"], default="staff")
    p.add_argument("--image", type=Path, help="face image (method face)")
    p.add_argument("--card", help="card id (method card; default: the resident's first card)")
    p.add_argument(
        "--visitor-name",
        help="method staff: look up a senior of another centre by name and --phone-last4 "
        "(city-wide meals; needs the district pepper)",
    )
    p.add_argument("--phone-last4", help="second factor when the flow asks for it")
    p.add_argument("--staff", help="staff id: required for method staff (a staff action, recorded)")
    p.add_argument(
        "--yes", action="store_true", help="confirm the quoted payment without asking (scripts)"
    )
    p.add_argument(
        "--another-portion",
        action="store_true",
        help="the resident already had this meal: pay for another portion (no subsidy)",
    )
    p.add_argument("--receipt", action="store_true", help="print the receipt text")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_pay)

    t = sub.add_parser("topup", help="cash top-up of a resident's wallet")
    t.add_argument("--resident", required=True)
    t.add_argument("--amount", required=True, help="yuan, e.g. 50 or 50.00")
    t.add_argument("--staff", required=True)
    t.add_argument("--reason", default="")
    t.add_argument(
        "--district",
        action="store_true",
        help="top up the senior's district wallet, held by the platform (visit policy "
        "home_wallet), not this centre's wallet; credited when the record is uploaded",
    )
    t.add_argument("--json", action="store_true")
    t.set_defaults(handler=cmd_topup)

    v = sub.add_parser("void", help="void a meal transaction (a compensating record)")
    v.add_argument("record")
    v.add_argument(
        "--reason",
        required=True,
        help="reason code (wrong_item, duplicate_charge, wrong_resident, customer_request, "
        "meal_not_served, system_error) or free text",
    )
    v.add_argument("--staff", required=True)
    v.add_argument("--json", action="store_true")
    v.set_defaults(handler=cmd_void)

    lg = sub.add_parser("ledger", help="show or verify the ledger")
    lsub = lg.add_subparsers(dest="action", required=True)
    ls = lsub.add_parser("show", help="transactions, newest first")
    ls.add_argument("--day", help="YYYY-MM-DD (default: all)")
    ls.add_argument("--resident")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=cmd_ledger_show)
    lv = lsub.add_parser(
        "verify", help="balances, sequence and hash chain; reports the first bad record"
    )
    lv.add_argument("--json", action="store_true")
    lv.set_defaults(handler=cmd_ledger_verify)

    m = sub.add_parser("menu", help="today's menu")
    msub = m.add_subparsers(dest="action", required=True)
    ms = msub.add_parser("set", help="set a day's menu from JSON or --item lines")
    ms.add_argument("--file", type=Path, help='JSON {"date": ..., "items": [...]}')
    ms.add_argument("--day", help="YYYY-MM-DD (default: today)")
    ms.add_argument(
        "--item",
        action="append",
        default=[],
        metavar="ID,NAME,PRICE,SLOTS[,set|item]",
        help='e.g. "L1,午餐套餐,15.00,lunch" (slots separated by +)',
    )
    ms.add_argument("--staff", required=True)
    ms.add_argument("--json", action="store_true")
    ms.set_defaults(handler=cmd_menu_set)
    mw = msub.add_parser("show")
    mw.add_argument("--day")
    mw.add_argument("--json", action="store_true")
    mw.set_defaults(handler=cmd_menu_show)

    po = sub.add_parser("policy", help="subsidy policies (normally pulled from the platform)")
    psub = po.add_subparsers(dest="action", required=True)
    pset = psub.add_parser("set", help="install a policy version from JSON")
    pset.add_argument("file", type=Path)
    pset.add_argument("--json", action="store_true")
    pset.set_defaults(handler=cmd_policy_set)
    pshow = psub.add_parser("show", help="the policy in force")
    pshow.add_argument("--day")
    pshow.add_argument("--json", action="store_true")
    pshow.set_defaults(handler=cmd_policy_show)


def _day(text: str | None, svc: Services) -> date:
    if not text:
        return svc.clock.now().date()
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise TerminalError(f"not a date (YYYY-MM-DD): {text}") from exc


def _items(specs: list[str]) -> tuple[tuple[str, int], ...]:
    out = []
    for spec in specs:
        item, _, qty = spec.partition(":")
        try:
            n = int(qty) if qty else 1
        except ValueError as exc:
            raise TerminalError(f"bad quantity in {spec!r}") from exc
        out.append((item, n))
    return tuple(out)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TerminalError(f"cannot read {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise TerminalError(f"{path} is not valid JSON: {exc}") from exc


def cmd_pay(args: argparse.Namespace) -> int:
    from payment.domain import MealSlot
    from payment.flow import (
        AlreadyPaid,
        AnotherPortion,
        CardTapped,
        Challenge,
        Charge,
        Confirm,
        DigitsEntered,
        Done,
        FaceResult,
        FaceSeen,
        SecondFactorEntry,
        SelectItems,
        StaffLookup,
        Touch,
        VisitorLookup,
        step,
    )
    from payment.headless import drive
    from payment.receipt import render_receipt
    from terminal.kiosk.visitors import drive_visiting, platform_visitors, with_visitors

    svc = Services()
    visitors = platform_visitors(svc.settings)  # None without the district pepper
    try:
        store = svc.payment
        store.config = with_visitors(store.config, svc.settings if visitors else None)
        ctx = store.context()
        events: list[Any] = []
        if not args.resident and not (args.card or args.visitor_name):
            raise TerminalError("pass --resident (or --card / --visitor-name for a visitor)")
        if args.method == "staff":
            if not (args.staff or "").strip():
                raise TerminalError(
                    "method staff is a staff action: pass --staff STAFF_ID (it is recorded)",
                    code="staff_required",
                )
            slot = MealSlot(args.slot) if args.slot else None
            if args.visitor_name:
                if visitors is None:
                    raise TerminalError(
                        "looking up a senior of another centre needs the district pepper",
                        code="district_pepper_missing",
                    )
                lookup = VisitorLookup(args.visitor_name, args.phone_last4 or "", args.staff, slot)
                events.append(lookup)
            else:
                events.append(StaffLookup(args.resident, args.staff, slot))
        elif args.slot:
            raise TerminalError(
                "--slot applies to the staff method; card and face pay the slot served now"
            )
        if args.method == "card":
            card = args.card
            if not card:
                with svc.db.sessions() as s:
                    info = svc.roster.get(s, args.resident)
                if not info.card_ids:
                    raise TerminalError(
                        f"resident {args.resident} has no card on file; pass --card"
                    )
                card = info.card_ids[0]
            events.append(CardTapped(card))
        if args.method == "face":
            if not args.image:
                raise TerminalError("method face needs --image")
            from face.pipeline import load_image

            result = svc.recogniser.identify(load_image(args.image))
            ident = result.identification
            if ident.resident_id not in (None, args.resident) and ident.decision != "unknown":
                raise TerminalError(f"the face in the image is not resident {args.resident}")
            passive = ident.liveness.signals.get("passive", 0.0) if ident.liveness else 0.0
            events += [
                FaceSeen(),
                FaceResult(
                    ident.decision,
                    ident.resident_id,
                    ident.score,
                    passive,
                    None if result.quality_ok else result.quality_reason,
                ),
            ]
        d = drive_visiting(ctx, store.charge, events, svc.clock.now, visitors)
        if isinstance(d.state, Challenge):
            raise TerminalError(
                "face payment needs the live liveness challenge (a head turn at the kiosk camera); "
                "a still image cannot answer it: use the kiosk, a card or staff lookup"
            )
        if isinstance(d.state, AlreadyPaid) and args.another_portion:
            d = drive(ctx, store.charge, [AnotherPortion()], svc.clock.now, state=d.state)
        if isinstance(d.state, Confirm) and args.item:
            d = drive(
                ctx, store.charge, [SelectItems(_items(args.item))], svc.clock.now, state=d.state
            )
        for _ in range(2):  # again when the district wallet refused: now in cash
            if not isinstance(d.state, Confirm):
                break
            _confirm_quote(d.state, args.yes)  # the same confirmation the touch screen asks
            d = drive_visiting(
                ctx, store.charge, [Touch("confirm")], svc.clock.now, visitors, state=d.state
            )
        if isinstance(d.state, SecondFactorEntry):
            if not args.phone_last4:
                raise TerminalError("this payment needs a second factor: pass --phone-last4")
            d = drive(
                ctx, store.charge, [DigitsEntered(args.phone_last4)], svc.clock.now, state=d.state
            )
        _ = step  # the driver calls step; imported for readers following the flow
        if not isinstance(d.state, Done) or not d.committed:
            state = d.state
            reason = getattr(state, "reason", None) or type(state).__name__
            detail = getattr(state, "detail", "") or ""
            paid_at = getattr(state, "paid_at_hhmm", None)
            if detail == "disk_full":
                raise DiskFull("disk full")  # worded below
            msg = f"payment not made: {getattr(reason, 'value', reason)}"
            if paid_at:
                msg += (
                    f" (paid already at {paid_at}; pass --another-portion for a second one "
                    "without subsidy, or staff approve it in the kiosk)"
                )
            if detail:
                msg += f" ({detail})"
            raise TerminalError(msg, code="payment_refused")
        tx = store.get(d.committed[0].record_id)
        for eff in d.effects:  # told "paid" on this terminal: not reported again at start-up
            if isinstance(eff, Charge):
                store.mark_shown(eff.request.request_id, by="cli")
        doc = tx.as_dict()
        doc["spoken"] = d.spoken
        lines = render_receipt(store.receipt(tx.record_id, reprint=False))
        if args.receipt:
            doc["receipt"] = lines
        text = (
            f"paid {tx.due.yuan_str()} yuan (list {tx.list_amount.yuan_str()}, subsidy "
            f"{tx.subsidy.yuan_str()}); balance {tx.balance_after.yuan_str()}; record {tx.record_id}"
        )
        if args.receipt:
            text += "\n" + "\n".join(lines)
        visit = d.state.payment.visit
        if visit is not None:
            doc["visit"] = visit.to_payload()
            text += (
                f"\nvisitor of {visit.home_centre_id} ({visit.source.value}"
                f"{', for review' if visit.review else ''}); pays by {visit.payment_source.value}"
            )
        emit(args, doc, text)
        return 0
    except DiskFull as exc:
        raise DiskFull(
            "disk full: the payment was not recorded; free space on the data partition "
            f"({svc.settings.data_dir}) and try again"
        ) from exc
    finally:
        if visitors is not None:
            visitors.close()
        svc.close()


def _confirm_quote(state: Any, yes: bool) -> None:
    """Show the quote (on stderr: stdout stays for the result) and ask y/N on a
    terminal; without a terminal only ``--yes`` confirms."""
    p = state.payment
    q = p.quote
    items = ", ".join(f"{ln.name} x{ln.quantity}" for ln in p.lines)
    lines = [
        f"{'another portion of ' if p.another_portion else ''}{p.slot.value} for "
        f"{p.name_masked} ({p.resident_id}): {items}",
        f"list {q.list_total.yuan_str()} - subsidy {q.subsidy.yuan_str()} = "
        f"to pay {q.due.yuan_str()} yuan; balance {q.balance_before.yuan_str()} -> "
        f"{q.balance_after.yuan_str()}",
    ]
    if p.another_portion:
        lines.append(f"already paid for this meal at {p.paid_before_hhmm}; no subsidy this time")
    if p.visit is not None:
        v = p.visit
        why = f"; no subsidy: {v.refusal.value}" if v.refusal is not None else ""
        if v.wallet_note is not None:
            why += f"; not from the district wallet: {v.wallet_note.value}"
        if v.wallet_balance_fen is not None:
            why += f"; district wallet {Money(v.wallet_balance_fen).yuan_str()} yuan"
        lines.append(
            f"visitor of {v.home_centre_id} ({v.source.value}"
            f"{', for review' if v.review else ''}); pays by {v.payment_source.value}{why}"
        )
    print("\n".join(lines), file=sys.stderr)
    if yes:
        return
    if not sys.stdin.isatty():
        raise TerminalError(
            "this payment needs confirmation: answer on a terminal, or pass --yes",
            code="confirmation_required",
        )
    answer = input(f"pay {q.due.yuan_str()} yuan? [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise TerminalError("payment not made: not confirmed", code="not_confirmed")


def cmd_topup(args: argparse.Namespace) -> int:
    svc = Services()
    try:
        try:
            amount = Money.parse_yuan(args.amount)
        except ValueError as exc:
            raise TerminalError(str(exc)) from exc
        if args.district:
            rec = svc.payment.district_wallet.topup(args.resident, amount, args.staff)
            emit(
                args,
                rec,
                f"district wallet: {amount.yuan_str()} yuan queued for the platform; "
                f"record {rec['record_id']}",
            )
            return 0
        tx = svc.payment.topup(args.resident, amount, args.staff, args.reason)
        emit(
            args,
            tx.as_dict(),
            f"topped up {amount.yuan_str()} yuan; balance {tx.balance_after.yuan_str()}; "
            f"record {tx.record_id}",
        )
        return 0
    finally:
        svc.close()


def cmd_void(args: argparse.Namespace) -> int:
    svc = Services()
    try:
        tx = svc.payment.void(args.record, args.reason, args.staff)
        emit(
            args,
            tx.as_dict(),
            f"voided {args.record}; balance {tx.balance_after.yuan_str()}; record {tx.record_id}",
        )
        return 0
    finally:
        svc.close()


def cmd_ledger_show(args: argparse.Namespace) -> int:
    svc = Services()
    try:
        day = _day(args.day, svc) if args.day else None
        txs = svc.payment.transactions(day=day, resident_id=args.resident, limit=args.limit)
        doc = [t.as_dict() for t in txs]
        text = (
            "\n".join(
                f"{t.seq:>6} {t.at:%Y-%m-%d %H:%M} {t.kind:<7} {t.resident_id:<12} {t.name_masked:<6} "
                f"due {t.due.yuan_str():>7} subsidy {t.subsidy.yuan_str():>6} bal {t.balance_after.yuan_str():>8}"
                f"{' VOIDED' if t.voided else ''} {t.record_id}"
                for t in txs
            )
            or "no transactions"
        )
        emit(args, doc, text)
        return 0
    finally:
        svc.close()


def cmd_ledger_verify(args: argparse.Namespace) -> int:
    svc = Services()
    try:
        check = svc.payment.verify()
        doc = {
            "ok": check.ok,
            "entries": check.entries,
            "problem": check.problem,
            "record_id": check.record_id,
            "seq": check.seq,
        }
        text = (
            f"ledger ok: {check.entries} entries; balances equal the ledger; sequence and hash chain intact"
            if check.ok
            else f"ledger BAD at seq {check.seq} record {check.record_id}: {check.problem}"
        )
        emit(args, doc, text)
        return 0 if check.ok else 2
    finally:
        svc.close()


def cmd_menu_set(args: argparse.Namespace) -> int:
    from payment.domain import Menu

    svc = Services()
    try:
        if args.file:
            doc = _read_json(args.file)
        else:
            if not args.item:
                raise TerminalError("give --file or at least one --item")
            items = []
            for spec in args.item:
                parts = [p.strip() for p in spec.split(",")]
                if len(parts) not in (4, 5):
                    raise TerminalError(
                        f"bad --item {spec!r}: expected ID,NAME,PRICE,SLOTS[,set|item]"
                    )
                try:
                    price = Money.parse_yuan(parts[2])
                except ValueError as exc:
                    raise TerminalError(f"bad price in {spec!r}") from exc
                items.append(
                    {
                        "item_id": parts[0],
                        "name": parts[1],
                        "price_fen": price.fen,
                        "slots": parts[3].split("+"),
                        "kind": parts[4] if len(parts) == 5 else "set",
                    }
                )
            doc = {"date": _day(args.day, svc).isoformat(), "items": items}
        menu = Menu.from_dict(doc)
        svc.payment.set_menu(menu, args.staff)
        emit(args, menu.to_dict(), f"menu for {menu.day} set: {len(menu.items)} items")
        return 0
    finally:
        svc.close()


def cmd_menu_show(args: argparse.Namespace) -> int:
    svc = Services()
    try:
        day = _day(args.day, svc)
        menu = svc.payment.menu(day)
        if menu is None:
            raise TerminalError(f"no menu set for {day}")
        text = "\n".join(
            f"{i.item_id:<6} {i.name:<12} {i.price.yuan_str():>7}  "
            f"{'+'.join(s.value for s in i.slots)}"
            for i in menu.items
        )
        emit(args, menu.to_dict(), text)
        return 0
    finally:
        svc.close()


def cmd_policy_set(args: argparse.Namespace) -> int:
    svc = Services()
    try:
        pol = svc.payment.set_policy(_read_json(args.file))
        emit(
            args,
            pol.to_dict(),
            f"policy {pol.policy_id} v{pol.version} installed (from {pol.effective_from})",
        )
        return 0
    finally:
        svc.close()


def cmd_policy_show(args: argparse.Namespace) -> int:
    svc = Services()
    try:
        pol = svc.payment.policy(_day(args.day, svc))
        if pol is None:
            raise TerminalError("no subsidy policy in force")
        emit(args, pol.to_dict())
        return 0
    finally:
        svc.close()
