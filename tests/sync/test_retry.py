from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sync.retry import (
    BackoffPolicy,
    is_retryable_status,
    next_delay,
    parse_retry_after,
)

NOW = datetime(2026, 10, 21, 7, 28, 0, tzinfo=UTC)
P = BackoffPolicy(base_s=1.0, multiplier=2.0, cap_s=60.0, max_retry_after_s=600.0)


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [(0, 1.0), (1, 2.0), (2, 4.0), (5, 32.0), (6, 60.0), (10, 60.0), (10_000, 60.0)],
)
def test_ceiling_grows_exponentially_up_to_the_cap(attempt: int, ceiling: float) -> None:
    # the schedule itself is terminal.core.backoff (tests/core/test_backoff.py);
    # this pins how the sync policy's base, multiplier and cap map onto it
    assert P.schedule.delay(attempt) == ceiling


@pytest.mark.parametrize(
    ("attempt", "r", "delay"),
    [(0, 0.0, 0.0), (0, 0.5, 0.5), (3, 0.25, 2.0), (3, 1.0, 8.0), (20, 0.5, 30.0)],
)
def test_full_jitter_is_uniform_between_zero_and_ceiling(
    attempt: int, r: float, delay: float
) -> None:
    assert P.schedule.jittered(attempt, lambda: r) == pytest.approx(delay)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("", None),
        ("120", 120.0),
        ("0", 0.0),
        ("Wed, 21 Oct 2026 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2026 07:27:00 GMT", 0.0),  # in the past
        ("soon", None),
        ("-5", None),
        ("1.5", None),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, NOW) == seconds


@pytest.mark.parametrize(
    ("attempt", "header", "r", "delay"),
    [
        (0, None, 0.5, 0.5),  # jitter
        (4, "7", 0.99, 7.0),  # Retry-After wins over jitter
        (4, "Wed, 21 Oct 2026 07:29:00 GMT", 0.0, 60.0),
        (0, "999999", 0.5, 600.0),  # clamped to max_retry_after_s
        (2, "garbage", 0.5, 2.0),  # unreadable header -> jitter
    ],
)
def test_next_delay(attempt: int, header: str | None, r: float, delay: float) -> None:
    assert next_delay(P, attempt, lambda: r, NOW, header) == pytest.approx(delay)


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (408, True),
        (425, True),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (504, True),
        (599, True),
        (501, False),
        (505, False),
        (405, False),
        (413, False),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (409, False),
        (422, False),
        (200, False),
    ],
)
def test_status_classification(status: int, retryable: bool) -> None:
    assert is_retryable_status(status) is retryable


def test_bad_policy_and_rand_are_refused() -> None:
    with pytest.raises(ValueError):
        BackoffPolicy(base_s=0)
    with pytest.raises(ValueError):
        BackoffPolicy(multiplier=0.5)
    with pytest.raises(ValueError):
        BackoffPolicy(cap_s=0)
    with pytest.raises(ValueError):
        BackoffPolicy(max_retry_after_s=-1)
    with pytest.raises(ValueError):
        next_delay(P, 1, lambda: 1.5, NOW)
    with pytest.raises(ValueError):
        next_delay(P, -1, lambda: 0.5, NOW)
