"""The pure double-entry ledger: postings, invariants, validation, verification."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
)

from payment.domain import MealSlot, VerificationMethod
from payment.errors import LedgerError
from payment.ledger import (
    CASH,
    REVENUE,
    SUBSIDY_RECEIVABLE,
    EntryKind,
    Ledger,
    LedgerEntry,
    Leg,
    account_balances,
    make_charge,
    make_refund,
    make_topup,
    make_void,
    prior_meals,
    validate_new_entry,
    verify_entries,
    wallet_account,
    wallet_balance,
    wallet_balances,
)
from terminal.core.clock import CHINA_TZ
from terminal.core.money import Money

T0 = datetime(2026, 1, 5, 11, 0, tzinfo=CHINA_TZ)
DAY = date(2026, 1, 5)


def charge(
    eid: str,
    rid: str = "R1",
    list_fen: int = 1500,
    sub_fen: int = 500,
    slot: MealSlot = MealSlot.LUNCH,
    at: datetime = T0,
) -> LedgerEntry:
    return make_charge(
        eid,
        rid,
        at,
        slot=slot,
        day=DAY,
        list_amount=Money(list_fen),
        subsidy=Money(sub_fen),
        method=VerificationMethod.FACE,
    )


def topup(eid: str, rid: str = "R1", fen: int = 5000) -> LedgerEntry:
    return make_topup(eid, rid, T0, amount=Money(fen), staff_id="S1")


def test_postings_are_balanced_double_entry() -> None:
    c = charge("C1")
    assert {leg.account: leg.amount.fen for leg in c.legs} == {
        wallet_account("R1"): 1000,
        SUBSIDY_RECEIVABLE: 500,
        REVENUE: -1500,
    }
    assert c.amount == Money(1000) and c.due == Money(1000) and c.wallet_delta == Money(-1000)
    t = topup("T1")
    assert {leg.account: leg.amount.fen for leg in t.legs} == {
        CASH: 5000,
        wallet_account("R1"): -5000,
    }
    v = make_void("V1", c, T0, reason="wrong person", staff_id="S1")
    assert {leg.account: leg.amount.fen for leg in v.legs} == {
        wallet_account("R1"): -1000,
        SUBSIDY_RECEIVABLE: -500,
        REVENUE: 1500,
    }
    assert v.ref_id == "C1" and v.wallet_delta == Money(1000)
    r = make_refund("F1", c, T0, amount=Money(300), reason="dish missing", staff_id="S1")
    assert {leg.account: leg.amount.fen for leg in r.legs} == {
        REVENUE: 300,
        wallet_account("R1"): -300,
    }
    for e in (c, t, v, r):
        assert sum(leg.amount.fen for leg in e.legs) == 0


def test_fully_subsidised_and_free_charges() -> None:
    free = charge("C0", list_fen=0, sub_fen=0)
    assert free.legs == () and free.wallet_delta == Money(0)
    full = charge("C1", list_fen=1200, sub_fen=1200)
    assert {leg.account for leg in full.legs} == {SUBSIDY_RECEIVABLE, REVENUE}
    ledger = Ledger([free, full])
    assert ledger.wallet_balance("R1") == Money(0)
    assert ledger.account_balance(SUBSIDY_RECEIVABLE) == Money(1200)


def test_ledger_balances_and_views() -> None:
    entries = [
        topup("T1", fen=5000),
        topup("T2", "R2", fen=800),
        charge("C1"),
        charge("C2", "R2", list_fen=800, sub_fen=0, slot=MealSlot.BREAKFAST),
    ]
    ledger = Ledger(entries)
    assert ledger.wallet_balance("R1") == Money(4000)
    assert ledger.wallet_balance("R2") == Money(0)
    assert ledger.wallet_balance("R9") == Money(0)
    assert wallet_balances(entries) == {"R1": Money(4000), "R2": Money(0)}
    assert wallet_balance(entries, "R1") == Money(4000)
    acc = account_balances(entries)
    assert acc[CASH] == Money(5800) and acc[REVENUE] == Money(-2300)
    assert acc[SUBSIDY_RECEIVABLE] == Money(500)
    assert sum(m.fen for m in acc.values()) == 0
    # the wallet (liability) mirrors the assets minus revenue
    assert -acc[wallet_account("R1")].fen - acc[wallet_account("R2")].fen == 4000
    meals = ledger.prior_meals("R1", DAY)
    assert [(m.record_id, m.slot, m.subsidised, m.voided) for m in meals] == [
        ("C1", MealSlot.LUNCH, True, False)
    ]
    assert prior_meals(entries, "R2")[0].subsidised is False


def test_void_refund_rules() -> None:
    ledger = Ledger([topup("T1"), charge("C1"), charge("C2", list_fen=1000, sub_fen=0)])
    assert ledger.refundable("C1") == Money(1000)
    ledger.append(
        make_refund(
            "F1",
            ledger.get("C1") or charge("x"),
            T0,
            amount=Money(400),
            reason="cold",
            staff_id="S1",
        )
    )
    assert ledger.refundable("C1") == Money(600)
    c1 = ledger.get("C1")
    assert c1 is not None
    with pytest.raises(LedgerError) as err:
        ledger.append(make_refund("F2", c1, T0, amount=Money(601), reason="x", staff_id="S1"))
    assert err.value.code == "refund_too_large"
    with pytest.raises(LedgerError) as err:
        ledger.append(make_void("V1", c1, T0, reason="x", staff_id="S1"))
    assert err.value.code == "already_refunded"
    ledger.append(make_refund("F2", c1, T0, amount=Money(600), reason="x", staff_id="S1"))
    assert ledger.refundable("C1") == Money(0)
    c2 = ledger.get("C2")
    assert c2 is not None
    ledger.append(make_void("V2", c2, T0, reason="double tap", staff_id="S1"))
    assert ledger.is_voided("C2") and ledger.refundable("C2") == Money(0)
    assert [m.voided for m in ledger.prior_meals("R1")] == [False, True]
    for eid, code in (("V3", "already_voided"),):
        with pytest.raises(LedgerError) as err:
            ledger.append(make_void(eid, c2, T0, reason="again", staff_id="S1"))
        assert err.value.code == code
    with pytest.raises(LedgerError) as err:
        ledger.append(make_refund("F3", c2, T0, amount=Money(1), reason="x", staff_id="S1"))
    assert err.value.code == "already_voided"
    assert ledger.wallet_balance("R1") == Money(5000)  # everything given back


def _bad(entry: LedgerEntry, **changes: object) -> LedgerEntry:
    from dataclasses import replace

    return replace(entry, **changes)  # type: ignore[arg-type]


BAD_APPENDS = [
    ("duplicate id", lambda: topup("T1"), "duplicate_entry"),
    (
        "void unknown charge",
        lambda: make_void("V9", charge("C404"), T0, reason="x", staff_id="S1"),
        "unknown_charge",
    ),
    (
        "void a top-up",
        lambda: _bad(make_void("V9", charge("T1"), T0, reason="x", staff_id="S1"), ref_id="T1"),
        "not_a_charge",
    ),
    (
        "charge beyond balance",
        lambda: charge("C9", list_fen=6000, sub_fen=0),
        "insufficient_balance",
    ),
    ("unbalanced legs", lambda: _bad(topup("T9"), legs=(Leg(CASH, Money(5000)),)), "unbalanced"),
    (
        "charge legs disagree with amounts",
        lambda: _bad(charge("C9"), subsidy=Money(400)),
        "unbalanced",
    ),
    (
        "foreign account",
        lambda: _bad(topup("T9"), legs=(Leg(CASH, Money(10)), Leg("wallet:R2", Money(-10)))),
        "bad_account",
    ),
    (
        "zero leg",
        lambda: _bad(topup("T9"), legs=(*topup("T9").legs, Leg(CASH, Money(0)))),
        "entry_malformed",
    ),
    ("naive time", lambda: _bad(topup("T9"), at=datetime(2026, 1, 5, 11, 0)), "entry_malformed"),
    ("charge without slot", lambda: _bad(charge("C9"), slot=None), "entry_malformed"),
    (
        "void for another resident",
        lambda: _bad(
            make_void("V9", charge("C1"), T0, reason="x", staff_id="S1"),
            resident_id="R2",
            legs=make_void("V9", charge("C1", "R2"), T0, reason="x", staff_id="S1").legs,
        ),
        "bad_ref",
    ),
    (
        "void not mirroring",
        lambda: _bad(make_void("V9", charge("C1", sub_fen=400), T0, reason="x", staff_id="S1")),
        "bad_void",
    ),
    ("topup amount mismatch", lambda: _bad(topup("T9"), amount=Money(1)), "bad_amount"),
    (
        "refund without reason",
        lambda: _bad(
            make_refund("F9", charge("C1"), T0, amount=Money(1), reason="x", staff_id="S1"),
            reason=" ",
        ),
        "reason_required",
    ),
    ("topup without staff", lambda: _bad(topup("T9"), staff_id=None), "staff_required"),
]


@pytest.mark.parametrize(("name", "make", "code"), BAD_APPENDS, ids=[b[0] for b in BAD_APPENDS])
def test_ledger_rejects(name: str, make: object, code: str) -> None:
    ledger = Ledger([topup("T1"), charge("C1")])
    before = ledger.entries
    entry = make()  # type: ignore[operator]
    with pytest.raises(LedgerError) as err:
        ledger.append(entry)
    assert err.value.code == code, str(err.value)
    assert ledger.entries == before  # nothing appended


@pytest.mark.parametrize(
    ("build", "code"),
    [
        (lambda: make_topup("T", "R1", T0, amount=Money(0), staff_id="S"), "bad_amount"),
        (lambda: make_topup("T", "R1", T0, amount=Money(1_000_001), staff_id="S"), "bad_amount"),
        (lambda: make_topup("T", "R1", T0, amount=Money(5), staff_id=" "), "staff_required"),
        (lambda: make_topup(" ", "R1", T0, amount=Money(5), staff_id="S"), "entry_malformed"),
        (lambda: charge("C", list_fen=100, sub_fen=101), "bad_amount"),
        (lambda: make_void("V", charge("C"), T0, reason="", staff_id="S"), "reason_required"),
        (lambda: make_void("V", topup("T"), T0, reason="x", staff_id="S"), "void_not_charge"),
        (
            lambda: make_refund("F", charge("C"), T0, amount=Money(0), reason="x", staff_id="S"),
            "bad_amount",
        ),
        (
            lambda: make_refund("F", charge("C"), T0, amount=Money(1), reason="x", staff_id=""),
            "staff_required",
        ),
    ],
)
def test_builders_reject(build: object, code: str) -> None:
    with pytest.raises(LedgerError) as err:
        build()  # type: ignore[operator]
    assert err.value.code == code


def test_overdraft_policy() -> None:
    strict = Ledger()
    with pytest.raises(LedgerError, match="insufficient balance"):
        strict.append(charge("C1"))
    lenient = Ledger(overdraft_limit=Money(1000))
    assert lenient.append(charge("C1")) == Money(-1000)
    with pytest.raises(LedgerError) as err:
        lenient.append(charge("C2", list_fen=1, sub_fen=0))
    assert err.value.code == "insufficient_balance"
    # money coming in is always accepted, even while below zero
    assert lenient.append(topup("T1", fen=500)) == Money(-500)


def test_validate_new_entry_for_a_store() -> None:
    c = charge("C1")
    v = make_void("V1", c, T0, reason="x", staff_id="S1")
    assert validate_new_entry(v, wallet_balance=Money(0), referenced=c) == Money(1000)
    with pytest.raises(LedgerError) as err:
        validate_new_entry(v, wallet_balance=Money(0), referenced=None)
    assert err.value.code == "unknown_charge"
    with pytest.raises(LedgerError) as err:
        validate_new_entry(v, wallet_balance=Money(0), referenced=c, compensations=[v])
    assert err.value.code == "already_voided"
    assert validate_new_entry(c, wallet_balance=Money(1000)) == Money(0)


def test_entry_dict_round_trip() -> None:
    c = charge("C1")
    entries = [
        c,
        topup("T1"),
        make_void("V1", c, T0, reason="误扣", staff_id="S1"),
        make_refund("F1", c, T0, amount=Money(5), reason="x", staff_id="S1"),
    ]
    for e in entries:
        assert LedgerEntry.from_dict(e.to_dict()) == e
    with pytest.raises(LedgerError) as err:
        LedgerEntry.from_dict({"entry_id": "x"})
    assert err.value.code == "entry_malformed"


def test_verify_reports_first_bad_entry() -> None:
    c = charge("C1")
    good = [topup("T1"), c, make_void("V1", c, T0, reason="x", staff_id="S1")]
    res = verify_entries(good)
    assert res.ok and res.checked == 3 and res.balances == {"R1": Money(5000)}
    bad = [*good, make_void("V2", c, T0, reason="again", staff_id="S1"), topup("T1")]
    res = verify_entries(bad)
    assert not res.ok
    assert (res.first_bad_index, res.first_bad_id, res.code) == (3, "V2", "already_voided")
    res = verify_entries([charge("C1")])
    assert (res.first_bad_index, res.code) == (0, "insufficient_balance")


def test_kinds_are_append_only_records() -> None:
    ledger = Ledger([topup("T1"), charge("C1")])
    c1 = ledger.get("C1")
    assert c1 is not None
    ledger.append(make_void("V1", c1, T0 + timedelta(minutes=1), reason="x", staff_id="S1"))
    assert [e.kind for e in ledger.entries] == [EntryKind.TOPUP, EntryKind.CHARGE, EntryKind.VOID]
    assert ledger.get("C1") == c1  # the charge itself is untouched
    assert ledger.compensations("C1")[0].entry_id == "V1"


# --------------------------------------------------------------------------- stateful

RESIDENTS = ("R1", "R2", "R3")


class LedgerMachine(RuleBasedStateMachine):
    """Random charge / top-up / void / refund sequences: the derived balances
    always equal the sum of the entries, never go negative, and every rejected
    entry leaves the ledger unchanged."""

    charges = Bundle("charges")

    @initialize()
    def setup(self) -> None:
        self.ledger = Ledger()
        self.n = 0
        self.model: dict[str, int] = dict.fromkeys(RESIDENTS, 0)
        self.voided: set[str] = set()
        self.refunded: dict[str, int] = {}

    def _id(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n:05d}"

    def _at(self) -> datetime:
        return T0 + timedelta(seconds=self.n)

    @rule(rid=st.sampled_from(RESIDENTS), fen=st.integers(1, 20_000))
    def top_up(self, rid: str, fen: int) -> None:
        self.ledger.append(
            make_topup(self._id("T"), rid, self._at(), amount=Money(fen), staff_id="S1")
        )
        self.model[rid] += fen

    @rule(
        target=charges,
        rid=st.sampled_from(RESIDENTS),
        list_fen=st.integers(0, 3000),
        sub_pct=st.integers(0, 100),
        slot=st.sampled_from(list(MealSlot)),
    )
    def charge(self, rid: str, list_fen: int, sub_pct: int, slot: MealSlot) -> str:
        sub = list_fen * sub_pct // 100
        entry = make_charge(
            self._id("C"),
            rid,
            self._at(),
            slot=slot,
            day=DAY,
            list_amount=Money(list_fen),
            subsidy=Money(sub),
            method=VerificationMethod.CARD,
        )
        due = list_fen - sub
        if due > self.model[rid]:
            before = self.ledger.entries
            with pytest.raises(LedgerError) as err:
                self.ledger.append(entry)
            assert err.value.code == "insufficient_balance"
            assert self.ledger.entries == before
            return ""
        self.ledger.append(entry)
        self.model[rid] -= due
        return entry.entry_id

    @rule(cid=consumes(charges))
    def void(self, cid: str) -> None:
        c = self.ledger.get(cid) if cid else None
        if c is None:
            return
        v = make_void(self._id("V"), c, self._at(), reason="test", staff_id="S1")
        if cid in self.voided or self.refunded.get(cid):
            with pytest.raises(LedgerError):
                self.ledger.append(v)
            return
        self.ledger.append(v)
        self.voided.add(cid)
        self.model[c.resident_id] += c.amount.fen

    @rule(cid=charges, fen=st.integers(1, 3000))
    def refund(self, cid: str, fen: int) -> None:
        c = self.ledger.get(cid) if cid else None
        if c is None:
            return
        r = make_refund(self._id("F"), c, self._at(), amount=Money(fen), reason="t", staff_id="S1")
        done = self.refunded.get(cid, 0)
        if cid in self.voided or done + fen > c.amount.fen:
            with pytest.raises(LedgerError):
                self.ledger.append(r)
            return
        self.ledger.append(r)
        self.refunded[cid] = done + fen
        self.model[c.resident_id] += fen

    @rule(cid=charges)
    def void_twice_is_rejected(self, cid: str) -> None:
        if cid and cid in self.voided:
            c = self.ledger.get(cid)
            assert c is not None
            with pytest.raises(LedgerError) as err:
                self.ledger.append(
                    make_void(self._id("V"), c, self._at(), reason="t", staff_id="S1")
                )
            assert err.value.code == "already_voided"

    @invariant()
    def balances_equal_sum_of_entries(self) -> None:
        entries = self.ledger.entries
        derived = wallet_balances(entries)
        for rid in RESIDENTS:
            from_legs = -sum(
                leg.amount.fen
                for e in entries
                for leg in e.legs
                if leg.account == wallet_account(rid)
            )
            assert self.ledger.wallet_balance(rid).fen == from_legs == self.model[rid]
            assert derived.get(rid, Money(0)).fen == from_legs
            assert from_legs >= 0

    @invariant()
    def books_balance(self) -> None:
        acc = account_balances(self.ledger.entries)
        assert sum(m.fen for m in acc.values()) == 0
        for account, money in acc.items():
            assert self.ledger.account_balance(account) == money
        # cash in = wallets + revenue kept + subsidy claimed
        wallets = sum(self.model.values())
        assert acc.get(CASH, Money(0)).fen + acc.get(SUBSIDY_RECEIVABLE, Money(0)).fen == (
            wallets - acc.get(REVENUE, Money(0)).fen
        )

    @invariant()
    def replay_verifies(self) -> None:
        if self.n % 7 == 0:  # a full replay now and then keeps the test fast
            res = verify_entries(self.ledger.entries)
            assert res.ok and res.checked == len(self.ledger.entries)


LedgerMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestLedgerMachine = LedgerMachine.TestCase
