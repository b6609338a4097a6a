"""The answer to "who is this face?": what ``face`` produces and ``payment``
decides on. They never import each other; both import these types (no image,
no embedding ever goes into them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

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
