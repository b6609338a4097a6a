"""The one retry schedule (terminal.core.backoff), table-driven.

The tables include the schedules its three users configure, so a change to
the shared code that moves any of them shows up here:
the serial ports (``terminal.hw.ports``: 0.2 s doubling to 5 s), the camera
(``face.sources``: 0.5 s doubling to 10 s) and the platform client
(``sync.retry``: 1 s doubling to 300 s, with full jitter)."""

from __future__ import annotations

import random

import pytest

from terminal.core.backoff import Backoff


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        # serial ports (terminal.hw.ports default)
        (Backoff(0.2, 5.0), [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]),
        # camera (face.sources.CameraSource default)
        (Backoff(0.5, 10.0), [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]),
        # platform uploads and pulls (sync.retry.BackoffPolicy default)
        (Backoff(1.0, 300.0), [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]),
        (Backoff(1.0, 1.0), [1.0] * 8),
        (Backoff(0.1, 0.3), [0.1, 0.2, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]),
        (Backoff(1.0, 100.0, factor=3.0), [1.0, 3.0, 9.0, 27.0, 81.0, 100.0, 100.0, 100.0]),
        (Backoff(2.0, 60.0, factor=1.0), [2.0] * 8),
        # a cap below the first step caps the first step too
        (Backoff(5.0, 1.0), [1.0] * 8),
    ],
)
def test_delay_grows_exponentially_up_to_the_cap(schedule: Backoff, expected: list[float]) -> None:
    assert [schedule.delay(n) for n in range(8)] == pytest.approx(expected)


@pytest.mark.parametrize(
    "schedule",
    [Backoff(0.2, 5.0), Backoff(1.0, 300.0), Backoff(1.0, 1e300, factor=1e6)],
)
@pytest.mark.parametrize("attempt", [60, 64, 65, 10_000, 10**9])
def test_days_of_retrying_never_overflow(schedule: Backoff, attempt: int) -> None:
    assert schedule.delay(attempt) == schedule.maximum


@pytest.mark.parametrize(
    ("attempt", "r", "expected"),
    [
        (0, 0.0, 0.0),
        (0, 0.5, 0.5),
        (3, 0.25, 2.0),
        (3, 1.0, 8.0),
        (20, 0.5, 30.0),  # uniform below the cap (60 s)
    ],
)
def test_full_jitter_is_uniform_between_zero_and_the_delay(
    attempt: int, r: float, expected: float
) -> None:
    assert Backoff(1.0, 60.0).jittered(attempt, lambda: r) == pytest.approx(expected)


def test_jitter_is_deterministic_for_a_seeded_source() -> None:
    b = Backoff(1.0, 60.0)
    first = [b.jittered(n, random.Random(7).random) for n in range(10)]
    again = [b.jittered(n, random.Random(7).random) for n in range(10)]
    assert first == again
    assert all(0.0 <= d <= b.delay(n) for n, d in enumerate(first))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": 0.0, "maximum": 1.0},
        {"initial": -1.0, "maximum": 1.0},
        {"initial": 1.0, "maximum": 0.0},
        {"initial": 1.0, "maximum": 1.0, "factor": 0.5},
        {"initial": float("nan"), "maximum": 1.0},
    ],
)
def test_bad_schedules_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)


@pytest.mark.parametrize("r", [-0.1, 1.5, float("nan")])
def test_a_random_source_out_of_range_is_refused(r: float) -> None:
    with pytest.raises(ValueError):
        Backoff(1.0, 60.0).jittered(1, lambda: r)


def test_a_negative_attempt_is_refused() -> None:
    with pytest.raises(ValueError):
        Backoff(1.0, 60.0).delay(-1)
