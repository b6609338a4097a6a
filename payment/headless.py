"""A synchronous driver for the kiosk flow, without screen or threads.

Used by the ``care-terminal pay`` command, the crash harness and tests: events
go through :func:`payment.flow.step`; ``Charge`` effects are executed at once
through the ``charge`` port and its result is fed back as the next event.
Print and speak effects are collected for the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from payment.flow import (
    Charge,
    ChargeCommitted,
    ChargeFailed,
    ChargeRequest,
    Effect,
    Event,
    FlowContext,
    Idle,
    Print,
    Speak,
    State,
    step,
)

ChargePort = Callable[[ChargeRequest], ChargeCommitted | ChargeFailed]


@dataclass
class Drive:
    state: State
    effects: list[Effect] = field(default_factory=list)
    committed: list[ChargeCommitted] = field(default_factory=list)
    failed: list[ChargeFailed] = field(default_factory=list)

    @property
    def spoken(self) -> list[str]:
        return [e.key for e in self.effects if isinstance(e, Speak)]

    @property
    def printed(self) -> list[Print]:
        return [e for e in self.effects if isinstance(e, Print)]


def drive(
    ctx: FlowContext,
    charge: ChargePort,
    events: Iterable[Event],
    now: Callable[[], datetime],
    state: State | None = None,
) -> Drive:
    result = Drive(state=state or Idle())
    pending: list[Event] = list(events)
    while pending:
        event = pending.pop(0)
        result.state, effects = step(result.state, event, now(), ctx)
        result.effects.extend(effects)
        for eff in effects:
            if isinstance(eff, Charge):
                outcome = charge(eff.request)
                if isinstance(outcome, ChargeCommitted):
                    result.committed.append(outcome)
                else:
                    result.failed.append(outcome)
                pending.insert(0, outcome)
    return result
