"""`care-terminal pay` for a senior of another centre, headless: by card, and by
a staff lookup (name and phone last 4). Real CLI processes on a real data
directory with the district pepper installed and a pulled district roster in
sync.db; no platform answers (none is registered), so the meals are decided
from the roster and marked for review."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sync.store.district import DistrictRosterIndex
from sync.visits import card_hmac, lookup_hmac, pepper_id
from terminal.db.engine import make_engine

PEPPER = bytes(range(7, 39))
POLICY = {
    "policy_id": "district-2026",
    "version": 1,
    "effective_from": "2026-01-01",
    "rules": [{"category": "age_80_89", "slot": "*", "type": "fixed", "amount_fen": 300}],
}


def cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "CARE_DATA_DIR": str(data),
        "PATH": "/usr/bin:/bin",
        "HOME": str(data),
        # whatever the hour the test runs: one long lunch (the card pays the slot served now)
        "CARE_PAYMENT__SLOT_WINDOWS": '{"lunch": "00:00-23:59"}',
        "CARE_CENTRE__CENTRE_ID": "centre-b",
        # the offline budget for visitors: one subsidised visit a slot
        "CARE_PAYMENT__VISIT_OFFLINE_MAX_PER_SLOT": "1",
    }
    return subprocess.run(
        [sys.executable, "-m", "terminal.app.cli", *args],
        env=env,
        text=True,
        capture_output=True,
        check=False,
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("data")
    policy = d / "policy.json"
    policy.write_text(json.dumps(POLICY), encoding="utf-8")
    for args in (
        ["menu", "set", "--staff", "s1", "--item", "L1,午餐套餐,15.00,breakfast+lunch+dinner"],
        ["policy", "set", str(policy)],
    ):
        r = cli(d, *args)
        assert r.returncode == 0, (args, r.stderr)
    keys = d / "keys"
    keys.mkdir(exist_ok=True)
    fd = os.open(keys / "district-pepper", os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, PEPPER)
    os.close(fd)
    engine = make_engine(f"sqlite:///{d / 'sync.db'}")
    entry = {"categories": ["age_80_89"], "id_number_hmac": None, "active": True}
    DistrictRosterIndex.for_writer(engine).replace(
        1,
        {
            "pepper_id": pepper_id(PEPPER),
            "payment_source": "cash",
            "entries": [
                {
                    **entry,
                    "person_id": "P-1",
                    "home_centre_id": "centre-a",
                    "card_hmacs": [card_hmac(PEPPER, "0000009001")],
                    "lookup_hmac": None,
                },
                {
                    **entry,
                    "person_id": "P-2",
                    "home_centre_id": "centre-c",
                    "card_hmacs": [],
                    "lookup_hmac": lookup_hmac(PEPPER, "王 芳", "5678"),
                },
                {
                    **entry,
                    "person_id": "P-3",
                    "home_centre_id": "centre-c",
                    "card_hmacs": [],
                    "lookup_hmac": lookup_hmac(PEPPER, "赵丽", "4321"),
                },
            ],
        },
    )
    engine.dispose()
    return d


def test_visitor_by_card_offline_then_once_per_slot(data: Path) -> None:
    r = cli(data, "pay", "--method", "card", "--card", "0000009001", "--yes", "--json")
    assert r.returncode == 0, r.stderr
    assert "visitor of centre-a (roster, for review); pays by cash" in r.stderr  # the quote
    doc = json.loads(r.stdout)
    assert (doc["resident_id"], doc["subsidy_fen"], doc["due_fen"]) == ("P-1", 300, 1200)
    assert doc["visit"] == {
        "person_id": "P-1",
        "home_centre_id": "centre-a",
        "source": "roster",
        "claim_id": None,
        "review": True,
        "payment_source": "cash",
    }
    again = cli(data, "pay", "--method", "card", "--card", "0000009001", "--yes", "--json")
    assert again.returncode != 0 and "paid already at" in again.stderr
    stranger = cli(data, "pay", "--method", "card", "--card", "0000000000", "--yes")
    assert stranger.returncode != 0 and "card_unknown" in stranger.stderr


def test_visitor_by_staff_lookup(data: Path) -> None:
    args = ["pay", "--method", "staff", "--staff", "s1", "--slot", "dinner", "--yes", "--json"]
    wrong = cli(data, *args, "--visitor-name", "王芳", "--phone-last4", "0000")
    assert wrong.returncode != 0 and "resident_not_found" in wrong.stderr
    r = cli(data, *args, "--visitor-name", "王芳", "--phone-last4", "5678")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert (doc["resident_id"], doc["method"], doc["staff_id"]) == ("P-2", "staff", "s1")
    assert doc["visit"]["home_centre_id"] == "centre-c" and doc["visit"]["review"] is True
    shown = cli(data, "ledger", "verify", "--json")
    assert shown.returncode == 0, shown.stderr


def test_the_offline_limit_from_the_settings(data: Path) -> None:
    args = ["pay", "--method", "staff", "--staff", "s1", "--slot", "breakfast", "--yes", "--json"]
    first = cli(data, *args, "--visitor-name", "赵丽", "--phone-last4", "4321")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["subsidy_fen"] == 300
    second = cli(data, *args, "--visitor-name", "王芳", "--phone-last4", "5678")
    assert second.returncode == 0, second.stderr
    assert "no subsidy: offline_visit_limit" in second.stderr  # the quote said why
    doc = json.loads(second.stdout)
    assert (doc["subsidy_fen"], doc["due_fen"], doc["visit"]["review"]) == (0, 1500, True)
