"""The one retry schedule: capped exponential backoff, optionally with full jitter.

Pure and stdlib only. ``attempt`` is the number of retries already waited for,
0-based: the first wait after a failure is ``delay(0)``, which is ``initial``.

* :meth:`Backoff.delay` is deterministic: ``min(maximum, initial * factor**attempt)``.
  Local devices (a serial port, a camera) use it: nobody else competes for them.
* :meth:`Backoff.jittered` is "full jitter", ``uniform(0, delay(attempt))``,
  with the random source passed in (``random.random`` in production, a
  constant in tests). Network clients use it so a fleet of terminals that lost
  the platform at the same moment does not come back in the same second.

The exponent is bounded, so days of retrying never overflow a float.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

_MAX_EXPONENT = 64  # initial * 2**64 is past any cap anyone would configure


@dataclass(frozen=True, slots=True)
class Backoff:
    """``initial * factor**attempt`` seconds, never more than ``maximum``."""

    initial: float
    maximum: float
    factor: float = 2.0

    def __post_init__(self) -> None:
        if not self.initial > 0 or not self.maximum > 0 or not self.factor >= 1:
            raise ValueError("backoff needs initial > 0, maximum > 0 and factor >= 1")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based), no jitter."""
        if attempt < 0:
            raise ValueError("attempt must not be negative")
        try:
            grown = self.initial * self.factor ** min(attempt, _MAX_EXPONENT)
        except OverflowError:  # a huge factor: certainly past the cap
            return float(self.maximum)
        return float(min(self.maximum, grown))

    def jittered(self, attempt: int, rand: Callable[[], float]) -> float:
        """Full jitter: ``rand() * delay(attempt)`` with ``rand()`` in [0, 1]."""
        r = rand()
        if not 0.0 <= r <= 1.0:
            raise ValueError("rand() must return a number in [0, 1]")
        return r * self.delay(attempt)
