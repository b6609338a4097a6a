"""The district wallet (spec 1.3, visit policy ``home_wallet``) at the platform:
top-ups uploaded by the home centre credited once, debits made with the slot's
claim in one transaction (never below zero, refused whole), voids credited back
once, a debit whose meal arrived paid in cash released, and the settlement's
wallet money; replies to a 1.2 terminal stay 1.2.

A real ``care-terminal platform serve --visit-payment-source home_wallet``
process on loopback with a real SQLite file, and the real terminal client."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_visits_compat import problems
from test_visits_platform import (
    CARE_TERMINAL,
    DAY,
    PEPPER,
    District,
    Stream,
    settlement_command,
    signed_get,
    start_district,
    stop,
    visit_meal,
    void_of,
)

from sync import schemas
from sync.visits import InsufficientBalance, SlotClaimed, VisitsClient, WalletClaim, card_hmac
from terminal.core.ids import new_ulid


@pytest.fixture
def district(tmp_path: Path) -> Iterator[District]:
    d = start_district(tmp_path, "--visit-payment-source", "home_wallet")
    try:
        yield d
    finally:
        stop(d)


def topup(resident: str = "A001", amount: int = 1000) -> dict[str, Any]:
    return {"resident_id": resident, "amount_fen": amount, "method": "cash", "staff_id": "S01"}


def ask(c: VisitsClient, *, wallet: bool = True, slot: str = "lunch") -> Any:
    ans = c.eligibility(
        centre_id="centre-b",
        key_type="card",
        key=card_hmac(PEPPER, "CA0001"),
        day=DAY,
        slot=slot,
        wallet=wallet,
    )
    assert ans is not None
    return ans


def debit(
    c: VisitsClient,
    person: str,
    record_id: str,
    amount: int,
    *,
    slot: str = "lunch",
    subsidised: bool = True,
) -> WalletClaim:
    """Claim ``slot`` of DAY at centre B for ``record_id`` and debit ``amount``."""
    return c.claim_and_debit(
        person_id=person,
        day=DAY,
        slot=slot,
        record_id=record_id,
        centre_id="centre-b",
        debit_fen=amount,
        subsidised=subsidised,
    )


def topped_up_and_debited(d: District) -> tuple[str, str, WalletClaim]:
    """10.00 topped up at centre A, then a lunch's 9.00 debited at centre B:
    the person, the lunch's record id and the claim."""
    a1 = Stream(d, "dev-a1")
    a1.upload(a1.record("district_wallet_topup", topup(amount=1000)))
    with d.client("dev-b1") as c:
        person = ask(c).person_id
        lunch = new_ulid()
        return person, lunch, debit(c, person, lunch, 900)


def wallet_meal(person: str, *, claim_id: str, slot: str = "lunch", subsidy: int = 300) -> Any:
    """A visiting meal paid from the district wallet, as a 1.3 terminal records it."""
    p = dict(visit_meal(person, source="online", claim_id=claim_id, subsidy=subsidy), slot=slot)
    p["visit"] = dict(p["visit"], payment_source="home_wallet")
    return p


def wallets_command(d: District) -> dict[str, Any]:
    """``care-terminal platform wallets`` on the platform host."""
    cmd = [str(CARE_TERMINAL), "platform", "wallets", "--db", f"sqlite:///{d.db}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
    return dict(json.loads(out))


def balance(d: District, person: str) -> int:
    rows = d.sql("SELECT balance_fen FROM district_wallets WHERE person_id = ?", person)
    return int(rows[0][0]) if rows else 0


def test_a_top_up_at_the_home_centre_is_credited_once_and_paid_from_online(
    district: District,
) -> None:
    a1, b1 = Stream(district, "dev-a1"), Stream(district, "dev-b1")
    rec = a1.record("district_wallet_topup", topup(amount=2200))
    assert a1.upload(rec)[0]["stored_as"] == "record"
    again = a1.client.upload_batch("dev-a1", "centre-a", "kiosk", [rec], key_generation="x")
    assert again["results"][0]["result"] == "duplicate"  # a replay is no second credit
    with district.client("dev-b1") as c:
        ans = ask(c)
        person = ans.person_id
        assert (ans.payment_source, ans.wallet_balance_fen) == ("home_wallet", 2200)
        assert ask(c, wallet=False).wallet_balance_fen is None  # a 1.2 question, a 1.2 answer
        lunch = new_ulid()
        got = debit(c, person, lunch, 900)
        assert (got.balance_before_fen, got.balance_after_fen) == (2200, 1300)
        # a retry after a lost answer: the same claim, no second debit
        assert debit(c, person, lunch, 900) == got
        # a second portion without subsidy: the debit alone, no slot claimed
        extra = debit(c, person, (second := new_ulid()), 1200, subsidised=False)
        assert extra.balance_after_fen == 100
        # too little left: refused whole, the dinner slot stays free
        with pytest.raises(InsufficientBalance):
            debit(c, person, new_ulid(), 900, slot="dinner")
        assert ask(c, slot="dinner").subsidised_in_district is False
    assert balance(district, person) == 100
    results = b1.upload(
        b1.record("meal_transaction", wallet_meal(person, claim_id=got.claim_id), lunch),
        b1.record(
            "meal_transaction",
            wallet_meal(person, claim_id=extra.claim_id, subsidy=0),
            second,
        ),
    )
    assert [r["stored_as"] for r in results] == ["record", "record"]
    assert district.sql(
        "SELECT kind, amount_fen, balance_after_fen FROM district_wallet_entries ORDER BY id"
    ) == [("topup", 2200, 2200), ("debit", 900, 1300), ("debit", 1200, 100)]


def test_two_claims_racing_on_a_wallet_for_one_meal_debit_exactly_once(
    district: District,
) -> None:
    a1 = Stream(district, "dev-a1")
    assert a1.upload(a1.record("district_wallet_topup", topup(amount=900)))[0]["result"] == (
        "accepted"
    )
    clients = [district.client("dev-b1"), district.client("dev-b2")]
    try:
        person = ask(clients[0]).person_id
        for c in clients:  # connections open before the race
            ask(c)
        barrier = threading.Barrier(2)
        outcomes: list[str] = []

        def go(c: VisitsClient, slot: str) -> None:
            barrier.wait()
            try:
                debit(c, person, new_ulid(), 900, slot=slot)
                outcomes.append("debited")
            except InsufficientBalance:
                outcomes.append("insufficient")
            except SlotClaimed:
                outcomes.append("slot_claimed")

        threads = [
            threading.Thread(target=go, args=(c, s))
            for c, s in zip(clients, ("lunch", "dinner"), strict=True)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    finally:
        for c in clients:
            c.close()
    assert sorted(outcomes) == ["debited", "insufficient"]
    assert balance(district, person) == 0
    assert district.sql("SELECT count(*) FROM district_wallet_entries WHERE kind = 'debit'") == [
        (1,)
    ]
    assert len(district.sql("SELECT * FROM visit_claims")) == 1  # the loser claimed nothing


def test_a_void_credits_back_once_and_a_cash_meal_releases_its_debit(
    district: District,
) -> None:
    a1, b1 = Stream(district, "dev-a1"), Stream(district, "dev-b1")
    a1.upload(a1.record("district_wallet_topup", topup(amount=2000)))
    with district.client("dev-b1") as c:
        person = ask(c).person_id
        lunch, dinner = new_ulid(), new_ulid()
        got = debit(c, person, lunch, 900)
        lost = debit(c, person, dinner, 900, slot="dinner")
    assert balance(district, person) == 200
    audit = wallets_command(district)  # debited, meals not arrived yet
    assert [
        (d["meal_record_id"], d["still_debited_fen"]) for d in audit["debits_without_meal"]
    ] == [
        (lunch, 900),
        (dinner, 900),
    ]
    meal = b1.record("meal_transaction", wallet_meal(person, claim_id=got.claim_id), lunch)
    void = b1.record("meal_void", void_of(lunch, person))
    assert [r["stored_as"] for r in b1.upload(meal, void)] == ["record", "record"]
    assert balance(district, person) == 1100
    replay = b1.client.upload_batch("dev-b1", "centre-b", "kiosk", [meal, void], key_generation="r")
    assert [r["result"] for r in replay["results"]] == ["duplicate", "duplicate"]
    assert balance(district, person) == 1100  # credited back once
    # the dinner's answer was lost: the terminal took cash under the same record id
    cash = dict(
        visit_meal(person, source="roster", claim_id=None, subsidy=300),
        slot="dinner",
    )
    assert lost.claim_id
    assert b1.upload(b1.record("meal_transaction", cash, dinner))[0]["stored_as"] == "record"
    assert balance(district, person) == 2000
    assert district.sql(
        "SELECT kind, amount_fen FROM district_wallet_entries WHERE kind != 'topup' ORDER BY id"
    ) == [("debit", 900), ("debit", 900), ("refund", 900), ("release", 900)]
    audit = wallets_command(district)
    assert audit == {
        "wallets": [{"person_id": person, "balance_fen": 2000}],
        "debits_without_meal": [],
    }


def test_the_settlement_lists_the_wallet_money_the_home_centre_owes(district: District) -> None:
    b1 = Stream(district, "dev-b1")
    person, lunch, got = topped_up_and_debited(district)
    b1.upload(b1.record("meal_transaction", wallet_meal(person, claim_id=got.claim_id), lunch))
    q = "/v1/settlements?from=2026-01-01&to=2026-01-31"
    status, doc = signed_get(district, "dev-a1", q + "&wallet=true")
    assert status == 200 and schemas.is_valid("SettlementReport", doc), doc
    [line] = doc["lines"]
    assert (line["claimant_centre_id"], line["debtor_centre_id"]) == ("centre-b", "centre-a")
    assert (line["meals"], line["subsidy_fen"]) == (1, 300)
    assert (line["wallet_meals"], line["wallet_fen"]) == (1, 900)
    # a 1.2 terminal asks without wallet: a 1.2 report
    status, old = signed_get(district, "dev-b1", q)
    assert status == 200 and problems("1.2.0", "SettlementReport", old) == []
    assert "wallet_fen" not in old["lines"][0]
    status, text = signed_get(district, "dev-b1", q + "&wallet=true", accept="text/csv")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][-3:] == ["wallet_meals", "wallet_fen", "wallet_yuan"]
    assert text.splitlines()[1] == "centre-b,centre-a,2026-01-01,2026-01-31,1,300,3.00,1,900,9.00"
    out = settlement_command(district, "--csv")
    assert out.splitlines()[1] == "centre-b,centre-a,2026-01-05,2026-01-05,1,300,3.00,1,900,9.00"
    status, bad = signed_get(district, "dev-a1", q + "&wallet=yes")
    assert status == 400 and bad["error"] == "malformed_request"


def test_a_top_up_for_a_senior_the_district_does_not_know_is_quarantined(
    district: District,
) -> None:
    a1 = Stream(district, "dev-a1")
    [res] = a1.upload(a1.record("district_wallet_topup", topup(resident="A999")))
    assert (res["stored_as"], res["quarantine_reason"]) == (
        "quarantined",
        "district_wallet_unknown_senior",
    )
    assert district.sql("SELECT count(*) FROM district_wallet_entries") == [(0,)]


def test_a_1_2_terminals_visit_replies_stay_1_2_on_the_home_wallet_policy(
    district: District,
) -> None:
    a1 = Stream(district, "dev-a1")
    a1.upload(a1.record("district_wallet_topup", topup(amount=1000)))
    with district.client("dev-b1") as c:
        ask_12 = {
            "centre_id": "centre-b",
            "key_type": "card",
            "key": card_hmac(PEPPER, "CA0001"),
            "day": DAY.isoformat(),
            "slot": "lunch",
        }
        resp = c._post("/v1/visits/eligibility", ask_12)
        assert (
            resp.status_code == 200 and problems("1.2.0", "VisitorEligibility", resp.json()) == []
        )
        person = resp.json()["person_id"]
        claim_12 = {
            "person_id": person,
            "day": DAY.isoformat(),
            "slot": "lunch",
            "record_id": new_ulid(),
            "centre_id": "centre-b",
        }
        resp = c._post("/v1/visits/claims", claim_12)
        assert resp.status_code == 200 and problems("1.2.0", "VisitClaim", resp.json()) == []
        # the 1.3 answers are refused by the 1.2 schemas: that is why they are asked for
        resp = c._post("/v1/visits/eligibility", {**ask_12, "wallet": True})
        assert problems("1.2.0", "VisitorEligibility", resp.json()) != []
        assert schemas.is_valid("VisitorEligibility", resp.json())
    assert balance(district, person) == 1000  # a 1.2 claim debits nothing


def test_a_part_refund_credits_the_wallet_and_the_settlement_nets_it(district: District) -> None:
    b1 = Stream(district, "dev-b1")
    person, lunch, got = topped_up_and_debited(district)
    refund = {
        "original_record_id": lunch,
        "resident_id": person,
        "amount_fen": 400,
        "refund_to": "cash",
        "reason_code": "meal_not_served",
        "reason_text": None,
        "staff_id": "S01",
        "wallet_before_fen": 0,
        "wallet_after_fen": 0,
    }
    meal = b1.record("meal_transaction", wallet_meal(person, claim_id=got.claim_id), lunch)
    assert [r["stored_as"] for r in b1.upload(meal, b1.record("meal_refund", refund))] == [
        "record",
        "record",
    ]
    assert balance(district, person) == 500  # 1000 - 900 + 400
    status, doc = signed_get(
        district, "dev-b1", "/v1/settlements?from=2026-01-01&to=2026-01-31&wallet=true"
    )
    assert status == 200
    [line] = doc["lines"]
    assert (line["wallet_meals"], line["wallet_fen"]) == (1, 500)


def wallets_fix(d: District, *args: str) -> tuple[int, dict[str, Any] | str]:
    """``care-terminal platform wallets`` with a hand correction: (exit code,
    the entry made or the error line)."""
    cmd = [str(CARE_TERMINAL), "platform", "wallets", "--db", f"sqlite:///{d.db}", *args]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    return run.returncode, (json.loads(run.stdout) if run.returncode == 0 else run.stderr.strip())


def test_district_staff_release_a_lost_debit_and_reverse_a_mistaken_top_up(
    district: District,
) -> None:
    a1, b1 = Stream(district, "dev-a1"), Stream(district, "dev-b1")
    first = a1.record("district_wallet_topup", topup(amount=1000))
    a1.upload(first)
    lunch = new_ulid()
    with district.client("dev-b1") as c:
        person = ask(c).person_id
        got = debit(c, person, lunch, 900)  # the answer is lost: no meal is made
    assert balance(district, person) == 100
    staff = ("--staff", "D01", "--reason", "answer lost, senior paid nothing")
    # the lunch's terminal may still be offline with the meal: too soon
    code, err = wallets_fix(district, "--release-meal", lunch, *staff)
    assert code == 2 and "(too_recent)" in str(err)
    code, err = wallets_fix(district, "--release-meal", lunch, "--min-age-days", "0")
    assert code == 2 and "(staff_required)" in str(err)  # who and why, always
    code, entry = wallets_fix(district, "--release-meal", lunch, "--min-age-days", "0", *staff)
    assert code == 0 and isinstance(entry, dict)
    assert (entry["kind"], entry["amount_fen"], entry["balance_after_fen"]) == (
        "release",
        900,
        1000,
    )
    assert entry["note"] == "D01: answer lost, senior paid nothing"
    code, err = wallets_fix(district, "--release-meal", lunch, "--min-age-days", "0", *staff)
    assert code == 2 and "(already_released)" in str(err)  # once
    code, err = wallets_fix(district, "--release-meal", new_ulid(), "--min-age-days", "0", *staff)
    assert code == 2 and "(not_found)" in str(err)
    # a mistaken top-up of 50.00 (meant 5.00): taken back whole, once
    wrong = a1.record("district_wallet_topup", topup(amount=5000))
    a1.upload(wrong)
    assert balance(district, person) == 6000
    fix = ("--staff", "D01", "--reason", "typed 50 for 5")
    code, entry = wallets_fix(district, "--reverse-topup", wrong["record_id"], *fix)
    assert code == 0 and isinstance(entry, dict)
    assert (entry["kind"], entry["amount_fen"], entry["balance_after_fen"]) == (
        "reversal",
        5000,
        1000,
    )
    code, err = wallets_fix(district, "--reverse-topup", wrong["record_id"], *fix)
    assert code == 2 and "(already_reversed)" in str(err)
    # the senior spends the money again at B's dinner ...
    with district.client("dev-b1") as c:
        debit(c, person, new_ulid(), 700, slot="dinner")
    assert balance(district, person) == 300
    # ... and then the lunch arrives after all, paid from the wallet: the senior
    # ate it, so it is debited again, even below zero (a debt, not a lost meal)
    meal = b1.record("meal_transaction", wallet_meal(person, claim_id=got.claim_id), lunch)
    assert b1.upload(meal)[0]["stored_as"] == "record"
    assert balance(district, person) == -600
    with district.client("dev-b1") as c, pytest.raises(InsufficientBalance):
        debit(c, person, new_ulid(), 100, slot="breakfast")
    status, doc = signed_get(
        district, "dev-a1", "/v1/settlements?from=2026-01-01&to=2026-01-31&wallet=true"
    )
    assert status == 200
    assert [(ln["wallet_meals"], ln["wallet_fen"]) for ln in doc["lines"]] == [(1, 900)]
    code, err = wallets_fix(district, "--release-meal", lunch, "--min-age-days", "0", *staff)
    assert code == 2 and "(meal_arrived)" in str(err)  # a meal that came is voided at the terminal
    # the first top-up's money is spent: it cannot be taken back
    code, err = wallets_fix(district, "--reverse-topup", first["record_id"], *fix)
    assert code == 2 and "(insufficient_balance)" in str(err)
    assert balance(district, person) == -600
    assert district.sql(
        "SELECT kind, amount_fen, note IS NOT NULL FROM district_wallet_entries ORDER BY id"
    ) == [
        ("topup", 1000, 0),
        ("debit", 900, 0),
        ("release", 900, 1),
        ("topup", 5000, 0),
        ("reversal", 5000, 1),
        ("debit", 700, 0),
        ("redebit", 900, 1),
    ]
