"""Records the kiosk makes (payments, top-ups, voids, enrolment, un-enrolment)
are valid against the published data spec, exactly as they sit in the outbox."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import testfaces
from sqlalchemy import select

from sync.schemas import SchemaViolation, validate_payload
from terminal.db.database import open_database
from terminal.db.tables import OutboxRow

FACES = testfaces.faces_dir()


def cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"CARE_DATA_DIR": str(data), "PATH": "/usr/bin:/bin", "HOME": str(data)}
    return subprocess.run(
        [sys.executable, "-m", "terminal.app.cli", *args],
        env=env,
        text=True,
        capture_output=True,
        check=False,
    )


@pytest.fixture(scope="module")
def outbox_rows(tmp_path_factory: pytest.TempPathFactory) -> list[OutboxRow]:
    data = tmp_path_factory.mktemp("data")
    pack = Path.home() / ".local/share/care-terminal/models/open"
    del pack  # the CLI builds its own pack below from the package cache
    assert cli(data, "models", "fetch").returncode == 0
    policy = data / "policy.json"
    policy.write_text(
        json.dumps(
            {
                "policy_id": "p1",
                "version": 1,
                "effective_from": "2020-01-01",
                "rules": [
                    {
                        "category": "age_80_89",
                        "slot": "*",
                        "type": "fixed",
                        "amount_fen": 500,
                        "floor_fen": 100,
                    }
                ],
            }
        )
    )
    steps = [
        ["policy", "set", str(policy)],
        ["menu", "set", "--staff", "s1", "--item", "L1,午餐套餐,15.00,breakfast+lunch+dinner"],
        [
            "enroll",
            "--resident-id",
            "R1",
            "--name",
            "张三华",
            "--category",
            "age_80_89",
            "--card",
            "C1",
            "--staff",
            "s1",
            str(FACES / "fr_obama_obama.jpg"),
            str(FACES / "fr_obama_obama2.jpg"),
        ],
        ["topup", "--resident", "R1", "--amount", "100", "--staff", "s1"],
        [
            "pay",
            "--resident",
            "R1",
            "--slot",
            "lunch",
            "--method",
            "staff",
            "--staff",
            "s1",
            "--yes",
            "--json",
        ],
    ]
    for args in steps:
        r = cli(data, *args)
        assert r.returncode == 0, (args, r.stderr)
    record = json.loads(r.stdout)["record_id"]
    for args in (
        ["void", record, "--reason", "wrong_item", "--staff", "s1"],
        ["residents", "remove", "R1", "--staff", "s1"],
    ):
        r = cli(data, *args)
        assert r.returncode == 0, (args, r.stderr)
    db = open_database(f"sqlite:///{data}/terminal.db")
    with db.sessions() as s:
        rows = list(s.scalars(select(OutboxRow).order_by(OutboxRow.seq)))
    db.close()
    return rows


def test_every_kind_the_kiosk_makes_is_present(outbox_rows: list[OutboxRow]) -> None:
    kinds = {r.kind for r in outbox_rows}
    assert {"enrolment", "wallet_topup", "meal_transaction", "meal_void", "unenrolment"} <= kinds


def test_every_outbox_payload_validates_against_the_spec(outbox_rows: list[OutboxRow]) -> None:
    for row in outbox_rows:
        validate_payload(row.kind, json.loads(row.payload))


def test_a_payload_off_the_spec_is_refused(outbox_rows: list[OutboxRow]) -> None:
    with pytest.raises(SchemaViolation):
        validate_payload("meal_transaction", {"resident_id": "R1", "amount_due_fen": 1.5})
    # one field off a payload the kiosk really made: that field alone gets it refused
    row = next(r for r in outbox_rows if r.kind == "meal_transaction")
    good = json.loads(row.payload)
    validate_payload("meal_transaction", good)
    with pytest.raises(SchemaViolation) as fraction:
        validate_payload("meal_transaction", {**good, "amount_due_fen": 1.5})  # whole fen only
    assert fraction.value.problems == ["$.amount_due_fen: must be of type integer"]
    without_due = {k: v for k, v in good.items() if k != "amount_due_fen"}
    with pytest.raises(SchemaViolation) as missing:
        validate_payload("meal_transaction", without_due)
    assert missing.value.problems == ["$: missing amount_due_fen"]
    with pytest.raises(SchemaViolation, match="unknown record kind"):
        validate_payload("meal_transaction_v0", good)


def test_footfall_payloads_validate_against_the_spec() -> None:
    from datetime import datetime

    from face.footfall.aggregate import HourBucket
    from face.footfall.identity import AttendanceRecord
    from face.footfall.store import attendance_payload
    from terminal.core.clock import CHINA_TZ

    start = datetime(2026, 3, 2, 9, 0, tzinfo=CHINA_TZ)
    bucket = HourBucket(
        start,
        visits_in=12,
        visits_out=9,
        unique_visitors=7,
        identified_attendance=3,
        observed_seconds=3599.6,
        partial=True,
    )
    validate_payload("footfall_hourly", bucket.payload())
    validate_payload("footfall_hourly", bucket.payload(identities=False, detector="person"))
    rec = AttendanceRecord("R-001", "2026-03-02", 2, start, 0.7312)
    validate_payload("attendance", attendance_payload(rec))
