"""Record hash version 2 (spec 1.1): RFC 8785 canonical JSON over the whole
envelope, kinds bound to streams, and compatibility with spec 1.0 terminals.

Against a real ``platform serve`` process on loopback (``start_platform``), and
real terminal and sync databases for the upgrade of rows written before
version 2."""

from __future__ import annotations

import copy
import hashlib
import json
import sqlite3
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import rfc8785
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from sync_helpers import CENTRE, DEVICE
from test_http import NOW, Platform, start_platform

from sync import schemas
from sync.samples import sample_payload
from terminal.core.ids import new_ulid
from terminal.db.outbox import (
    _NOT_PLAIN,
    GENESIS,
    V2_FIELDS,
    _plain_for_jcs,
    hash_of,
    jcs,
    record_hash,
    record_hash_v2,
)

SPEC_DIR = Path(schemas.SPEC_PATH).parent


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    with start_platform(tmp_path) as p:
        yield p


# -- the published test vectors ---------------------------------------------------------


def _vectors() -> list[dict[str, Any]]:
    doc = json.loads((SPEC_DIR / "hash-vectors.json").read_text(encoding="utf-8"))
    return list(doc["vectors"])


@pytest.mark.parametrize("vec", _vectors(), ids=lambda v: v["name"])
def test_each_vector_is_the_hash_of_its_canonical_text(vec: dict[str, Any]) -> None:
    env = dict(vec["envelope"], hash_version=vec["hash_version"])
    assert hashlib.sha256(vec["canonical"].encode("utf-8")).hexdigest() == vec["hash"]
    if vec["hash_version"] == 2:
        hashed = {k: env[k] for k in V2_FIELDS} | {"hash_version": 2}
        assert rfc8785.dumps(hashed).decode("utf-8") == vec["canonical"]
    assert hash_of(env) == vec["hash"]


def test_vectors_cover_what_differs_between_languages() -> None:
    text = {v["name"]: v["canonical"] for v in _vectors()}
    assert '"tiny":1e-7' in text["numbers"] and '"one":1,' in text["numbers"]
    assert '"e16":10000000000000000' in text["numbers"]
    assert "\\u001f" in text["strings"] and "张三" in text["strings"]
    # UTF-16 order: U+1F600 (D83D DE00) sorts before U+E000
    assert text["key_order"].index("\U0001f600") < text["key_order"].index("\ue000")
    assert '"tiny":1e-07' in text["version_1"]  # the version 1 form is Python's


def test_version_2_binds_every_envelope_field() -> None:
    env = _v2("meal_transaction", _meal(), 1, GENESIS)
    base = hash_of(env)
    changes = {
        "device_id": "dev-other",
        "centre_id": "centre-other",
        "stream": "agent",
        "seq": 2,
        "record_id": new_ulid(),
        "kind": "wallet_topup",
        "created_at": "2026-01-05T11:30:00.001+08:00",
        "prev_hash": "f" * 64,
        "payload": _meal(2),
    }
    assert set(changes) == set(V2_FIELDS)
    for field, value in changes.items():
        assert hash_of(dict(env, **{field: value})) != base, field
    # version 1 does not see the centre, the stream or the time
    v1 = dict(env, hash_version=1)
    for field in ("centre_id", "stream", "created_at"):
        assert hash_of(dict(v1, **{field: changes[field]})) == hash_of(v1), field


def test_values_jcs_cannot_hold_are_refused_not_hashed_differently() -> None:
    env = _v2("meal_transaction", _meal(), 1, GENESIS)
    env["payload"] = dict(env["payload"], amount_fen=2**53)
    with pytest.raises(ValueError, match="RFC 8785"):
        record_hash_v2(env)
    with pytest.raises(ValueError, match="hash_version"):
        hash_of(dict(env, hash_version=3))


# -- the platform -------------------------------------------------------------------------


def _meal(i: int = 1) -> dict[str, Any]:
    return sample_payload("meal_transaction", i, NOW)


def _v2(kind: str, payload: dict[str, Any], seq: int, prev: str, **over: Any) -> dict[str, Any]:
    env: dict[str, Any] = {
        "device_id": DEVICE,
        "centre_id": CENTRE,
        "stream": schemas.stream_of(kind),
        "seq": seq,
        "record_id": new_ulid(),
        "kind": kind,
        "created_at": "2026-01-05T11:30:00.000+08:00",
        "prev_hash": prev,
        "payload": payload,
        "hash_version": 2,
    }
    env.update(over)
    env["hash"] = hash_of(env)
    return env


def _v1(kind: str, payload: dict[str, Any], seq: int, prev: str) -> dict[str, Any]:
    """A record as a spec 1.0 terminal sends it: no hash_version, hash version 1."""
    env = _v2(kind, payload, seq, prev)
    del env["hash_version"]
    env["hash"] = record_hash(DEVICE, seq, prev, kind, env["record_id"], payload)
    return env


def _post(p: Platform, stream: str, *records: dict[str, Any], key: str) -> tuple[int, Any]:
    doc = {"device_id": DEVICE, "centre_id": CENTRE, "stream": stream, "records": list(records)}
    status, _h, body = p.request(
        "POST",
        "/v1/batches",
        body=json.dumps(doc, ensure_ascii=False).encode("utf-8"),
        headers={"Idempotency-Key": key},
    )
    return status, json.loads(body)


def _results(answer: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(r["result"], r.get("reason")) for r in answer["results"]]


def test_a_float_hashes_the_same_wherever_it_is_written(platform: Platform) -> None:
    """1e-7 and 1.0 in a score: the terminal's JCS bytes are what the platform
    recomputes from the JSON it reads, however the number was written."""
    payload = _meal()
    payload["verification"].update(match_score=1e-7, match_threshold=1.0)
    rec = _v2("meal_transaction", payload, 1, GENESIS)
    doc = {"device_id": DEVICE, "centre_id": CENTRE, "stream": "kiosk", "records": [rec]}
    body = json.dumps(doc).replace('"match_score": 1e-07', '"match_score": 0.0000001')
    assert "0.0000001" in body and '"match_threshold": 1.0' in body
    status, _h, raw = platform.request(
        "POST", "/v1/batches", body=body.encode(), headers={"Idempotency-Key": "float-1"}
    )
    assert status == 200, raw
    assert _results(json.loads(raw)) == [("accepted", None)]


def test_envelope_fields_changed_after_hashing_are_refused(platform: Platform) -> None:
    rec = _v2("meal_transaction", _meal(), 1, GENESIS)
    for n, (field, value) in enumerate(
        [("created_at", "2026-01-04T09:00:00.000+08:00"), ("kind", "wallet_topup")]
    ):
        bad = copy.deepcopy(rec)
        bad[field] = value
        if field == "kind":
            bad["payload"] = sample_payload("wallet_topup", 1, NOW)
        status, answer = _post(platform, "kiosk", bad, key=f"edit-{n}")
        assert status == 200, answer
        assert _results(answer) == [("rejected", "hash_mismatch")], field
    status, answer = _post(platform, "kiosk", rec, key="edit-ok")
    assert _results(answer) == [("accepted", None)]


@pytest.mark.parametrize(
    ("kind", "stream"), [("meal_transaction", "agent"), ("heartbeat", "kiosk")]
)
def test_a_kind_on_the_other_stream_is_refused(platform: Platform, kind: str, stream: str) -> None:
    rec = _v2(kind, sample_payload(kind, 1, NOW), 1, GENESIS, stream=stream)
    status, answer = _post(platform, stream, rec, key=f"stream-{kind}")
    assert status == 200, answer
    result = answer["results"][0]
    assert (result["result"], result["reason"]) == ("rejected", "schema_invalid")
    assert "stream" in result["detail"]


def test_spec_1_0_terminal_and_version_2_share_one_chain(
    platform: Platform, tmp_path: Path
) -> None:
    """Version 1 records (a terminal not yet updated), then version 2 ones after an
    update, in one chain: every record accepted, the stored chain verifies, and
    every reply to the version 1 batches is valid under the 1.0 spec."""
    prev, records = GENESIS, []
    for seq in (1, 2):
        records.append(_v1("meal_transaction", _meal(seq), seq, prev))
        prev = records[-1]["hash"]
    status, answer = _post(platform, "kiosk", *records, key="old-1")
    assert status == 200 and _results(answer) == [("accepted", None)] * 2
    assert spec_1_0_problems("BatchResponse", answer) == []
    # a replay of the old terminal's batch: the same answer, still 1.0-valid
    status, again = _post(platform, "kiosk", *records, key="old-1")
    assert again == answer
    status, dup = _post(platform, "kiosk", records[0], key="old-2")
    assert _results(dup) == [("duplicate", None)]
    assert spec_1_0_problems("BatchResponse", dup) == []

    new = [_v2("meal_transaction", _meal(3), 3, prev)]
    new.append(_v2("meal_transaction", _meal(4), 4, new[0]["hash"]))
    status, answer = _post(platform, "kiosk", *new, key="new-1")
    assert status == 200 and _results(answer) == [("accepted", None)] * 2
    status, _h, head = platform.request("GET", f"/v1/devices/{DEVICE}/streams/kiosk")
    assert spec_1_0_problems("StreamHead", json.loads(head)) == []
    with sqlite3.connect(tmp_path / "platform.db") as db:
        rows = db.execute("SELECT seq, hash FROM records ORDER BY seq").fetchall()
    assert [r[1] for r in rows] == [r["hash"] for r in records + new]
    # the platform's own full re-verification (both versions in one chain)
    from sync.platform.store import PlatformStore

    store = PlatformStore(f"sqlite:///{tmp_path}/platform.db")
    try:
        assert store.verify_chain(DEVICE, "kiosk") is None
    finally:
        store.close()


def test_quarantined_v1_record_reply_is_valid_under_1_0(platform: Platform) -> None:
    """A spec 1.0 terminal re-sending a refused record as quarantined gets a reply
    its own (1.0) schemas accept."""
    bad = _v1("meal_transaction", dict(_meal(), amount_fen=-5), 1, GENESIS)
    status, answer = _post(platform, "kiosk", bad, key="q-1")
    assert status == 200 and _results(answer)[0][0] == "rejected"
    assert spec_1_0_problems("BatchResponse", answer) == []
    bad["quarantine"] = {
        "reason": answer["results"][0]["reason"],
        "detail": None,
        "dead_at": NOW.isoformat(),
    }
    status, answer = _post(platform, "kiosk", bad, key="q-2")
    assert _results(answer) == [("accepted", None)]
    assert answer["results"][0]["stored_as"] == "quarantined"
    assert spec_1_0_problems("BatchResponse", answer) == []


# -- the spec 1.0 schemas, as a deployed terminal validates replies ------------------------


@cache
def _spec_1_0() -> dict[str, Any]:
    doc = yaml.safe_load((SPEC_DIR / "history" / "openapi-1.0.0.yaml").read_text("utf-8"))
    assert doc["info"]["version"] == "1.0.0"
    return dict(doc)


def spec_1_0_problems(name: str, doc: Any) -> list[str]:
    uri = "urn:care-terminal:sync-spec-1.0"
    registry: Registry[Any] = Registry().with_resource(
        uri, DRAFT202012.create_resource(_spec_1_0())
    )
    v = Draft202012Validator({"$ref": f"{uri}#/components/schemas/{name}"}, registry=registry)
    return [e.message for e in v.iter_errors(doc)]


def test_the_1_0_schemas_are_strict_about_new_reply_fields() -> None:
    """The check above can fail: a reply with a field 1.0 does not know is refused."""
    reply = {
        "device_id": DEVICE,
        "stream": "kiosk",
        "results": [
            {
                "seq": 1,
                "record_id": new_ulid(),
                "result": "accepted",
                "stored_as": "record",
                "retryable": False,
            }
        ],
        "next_seq": 2,
        "head_hash": "a" * 64,
    }
    assert spec_1_0_problems("BatchResponse", reply) == []
    reply["results"][0]["hash_version"] = 2
    assert spec_1_0_problems("BatchResponse", reply) != []


# -- the canonical form's fast path ---------------------------------------------------------

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0.0, -0.0, 1.0, 1e-4, 9.99e-5, 1e16, 9.9e15, 2.0**53, 0.1, 1e-7, 1e21])
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_json)
def test_jcs_fast_path_writes_exactly_what_rfc8785_writes(doc: Any) -> None:
    try:
        expected = rfc8785.dumps(doc)
    except (rfc8785.CanonicalizationError, UnicodeEncodeError):
        with pytest.raises((rfc8785.CanonicalizationError, UnicodeEncodeError)):
            jcs(doc)
        return
    assert jcs(doc) == expected


def test_jcs_fast_path_is_taken_for_a_meal_record() -> None:
    """The common record is canonicalised by json.dumps, not the slower package."""
    env = _v2("meal_transaction", _meal(), 1, GENESIS)
    assert _plain_for_jcs(env) is not _NOT_PLAIN
    assert jcs(env) == rfc8785.dumps(env)
