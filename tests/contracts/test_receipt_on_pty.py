"""A real payment's receipt printed through the composition root's printer port
to a pty peer: the bytes are ESC/POS with GB18030 Chinese, the masked name,
amounts, record id and verification code, and a cut. A printer out of paper
never undoes the payment; staff can reprint."""

from __future__ import annotations

import sys
from datetime import date, datetime
from pathlib import Path

import pytest

from payment.domain import Menu
from payment.flow import CardTapped, FlowConfig, Touch
from payment.headless import drive
from payment.receipt import Receipt
from payment.store import PaymentStore
from terminal.app.kiosk_compose import receipt_printer
from terminal.core.clock import CHINA_TZ, FakeClock
from terminal.core.money import Money
from terminal.db.crypto import FieldCipher, load_or_create_key
from terminal.db.database import open_database
from terminal.db.engine import write_session
from terminal.db.outbox import Outbox
from terminal.db.roster import RosterStore
from terminal.hw.ports import Printer, SerialConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hw"))
from hw_peers import PeerThread, PrinterPeer, PtyPeer  # noqa: E402


@pytest.fixture
def paid(tmp_path: Path):  # type: ignore[no-untyped-def]
    clock = FakeClock(datetime(2026, 3, 2, 11, 40, tzinfo=CHINA_TZ))
    db = open_database(f"sqlite:///{tmp_path}/t.db")
    roster = RosterStore(FieldCipher(load_or_create_key(tmp_path / "k")))
    store = PaymentStore(
        db.sessions,
        Outbox("dev", "c"),
        roster,
        device_id="dev",
        centre_id="c",
        clock=clock,
        config=FlowConfig(centre_name="阳光照料中心"),
    )
    with write_session(db.sessions) as s:
        roster.upsert(s, "R1", "张三华", clock.now(), categories=["dibao"], card_ids=["C-1"])
    store.set_menu(
        Menu.from_dict(
            {
                "date": date(2026, 3, 2).isoformat(),
                "items": [
                    {"item_id": "L1", "name": "午餐套餐", "price_fen": 1500, "slots": ["lunch"]}
                ],
            }
        ),
        "s",
    )
    store.set_policy(
        {
            "policy_id": "p",
            "version": 1,
            "effective_from": "2026-01-01",
            "rules": [{"category": "dibao", "slot": "*", "type": "percent", "basis_points": 5000}],
        }
    )
    store.topup("R1", Money(5000), "s")
    d = drive(store.context(), store.charge, [CardTapped("C-1"), Touch("confirm")], clock.now)
    assert d.committed and d.printed
    yield store, d
    db.close()


def print_on_pty(receipt: Receipt, paper: int = 0x12) -> tuple[bool, str, bytes]:
    """Print ``receipt`` through the composition root's printer port to a pty
    peer answering the status queries (``paper``: the paper sensor byte); the
    outcome and the bytes the printer got (up to the cut, when printed)."""
    peer, device = PtyPeer(), PrinterPeer(answers={1: 0x16, 2: 0x12, 4: paper})
    thread = PeerThread(peer, device.serve)
    printer = Printer(SerialConfig(peer.path))
    printer.start()
    try:
        assert printer.wait_connected(5)
        ok, outcome = receipt_printer(printer)(receipt)
        data = device.wait_for(lambda b: b"\x1dV" in b) if ok else b""
    finally:
        printer.stop()
        thread.stop()
        peer.close()
    return ok, outcome, data


def test_receipt_bytes_on_a_pty(paid) -> None:  # type: ignore[no-untyped-def]
    _store, d = paid
    ok, outcome, data = print_on_pty(d.printed[0].receipt)  # online, paper ok
    assert ok, outcome
    # status queries (DLE EOT) first, then ESC @ (initialise) and FS & (Chinese mode)
    assert data.index(b"\x1b@\x1c&") > data.index(b"\x10\x04")
    text = data.decode("gb18030", errors="replace")
    record = d.committed[0].record_id
    for needle in ("阳光照料中心", "张*华", "15.00", "7.50", "42.50", record):
        assert needle in text, needle
    assert "张三华" not in text  # the receipt carries the masked name only
    assert "张*华".encode("gb18030") in data


def test_paper_out_keeps_the_payment_and_staff_can_reprint(paid) -> None:  # type: ignore[no-untyped-def]
    store, d = paid
    ok, outcome, _ = print_on_pty(d.printed[0].receipt, paper=0x72)  # paper end sensor
    assert not ok and outcome == "paper_out"
    record = d.committed[0].record_id
    assert store.get(record).due == Money(750)  # the payment stands
    again = store.receipt(record, reprint=True)
    assert again.reprint and again.record_id == record
