"""Hourly footfall aggregates (pure: times come in as arguments).

One :class:`HourBucket` per centre-local clock hour. Buckets are *additive*:
when the service stops in the middle of an hour it flushes what it has (marked
``partial``), and after a restart the same hour gets a second record; readers
add the records of one hour up. For that reason ``unique_visitors`` of an
hour is the number of visitors whose *first* visit of the day fell in that
hour, so the day's unique visitors are the sum over its hours.

``observed_seconds`` says how long the counter was actually running in the
hour, so the platform can tell "nobody came" from "the camera was off".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from terminal.core.clock import rfc3339

EventKind = Literal["in", "out", "new_visitor", "attendance"]
MAX_TICK_GAP = 5.0  # seconds; a longer gap between frames is not "observed"


def hour_start(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise ValueError("naive datetime")
    return when.replace(minute=0, second=0, microsecond=0)


@dataclass
class HourBucket:
    start: datetime
    visits_in: int = 0
    visits_out: int = 0
    unique_visitors: int = 0
    identified_attendance: int = 0
    observed_seconds: float = 0.0
    partial: bool = False

    @property
    def empty(self) -> bool:
        return (
            self.visits_in
            == self.visits_out
            == self.unique_visitors
            == self.identified_attendance
            == 0
            and self.observed_seconds < 1.0
        )

    def payload(self, *, identities: bool = True, detector: str = "face") -> dict[str, Any]:
        """The ``footfall_hourly`` outbox payload (plain JSON types only)."""
        return {
            "hour_start": rfc3339(self.start),
            "date": self.start.date().isoformat(),
            "visits_in": self.visits_in,
            "visits_out": self.visits_out,
            "unique_visitors": self.unique_visitors if identities else None,
            "identified_attendance": self.identified_attendance if identities else None,
            "observed_seconds": round(self.observed_seconds),
            "partial": self.partial,
            "detector": detector,
        }


class HourlyAggregator:
    def __init__(self) -> None:
        self.current: HourBucket | None = None
        self._last_tick: datetime | None = None

    def _roll(self, now: datetime) -> list[HourBucket]:
        start = hour_start(now)
        closed: list[HourBucket] = []
        if self.current is not None and self.current.start != start:
            closed.append(self.current)
            self.current = None
        if self.current is None:
            self.current = HourBucket(start)
        return closed

    def tick(self, now: datetime) -> list[HourBucket]:
        """Record that the counter ran up to ``now``; returns hours that closed."""
        closed: list[HourBucket] = []
        last = self._last_tick
        if last is not None and now > last and (now - last).total_seconds() <= MAX_TICK_GAP:
            # split the observed interval at hour boundaries
            t = last
            while t < now:
                boundary = hour_start(t) + timedelta(hours=1)
                seg_end = min(now, boundary)
                closed += self._roll(t)
                assert self.current is not None
                self.current.observed_seconds += (seg_end - t).total_seconds()
                t = seg_end
        closed += self._roll(now)
        self._last_tick = now if last is None or now > last else last
        return closed

    def add(self, now: datetime, kind: EventKind, n: int = 1) -> list[HourBucket]:
        closed = self._roll(now)
        b = self.current
        assert b is not None
        if kind == "in":
            b.visits_in += n
        elif kind == "out":
            b.visits_out += n
        elif kind == "new_visitor":
            b.unique_visitors += n
        else:
            b.identified_attendance += n
        return closed

    def flush(self, now: datetime) -> list[HourBucket]:
        """Close the current hour early (service stop); it is marked partial
        when the hour is not over yet. Empty buckets are not returned."""
        closed = self.tick(now)
        out = [b for b in closed if not b.empty]
        if self.current is not None:
            cur = self.current
            cur.partial = hour_start(now) == cur.start
            if not cur.empty:
                out.append(cur)
            self.current = None
        self._last_tick = None
        return out
