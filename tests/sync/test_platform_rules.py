"""Record validation at the platform, against a real ``platform serve`` process on
loopback: strict JSON integers, one rule for a record id or seq held with other
content, the money rules (the platform's own ledger view, quarantine with a reason
from the spec's list) and the payload limits."""

from __future__ import annotations

import copy
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sync_helpers import CENTRE, DEVICE
from test_contract import _envelope
from test_http import HEAD, NOW, Platform, start_platform

from sync import schemas
from sync.samples import sample_payload
from terminal.core.ids import new_ulid
from terminal.db.outbox import GENESIS, record_hash


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    with start_platform(tmp_path) as p:
        yield p


class Chain:
    """Builds signed, hash-chained records of the kiosk stream and uploads each as
    its own batch; the chain advances only on acceptance."""

    def __init__(self, p: Platform) -> None:
        self.p, self.seq, self.prev, self.batches = p, 1, GENESIS, 0

    def record(self, kind: str, payload: dict[str, Any], **over: Any) -> dict[str, Any]:
        """An envelope as the contract tests make it (``seq`` may be a float here,
        as a misbehaving client would send it), a fresh record id unless given."""
        seq = over.pop("seq", self.seq)
        prev = over.pop("prev_hash", self.prev)
        rid = over.pop("record_id", new_ulid())
        rec = _envelope(int(seq), prev, kind, payload)
        rec.update(seq=seq, record_id=rid, hash=record_hash(DEVICE, seq, prev, kind, rid, payload))
        rec.update(over)
        return rec

    def post(self, *records: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        doc = {"device_id": DEVICE, "centre_id": CENTRE, "stream": "kiosk", "records": records}
        self.batches += 1
        status, _h, body = self.p.request(
            "POST",
            "/v1/batches",
            body=json.dumps(doc, ensure_ascii=False).encode("utf-8"),
            headers={"Idempotency-Key": f"rules-{self.batches}"},
        )
        answer = json.loads(body)
        if status == 200:
            assert schemas.is_valid("BatchResponse", answer), answer
            for rec, res in zip(records, answer["results"], strict=True):
                if res["result"] == "accepted":
                    self.seq, self.prev = rec["seq"] + 1, rec["hash"]
        return status, answer

    def send(self, kind: str, payload: dict[str, Any], **over: Any) -> dict[str, Any]:
        status, answer = self.post(self.record(kind, payload, **over))
        assert status == 200, answer
        return dict(answer["results"][0])

    def head(self) -> dict[str, Any]:
        status, _h, body = self.p.request("GET", HEAD)
        assert status == 200
        return dict(json.loads(body))


def _rows(tmp: Path) -> list[tuple[int, str, str | None]]:
    with sqlite3.connect(tmp / "platform.db") as db:
        return list(
            db.execute("SELECT seq, stored_as, quarantine_reason FROM records ORDER BY seq")
        )


def _chain_intact(tmp: Path) -> None:
    prev = GENESIS
    with sqlite3.connect(tmp / "platform.db") as db:
        rows = db.execute("SELECT seq, record_id, kind, prev_hash, hash, payload FROM records")
        for n, (seq, rid, kind, prev_hash, digest, payload) in enumerate(rows, 1):
            assert isinstance(seq, int) and seq == n and prev_hash == prev
            assert record_hash(DEVICE, seq, prev_hash, kind, rid, json.loads(payload)) == digest
            prev = digest


def _meal(i: int = 1) -> dict[str, Any]:
    return sample_payload("meal_transaction", i, NOW)


# -- 1. integers are JSON integers -----------------------------------------------------


def test_validator_refuses_floats_and_booleans_where_the_spec_says_integer() -> None:
    topup = sample_payload("wallet_topup", 1, NOW)
    assert schemas.is_valid("WalletTopup", topup)
    for bad in (100.0, 1e4, True):
        wrong = {**topup, "amount_fen": bad}
        assert not schemas.is_valid("WalletTopup", wrong)
        assert not schemas.validator("WalletTopup").is_valid(wrong)
    found = schemas.problems("WalletTopup", {**topup, "amount_fen": 10000.0})
    assert found == ["$.amount_fen: must be a JSON integer (no fraction or exponent, 1 not 1.0)"]
    # floats stay floats where the spec says number
    meal = _meal()
    meal["verification"]["match_score"] = 1.0
    assert schemas.is_valid("MealTransaction", meal)


def test_platform_refuses_float_integers_per_record(platform: Platform, tmp_path: Path) -> None:
    chain = Chain(platform)
    res = chain.send("meal_transaction", _meal(), seq=1.0)
    assert res["result"] == "rejected" and res["reason"] == "not_integer"
    assert res["retryable"] is False and "$.seq" in res["detail"]
    topup = {**sample_payload("wallet_topup", 1, NOW), "amount_fen": 10000.0}
    res = chain.send("wallet_topup", topup)
    assert res["reason"] == "not_integer" and "amount_fen" in res["detail"]
    head = chain.head()
    assert head["next_seq"] == 1 and isinstance(head["next_seq"], int)
    # the same record with integers goes in at seq 1 and its stored hash verifies
    assert chain.send("meal_transaction", _meal())["result"] == "accepted"
    assert chain.head()["next_seq"] == 2
    _chain_intact(tmp_path)


# -- 2. one rule for a record id or seq held with other content -------------------------


def test_same_id_or_seq_with_other_content_is_seq_conflict_and_replay_is_duplicate(
    platform: Platform,
) -> None:
    chain = Chain(platform)
    first = chain.record("meal_transaction", _meal())
    assert chain.post(first)[1]["results"][0]["result"] == "accepted"
    for _ in range(2):  # an idempotent replay, under a new batch key, as often as sent
        again = chain.post(first)[1]["results"][0]
        assert (again["result"], again["stored_as"], again["reason"]) == (
            "duplicate",
            "record",
            None,
        )
    # another record at the held seq
    other_at_seq = chain.record("meal_transaction", _meal(2), seq=1, prev_hash=GENESIS)
    res = chain.post(other_at_seq)[1]["results"][0]
    assert (res["result"], res["reason"], res["retryable"]) == ("rejected", "seq_conflict", False)
    # the held record id at the next seq with other content
    res = chain.send("meal_transaction", _meal(3), record_id=first["record_id"])
    assert (res["result"], res["reason"]) == ("rejected", "seq_conflict")
    assert chain.head()["next_seq"] == 2


# -- 3. money rules ---------------------------------------------------------------------


def test_money_records_that_do_not_add_up_are_quarantined_with_a_reason(
    platform: Platform, tmp_path: Path
) -> None:
    chain = Chain(platform)
    meal = _meal()  # wallet 49999 -> 47699, paid 2300
    meal_rid = new_ulid()
    stored = chain.send("meal_transaction", meal, record_id=meal_rid)
    assert stored["stored_as"] == "record"
    # a record stored as is carries no quarantine_reason at all: terminals of
    # earlier releases validate replies strictly and refuse fields they do not know
    assert "quarantine_reason" not in stored
    topup = sample_payload("wallet_topup", 1, NOW)  # R00001: 500 -> 10500

    def q(res: dict[str, Any]) -> tuple[str, str | None, str | None]:
        return res["result"], res["stored_as"], res.get("quarantine_reason")

    # a top-up not continuing from the last known balance
    assert q(chain.send("wallet_topup", topup)) == (
        "accepted",
        "quarantined",
        "wallet_discontinuity",
    )
    # continuing from it (the quarantined one moved the view on): a record
    good = {**topup, "wallet_before_fen": 10500, "wallet_after_fen": 20500}
    assert q(chain.send("wallet_topup", good)) == ("accepted", "record", None)
    # a top-up whose own arithmetic is wrong is rejected, as a meal's is
    bad = {**topup, "wallet_before_fen": 20500, "wallet_after_fen": 20501}
    res = chain.send("wallet_topup", bad)
    assert (res["result"], res["reason"]) == ("rejected", "amount_mismatch")

    refund = sample_payload("meal_refund", 1, NOW)  # 200 fen of 01JAAAA... (not held)
    assert q(chain.send("meal_refund", refund))[2] == "original_not_held"
    refund = {**refund, "original_record_id": meal_rid}
    assert q(chain.send("meal_refund", refund)) == ("accepted", "record", None)
    too_much = {**refund, "amount_fen": 2300 - 200 + 1}
    assert q(chain.send("meal_refund", too_much))[2] == "refund_exceeds_paid"
    void = {**sample_payload("meal_void", 1, NOW), "original_record_id": meal_rid}
    void["amount_returned_fen"] = 2100
    assert q(chain.send("meal_void", void)) == ("accepted", "record", None)
    assert q(chain.send("meal_void", void))[2] == "already_voided"
    assert q(chain.send("meal_refund", {**refund, "amount_fen": 1}))[2] == "already_voided"

    # subsidy lines of the published policy (district-2026 v3: age_80_89 fixed 300)
    wrong_cat = copy.deepcopy(meal)
    wrong_cat["subsidy_lines"][0]["category"] = "age_90_plus"
    assert q(chain.send("meal_transaction", wrong_cat))[2] == "subsidy_not_in_policy"
    wrong_amount = copy.deepcopy(meal)
    wrong_amount["subsidy_lines"][0]["amount_fen"] = 250
    wrong_amount["subsidy_total_fen"] = 250
    wrong_amount["amount_due_fen"] = wrong_amount["list_total_fen"] - 250
    wrong_amount["wallet_after_fen"] = (
        wrong_amount["wallet_before_fen"] - wrong_amount["amount_due_fen"]
    )
    assert q(chain.send("meal_transaction", wrong_amount))[2] == "subsidy_amount_mismatch"
    other_version = copy.deepcopy(wrong_amount)
    for line in other_version["subsidy_lines"]:
        line["policy_version"] = 2  # a version the platform does not hold: not checked
    assert q(chain.send("meal_transaction", other_version)) == ("accepted", "record", None)

    # a void of a quarantined meal is quarantined too; a replay gets the same ack
    wrong_rid = chain.record("meal_transaction", wrong_cat)
    assert q(chain.post(wrong_rid)[1]["results"][0])[2] == "subsidy_not_in_policy"
    again = chain.post(wrong_rid)[1]["results"][0]
    assert (again["result"], again["stored_as"], again["quarantine_reason"]) == (
        "duplicate",
        "quarantined",
        "subsidy_not_in_policy",
    )
    void2 = {**void, "original_record_id": wrong_rid["record_id"]}
    assert q(chain.send("meal_void", void2))[2] == "original_not_held"

    rows = _rows(tmp_path)
    reasons = {r for _s, stored, r in rows if stored == "quarantined"}
    assert reasons == {
        "wallet_discontinuity",
        "original_not_held",
        "refund_exceeds_paid",
        "already_voided",
        "subsidy_not_in_policy",
        "subsidy_amount_mismatch",
    }
    spec_reasons = set(schemas.spec()["components"]["schemas"]["QuarantineReason"]["enum"])
    assert reasons <= spec_reasons
    assert all((stored == "quarantined") == (r is not None) for _s, stored, r in rows)
    assert chain.head()["quarantined"] == sum(1 for _s, st, _r in rows if st == "quarantined")
    _chain_intact(tmp_path)


# -- 4. payload limits ------------------------------------------------------------------


def test_payloads_too_deep_or_too_wide_are_refused_per_record(platform: Platform) -> None:
    chain = Chain(platform)
    deep: dict[str, Any] = {"v": 1}
    for _ in range(16):  # payload level 1 + 16 more
        deep = {"n": deep}
    res = chain.send("heartbeat", deep)
    assert (res["result"], res["reason"], res["retryable"]) == (
        "rejected",
        "payload_too_complex",
        False,
    )
    wide = {f"k{i}": i for i in range(1025)}
    nxt = chain.record("meal_transaction", _meal())
    status, answer = chain.post(chain.record("heartbeat", wide), nxt)
    assert status == 200
    assert [r["reason"] for r in answer["results"]] == ["payload_too_complex", "not_processed"]
    # deep enough for the spec's own records (a quarantined re-send keeps any payload)
    assert chain.send("meal_transaction", _meal())["result"] == "accepted"
    # a malformed batch envelope is refused as a whole
    status, _h, body = platform.request(
        "POST",
        "/v1/batches",
        body=json.dumps({"device_id": DEVICE, "stream": "kiosk"}).encode(),
        headers={"Idempotency-Key": "no-records"},
    )
    assert status == 422 and json.loads(body)["error"] == "schema_invalid"
    assert chain.head()["next_seq"] == 2
