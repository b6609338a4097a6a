"""Offline exposure limits, as card terminals have floor limits.

The terminal commits payments locally and syncs later; until the platform
acknowledges them, a stale wallet or a stolen identity costs real money. So
the amount a resident is charged (the *due* amount, what leaves the wallet)
is checked against three configurable ceilings; beyond any of them the
terminal asks for a staff member instead of refusing the senior.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from payment.errors import LimitsError
from terminal.core.money import Money

_MAX_TXN = Money(5_000)
_MAX_RESIDENT = Money(20_000)
_MAX_TERMINAL = Money(500_000)


@dataclass(frozen=True, slots=True)
class Exposure:
    """Amounts charged on this terminal that the platform has not acknowledged
    yet (the store sums unsynced charges minus unsynced voids/refunds)."""

    resident_unsynced: Money = field(default_factory=Money.zero)
    terminal_unsynced: Money = field(default_factory=Money.zero)


@dataclass(frozen=True, slots=True)
class ExposureLimits:
    max_per_transaction: Money = _MAX_TXN  # 50 yuan
    max_unsynced_per_resident: Money = _MAX_RESIDENT  # 200 yuan
    max_unsynced_per_terminal: Money = _MAX_TERMINAL  # 5 000 yuan

    def __post_init__(self) -> None:
        for name in (
            "max_per_transaction",
            "max_unsynced_per_resident",
            "max_unsynced_per_terminal",
        ):
            value = getattr(self, name)
            if not isinstance(value, Money) or value.fen < 0:
                raise LimitsError(f"{name} must be a non-negative amount")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExposureLimits:
        """Parse ``{"max_per_transaction_fen": 5000, ...}`` (missing keys keep defaults)."""
        if not isinstance(data, Mapping):
            raise LimitsError("limits must be an object")
        keys = {
            "max_per_transaction_fen": "max_per_transaction",
            "max_unsynced_per_resident_fen": "max_unsynced_per_resident",
            "max_unsynced_per_terminal_fen": "max_unsynced_per_terminal",
        }
        unknown = set(data) - set(keys)
        if unknown:
            raise LimitsError(f"limits: unknown field(s) {sorted(unknown)}")
        kwargs: dict[str, Money] = {}
        for key, attr in keys.items():
            if key in data:
                v = data[key]
                if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                    raise LimitsError(f"limits: {key} must be a non-negative integer (fen)")
                kwargs[attr] = Money(v)
        return cls(**kwargs)

    def to_dict(self) -> dict[str, int]:
        return {
            "max_per_transaction_fen": self.max_per_transaction.fen,
            "max_unsynced_per_resident_fen": self.max_unsynced_per_resident.fen,
            "max_unsynced_per_terminal_fen": self.max_unsynced_per_terminal.fen,
        }


class LimitReason(StrEnum):
    OVER_TRANSACTION = "over_transaction_limit"
    OVER_RESIDENT_UNSYNCED = "over_resident_unsynced_limit"
    OVER_TERMINAL_UNSYNCED = "over_terminal_unsynced_limit"


@dataclass(frozen=True, slots=True)
class LimitCheck:
    result: Literal["ok", "staff_required"]
    reason: LimitReason | None = None
    limit: Money | None = None  # the ceiling that was crossed
    would_be: Money | None = None  # the amount that would have crossed it

    @property
    def ok(self) -> bool:
        return self.result == "ok"


def check_limits(amount: Money, exposure: Exposure, limits: ExposureLimits) -> LimitCheck:
    """Check a payment of ``amount`` (the due amount). A 0-fen payment always
    passes. The first crossed limit is reported (transaction, resident, terminal).
    A total equal to a limit is still allowed."""
    if amount.fen <= 0:
        return LimitCheck("ok")
    if amount.fen > limits.max_per_transaction.fen:
        return LimitCheck(
            "staff_required", LimitReason.OVER_TRANSACTION, limits.max_per_transaction, amount
        )
    per_resident = exposure.resident_unsynced + amount
    if per_resident.fen > limits.max_unsynced_per_resident.fen:
        return LimitCheck(
            "staff_required",
            LimitReason.OVER_RESIDENT_UNSYNCED,
            limits.max_unsynced_per_resident,
            per_resident,
        )
    per_terminal = exposure.terminal_unsynced + amount
    if per_terminal.fen > limits.max_unsynced_per_terminal.fen:
        return LimitCheck(
            "staff_required",
            LimitReason.OVER_TERMINAL_UNSYNCED,
            limits.max_unsynced_per_terminal,
            per_terminal,
        )
    return LimitCheck("ok")
