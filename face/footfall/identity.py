"""Who crossed: anonymous daily visitors, staff exclusion, consented attendance.

Pure (numpy only, no IO): times are passed in.

:class:`DailyVisitors`
    Anonymous face embeddings held in memory for one day, so one person who
    walks in five times is one visitor and five visits. This class does no
    IO and nothing of it is logged or sent: its ``repr`` shows counts only,
    and :meth:`clear` (day rollover, service stop) overwrites the vectors
    before dropping them. :meth:`export_state` / :meth:`restore_state` hand
    the raw arrays to ``face.footfall.visitor_vault``, the only place they
    go: encrypted with a per-day key that lives in memory and in the kernel
    keyring, so a service restart within the day does not count a returning
    visitor again. Visitors are numbered per day (1, 2, ...); the number is
    only used to count and never leaves the process.

:class:`AttendanceBook`
    Sessions of enrolled seniors who consented to attendance: a senior is
    recorded once per day and once more per *session*, when they enter again
    after at least ``session_gap`` seconds since they were last recognised
    entering (default 60 min: stepping out for a phone call is the same visit,
    going home for lunch and coming back is a second session).

:func:`classify`
    Turns a gallery search into the footfall decision: ``staff`` (identified
    as someone on the exclusion list: not counted at all), ``attendee``
    (identified with a clearly good score - the accept threshold plus an extra
    margin - as a senior who consented to attendance), or ``anonymous``
    (everyone else: the resident id is dropped on the spot, so nobody who did
    not consent is identified).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import numpy as np

from face.gallery import Match, decide

Kind = Literal["staff", "attendee", "anonymous"]


def unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float32).reshape(-1)
    n = float(np.linalg.norm(v))
    if not math.isfinite(n) or n < 1e-12:
        raise ValueError("empty embedding")
    return v / n


@dataclass
class DailyVisitors:
    """Anonymous visitors of one day, matched by face embedding (cosine)."""

    same_person: float = 0.5  # cosine at or above which two crossings are the same visitor
    max_per_visitor: int = 4  # embeddings kept per visitor (the best-matching set grows slowly)
    dim: int = 512
    _mat: np.ndarray = field(init=False, repr=False)
    _owner: list[int] = field(init=False, repr=False, default_factory=list)
    _n: int = field(init=False, repr=False, default=0)
    _visitors: int = field(init=False, repr=False, default=0)
    _version: int = field(init=False, repr=False, default=0)

    def __post_init__(self) -> None:
        self._mat = np.zeros((64, self.dim), np.float32)

    def __repr__(self) -> str:  # never show vectors
        return f"DailyVisitors(visitors={self._visitors}, vectors={self._n})"

    @property
    def count(self) -> int:
        return self._visitors

    @property
    def vectors_held(self) -> int:
        return self._n

    @property
    def version(self) -> int:
        """Grows on every change (a visitor, a new look, a clear): the service
        persists the state when it moved."""
        return self._version

    def export_state(self) -> tuple[int, np.ndarray, np.ndarray]:
        """(visitors, owner of each vector as int32, the vectors as float32 rows):
        copies, for the encrypted vault only."""
        owners = np.asarray(self._owner, dtype=np.int32)
        return self._visitors, owners, self._mat[: self._n].copy()

    def restore_state(self, visitors: int, owners: np.ndarray, vectors: np.ndarray) -> None:
        """Resume the day after a service restart (from :meth:`export_state`)."""
        owners = np.asarray(owners, dtype=np.int32).reshape(-1)
        vectors = np.asarray(vectors, dtype=np.float32)
        n = int(owners.shape[0])
        if vectors.shape != (n, self.dim):
            raise ValueError("vectors do not match the owners or the dimension")
        if n and (int(owners.min()) < 1 or int(owners.max()) > visitors):
            raise ValueError("visitor numbers out of range")
        self.clear()
        cap = max(64, 1 << max(0, n - 1).bit_length())
        self._mat = np.zeros((cap, self.dim), np.float32)
        self._mat[:n] = vectors
        self._owner = [int(o) for o in owners]
        self._n = n
        self._visitors = int(visitors)
        self._version += 1

    def match(self, vec: np.ndarray) -> tuple[int | None, float]:
        """The visitor number whose embeddings are closest, if at or above
        ``same_person``, and the best score."""
        if self._n == 0:
            return None, -1.0
        q = unit(vec)
        scores = self._mat[: self._n] @ q
        i = int(np.argmax(scores))
        best = float(scores[i])
        return (self._owner[i] if best >= self.same_person else None), best

    def visit(self, vec: np.ndarray) -> tuple[int, bool]:
        """Register a visit: (visitor number, True when this is a new visitor today)."""
        q = unit(vec)
        who, best = self.match(q)
        if who is None:
            self._visitors += 1
            self._add(self._visitors, q)
            return self._visitors, True
        if sum(1 for o in self._owner if o == who) < self.max_per_visitor and best < 0.9:
            self._add(who, q)  # a new look of the same person (other angle, light)
        return who, False

    def new_anonymous(self) -> int:
        """A visitor without a usable embedding: counted, never matched later."""
        self._visitors += 1
        self._version += 1
        return self._visitors

    def _add(self, who: int, q: np.ndarray) -> None:
        if self._n == self._mat.shape[0]:
            bigger = np.zeros((self._mat.shape[0] * 2, self.dim), np.float32)
            bigger[: self._n] = self._mat[: self._n]
            self._mat.fill(0.0)
            self._mat = bigger
        self._mat[self._n] = q
        self._owner.append(who)
        self._n += 1
        self._version += 1

    def clear(self) -> None:
        """Forget the day: vectors are overwritten with zeros, then dropped."""
        self._mat.fill(0.0)
        self._mat = np.zeros((64, self.dim), np.float32)
        self._owner.clear()
        self._n = 0
        self._visitors = 0
        self._version += 1


@dataclass(frozen=True, slots=True)
class AttendanceRecord:
    resident_id: str
    date: str  # centre-local YYYY-MM-DD
    session: int  # 1-based session number of the day
    first_seen: datetime
    score: float


@dataclass
class AttendanceBook:
    session_gap: float = 3600.0  # seconds
    day: str = ""
    _sessions: dict[str, tuple[int, datetime]] = field(default_factory=dict, repr=False)

    def restore(self, day: str, sessions: dict[str, tuple[int, datetime]]) -> None:
        """Resume a day after a restart (from the records already in the outbox)."""
        self.day = day
        self._sessions = dict(sessions)

    def observe(self, resident_id: str, when: datetime, score: float) -> AttendanceRecord | None:
        """A consenting senior recognised entering at ``when``; a record when a
        new session starts, else None (and the session's last sighting moves)."""
        day = when.date().isoformat()
        if day != self.day:
            self.day = day
            self._sessions.clear()
        prev = self._sessions.get(resident_id)
        if prev is not None:
            number, last = prev
            if (when - last).total_seconds() < self.session_gap:
                self._sessions[resident_id] = (number, when)
                return None
            number += 1
        else:
            number = 1
        self._sessions[resident_id] = (number, when)
        return AttendanceRecord(resident_id, day, number, when, round(float(score), 4))

    def sessions_today(self) -> int:
        return sum(n for n, _ in self._sessions.values())

    def clear(self) -> None:
        self._sessions.clear()
        self.day = ""


@dataclass(frozen=True, slots=True)
class Decision:
    kind: Kind
    resident_id: str | None = None  # only for staff and attendee
    score: float = 0.0


def classify(
    results: Sequence[Match],
    *,
    accept_threshold: float,
    min_margin: float,
    attendance_margin: float,
    staff_ids: Collection[str],
    consented_ids: Collection[str],
) -> Decision:
    """The footfall decision for one crossing from a gallery search (best first).

    Searching the whole gallery (not only consenting residents) keeps the
    margin test honest: a stranger who resembles a consenting senior but even
    more an enrolled non-consenting one is not attributed to the former.
    """
    if not results:
        return Decision("anonymous")
    ident = decide(results, accept_threshold, accept_threshold, min_margin)
    if ident.decision != "identified" or ident.resident_id is None:
        return Decision("anonymous")
    rid = ident.resident_id
    if rid in staff_ids:
        return Decision("staff", rid, ident.score)
    if rid in consented_ids and ident.score >= accept_threshold + attendance_margin:
        return Decision("attendee", rid, ident.score)
    return Decision("anonymous")
