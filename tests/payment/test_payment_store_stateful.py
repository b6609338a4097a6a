"""Hypothesis stateful test over the real store on a real SQLite file:
random sequences of charges, voids, top-ups and sync acknowledgements.

Invariants after every step: each wallet equals the sum of its ledger entries
(and the model), the ledger verifies (sequence, hash chain, one outbox row per
record), unsynced exposure equals the charges after the acked sequence, and no
wallet goes below zero."""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from payment.domain import Menu
from payment.flow import Charge, FlowConfig, Idle, StaffLookup, Touch, step
from payment.limits import ExposureLimits
from payment.store import PaymentStore
from terminal.core.clock import CHINA_TZ, FakeClock
from terminal.core.money import Money
from terminal.db.crypto import FieldCipher, load_or_create_key
from terminal.db.database import open_database
from terminal.db.engine import write_session
from terminal.db.outbox import Outbox
from terminal.db.roster import RosterStore

RESIDENTS = ("R1", "R2", "R3")
BIG = Money(10**9)


class StoreMachine(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        d = Path(self.tmp.name)
        self.clock = FakeClock(datetime(2026, 1, 5, 11, 0, tzinfo=CHINA_TZ))
        self.db = open_database(f"sqlite:///{d}/t.db")
        self.acked = 0
        roster = RosterStore(FieldCipher(load_or_create_key(d / "k")))
        self.store = PaymentStore(
            self.db.sessions,
            Outbox("dev", "c"),
            roster,
            device_id="dev",
            centre_id="c",
            clock=self.clock,
            config=FlowConfig(limits=ExposureLimits(BIG, BIG, BIG), duplicate_guard_any_meal=False),
            acked_through=lambda: self.acked,
        )
        with write_session(self.db.sessions) as s:
            for rid in RESIDENTS:
                roster.upsert(s, rid, "测试", self.clock.now(), categories=["age_70_79"])
        self.store.set_menu(
            Menu.from_dict(
                {
                    "date": "2026-01-05",
                    "items": [
                        {"item_id": "L1", "name": "午餐", "price_fen": 1500, "slots": ["lunch"]}
                    ],
                }
            ),
            "s",
        )
        self.balances = dict.fromkeys(RESIDENTS, 0)
        self.charges: dict[str, tuple[str, int, int]] = {}  # record -> (resident, due, seq)
        self.voided: set[str] = set()
        self.session = 0

    def teardown(self) -> None:
        if hasattr(self, "db"):
            self.db.close()
            self.tmp.cleanup()

    @rule(rid=st.sampled_from(RESIDENTS), yuan=st.integers(min_value=1, max_value=80))
    def topup(self, rid: str, yuan: int) -> None:
        self.clock.advance(1)
        self.store.topup(rid, Money(yuan * 100), "staff-1")
        self.balances[rid] += yuan * 100

    @rule(rid=st.sampled_from(RESIDENTS))
    def charge(self, rid: str) -> None:
        self.clock.advance(1)
        self.session += 1
        ctx = self.store.context()
        state, _ = step(Idle(self.session), StaffLookup(rid, "staff-1"), self.clock.now(), ctx)
        state, effects = step(state, Touch("confirm"), self.clock.now(), ctx)
        requests = [e.request for e in effects if isinstance(e, Charge)]
        if self.balances[rid] < 1500:
            assert (
                not requests or self.store.charge(requests[0]).__class__.__name__ == "ChargeFailed"
            )
            return
        assert requests, state
        outcome = self.store.charge(requests[0])
        assert outcome.__class__.__name__ == "ChargeCommitted", outcome
        tx = self.store.get(outcome.record_id)
        self.balances[rid] -= 1500
        self.charges[tx.record_id] = (rid, 1500, tx.seq)
        assert tx.balance_after == Money(self.balances[rid])

    @precondition(lambda self: any(r not in self.voided for r in self.charges))
    @rule(data=st.data())
    def void(self, data: st.DataObject) -> None:
        open_ = sorted(r for r in self.charges if r not in self.voided)
        record = data.draw(st.sampled_from(open_))
        rid, due, _ = self.charges[record]
        self.clock.advance(1)
        self.store.void(record, "wrong_item", "staff-1")
        self.voided.add(record)
        self.balances[rid] += due

    @rule(data=st.data())
    def sync_ack(self, data: st.DataObject) -> None:
        last = self.store.last_transaction()
        head = last.seq if last else 0
        self.acked = data.draw(st.integers(min_value=self.acked, max_value=max(self.acked, head)))

    @invariant()
    def wallets_equal_ledger_and_model(self) -> None:
        if not hasattr(self, "store"):
            return
        for rid in RESIDENTS:
            assert self.store.balance(rid) == Money(self.balances[rid])
            assert self.balances[rid] >= 0

    @invariant()
    def ledger_verifies(self) -> None:
        if hasattr(self, "store"):
            check = self.store.verify()
            assert check.ok, check

    @invariant()
    def exposure_is_the_unacked_charges(self) -> None:
        if not hasattr(self, "store"):
            return
        with self.db.sessions() as s:
            for rid in RESIDENTS:
                want = sum(
                    due
                    for r, (who, due, seq) in self.charges.items()
                    if who == rid and seq > self.acked
                )
                assert self.store.queries.exposure(s, rid).resident_unsynced == Money(want)


StoreMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestStoreMachine = StoreMachine.TestCase
