"""Small cross-feature Protocols. ``face``, ``payment`` and ``sync`` never import
each other; they meet here and are wired together in ``terminal.app``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

MatchDecision = Literal["identified", "uncertain", "unknown"]


@dataclass(frozen=True, slots=True)
class LivenessDecision:
    """The liveness verdict and the inputs that produced it (recorded on every
    identification)."""

    live: bool
    method: str  # e.g. "passive", "passive+blink", "none"
    signals: Mapping[str, float] = field(default_factory=dict)
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Identification:
    """Answer to "who is this face?" (no image, no embedding)."""

    decision: MatchDecision
    resident_id: str | None
    score: float
    second_score: float
    threshold: float
    margin: float
    liveness: LivenessDecision | None = None


class FaceIdentifier(Protocol):
    """Who is this face? Implemented by ``face``; used by the kiosk."""

    def identify_frame(self, frame: Any) -> Identification: ...


class OutboxWriter(Protocol):
    """Append a record to the outbox (in the caller's transaction)."""

    def append(
        self, session: Any, kind: str, record_id: str, payload: Mapping[str, Any]
    ) -> None: ...
