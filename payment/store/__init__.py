"""Durable payments in ``terminal.db``: one module per job, all over one
SQLAlchemy session factory (:class:`~payment.store.deps.StoreDeps`), every write
a ``BEGIN IMMEDIATE`` transaction.

* :mod:`payment.store.schema`: the payment tables (ledger, wallets, charge
  intents, menus, subsidy policies).
* :mod:`payment.store.money`: money writes (:class:`~payment.store.money.MoneyWriter`:
  charge, top-up, void); ledger entry, wallet and outbox record in one transaction.
* :mod:`payment.store.intents`: the intent of each charge request, which makes a
  charge idempotent and lets a lost answer be resolved or recovered at start-up.
* :mod:`payment.store.catalogue`: menus and subsidy policies.
* :mod:`payment.store.queries`: the flow's reads and the transaction views,
  receipts and day figures staff and reports read.
* :mod:`payment.store.verification`: ``ledger verify`` (sequence, hash chain,
  ledger rules, wallet balances).
* :mod:`payment.store.flow_context`: the kiosk flow's read port.
* :mod:`payment.store.visitors`: visiting seniors' meals (city-wide meals).

:class:`PaymentStore` bundles them for the callers that hold one object.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from payment.flow import FlowConfig
from payment.store.catalogue import Catalogue
from payment.store.deps import StoreDeps
from payment.store.flow_context import DbFlowContext
from payment.store.intents import ChargeIntents
from payment.store.money import MoneyWriter
from payment.store.queries import Queries
from payment.store.verification import LedgerVerifier
from payment.store.visitors import DistrictTopups, VisitorMeals
from terminal.core.clock import Clock
from terminal.db.outbox import Outbox
from terminal.db.roster import RosterStore


class PaymentStore:
    """A facade over the job objects, for the kiosk wiring, the staff back end,
    the CLI and the crash harness, which hold one store. It only delegates and
    holds no logic: each call below is a job object's own method, and new code
    should take the job object it needs (``store.money``, ``store.queries``, ...)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        outbox: Outbox,
        roster: RosterStore,
        *,
        device_id: str,
        centre_id: str,
        clock: Clock,
        config: FlowConfig,
        acked_through: Callable[[], int] = lambda: 0,
        match_threshold: float | None = None,
        id_number_hmac: Callable[[str], str] | None = None,
    ) -> None:
        self.deps = StoreDeps(sessions, roster, device_id, centre_id, clock, config)
        self.catalogue = Catalogue(self.deps)
        self.queries = Queries(self.deps, acked_through)
        self.intents = ChargeIntents(self.deps, self.queries)
        self.money = MoneyWriter(
            self.deps,
            self.queries,
            self.intents,
            outbox,
            match_threshold=match_threshold,
            id_number_hmac=id_number_hmac,
        )
        self.verifier = LedgerVerifier(self.deps)
        self.visitors = VisitorMeals(self.deps)
        self.district_wallet = DistrictTopups(self.deps, outbox)

        self.charge = self.money.charge
        self.topup = self.money.topup
        self.void = self.money.void
        self.resolve_charge = self.intents.resolve
        self.mark_shown = self.intents.mark_shown
        self.intent = self.intents.get
        self.recover_intents = self.intents.recover
        self.set_menu = self.catalogue.set_menu
        self.menu = self.catalogue.menu
        self.set_policy = self.catalogue.set_policy
        self.policy = self.catalogue.policy
        self.balance = self.queries.balance
        self.get = self.queries.get
        self.transactions = self.queries.transactions
        self.last_transaction = self.queries.last_transaction
        self.receipt = self.queries.receipt
        self.day_summary = self.queries.day_summary
        self.verify = self.verifier.verify

    @property
    def config(self) -> FlowConfig:
        return self.deps.config

    @config.setter
    def config(self, config: FlowConfig) -> None:
        self.deps.config = config

    def context(self) -> DbFlowContext:
        return DbFlowContext(self.deps, self.queries, self.catalogue)
