"""The platform client's retry policy: the shared schedule
(:class:`terminal.core.backoff.Backoff`, exponential with full jitter and a
cap) plus what is particular to HTTP: ``Retry-After`` (seconds or HTTP-date)
and which statuses are worth retrying. Pure: randomness and time are passed in.

Full jitter (delay = uniform(0, min(cap, base * multiplier**attempt))) spreads
a fleet of terminals that lost the platform at the same moment, so they do not
all come back in the same second. A server's ``Retry-After`` wins over the
jittered delay (clamped to ``max_retry_after_s`` so a broken header cannot
park a terminal for a year).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime

from terminal.core.backoff import Backoff

# Retryable HTTP statuses besides the 5xx (see the spec's retry table); 501 and
# 505 are 5xx that the same request will always get, so final.
RETRYABLE_STATUSES = frozenset({408, 425, 429})
FINAL_5XX = frozenset({501, 505})
FINAL_STATUSES = frozenset(
    {400, 401, 403, 404, 405, 409, 410, 411, 413, 414, 415, 422, 431, 501, 505}
)


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    base_s: float = 1.0
    multiplier: float = 2.0
    cap_s: float = 300.0
    max_retry_after_s: float = 3600.0

    def __post_init__(self) -> None:
        _ = self.schedule  # Backoff refuses a bad base, cap or multiplier (ValueError)
        if self.max_retry_after_s < 0:
            raise ValueError("max_retry_after_s must not be negative")

    @property
    def schedule(self) -> Backoff:
        """The jittered part: ``base_s`` doubling (``multiplier``) up to ``cap_s``."""
        return Backoff(initial=self.base_s, maximum=self.cap_s, factor=self.multiplier)


def is_retryable_status(status: int) -> bool:
    """True for 408/425/429 and every 5xx but 501/505; False for everything else."""
    return status in RETRYABLE_STATUSES or (500 <= status <= 599 and status not in FINAL_5XX)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header, or None if absent/unreadable.

    Accepts delta-seconds (``"120"``) or an HTTP-date
    (``"Wed, 21 Oct 2026 07:28:00 GMT"``); a date in the past gives 0.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None or now.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


def next_delay(
    policy: BackoffPolicy,
    attempt: int,
    rand: Callable[[], float],
    now: datetime,
    retry_after: str | None = None,
) -> float:
    """Delay before the next try after ``attempt`` consecutive failures (0-based):
    the server's Retry-After when it gave a readable one (clamped), else full jitter."""
    ra = parse_retry_after(retry_after, now)
    if ra is not None:
        return min(ra, policy.max_retry_after_s)
    return policy.schedule.jittered(attempt, rand)
