"""Crash harness: payments in a child process killed with SIGKILL at random
moments; afterwards nothing acknowledged is lost, nothing charged twice, the
ledger and outbox agree. 12 kills by default; the 200-kill proof is slow."""

from __future__ import annotations

from pathlib import Path

import pytest

from payment.crashtest import run_harness, run_kill_after_commit


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


def test_kill_after_commit_before_paid_is_shown_then_retry_charges_once(tmp_path: Path) -> None:
    """SIGKILL right after the charge's COMMIT, before the senior was told: at
    restart the charge is reported as paid; the same request retried returns
    the same record; the senior's new attempt is told "already paid"."""
    r = run_kill_after_commit(tmp_path)
    assert not r["told_before_kill"]
    assert r["reported_after_restart"] == [r["committed"]]
    assert r["same_request_retry"] == r["committed"]
    assert r["new_attempt_state"] == "AlreadyPaid" and r["new_attempt_charges"] == 0
    assert r["charges"] == 1 and r["lost"] == 0 and r["duplicated"] == 0
    assert r["charged_but_not_acknowledged"] == 0
    assert r["integrity_check"] == "ok" and r["ledger_verify"] == "ok"
