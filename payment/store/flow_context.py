"""The kiosk flow's view of the database (:class:`payment.flow.FlowContext`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from typing import TypeVar

from sqlalchemy.orm import Session

from payment.domain import MealSlot, Menu, PriorMeal, Resident
from payment.flow import FlowConfig, random_request_id
from payment.limits import Exposure
from payment.store.catalogue import Catalogue
from payment.store.deps import StoreDeps
from payment.store.queries import Queries, to_resident
from payment.store.visitors import VisitorMeals
from payment.subsidy import SubsidyPolicy
from payment.visiting import OfflineUsage
from terminal.core.money import Money

T = TypeVar("T")


class DbFlowContext:
    """A :class:`payment.flow.FlowContext` reading the database (one short read
    transaction per lookup; never call from the GUI thread)."""

    def __init__(self, deps: StoreDeps, queries: Queries, catalogue: Catalogue) -> None:
        self._d = deps
        self._queries = queries
        self._catalogue = catalogue

    @property
    def config(self) -> FlowConfig:
        return self._d.config

    def _read(self, fn: Callable[[Session], T]) -> T:
        with self._d.sessions() as s:
            return fn(s)

    def resident(self, resident_id: str) -> Resident | None:
        return self._read(lambda s: self._queries.resident(s, resident_id))

    def resident_by_card(self, card_id: str) -> Resident | None:
        info = self._read(lambda s: self._d.roster.by_card(s, card_id))
        return to_resident(info) if info else None

    def resident_by_id_card(self, id_number: str) -> Resident | None:
        info = self._read(lambda s: self._d.roster.by_id_number(s, id_number))
        return to_resident(info) if info else None

    def balance(self, resident_id: str) -> Money:
        return self._queries.balance(resident_id)

    def meals(self, resident_id: str, day: date) -> Sequence[PriorMeal]:
        return self._read(lambda s: self._queries.prior_meals(s, resident_id, day))

    def exposure(self, resident_id: str) -> Exposure:
        return self._read(lambda s: self._queries.exposure(s, resident_id))

    def menu(self, day: date) -> Menu | None:
        return self._catalogue.menu(day)

    def policy(self, day: date) -> SubsidyPolicy | None:
        return self._catalogue.policy(day)

    def new_request_id(self) -> str:
        return random_request_id()

    def visit_usage(self, day: date, slot: MealSlot) -> OfflineUsage:
        return VisitorMeals(self._d).usage(day, slot)
