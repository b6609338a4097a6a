"""City-wide meals on PostgreSQL: the slot claim is atomic across worker
processes. A real throw-away PostgreSQL server (tests/sync/pg_server.py) and
``care-terminal platform serve --workers 2`` on loopback; two devices of two
centres ask at the same moment, again and again: exactly one 200 each time,
and two offline visiting meals of one slot uploaded at the same moment from
the two centres: exactly one stored as a record, the other quarantined; and
on the home_wallet policy two debits of one district wallet that holds one
meal, from two worker processes at one moment: exactly one debit."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from pg_server import PgServer, missing_reason, pg_server
from test_visits_platform import (
    CENTRES,
    PEPPER,
    District,
    Stream,
    person_of,
    start_district,
    stop,
    visit_meal,
)

from sync.visits import InsufficientBalance, SlotClaimed, VisitsClient, WalletClaim, card_hmac
from terminal.core.ids import new_ulid


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer]:
    why = missing_reason()
    if why:
        pytest.fail(f"PostgreSQL is needed for this test: {why}")
    with pg_server() as server:
        yield server


@pytest.fixture
def district(tmp_path: Path, pg: PgServer) -> Iterator[District]:
    d = start_district(tmp_path, "--workers", "2", db_url=pg.url(pg.create_database()))
    try:
        yield d
    finally:
        stop(d)


def _race(actions: list[Callable[[], Any]]) -> list[Any]:
    """Run the actions on their own threads, released together."""
    barrier = threading.Barrier(len(actions))
    out: list[Any] = [None] * len(actions)

    def run(i: int) -> None:
        barrier.wait()
        try:
            out[i] = actions[i]()
        except (SlotClaimed, InsufficientBalance) as exc:
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(actions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return out


def test_claims_from_two_centres_at_one_moment_grant_exactly_one(district: District) -> None:
    person = person_of(district).person_id
    clients = [district.client("dev-a1"), district.client("dev-b1")]
    try:
        for c in clients:  # each keeps a warm connection for the race
            c.eligibility(
                centre_id=CENTRES[c.client.signer.device_id],
                key_type="card",
                key=card_hmac(PEPPER, "CA0001"),
                day=date(2026, 3, 1),
                slot="lunch",
            )
        for n in range(12):
            day, slot = date(2026, 3, 1 + n // 3), ("breakfast", "lunch", "dinner")[n % 3]

            def claim(c: VisitsClient, day: date = day, slot: str = slot) -> str:
                centre = CENTRES[c.client.signer.device_id]
                return c.claim(
                    person_id=person, day=day, slot=slot, record_id=new_ulid(), centre_id=centre
                )

            got = _race([lambda c=c: claim(c) for c in clients])
            granted = [g for g in got if isinstance(g, str)]
            refused = [g for g in got if isinstance(g, SlotClaimed)]
            assert (len(granted), len(refused)) == (1, 1), got
    finally:
        for c in clients:
            c.close()


def test_offline_meals_of_one_slot_uploaded_at_one_moment_one_is_quarantined(
    district: District,
) -> None:
    person = person_of(district).person_id
    streams = [Stream(district, "dev-a1"), Stream(district, "dev-b1")]
    for n in range(4):
        day = date(2026, 4, 1 + n).isoformat()
        records = [
            s.record(
                "meal_transaction",
                dict(visit_meal(person, source="roster", claim_id=None), meal_date=day),
            )
            for s in streams
        ]
        got = _race(
            [lambda s=s, r=r: s.upload(r)[0] for s, r in zip(streams, records, strict=True)]
        )
        outcomes = sorted((g["stored_as"], g.get("quarantine_reason")) for g in got)
        assert outcomes == [
            ("quarantined", "citywide_duplicate_subsidy"),
            ("record", None),
        ], got


def test_two_debits_racing_on_a_wallet_for_one_meal_debit_exactly_once(
    tmp_path: Path, pg: PgServer
) -> None:
    db_url = pg.url(pg.create_database())
    d = start_district(
        tmp_path, "--workers", "2", "--visit-payment-source", "home_wallet", db_url=db_url
    )
    clients = [d.client("dev-b1"), d.client("dev-b2")]
    try:
        a1 = Stream(d, "dev-a1")
        person = person_of(d).person_id
        for c in clients:  # each keeps a warm connection for the race
            c.eligibility(
                centre_id="centre-b",
                key_type="card",
                key=card_hmac(PEPPER, "CA0001"),
                day=date(2026, 5, 1),
                slot="lunch",
            )
        for n in range(4):
            topup = {"resident_id": "A001", "amount_fen": 900, "method": "cash", "staff_id": "S1"}
            assert a1.upload(a1.record("district_wallet_topup", topup))[0]["stored_as"] == "record"
            day = date(2026, 5, 1 + n)

            def debit(c: VisitsClient, slot: str, day: date = day) -> WalletClaim:
                return c.claim_and_debit(
                    person_id=person,
                    day=day,
                    slot=slot,
                    record_id=new_ulid(),
                    centre_id="centre-b",
                    debit_fen=900,
                )

            got = _race(
                [
                    lambda c=c, s=s: debit(c, s)
                    for c, s in zip(clients, ("lunch", "dinner"), strict=True)
                ]
            )
            debited = [g for g in got if isinstance(g, WalletClaim)]
            refused = [g for g in got if isinstance(g, InsufficientBalance)]
            assert (len(debited), len(refused)) == (1, 1), got
            assert (debited[0].balance_before_fen, debited[0].balance_after_fen) == (900, 0)
    finally:
        for c in clients:
            c.close()
        stop(d)
