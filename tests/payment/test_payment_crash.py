"""Crash harness: payments in a child process killed with SIGKILL at random
moments; afterwards nothing acknowledged is lost, nothing charged twice, the
ledger and outbox agree. 12 kills by default; the 200-kill proof is slow."""

from __future__ import annotations

from pathlib import Path

import pytest

from payment.crashtest import run_harness


def _assert_clean(result: dict[str, object], kills: int) -> None:
    assert result["kills"] == kills
    assert result["lost"] == 0 and result["duplicated"] == 0
    assert result["charged_but_not_acknowledged"] == 0
    assert result["ledger_records"] == result["outbox_rows"]
    assert result["integrity_check"] == "ok" and result["ledger_verify"] == "ok"
    assert int(result["acknowledged"]) > kills  # the child made progress between kills


def test_kill_minus_nine_loses_nothing_and_charges_nothing_twice(tmp_path: Path) -> None:
    _assert_clean(run_harness(tmp_path, kills=12), 12)


@pytest.mark.slow
def test_kill_minus_nine_200_times(tmp_path: Path) -> None:
    _assert_clean(run_harness(tmp_path, kills=200, seed_value=11), 200)
