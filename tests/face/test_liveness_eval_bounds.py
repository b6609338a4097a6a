"""The 95 % upper bounds that ``liveness-eval`` reports beside each rate."""

from __future__ import annotations

import math

import pytest

from face.liveness_eval import upper95

# (failures, attempts) -> the one-sided 95 % upper bound (Clopper-Pearson)
BOUNDS = {
    (0, 30): 1 - 0.05 ** (1 / 30),  # 0.095: "0 of 30 cannot show 1 %"
    (0, 150): 1 - 0.05 ** (1 / 150),  # 0.0198
    (0, 300): 1 - 0.05 ** (1 / 300),  # 0.0099: about 1 %
    (1, 100): 0.0466,  # the textbook value
    (5, 5): 1.0,
    (0, 0): 1.0,  # nothing measured, nothing shown
}


@pytest.mark.parametrize(("failures", "attempts"), sorted(BOUNDS))
def test_the_upper_bound_of_a_rate(failures: int, attempts: int) -> None:
    assert upper95(failures, attempts) == pytest.approx(BOUNDS[(failures, attempts)], abs=5e-4)


@pytest.mark.parametrize(("failures", "attempts"), [(2, 30), (7, 128), (1, 105), (3, 400)])
def test_at_the_bound_the_observed_count_has_five_percent(failures: int, attempts: int) -> None:
    p = upper95(failures, attempts)
    tail = sum(
        math.comb(attempts, i) * p**i * (1 - p) ** (attempts - i) for i in range(failures + 1)
    )
    assert tail == pytest.approx(0.05, abs=1e-6)
    assert failures / attempts < p < 1.0
