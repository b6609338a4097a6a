"""Fault injection for the reference platform: which fault a request draws.

:class:`Faults` only decides (one draw per request, seeded); the ASGI
middleware in :mod:`sync.platform.asgi` carries the decision out: an error or
back-pressure answer, a delay, a connection reset before processing, a reply
dropped (the connection reset) after the commit, or a 200 reply that violates
the spec.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

FAULT_KINDS = ("error", "retry_after", "reset", "drop_after_commit", "bad_reply", "latency")


@dataclass
class Faults:
    """Fault injection. Each request draws once: with probability ``error_rate`` a
    5xx/408 answer, ``retry_after_rate`` a 429/503 with Retry-After, ``reset_rate``
    a connection reset before processing, ``drop_after_commit_rate`` processing and
    committing then resetting instead of answering, ``bad_reply_rate`` committing
    then answering 200 with a reply that violates the spec, ``latency_rate`` a
    delay of up to ``latency_s`` before a normal answer."""

    error_rate: float = 0.0
    retry_after_rate: float = 0.0
    reset_rate: float = 0.0
    drop_after_commit_rate: float = 0.0
    bad_reply_rate: float = 0.0
    latency_rate: float = 0.0
    latency_s: float = 0.05
    retry_after_s: int = 1
    retry_after_http_date: bool = False
    seed: int | None = None
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        total = sum(self._rates())
        if any(r < 0 for r in self._rates()) or total > 1.0:
            raise ValueError("fault rates must be >= 0 and add up to at most 1")
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()

    def _rates(self) -> list[float]:
        return [
            self.error_rate,
            self.retry_after_rate,
            self.reset_rate,
            self.drop_after_commit_rate,
            self.bad_reply_rate,
            self.latency_rate,
        ]

    @property
    def total_rate(self) -> float:
        return sum(self._rates())

    def draw(self) -> str | None:
        with self._lock:
            r = self._rng.random()
            acc = 0.0
            for kind, rate in zip(FAULT_KINDS, self._rates(), strict=True):
                acc += rate
                if r < acc:
                    self.counts[kind] = self.counts.get(kind, 0) + 1
                    return kind
            self.counts["none"] = self.counts.get("none", 0) + 1
            return None

    def pick(self, options: list[int]) -> int:
        with self._lock:
            return self._rng.choice(options)

    def jitter(self) -> float:
        with self._lock:
            return self._rng.random() * self.latency_s
