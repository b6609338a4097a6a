"""Flow states -> screen view models for the senior screens. Qt-free.

``present`` maps one ``payment.flow`` state (plus the idle info, the latest
camera guidance and the clock) to the screen that shows it and a view model
holding every text already translated. Views only lay these out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from payment.flow import (
    VISITOR_HINT,
    AlreadyPaid,
    Challenge,
    ChargePending,
    Charging,
    Checking,
    Confirm,
    Done,
    Failed,
    FailReason,
    Idle,
    NextAction,
    SecondFactorEntry,
    StaffRequired,
    State,
    VisitorChecking,
    VisitorClaiming,
)
from payment.visiting import PaymentSource, Visit, VisitRefusal
from terminal.core.money import Money
from ui.i18n import Translator
from ui.model import ChallengeView, IdleInfo

ScreenName = Literal["idle", "scan", "confirm", "keypad", "result", "oos"]


@dataclass(frozen=True, slots=True)
class IdleVM:
    centre: str
    clock: str
    date: str
    look: str
    look_hint: str
    menu_title: str
    menu: tuple[tuple[str, str], ...]  # (dish, price text)
    menu_note: str  # shown when there is no menu / no service
    alt_card: str
    staff_help: str
    language: str  # label of the language toggle
    camera_off: bool
    last_payment: str = ""  # after a restart: "上一笔：张*华 7.50 元 11:32"


@dataclass(frozen=True, slots=True)
class ScanVM:
    title: str
    guidance: str
    guidance_ok: bool  # True: "recognising" (green); False: something to fix
    challenge: str | None  # the challenge prompt, shown large
    alt: str
    cancel: str
    countdown: str


@dataclass(frozen=True, slots=True)
class ConfirmVM:
    title: str
    name: str
    category: str
    meal: str
    lines: tuple[tuple[str, str, bool], ...]  # (label, value, emphasis)
    due_label: str
    due: str
    note: str  # second-factor note, or ""
    pay: str
    cancel: str
    countdown: str
    staff_button: str = ""  # staff may grant what a rule refused (visitor offline limit)


@dataclass(frozen=True, slots=True)
class KeypadVM:
    title: str
    hint: str
    error: str  # "" when no error
    cancel: str
    ok: str
    clear: str
    delete: str
    countdown: str
    length: int = 4


@dataclass(frozen=True, slots=True)
class ResultVM:
    tone: Literal["ok", "error", "notice", "busy"]
    title: str
    big: str  # a key figure (amount) or ""
    lines: tuple[str, ...]
    action: str  # what to do next, or ""
    staff_button: str  # label of the staff approve button, "" for none
    finish: str  # "touch to finish" hint, "" when touching does nothing
    countdown: str
    record_id: str = ""
    portion_button: str = ""  # label of the "another portion" (再来一份) button, "" for none


@dataclass(frozen=True, slots=True)
class OutOfServiceVM:
    title: str
    detail: str
    code: str


ViewModel = IdleVM | ScanVM | ConfirmVM | KeypadVM | ResultVM | OutOfServiceVM


@dataclass(frozen=True, slots=True)
class Presented:
    screen: ScreenName
    vm: ViewModel
    speak_caption: str = ""
    state_name: str = field(default="")


def _yuan(tr: Translator, amount: str) -> str:
    return tr("common.amount", amount=amount)


def _countdown(tr: Translator, deadline: datetime | None, now: datetime) -> str:
    if deadline is None:
        return ""
    left = max(0, int((deadline - now).total_seconds() + 0.999))
    return tr("common.returning", seconds=left)


def present_idle(info: IdleInfo, tr: Translator, now: datetime, camera_ok: bool = True) -> IdleVM:
    local = now
    slot = info.slot or info.next_slot
    if info.slot is not None:
        menu_title = tr("idle.menu_title", slot=tr(info.slot.i18n_key))
    elif info.next_slot is not None:
        menu_title = tr("idle.menu_next", slot=tr(info.next_slot.i18n_key), window=info.next_window)
    else:
        menu_title = tr("idle.no_service")
    menu = tuple((m.name, _yuan(tr, m.price.yuan_str())) for m in info.menu)
    if not info.menu_set:
        note = tr("idle.no_menu")
    elif info.slot is None:
        note = tr("idle.no_service")
    else:
        note = ""
    if slot is None and not menu:
        note = note or tr("idle.no_service")
    return IdleVM(
        centre=info.centre_name,
        clock=local.strftime("%H:%M"),
        date=tr.date_text(local.year, local.month, local.day, local.weekday()),
        look=tr("idle.look_at_camera"),
        look_hint=tr("idle.look_hint") if camera_ok else tr("idle.camera_off"),
        menu_title=menu_title,
        menu=menu,
        menu_note=note,
        alt_card=tr("idle.alt_card"),
        staff_help=tr("idle.staff_help"),
        language=tr("common.language_switch"),
        camera_off=not camera_ok,
        last_payment=(
            tr(
                "idle.last_payment",
                name=info.last_payment[0],
                amount=info.last_payment[1],
                time=info.last_payment[2],
            )
            if info.last_payment
            else ""
        ),
    )


def _items_text(state_lines: tuple[tuple[str, int], ...]) -> str:
    return "、".join(f"{name}×{qty}" if qty > 1 else name for name, qty in state_lines)


def present(
    state: State,
    *,
    idle: IdleInfo,
    tr: Translator,
    now: datetime,
    guidance: str | None = None,
    challenge: ChallengeView | None = None,
    camera_ok: bool = True,
) -> Presented:
    """The screen and view model for ``state``. ``guidance`` is the latest
    quality key from the camera (``face.quality.*``) or None (no face)."""
    name = type(state).__name__
    match state:
        case Idle():
            return Presented("idle", present_idle(idle, tr, now, camera_ok), state_name=name)
        case Checking() | Challenge():
            if guidance is None:
                gtext, gok = tr("scan.no_face"), False
            else:
                gtext, gok = tr(guidance), guidance == "face.quality.ok"
            prompt: str | None = None
            if isinstance(state, Challenge):
                if gok:  # the challenge prompt says what to do; no "recognising" banner
                    gtext = ""
                if challenge is not None and challenge.kind == state.kind:
                    prompt = tr(challenge.prompt)
                else:
                    prompt = tr(f"pay.challenge.{state.kind}")
            vm = ScanVM(
                title=tr("scan.challenge") if prompt else tr("scan.title"),
                guidance=gtext,
                guidance_ok=gok,
                challenge=prompt,
                alt=tr("scan.alt"),
                cancel=tr("common.cancel"),
                countdown=_countdown(tr, state.deadline, now),
            )
            return Presented("scan", vm, state_name=name)
        case VisitorChecking() | VisitorClaiming():
            claiming = isinstance(state, VisitorClaiming)
            vm0 = ResultVM(
                tone="busy",
                title=tr("visitor.claiming" if claiming else "visitor.checking"),
                big="",
                lines=(tr("visitor.checking_hint"),),
                action="",
                staff_button="",
                finish="",
                countdown="",
            )
            return Presented("result", vm0, state_name=name)
        case Confirm() if state.payment.visit is not None:
            return Presented("confirm", _visitor_confirm(state, tr, now), state_name=name)
        case Confirm():
            p = state.payment
            q = p.quote
            lines: list[tuple[str, str, bool]] = [
                (tr("confirm.list"), _yuan(tr, q.list_total.yuan_str()), False),
                (tr("confirm.subsidy"), _yuan(tr, (-q.subsidy).yuan_str()), False),
                (tr("confirm.balance"), _yuan(tr, q.balance_before.yuan_str()), False),
                (tr("confirm.balance_after"), _yuan(tr, q.balance_after.yuan_str()), True),
            ]
            items = _items_text(tuple((ln.name, ln.quantity) for ln in p.lines))
            note = tr("confirm.needs_second") if p.needs_second_factor else ""
            if p.another_portion:  # a second charge: say so, and that it has no subsidy
                slot_name = tr(p.slot.i18n_key)
                portion = tr("confirm.another_note", time=p.paid_before_hhmm, slot=slot_name)
                note = "\n".join(t for t in (portion, note) if t)
            vm2 = ConfirmVM(
                title=tr("confirm.another_title" if p.another_portion else "confirm.title"),
                name=p.name_masked,
                category=tr("confirm.category", category=tr(p.category.i18n_key)),
                meal=tr("confirm.meal", slot=tr(p.slot.i18n_key), items=items),
                lines=tuple(lines),
                due_label=tr("confirm.due"),
                due=_yuan(tr, q.due.yuan_str()),
                note=note,
                pay=tr("confirm.another_pay" if p.another_portion else "confirm.pay"),
                cancel=tr("confirm.cancel"),
                countdown=_countdown(tr, state.deadline, now),
            )
            return Presented("confirm", vm2, state_name=name)
        case SecondFactorEntry():
            from payment.domain import SecondFactor

            opts = state.payment.second_factor_options
            has_phone = SecondFactor.PHONE_LAST4 in opts
            vm3 = KeypadVM(
                title=tr("second.title") if has_phone else tr("second.or_card"),
                hint=tr("second.or_card") if SecondFactor.CARD in opts and has_phone else "",
                error=tr("second.wrong") if state.attempts else "",
                cancel=tr("common.cancel"),
                ok=tr("keypad.ok"),
                clear=tr("keypad.clear"),
                delete=tr("keypad.delete"),
                countdown=_countdown(tr, state.deadline, now),
            )
            return Presented("keypad", vm3, state_name=name)
        case Charging() | ChargePending():
            # ChargePending: the charge outlived its timeout and may still land;
            # "checking", never "failed", until the store knows
            checking = isinstance(state, ChargePending)
            vm4 = ResultVM(
                tone="busy",
                title=tr("charging.checking" if checking else "charging.title"),
                big=_yuan(tr, state.payment.quote.due.yuan_str()),
                lines=(state.payment.name_masked,),
                action=tr("charging.checking_hint") if checking else "",
                staff_button="",
                finish="",
                countdown="",
            )
            return Presented("result", vm4, state_name=name)
        case Done():
            if state.print_ok is None:
                receipt = tr("done.printing")
            elif state.print_ok:
                receipt = tr("done.take_receipt")
            else:
                receipt = tr("done.print_failed")
            visit = state.payment.visit
            cash = visit is not None and visit.payment_source is PaymentSource.CASH
            if visit is None:
                who = (
                    f"{state.payment.name_masked}  "
                    f"{tr('done.balance')} {_yuan(tr, state.balance_after.yuan_str())}"
                )
            elif cash:
                due = state.payment.quote.due.yuan_str()
                who = f"{_visitor_name(visit, tr)}  {tr('visitor.paid_cash', amount=due)}"
            elif visit.wallet_after_fen is not None:  # paid from the district wallet
                left = tr("visitor.wallet.left", amount=Money(visit.wallet_after_fen).yuan_str())
                who = f"{_visitor_name(visit, tr)}  {left}"
            else:
                who = f"{_visitor_name(visit, tr)}  {tr(f'visitor.source.{visit.payment_source}')}"
            vm5 = ResultVM(
                tone="ok",
                title=tr("visitor.done_cash" if cash else "done.title"),
                big=_yuan(tr, state.payment.quote.due.yuan_str()),
                lines=(who, receipt),
                action=tr("done.enjoy"),
                staff_button="",
                finish=tr("common.touch_to_finish"),
                countdown=_countdown(tr, state.deadline, now),
                record_id=state.record_id,
            )
            return Presented("result", vm5, state_name=name)
        case Failed():
            lines2: list[str] = []
            if state.reason is FailReason.INSUFFICIENT_BALANCE and state.amount is not None:
                lines2.append(tr("failed.shortfall", amount=state.amount.yuan_str()))
            if state.detail == VISITOR_HINT:  # face unknown here: maybe another centre's senior
                lines2.append(tr("visitor.face_hint"))
            action = (
                tr("action.charge_timeout")
                if state.reason is FailReason.CHARGE_TIMEOUT
                else tr(f"action.{state.action.value}")
            )
            vm6 = ResultVM(
                tone="error",
                title=tr(f"failed.{state.reason.value}"),
                big="",
                lines=tuple(lines2),
                action=action,
                staff_button="",
                finish=tr("common.touch_to_finish"),
                countdown=_countdown(tr, state.deadline, now),
            )
            return Presented("result", vm6, state_name=name)
        case AlreadyPaid():
            visitor = state.candidate.visitor
            who = state.name_masked
            if visitor is not None:
                status = visitor.status
                who = tr("visitor.home", centre=status.home_centre_name or status.home_centre_id)
            vm7 = ResultVM(
                tone="notice",
                title=tr("already.title", slot=tr(state.slot.i18n_key)),
                big="",
                lines=(who, tr("already.detail", time=state.paid_at_hhmm)),
                action="",
                staff_button=tr("already.staff"),
                finish=tr("common.touch_to_finish"),
                countdown=_countdown(tr, state.deadline, now),
                portion_button=tr("already.another"),
            )
            return Presented("result", vm7, state_name=name)
        case StaffRequired():
            reason_key = f"staffreq.{state.reason}"
            vm8 = ResultVM(
                tone="notice",
                title=tr("staffreq.title"),
                big="",
                lines=(state.name_masked, tr(reason_key) if tr.has(reason_key) else state.reason),
                action=tr("action.ask_staff"),
                staff_button=tr("staffreq.staff"),
                finish="",
                countdown=_countdown(tr, state.deadline, now),
            )
            return Presented("result", vm8, state_name=name)
    raise AssertionError(f"no screen for {state!r}")  # pragma: no cover


def _visitor_name(visit: Visit, tr: Translator) -> str:
    return tr("visitor.who", centre=visit.home_centre_label)


def _visitor_confirm(state: Confirm, tr: Translator, now: datetime) -> ConfirmVM:
    """A senior of another centre: home centre, category, subsidy, what is due
    and where it is paid from; why there is no subsidy when there is none."""
    p = state.payment
    q = p.quote
    visit = p.visit
    assert visit is not None
    lines: list[tuple[str, str, bool]] = [
        (tr("visitor.home_label"), visit.home_centre_label, False),
        (tr("confirm.list"), _yuan(tr, q.list_total.yuan_str()), False),
        (tr("confirm.subsidy"), _yuan(tr, (-q.subsidy).yuan_str()), False),
    ]
    home_wallet = visit.payment_source is PaymentSource.HOME_WALLET
    if visit.payment_source is PaymentSource.VISITED_WALLET:  # the wallet here
        lines.append((tr("confirm.balance_after"), _yuan(tr, q.balance_after.yuan_str()), False))
    elif home_wallet and visit.wallet_balance_fen is not None:  # the district wallet
        before = _yuan(tr, Money(visit.wallet_balance_fen).yuan_str())
        after = _yuan(tr, Money(visit.wallet_balance_fen - q.due.fen).yuan_str())
        lines.append((tr("visitor.wallet.balance"), f"{before} → {after}", False))
    else:
        lines.append((tr("visitor.pay_from"), tr(f"visitor.source.{visit.payment_source}"), False))
    # one note, the most important: the offline limit (staff may grant), else
    # why the district wallet is not paid from (pay cash), else why there is no
    # subsidy, else that the platform checks this meal later, else how a cash
    # meal is paid
    notes = []
    if visit.wallet_note is not None and visit.refusal is not VisitRefusal.OFFLINE_LIMIT:
        notes.append(tr(f"visitor.wallet.{visit.wallet_note}"))
    elif visit.refusal is not None:
        notes.append(tr(f"visitor.refusal.{visit.refusal}"))
    elif visit.review:
        notes.append(tr("visitor.review"))
    elif visit.payment_source is PaymentSource.CASH:
        notes.append(tr("visitor.cash_note"))
    elif home_wallet:
        notes.append(tr("visitor.wallet.pay_note"))
    items = _items_text(tuple((ln.name, ln.quantity) for ln in p.lines))
    category = tr("confirm.category", category=tr(p.category.i18n_key))
    return ConfirmVM(
        title=tr("visitor.title"),
        name=tr("visitor.name"),
        category=category,
        meal=tr("confirm.meal", slot=tr(p.slot.i18n_key), items=items),
        lines=tuple(lines),
        due_label=tr("confirm.due"),
        due=_yuan(tr, q.due.yuan_str()),
        note="\n".join(notes),
        pay=tr("confirm.pay"),
        cancel=tr("confirm.cancel"),
        countdown=_countdown(tr, state.deadline, now),
        staff_button=tr("visitor.staff") if visit.refusal is VisitRefusal.OFFLINE_LIMIT else "",
    )


def present_out_of_service(tr: Translator, code: str) -> Presented:
    vm = OutOfServiceVM(tr("oos.title"), tr("oos.detail"), tr("oos.code", code=code))
    return Presented("oos", vm, state_name="OutOfService")


__all__ = [
    "ConfirmVM",
    "IdleVM",
    "KeypadVM",
    "NextAction",
    "OutOfServiceVM",
    "Presented",
    "ResultVM",
    "ScanVM",
    "present",
    "present_idle",
    "present_out_of_service",
]
