"""The staff / manager back end over the real stores, and staff PINs."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
from kiosk_world import World, faces_dir, lunch_menu
from sqlalchemy import select

from face.pipeline import load_image
from payment.domain import MealSlot
from payment.flow import CardTapped, Touch
from payment.headless import drive
from terminal.app.kiosk_compose import build_kiosk
from terminal.core.errors import TerminalError
from terminal.core.money import Money
from terminal.db.tables import AuditRow
from terminal.kiosk.backend import KioskBackend
from terminal.kiosk.pins import LOCK_BASE_S, MAX_TRIES, PinError, StaffPins, validate_pin
from terminal.kiosk.reports import report_csv, report_html
from ui.model import MenuLine


def audit_actions(world: World) -> list[tuple[str, str, str | None]]:
    with world.services.db.sessions() as s:
        return [
            (a.actor, a.action, a.target) for a in s.scalars(select(AuditRow).order_by(AuditRow.id))
        ]


@pytest.fixture
def backend(world: World) -> KioskBackend:
    app = build_kiosk(world.services, camera=False, sync=False)
    world.app = app
    return app.backend


def pay_by_card(world: World, card: str) -> None:
    store = world.services.payment
    drive(store.context(), store.charge, [CardTapped(card), Touch("confirm")], world.clock.now)


# --------------------------------------------------------------------------- PINs


def test_pins_are_slow_hashes_with_lockout_that_survives_a_restart(tmp_path: Path) -> None:
    now = [1000.0]
    path = tmp_path / "pins.json"
    pins = StaffPins(path, wall=lambda: now[0])
    pins.set_pin("S01", "王护理", "2468", "staff")
    pins.set_pin("M01", "赵主任", "1357", "manager")
    raw = path.read_text(encoding="utf-8")
    # No PIN in the file: the digits may appear only by chance inside a hex
    # digest or salt, never as a value or inside text.
    leaves: list[str] = []
    stack: list[object] = [json.loads(raw)]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            leaves.append(item)
    for leaf in leaves:
        if any(pin in leaf for pin in ("2468", "1357")):
            assert len(leaf) >= 16 and all(c in "0123456789abcdef" for c in leaf), leaf
    doc = json.loads(raw)
    assert (
        doc["staff"]["S01"]["n"] >= 2**14 and len(bytes.fromhex(doc["staff"]["S01"]["salt"])) == 16
    )
    assert (path.stat().st_mode & 0o777) == 0o600
    ok = pins.check("1357")
    assert ok.ok and ok.staff_id == "M01" and ok.role == "manager" and ok.staff_name == "赵主任"
    for i in range(MAX_TRIES - 1):
        res = pins.check("9999")
        assert not res.ok and res.tries_left == MAX_TRIES - 1 - i
    locked = pins.check("0000")
    assert locked.locked_for_s == LOCK_BASE_S
    # a restart does not lift the lockout, and the right PIN does not either
    again = StaffPins(path, wall=lambda: now[0])
    assert again.check("2468").locked_for_s > 0
    now[0] += LOCK_BASE_S + 1
    # more guessing after a lockout: the next one is twice as long
    for _ in range(MAX_TRIES):
        res = again.check("1111")
    assert res.locked_for_s == 2 * LOCK_BASE_S
    now[0] += 2 * LOCK_BASE_S + 1
    assert again.check("2468").ok  # a good PIN resets the escalation
    for _ in range(MAX_TRIES):
        res = again.check("1111")
    assert res.locked_for_s == LOCK_BASE_S


@pytest.mark.parametrize("pin", ["123", "abcd", "0000", "1234", "9876", "123456789"])
def test_weak_or_malformed_pins_are_refused(pin: str) -> None:
    with pytest.raises(PinError):
        validate_pin(pin)


def test_two_staff_cannot_share_a_pin(tmp_path: Path) -> None:
    pins = StaffPins(tmp_path / "pins.json")
    pins.set_pin("S01", "a", "2468")
    with pytest.raises(PinError):
        pins.set_pin("S02", "b", "2468")
    assert [s for s, _n, _r in pins.list()] == ["S01"]


def test_check_pin_is_audited(world: World, backend: KioskBackend) -> None:
    backend.d.pins.set_pin("S01", "王护理", "2468")
    assert not backend.check_pin("1111").ok
    assert backend.check_pin("2468").ok
    backend.end_session("S01")
    acts = [(a, b) for a, b, _ in audit_actions(world)]
    assert ("unknown", "staff_login_failed") in acts and ("S01", "staff_login") in acts
    assert ("S01", "staff_logout") in acts


# --------------------------------------------------------------------------- staff actions


def test_search_transactions_void_and_topup(world: World, backend: KioskBackend) -> None:
    found = backend.search_residents("1111")  # phone last 4
    assert [r.resident_id for r in found] == ["R-OB"]
    assert found[0].has_face and found[0].category_key == "category.dibao"
    assert {r.resident_id for r in backend.search_residents("")} == {"R-OB", "R-AL", "R-KT", "R-RL"}
    before = world.balance("R-RL")
    pay_by_card(world, "0000000104")
    rows = backend.transactions()
    charge = next(t for t in rows if t.kind == "charge")
    assert charge.name_masked == "罗*" and charge.method == "card" and not charge.voided
    with pytest.raises(TerminalError):
        backend.void(charge.record_id, "  ", "S01")
    backend.void(charge.record_id, "wrong_resident", "S01")
    assert world.balance("R-RL") == before
    assert next(t for t in backend.transactions() if t.record_id == charge.record_id).voided
    bal = backend.topup("R-RL", Money(5000), "S01")
    assert bal == Money(before.fen + 5000)
    with pytest.raises(TerminalError):
        backend.topup("R-RL", Money(0), "S01")
    acts = audit_actions(world)
    assert ("S01", "void", charge.record_id) in acts
    assert any(a[:2] == ("S01", "topup") for a in acts)
    assert world.services.payment.verify().ok


def test_reprint_uses_the_printer_and_records_failures(world: World, backend: KioskBackend) -> None:
    pay_by_card(world, "0000000101")
    rid = next(t.record_id for t in backend.transactions() if t.kind == "charge")
    printed = []
    backend.d.printer = lambda r: (printed.append(r) or True, "printed")  # type: ignore[func-returns-value]
    assert backend.reprint(rid, "S01") == "printed"
    assert printed[0].reprint and printed[0].record_id == rid
    backend.d.printer = lambda r: (False, "paper_out")
    with pytest.raises(TerminalError, match="paper_out"):
        backend.reprint(rid, "S01")
    acts = audit_actions(world)
    assert ("S01", "receipt_reprint", rid) in acts and (
        "S01",
        "receipt_reprint_failed",
        rid,
    ) in acts


def test_set_menu_from_presets(world: World, backend: KioskBackend) -> None:
    lines = backend.menu_today()
    assert [m.item_id for m in lines] == ["B1", "L1", "D1"]
    extra = next(p for p in backend.menu_presets() if p.name == "豆浆")
    new = [
        *lines[:2],
        MenuLine(
            extra.item_id, extra.name, Money(250), extra.slots, extra.kind, extra.subsidisable
        ),
    ]
    backend.set_menu(new, "S01")
    menu = world.services.payment.menu(world.clock.now().date())
    assert menu is not None and [i.name for i in menu.items] == ["营养早餐", "午餐套餐", "豆浆"]
    assert menu.get(extra.item_id).price == Money(250)  # type: ignore[union-attr]
    assert ("S01", "menu_set", world.clock.now().date().isoformat()) in audit_actions(world)


def test_unenrol_deletes_templates_and_consent(world: World, backend: KioskBackend) -> None:
    photo = load_image(faces_dir() / "fr_obama_obama2.jpg")
    assert world.recogniser.identify(photo).identification.resident_id == "R-OB"
    assert backend.search_residents("R-OB")[0].has_face
    assert backend.unenrol("R-OB", "S01") >= 1
    with world.services.db.sessions() as s:
        assert world.services.templates.count(s, "R-OB") == 0
        info = world.services.roster.get(s, "R-OB")
    assert not info.consent_face_pay and not info.consent_attendance
    assert world.recogniser.identify(photo).identification.decision == "unknown"
    assert ("S01", "unenrol", "R-OB") in audit_actions(world)


def test_device_status_rows(world: World, backend: KioskBackend) -> None:
    status = backend.device_status()
    keys = [r.key for r in status.rows]
    assert keys == [
        "status.camera",
        "status.printer",
        "status.card_reader",
        "status.network",
        "status.unsynced",
        "status.model",
        "status.version",
    ]
    printer = status.rows[1]
    assert printer.value == "status.absent" and printer.value_is_key
    with pytest.raises(TerminalError):
        backend.sync_now("S01")  # not configured in this world


# --------------------------------------------------------------------------- manager


def test_manager_report_and_exports(world: World, backend: KioskBackend) -> None:
    clock = world.clock
    today = clock.now()
    clock.set(today - timedelta(days=1))
    world.services.payment.set_menu(lunch_menu(clock.now().date()), "S01")
    pay_by_card(world, "0000000102")
    clock.set(today)
    pay_by_card(world, "0000000101")
    pay_by_card(world, "0000000104")
    report = backend.manager_report()
    assert report.source == "payments"
    assert report.meals_per_slot == {MealSlot.LUNCH.value: 2}
    assert sum(report.visits_per_hour) == 2 and report.visits_per_hour[11] == 2
    assert report.unique_visitors == 2 and report.enrolled == 4
    assert [d.meals for d in report.week][-2:] == [1, 2]
    assert report.subsidy_total.fen > 0 and report.paid_total.fen > 0
    rows = list(csv.reader(io.StringIO(report_csv(report))))
    assert ["补贴合计(元)", report.subsidy_total.yuan_str()] in rows
    assert ["11:00", "2"] in rows
    html = report_html(report)
    assert "<html" in html and report.day.isoformat() in html and "测试照料中心" in html
    path = backend.export_report("csv", "M01")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")  # BOM: spreadsheets read the Chinese
    assert "测试照料中心" in backend.export_report("html", "M01").read_text(encoding="utf-8")
    assert ("M01", "export_report", None) in audit_actions(world)


# --------------------------------------------------------------------------- district wallet


def _roster(path: Path, payment_source: str) -> Path:
    """A pulled district roster (empty: only its policy matters here)."""
    from sync.store.district import DistrictRosterIndex
    from terminal.db.engine import make_engine

    engine = make_engine(f"sqlite:///{path}")
    DistrictRosterIndex.for_writer(engine).replace(
        1, {"pepper_id": "0a1b2c3d4e5f6071", "payment_source": payment_source, "entries": []}
    )
    engine.dispose()
    return path


@pytest.mark.parametrize(
    ("policy", "offered"),
    [("home_wallet", True), ("cash", False), ("visited_wallet", False), (None, False)],
)
def test_district_wallet_top_up_is_offered_only_on_the_home_wallet_policy(
    world: World, tmp_path: Path, policy: str | None, offered: bool
) -> None:
    from terminal.db.tables import OutboxRow
    from terminal.kiosk.visitors import PlatformVisitors

    sync_db = tmp_path / "sync.db"
    if policy is not None:
        _roster(sync_db, policy)
    port = PlatformVisitors("centre-x", bytes(range(32)), sync_db)  # no client: roster only
    app = build_kiosk(world.services, camera=False, sync=False, visitors=port)
    world.app = app
    backend = app.backend
    assert backend.district_topup_available() is offered
    before = world.balance("R-RL")

    def queued() -> list[dict[str, object]]:
        with world.services.db.sessions() as s:
            rows = s.scalars(select(OutboxRow).where(OutboxRow.kind == "district_wallet_topup"))
            return [json.loads(r.payload) for r in rows]

    if not offered:
        with pytest.raises(TerminalError) as refused:
            backend.district_topup("R-RL", Money(2000), "S01")
        assert refused.value.code == "district_wallet_off"
        assert queued() == []
        return
    backend.district_topup("R-RL", Money(2000), "S01")
    assert queued() == [
        {"resident_id": "R-RL", "amount_fen": 2000, "method": "cash", "staff_id": "S01"}
    ]
    assert world.balance("R-RL") == before  # this centre's wallet does not move
    assert any(a[:2] == ("S01", "district_wallet_topup") for a in audit_actions(world))
    for amount in (Money(0), Money(100_001)):
        with pytest.raises(TerminalError):
            backend.district_topup("R-RL", amount, "S01")
    assert len(queued()) == 1


def test_no_district_wallet_without_the_district_pepper(backend: KioskBackend) -> None:
    assert backend.district_topup_available() is False
