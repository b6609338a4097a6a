"""Visiting seniors through the running kiosk (runner threads, the real store
on SQLite, the composition's wiring) and the district port over sync.visits:
the pulled district roster in a real sync.db, and a platform that does not
answer (connection refused on loopback)."""

from __future__ import annotations

import socket
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from kiosk_world import World

from payment.domain import MealSlot, SeniorCategory
from payment.flow import (
    AskVisitor,
    CardTapped,
    ClaimSlot,
    Confirm,
    Done,
    Touch,
    VisitorAnswered,
)
from payment.visiting import ClaimOutcome, KeyType, Source, VisitRefusal
from sync.auth import Signer
from sync.client import PlatformClient
from sync.store.district import DistrictRosterIndex
from sync.visits import VisitsClient, card_hmac, id_number_hmac, lookup_hmac, pepper_id
from terminal.app.kiosk_compose import KIOSK_TIMEOUTS, KioskApp, build_kiosk
from terminal.core.clock import SystemClock
from terminal.db.engine import make_engine
from terminal.kiosk.reports import report_csv, report_html
from terminal.kiosk.visitors import DistrictDirectory, DistrictSenior, PlatformVisitors

CARD = "0000009001"
VISITOR = DistrictSenior("P-7", "centre-a", (SeniorCategory.AGE_80_89,), cards=(CARD,))
DAY = date(2026, 3, 2)


def start(world: World, district: Any, **wiring: Any) -> KioskApp:
    """The kiosk through the real composition with ``district`` as its port
    (no camera unless ``wiring`` gives a source); the UI journeys use it too."""
    cfg = replace(world.services.flow_config, timeouts=KIOSK_TIMEOUTS)
    app = build_kiosk(
        world.services,
        flow_config=cfg,
        sync=False,
        speaker=world.spoken.append,
        printer_port=lambda r: (world.printed.append(r) or True, "printed"),
        visitors=district,
        **({"camera": False} | wiring),
    )
    world.app = app
    app.runner.subscribe(world.updates.append)
    app.start()
    return app


def pay(world: World, card: str = CARD) -> Confirm:
    world.runner.post(CardTapped(card))
    assert world.wait_state("Confirm", 10), world.state()
    state = world.runner.current().state
    assert isinstance(state, Confirm)
    return state


def visits(world: World) -> list[Any]:
    return world.services.payment.visitors.rows(DAY)


def test_visitor_pays_by_card_once_per_slot(world: World) -> None:
    district = DistrictDirectory([VISITOR])
    start(world, district)
    confirm = pay(world)
    p = confirm.payment
    assert p.visit is not None and p.visit.claim_id is not None  # claimed before confirm
    assert (p.quote.subsidy.fen, p.visit.home_centre_id) == (400, "centre-a")
    world.runner.post(Touch("confirm"))
    assert world.wait_state("Done", 10)
    done = world.runner.current().state
    assert isinstance(done, Done)
    assert district.claims[("P-7", DAY.isoformat(), "lunch")] == done.record_id
    [meal] = visits(world)
    assert (meal.person_id, meal.subsidy_fen, meal.source, meal.review) == (
        "P-7",
        400,
        Source.ONLINE,
        False,
    )
    assert world.printed[-1].resident_masked == "来访长者·centre-a"
    # the same card again in the slot: the local guard, no second charge
    world.runner.post(Touch("confirm"))
    assert world.wait_state("Idle", 5)
    world.runner.post(CardTapped(CARD))
    assert world.wait_state("AlreadyPaid", 10)
    assert len(visits(world)) == 1
    assert world.services.payment.verify().ok
    # the manager's day: one visitor, the subsidy owed by centre-a, in the exports too
    report = world.app.backend.manager_report()  # type: ignore[union-attr]
    assert report.visitors is not None
    assert (report.visitors.visitors, report.visitors.owed_fen) == (1, 400)
    assert "centre-a,1,1,4.00" in report_csv(report).replace("\r", "")
    assert "<td>centre-a</td>" in report_html(report)


class RacingDistrict(DistrictDirectory):
    """Another centre's terminal claims the slot between the answer and the claim."""

    def ask(self, ask: AskVisitor) -> VisitorAnswered:
        answered = super().ask(ask)
        self.take_slot("P-7", ask.day.isoformat(), ask.slot.value)
        return answered


def test_slot_claimed_elsewhere_meanwhile_is_offered_without_subsidy(world: World) -> None:
    start(world, RacingDistrict([VISITOR]))
    p = pay(world).payment
    assert p.visit is not None
    assert (p.quote.subsidy.fen, p.quote.due.fen) == (0, 1500)
    assert p.visit.refusal is VisitRefusal.ALREADY_SUBSIDISED and p.visit.claim_id is None
    world.runner.post(Touch("confirm"))
    assert world.wait_state("Done", 10)
    [meal] = visits(world)
    assert meal.subsidy_fen == 0


def test_a_stranger_card_is_still_unknown(world: World) -> None:
    start(world, DistrictDirectory([VISITOR]))
    world.runner.post(CardTapped("0000000000"))
    assert world.wait_state("Failed", 10)
    assert not visits(world)


# -- the port over sync.visits -------------------------------------------------------------

PEPPER = bytes(range(32))
ID_NUMBER = "11010519491231002X"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def roster_db(tmp_path: Path) -> Path:
    path = tmp_path / "sync.db"
    engine = make_engine(f"sqlite:///{path}")
    DistrictRosterIndex.for_writer(engine).replace(
        3,
        {
            "pepper_id": pepper_id(PEPPER),
            "payment_source": "visited_wallet",
            "entries": [
                {
                    "person_id": "P-7",
                    "home_centre_id": "centre-a",
                    "categories": ["age_80_89", "something_new"],
                    "card_hmacs": [card_hmac(PEPPER, CARD)],
                    "id_number_hmac": id_number_hmac(PEPPER, ID_NUMBER),
                    "lookup_hmac": lookup_hmac(PEPPER, "王 芳", "5678"),
                    "active": True,
                }
            ],
        },
    )
    engine.dispose()
    return path


@pytest.mark.parametrize("platform", ["none", "refusing"])
def test_platform_down_falls_back_to_the_district_roster(roster_db: Path, platform: str) -> None:
    client = None
    if platform == "refusing":
        signer = Signer("dev-b", Ed25519PrivateKey.generate())
        http = PlatformClient(f"http://127.0.0.1:{closed_port()}", signer, SystemClock())
        client = VisitsClient(http, timeout=2.0)
    port = PlatformVisitors("centre-b", PEPPER, roster_db, client=client)
    try:
        got = port.ask(AskVisitor(4, KeyType.CARD, " 0000 009001 ", DAY, MealSlot.LUNCH))
        assert got.session == 4 and got.status is not None
        assert (got.status.person_id, got.status.source) == ("P-7", Source.ROSTER)
        assert got.status.categories == (SeniorCategory.AGE_80_89,)  # unknown ones left out
        assert got.payment_source is not None and got.payment_source.value == "visited_wallet"
        for key_type, key, phone in (
            (KeyType.ID_NUMBER, ID_NUMBER.lower(), ""),  # the ID-card reader's number
            (KeyType.LOOKUP, "王芳", "5678"),  # staff: name and phone last 4
        ):
            other = port.ask(AskVisitor(6, key_type, key, DAY, MealSlot.LUNCH, phone))
            assert other.status is not None and other.status.person_id == "P-7", key_type
        unknown = port.ask(AskVisitor(5, KeyType.CARD, "0000000000", DAY, MealSlot.LUNCH))
        assert unknown.status is None
        claim = port.claim(ClaimSlot(4, "P-7", DAY, MealSlot.LUNCH))
        assert claim.outcome is ClaimOutcome.UNAVAILABLE and len(claim.record_id) == 26
    finally:
        port.close()


def test_a_key_that_cannot_be_made_is_nobody(roster_db: Path) -> None:
    port = PlatformVisitors("centre-b", PEPPER, roster_db)
    got = port.ask(AskVisitor(1, KeyType.LOOKUP, "张三", DAY, MealSlot.LUNCH, phone_last4="12"))
    assert got.status is None
