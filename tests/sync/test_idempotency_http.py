"""Idempotency-Key as the spec words it, against a real ``platform serve`` process:
scoped per device; every final answer (200 and 4xx other than 401/408/429) stored
and replayed byte for byte for the same key and body; the same key with another
body ``422 idempotency_key_reused``; answers that are not final not stored."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sync_helpers import CENTRE, DEVICE
from test_http import Platform, _batch_text, start_platform

from sync import schemas
from sync.auth import Signer, public_key_text

OTHER = "dev-02"
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
OTHER_SIGNER = Signer(OTHER, OTHER_KEY)


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    reg = f"{OTHER}:{CENTRE}:{public_key_text(OTHER_KEY)}"
    with start_platform(tmp_path, "--register", reg) as p:
        yield p


def _post(
    p: Platform, body: bytes, key: str, signer: Signer | None = None
) -> tuple[int, dict[str, str], bytes]:
    status, headers, raw = p.request(
        "POST", "/v1/batches", body=body, headers={"Idempotency-Key": key}, signer=signer
    )
    return status, {k.lower(): v for k, v in headers.items()}, raw


def _for(device: str) -> bytes:
    """The one-record batch of test_http, for ``device`` (its record's hash is only
    right for DEVICE, which does not matter to the batch as a whole)."""
    doc = json.loads(_batch_text())
    doc["device_id"] = device
    doc["records"][0]["device_id"] = device
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")


def _check_replay(p: Platform, body: bytes, key: str, status: int, first: bytes) -> None:
    for _ in range(2):
        again, headers, raw = _post(p, body, key)
        assert again == status and raw == first, (again, raw[:200])
        assert headers.get("idempotent-replayed") == "true"


def _reused(p: Platform, body: bytes, key: str) -> None:
    status, headers, raw = _post(p, body, key)
    doc = json.loads(raw)
    assert status == 422 and doc["error"] == "idempotency_key_reused", doc
    assert schemas.is_valid("Error", doc) and doc["retryable"] is False
    assert "idempotent-replayed" not in headers


def test_a_200_is_replayed_byte_for_byte_and_a_reused_key_is_422(platform: Platform) -> None:
    good = _batch_text().encode("utf-8")
    status, headers, first = _post(platform, good, "k-200")
    assert status == 200 and "idempotent-replayed" not in headers
    assert json.loads(first)["results"][0]["result"] == "accepted"
    _check_replay(platform, good, "k-200", 200, first)
    _reused(platform, good + b" ", "k-200")
    _check_replay(platform, good, "k-200", 200, first)  # the first answer stays
    # under a new key the same body is processed again: a duplicate now
    status, _h, raw = _post(platform, good, "k-200-b")
    assert status == 200 and json.loads(raw)["results"][0]["result"] == "duplicate"


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("not_json", 400, "malformed_request"),
        ("not_a_batch", 422, "schema_invalid"),
        ("other_device", 403, "forbidden"),
        ("other_centre", 409, "centre_mismatch"),
    ],
)
def test_a_final_4xx_is_stored_and_replayed(
    platform: Platform, case: str, status: int, code: str
) -> None:
    good = json.loads(_batch_text())
    body = {
        "not_json": b"{not json",
        "not_a_batch": json.dumps({**good, "records": []}).encode(),
        "other_device": _for(OTHER),
        "other_centre": json.dumps({**good, "centre_id": "centre-99"}).encode(),
    }[case]
    key = f"k-{case}"
    got, headers, first = _post(platform, body, key)
    doc = json.loads(first)
    assert got == status and doc["error"] == code, doc
    assert schemas.is_valid("Error", doc) and doc["retryable"] is False
    assert "idempotent-replayed" not in headers
    _check_replay(platform, body, key, status, first)
    # the same key with another body (here: the valid batch) is refused, not processed
    _reused(platform, _batch_text().encode("utf-8"), key)
    status2, _h, raw = _post(platform, _batch_text().encode("utf-8"), key + "-new")
    assert status2 == 200 and json.loads(raw)["results"][0]["result"] == "accepted"
    _check_replay(platform, body, key, status, first)


def test_keys_are_scoped_per_device(platform: Platform) -> None:
    mine = _batch_text().encode("utf-8")
    status, _h, first = _post(platform, mine, "shared-key")
    assert status == 200
    # the other device uses the same key with its own body: processed, not "reused"
    theirs = _for(OTHER)
    status, headers, raw = _post(platform, theirs, "shared-key", signer=OTHER_SIGNER)
    assert status == 200 and "idempotent-replayed" not in headers, raw
    doc = json.loads(raw)
    assert doc["device_id"] == OTHER
    assert doc["results"][0]["result"] == "rejected"  # the record's hash is DEVICE's
    # and with the very body DEVICE sent, it gets its own answer (403), not DEVICE's 200
    status, headers, raw = _post(platform, mine, "shared-key-2", signer=OTHER_SIGNER)
    assert status == 403 and json.loads(raw)["error"] == "forbidden"
    status, headers, raw = _post(platform, mine, "shared-key", signer=OTHER_SIGNER)
    assert status == 422 and json.loads(raw)["error"] == "idempotency_key_reused"
    _check_replay(platform, mine, "shared-key", 200, first)


def test_answers_that_are_not_final_are_not_stored(platform: Platform) -> None:
    good = _batch_text().encode("utf-8")
    # 401: a bad signature under the key; the key stays free
    stranger = Signer(DEVICE, Ed25519PrivateKey.generate())
    status, _h, raw = _post(platform, good, "k-401", signer=stranger)
    assert status == 401 and json.loads(raw)["error"] == "bad_signature"
    # 401: a stale timestamp under the key
    headers = {"Idempotency-Key": "k-401"}
    headers.update(
        platform.signer.sign("POST", "/v1/batches", "", good, headers, int(time.time()) - 3600)
    )
    status, _h, raw = platform.request(
        "POST", "/v1/batches", body=good, headers=headers, sign=False
    )
    assert status == 401 and json.loads(raw)["error"] == "clock_skew"
    status, headers2, raw = _post(platform, good, "k-401")
    assert status == 200 and "idempotent-replayed" not in headers2
    assert json.loads(raw)["results"][0]["result"] == "accepted"
