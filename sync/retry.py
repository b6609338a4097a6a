"""The retry schedule: exponential backoff with full jitter, a cap, and
``Retry-After`` (seconds or HTTP-date). Pure: randomness and time are passed in.

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

# Retryable HTTP statuses besides every 5xx (see the spec's retry table).
RETRYABLE_STATUSES = frozenset({408, 425, 429})
FINAL_STATUSES = frozenset({400, 401, 403, 404, 409, 410, 413, 415, 422})


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    base_s: float = 1.0
    multiplier: float = 2.0
    cap_s: float = 300.0
    max_retry_after_s: float = 3600.0

    def __post_init__(self) -> None:
        if self.base_s <= 0 or self.cap_s <= 0 or self.multiplier < 1:
            raise ValueError("backoff needs base_s > 0, cap_s > 0 and multiplier >= 1")
        if self.max_retry_after_s < 0:
            raise ValueError("max_retry_after_s must not be negative")


def is_retryable_status(status: int) -> bool:
    """True for 408/425/429 and every 5xx; False for everything else."""
    return status in RETRYABLE_STATUSES or 500 <= status <= 599


def backoff_ceiling(policy: BackoffPolicy, attempt: int) -> float:
    """The upper bound of the jittered delay after ``attempt`` failures (0-based)."""
    if attempt < 0:
        raise ValueError("attempt must not be negative")
    # Avoid float overflow for very large attempt counts.
    exp = min(attempt, 64)
    return float(min(policy.cap_s, policy.base_s * policy.multiplier**exp))


def full_jitter(policy: BackoffPolicy, attempt: int, rand: Callable[[], float]) -> float:
    """uniform(0, ceiling) using ``rand()`` in [0, 1)."""
    r = rand()
    if not 0.0 <= r <= 1.0:
        raise ValueError("rand() must return a number in [0, 1]")
    return r * backoff_ceiling(policy, attempt)


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
    return full_jitter(policy, attempt, rand)
