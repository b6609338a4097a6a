"""City-wide meals paid from the district wallet (visit policy ``home_wallet``),
with processes only: ``care-terminal platform serve --visit-payment-source
home_wallet``, terminal A1 at the senior's home centre A and terminal B1 at
centre B, each a data directory driven by the ``care-terminal`` command, on
loopback.

1. At A1 staff take 20.00 yuan in cash for senior A001's district wallet
   (``topup --district``); A1's sync uploads the record and the platform
   credits the wallet (once: a second sync sends nothing new).
2. Online, lunch at B1: the senior pays by card; the claim and the debit of
   the amount due (12.00, after the 3.00 subsidy) are one request; 8.00 left.
3. The platform down, dinner at B1: the district wallet cannot be paid from;
   the meal is decided from the roster and paid in cash, saying why.
4. The platform back: B1 uploads; the wallet still holds 8.00 and the
   settlement lists centre B's claim against centre A: the subsidy of both
   meals and the 12.00 paid from the district wallet.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from datetime import timedelta
from pathlib import Path

from test_citywide import CARE, PEPPER, open_district, start_platform, stop_platform

from sync.visits import VisitsClient, card_hmac
from terminal.core.clock import SystemClock

HOME_SENIOR_CARD = "0000001001"  # A001 on centre A's roster


def test_a_senior_tops_up_at_home_pays_from_the_district_wallet_elsewhere_and_centres_settle(
    tmp_path: Path,
) -> None:
    platform, t = open_district(tmp_path, ("a1", "b1"), "--visit-payment-source", "home_wallet")
    try:
        # 1. the top-up at the home centre, uploaded and credited once
        r = t["a1"].run(
            "residents",
            "add",
            "--resident-id",
            "A001",
            "--name",
            "李建国",
            "--card",
            HOME_SENIOR_CARD,
        )
        assert r.returncode == 0, r.stderr[-2000:]
        r = t["a1"].run(
            "topup", "--district", "--resident", "A001", "--amount", "20", "--staff", "s1"
        )
        assert r.returncode == 0, r.stderr[-2000:]
        assert "district wallet" in r.stdout
        t["a1"].sync()
        t["a1"].sync()
        today = SystemClock().now().date()
        with VisitsClient.from_settings(t["b1"].settings()) as c:
            ans = c.eligibility(
                centre_id="centre-b",
                key_type="card",
                key=card_hmac(PEPPER, HOME_SENIOR_CARD),
                day=today,
                slot="lunch",
                wallet=True,
            )
        assert ans is not None and ans.home_centre_id == "centre-a"
        assert (ans.payment_source, ans.wallet_balance_fen) == ("home_wallet", 2000)

        # 2. online at B1: claimed and debited in one request
        lunch = t["b1"].pay_by_card("lunch", HOME_SENIOR_CARD)
        assert (lunch["subsidy_fen"], lunch["due_fen"]) == (300, 1200)
        assert lunch["visit"]["payment_source"] == "home_wallet" and lunch["visit"]["claim_id"]

        # 3. the platform down: no district wallet; the roster's rules, cash
        port = int(platform.url.rsplit(":", 1)[1])
        stop_platform(platform)
        r = t["b1"].run(
            "pay", "--method", "card", "--card", HOME_SENIOR_CARD, "--yes", "--json", slot="dinner"
        )
        assert r.returncode == 0, r.stderr[-2000:]
        dinner = json.loads(r.stdout)
        assert "not from the district wallet: home_wallet_needs_platform" in r.stderr
        assert dinner["visit"]["payment_source"] == "cash" and dinner["subsidy_fen"] == 300
        assert (dinner["visit"]["source"], dinner["visit"]["review"]) == ("roster", True)

        # 4. the platform back: uploaded, balance right, settled
        platform = start_platform(tmp_path, port, None)
        up = t["b1"].sync()
        assert all(u.get("drained", True) for u in up["uploads"]), up
        assert _balance(tmp_path) == 800
        span = ["--from", (today - timedelta(days=1)).isoformat()]
        span += ["--to", (today + timedelta(days=1)).isoformat()]
        db = f"sqlite:///{tmp_path / 'platform.db'}"
        r = subprocess.run(
            [*CARE, "platform", "settlement", "--db", db, *span],
            text=True,
            capture_output=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr[-2000:]
        [line] = json.loads(r.stdout)["lines"]
        assert (line["claimant_centre_id"], line["debtor_centre_id"]) == ("centre-b", "centre-a")
        assert (line["meals"], line["subsidy_fen"]) == (2, 600)
        assert (line["wallet_meals"], line["wallet_fen"]) == (1, 1200)
        assert sorted(line["record_ids"]) == sorted([lunch["record_id"], dinner["record_id"]])
    finally:
        stop_platform(platform)


def _balance(tmp: Path) -> int:
    with sqlite3.connect(tmp / "platform.db") as db:
        rows = db.execute("SELECT balance_fen FROM district_wallets").fetchall()
    assert len(rows) == 1, rows
    return int(rows[0][0])
