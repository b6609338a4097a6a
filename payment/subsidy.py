"""Versioned meal-subsidy policies and the price quote.

A policy is data pulled from the platform as JSON::

    {
      "policy_id": "district-2026",
      "version": 3,
      "effective_from": "2026-01-01",
      "effective_until": null,                      # optional, inclusive
      "rules": [
        {"category": "age_80_89", "slots": ["lunch"],
         "type": "fixed", "amount_fen": 300,
         "cap_fen": 300, "limit_per_day": 1, "floor_fen": 100},
        {"category": "dibao", "slot": "*",
         "type": "percent", "basis_points": 5000,
         "cap_fen": 800, "limit_per_day": 1, "floor_fen": 0}
      ]
    }

``slot`` takes one slot or ``"*"`` (all three); ``slots`` takes a list.
``limit_per_day`` (default 1) counts subsidised meals per slot per day.

Arithmetic and rounding (integer fen only):

* eligible = sum of the subsidisable order lines;
* raw = ``amount_fen`` (fixed) or ``floor(eligible * basis_points / 10000)``
  (percent): percentages round *down* to whole fen, so a record never claims
  more public money than the rule grants (the senior pays at most 1 fen more);
* subsidy = min(raw, cap, eligible - floor), never below 0, never above eligible;
* due = list total - subsidy; balance after = balance before - due.

A resident in several categories gets the largest subsidy among their
categories' rules; ties go to ``CATEGORY_PRIORITY`` order. Every evaluated
category is kept in the quote with the reason it did or did not apply.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any

from payment.domain import CATEGORY_PRIORITY, MealSlot, OrderLine, SeniorCategory
from payment.errors import DomainError, PolicyError
from terminal.core.money import Money

_ZERO = Money(0)

BP_DENOMINATOR = 10_000


class SubsidyKind(StrEnum):
    FIXED = "fixed"
    PERCENT = "percent"


@dataclass(frozen=True, slots=True)
class SubsidyRule:
    category: SeniorCategory
    slot: MealSlot
    kind: SubsidyKind
    amount: Money = _ZERO  # FIXED: the subsidy per meal
    basis_points: int = 0  # PERCENT: 5000 = 50 %
    cap: Money | None = None  # at most this much per meal
    limit_per_day: int = 1  # subsidised meals per slot per day
    floor: Money = _ZERO  # the senior always pays at least this (of the eligible amount)

    def __post_init__(self) -> None:
        where = f"rule {self.category.value}/{self.slot.value}"
        if self.kind is SubsidyKind.FIXED and self.amount.fen < 0:
            raise PolicyError(f"{where}: amount_fen must not be negative")
        if self.kind is SubsidyKind.PERCENT and not 0 <= self.basis_points <= BP_DENOMINATOR:
            raise PolicyError(f"{where}: basis_points must be 0..{BP_DENOMINATOR}")
        if self.cap is not None and self.cap.fen < 0:
            raise PolicyError(f"{where}: cap_fen must not be negative")
        if self.limit_per_day < 0:
            raise PolicyError(f"{where}: limit_per_day must not be negative")
        if self.floor.fen < 0:
            raise PolicyError(f"{where}: floor_fen must not be negative")

    def describe(self) -> str:
        """Short, name-free text for records and staff screens."""
        if self.kind is SubsidyKind.FIXED:
            what = f"fixed {self.amount.yuan_str()}"
        else:
            what = f"{self.basis_points / 100:g}%"
        cap = f", cap {self.cap.yuan_str()}" if self.cap is not None else ""
        floor = f", floor {self.floor.yuan_str()}" if self.floor.fen else ""
        return (
            f"{self.category.value}/{self.slot.value}: {what}{cap}{floor}, {self.limit_per_day}/day"
        )


@dataclass(frozen=True, slots=True)
class SubsidyPolicy:
    policy_id: str
    version: int
    effective_from: date
    rules: tuple[SubsidyRule, ...]
    effective_until: date | None = None  # inclusive

    def __post_init__(self) -> None:
        if not self.policy_id.strip():
            raise PolicyError("policy_id is required")
        if self.version < 1:
            raise PolicyError("version must be a positive integer")
        if self.effective_until is not None and self.effective_until < self.effective_from:
            raise PolicyError("effective_until is before effective_from")
        seen: set[tuple[SeniorCategory, MealSlot]] = set()
        for rule in self.rules:
            key = (rule.category, rule.slot)
            if key in seen:
                raise PolicyError(
                    f"two rules for category {rule.category.value} and slot {rule.slot.value}"
                )
            seen.add(key)

    def rule_for(self, category: SeniorCategory, slot: MealSlot) -> SubsidyRule | None:
        for rule in self.rules:
            if rule.category is category and rule.slot is slot:
                return rule
        return None

    def in_force(self, day: date) -> bool:
        return self.effective_from <= day and (
            self.effective_until is None or day <= self.effective_until
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SubsidyPolicy:
        return parse_policy(data)

    def to_dict(self) -> dict[str, Any]:
        rules: list[dict[str, Any]] = []
        for r in self.rules:
            d: dict[str, Any] = {"category": r.category.value, "slot": r.slot.value}
            d["type"] = r.kind.value
            if r.kind is SubsidyKind.FIXED:
                d["amount_fen"] = r.amount.fen
            else:
                d["basis_points"] = r.basis_points
            if r.cap is not None:
                d["cap_fen"] = r.cap.fen
            d["limit_per_day"] = r.limit_per_day
            d["floor_fen"] = r.floor.fen
            rules.append(d)
        return {
            "policy_id": self.policy_id,
            "version": self.version,
            "effective_from": self.effective_from.isoformat(),
            "effective_until": self.effective_until.isoformat() if self.effective_until else None,
            "rules": rules,
        }


# --------------------------------------------------------------------------- parsing

_POLICY_KEYS = {"policy_id", "version", "effective_from", "effective_until", "rules"}
_RULE_KEYS = {
    "category",
    "slot",
    "slots",
    "type",
    "amount_fen",
    "basis_points",
    "cap_fen",
    "limit_per_day",
    "floor_fen",
}


def _int(data: Mapping[str, Any], key: str, where: str, *, default: int | None = None) -> int:
    if key not in data or data[key] is None:
        if default is None:
            raise PolicyError(f"{where}: '{key}' is required")
        return default
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyError(f"{where}: '{key}' must be an integer")
    if value < 0:
        raise PolicyError(f"{where}: '{key}' must not be negative")
    return value


def _date(value: Any, where: str, key: str) -> date:
    if not isinstance(value, str):
        raise PolicyError(f"{where}: '{key}' must be a date YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise PolicyError(f"{where}: '{key}' must be a date YYYY-MM-DD") from None


def _slots(raw: Mapping[str, Any], where: str) -> list[MealSlot]:
    if ("slot" in raw) == ("slots" in raw):
        raise PolicyError(f"{where}: give exactly one of 'slot' or 'slots'")
    values: list[Any]
    if "slot" in raw:
        if raw["slot"] == "*":
            return list(MealSlot)
        values = [raw["slot"]]
    else:
        if not isinstance(raw["slots"], list) or not raw["slots"]:
            raise PolicyError(f"{where}: 'slots' must be a non-empty list")
        values = raw["slots"]
    out = []
    for v in values:
        if not isinstance(v, str):
            raise PolicyError(f"{where}: slot must be breakfast, lunch, dinner or '*'")
        try:
            out.append(MealSlot.parse(v))
        except DomainError:
            raise PolicyError(f"{where}: unknown slot {v!r}") from None
    return out


def _parse_rules(raw: Mapping[str, Any], n: int) -> list[SubsidyRule]:
    where = f"rule {n}"
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{where}: must be an object")
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise PolicyError(f"{where}: unknown field(s) {sorted(unknown)}")
    cat_raw = raw.get("category")
    if not isinstance(cat_raw, str):
        raise PolicyError(f"{where}: 'category' is required")
    try:
        category = SeniorCategory.parse(cat_raw)
    except DomainError:
        raise PolicyError(f"{where}: unknown category {cat_raw!r}") from None
    try:
        kind = SubsidyKind(str(raw.get("type")))
    except ValueError:
        raise PolicyError(f"{where}: 'type' must be 'fixed' or 'percent'") from None
    if kind is SubsidyKind.FIXED:
        if "basis_points" in raw:
            raise PolicyError(f"{where}: a fixed rule takes amount_fen, not basis_points")
        amount, bp = _int(raw, "amount_fen", where), 0
    else:
        if "amount_fen" in raw:
            raise PolicyError(f"{where}: a percent rule takes basis_points, not amount_fen")
        amount, bp = 0, _int(raw, "basis_points", where)
        if bp > BP_DENOMINATOR:
            raise PolicyError(f"{where}: 'basis_points' must be 0..{BP_DENOMINATOR}")
    cap = None if raw.get("cap_fen") is None else Money(_int(raw, "cap_fen", where))
    limit = _int(raw, "limit_per_day", where, default=1)
    floor = Money(_int(raw, "floor_fen", where, default=0))
    return [
        SubsidyRule(category, slot, kind, Money(amount), bp, cap, limit, floor)
        for slot in _slots(raw, where)
    ]


def parse_policy(data: Mapping[str, Any]) -> SubsidyPolicy:
    """Validate a policy document; raises :class:`PolicyError` naming the bad field."""
    if not isinstance(data, Mapping):
        raise PolicyError("a subsidy policy must be a JSON object")
    unknown = set(data) - _POLICY_KEYS
    if unknown:
        raise PolicyError(f"policy: unknown field(s) {sorted(unknown)}")
    pid = data.get("policy_id")
    if not isinstance(pid, str) or not pid.strip():
        raise PolicyError("policy: 'policy_id' is required")
    version = _int(data, "version", "policy")
    if "effective_from" not in data:
        raise PolicyError("policy: 'effective_from' is required")
    eff_from = _date(data["effective_from"], "policy", "effective_from")
    until_raw = data.get("effective_until")
    eff_until = None if until_raw is None else _date(until_raw, "policy", "effective_until")
    rules_raw = data.get("rules")
    if not isinstance(rules_raw, list):
        raise PolicyError("policy: 'rules' must be a list")
    rules: list[SubsidyRule] = []
    for n, raw in enumerate(rules_raw, 1):
        rules.extend(_parse_rules(raw, n))
    return SubsidyPolicy(pid.strip(), version, eff_from, tuple(rules), eff_until)


def select_policy(policies: Iterable[SubsidyPolicy], day: date) -> SubsidyPolicy | None:
    """The policy in force on ``day``: latest ``effective_from``, then highest version."""
    in_force = [p for p in policies if p.in_force(day)]
    if not in_force:
        return None
    return max(in_force, key=lambda p: (p.effective_from, p.version))


# --------------------------------------------------------------------------- quote


class Outcome(StrEnum):
    """Why a category's rule did or did not give a subsidy (and the quote's reason)."""

    APPLIED = "applied"
    NO_POLICY = "no_policy"
    NO_RULE = "no_rule"
    LIMIT_REACHED = "limit_reached"
    ZERO_PRICE = "zero_price"  # nothing subsidisable in the order
    BELOW_FLOOR = "below_floor"  # the floor leaves nothing to subsidise
    ROUNDED_TO_ZERO = "rounded_to_zero"  # percentage of a tiny amount
    NOTHING_GRANTED = "nothing_granted"  # the rule grants 0 (amount 0 or 0 %)


@dataclass(frozen=True, slots=True)
class RuleEvaluation:
    """One category's rule applied to the order."""

    category: SeniorCategory
    rule: SubsidyRule | None
    outcome: Outcome
    raw: Money  # before cap and floor
    subsidy: Money
    capped: bool = False
    floored: bool = False


@dataclass(frozen=True, slots=True)
class Quote:
    """Every line of a meal price: list, subsidy, due, balance before and after."""

    slot: MealSlot
    lines: tuple[OrderLine, ...]
    list_total: Money
    eligible: Money  # the subsidisable part of list_total
    subsidy: Money
    due: Money
    balance_before: Money
    balance_after: Money
    outcome: Outcome
    applied: RuleEvaluation | None  # the evaluation that gave the subsidy, if any
    evaluations: tuple[RuleEvaluation, ...]
    policy_id: str | None
    policy_version: int | None
    subsidised_before: int  # subsidised meals in this slot today before this one
    overdraft_limit: Money = _ZERO

    @property
    def subsidised(self) -> bool:
        return self.subsidy.fen > 0

    @property
    def category(self) -> SeniorCategory | None:
        return self.applied.category if self.applied else None

    @property
    def funds_ok(self) -> bool:
        return self.balance_after.fen >= -self.overdraft_limit.fen

    @property
    def shortfall(self) -> Money:
        """How much is missing to pay (0 when funds are sufficient)."""
        return Money(max(0, -self.overdraft_limit.fen - self.balance_after.fen))

    def explain(self) -> tuple[str, ...]:
        """Name-free lines for staff screens and records."""
        out = [
            f"list {self.list_total.yuan_str()}",
            f"subsidy {self.subsidy.yuan_str()} ({self.outcome.value})",
            f"due {self.due.yuan_str()}",
            f"balance {self.balance_before.yuan_str()} -> {self.balance_after.yuan_str()}",
        ]
        for ev in self.evaluations:
            rule = ev.rule.describe() if ev.rule else "no rule"
            flags = "".join([" capped" if ev.capped else "", " floored" if ev.floored else ""])
            out.append(
                f"{ev.category.value}: {ev.outcome.value} {ev.subsidy.yuan_str()} [{rule}]{flags}"
            )
        return tuple(out)


def evaluate_rule(
    category: SeniorCategory,
    rule: SubsidyRule | None,
    eligible: Money,
    subsidised_before: int,
) -> RuleEvaluation:
    """Apply one rule to an eligible amount (see the module docstring)."""
    zero = Money(0)
    if rule is None:
        return RuleEvaluation(category, None, Outcome.NO_RULE, zero, zero)
    if subsidised_before >= rule.limit_per_day:
        return RuleEvaluation(category, rule, Outcome.LIMIT_REACHED, zero, zero)
    if eligible.fen <= 0:
        return RuleEvaluation(category, rule, Outcome.ZERO_PRICE, zero, zero)
    if rule.kind is SubsidyKind.FIXED:
        raw = rule.amount.fen
    else:
        raw = eligible.fen * rule.basis_points // BP_DENOMINATOR
    value = min(raw, eligible.fen)
    capped = rule.cap is not None and value > rule.cap.fen
    if rule.cap is not None:
        value = min(value, rule.cap.fen)
    room = max(0, eligible.fen - rule.floor.fen)
    floored = value > room
    value = max(0, min(value, room))
    if value > 0:
        outcome = Outcome.APPLIED
    elif room == 0:
        outcome, floored = Outcome.BELOW_FLOOR, True
    elif raw == 0 and rule.kind is SubsidyKind.PERCENT and rule.basis_points > 0:
        outcome = Outcome.ROUNDED_TO_ZERO
    else:
        outcome = Outcome.NOTHING_GRANTED
    return RuleEvaluation(category, rule, outcome, Money(raw), Money(value), capped, floored)


_OUTCOME_RANK = {
    # when no category gives a subsidy, the quote reports the most telling reason
    Outcome.LIMIT_REACHED: 0,
    Outcome.BELOW_FLOOR: 1,
    Outcome.ROUNDED_TO_ZERO: 2,
    Outcome.NOTHING_GRANTED: 3,
    Outcome.APPLIED: 3,
    Outcome.ZERO_PRICE: 4,
    Outcome.NO_RULE: 5,
}


def quote(
    *,
    policy: SubsidyPolicy | None,
    categories: Iterable[SeniorCategory],
    slot: MealSlot,
    lines: Sequence[OrderLine],
    balance_before: Money,
    subsidised_before: int = 0,
    overdraft_limit: Money = _ZERO,
) -> Quote:
    """Price an order for a resident.

    ``subsidised_before`` is the number of subsidised, non-voided meals the
    resident already had in this slot today (``payment.domain.subsidised_meals``).
    The quote is returned even when funds are short (``funds_ok`` is False) so
    the screen can show what is missing.
    """
    if subsidised_before < 0:
        raise PolicyError("subsidised_before must not be negative")
    list_total = Money(sum(line.amount.fen for line in lines))
    eligible = Money(sum(line.amount.fen for line in lines if line.subsidisable))
    cats = sorted(set(categories) or {SeniorCategory.NONE}, key=CATEGORY_PRIORITY.index)
    evaluations: tuple[RuleEvaluation, ...] = ()
    applied: RuleEvaluation | None = None
    if policy is None:
        outcome = Outcome.NO_POLICY
    else:
        evaluations = tuple(
            evaluate_rule(c, policy.rule_for(c, slot), eligible, subsidised_before) for c in cats
        )
        # max() keeps the first of equal values: categories are in priority order
        best = max(evaluations, key=lambda e: e.subsidy.fen)
        if best.subsidy.fen > 0:
            applied, outcome = best, Outcome.APPLIED
        elif list_total.fen == 0 or eligible.fen == 0:
            outcome = Outcome.ZERO_PRICE
        else:
            outcome = min((e.outcome for e in evaluations), key=_OUTCOME_RANK.__getitem__)
    subsidy = applied.subsidy if applied else Money(0)
    due = list_total - subsidy
    return Quote(
        slot=slot,
        lines=tuple(lines),
        list_total=list_total,
        eligible=eligible,
        subsidy=subsidy,
        due=due,
        balance_before=balance_before,
        balance_after=balance_before - due,
        outcome=outcome,
        applied=applied,
        evaluations=evaluations,
        policy_id=policy.policy_id if policy else None,
        policy_version=policy.version if policy else None,
        subsidised_before=subsidised_before,
        overdraft_limit=overdraft_limit,
    )
