"""Property-based API tests of the reference platform from the data spec alone.

schemathesis reads ``sync/spec/openapi.yaml`` and generates requests for every
operation; each is made valid where the spec needs more than a schema can say
(the device's own id in the path and body, a signature over the exact bytes
sent, records chained onto the platform's stream head with a correct version 2
hash), sent to a real ``platform serve`` process on loopback, and its answer is
checked against the spec: no 5xx, a documented status, a documented content
type and headers, and a body that matches its schema. Bounded (a few hundred
requests, derandomised) so it runs in CI.

Run by ``test_schemathesis.py`` in a pytest process of its own without
workers: under pytest-xdist schemathesis seeds the run for all workers and
the generated cases differ, so the coverage check at the end would judge
another run.
"""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from sync_helpers import CENTRE, DEVICE
from test_http import Platform, start_platform

from sync import schemas
from sync.samples import sample_payload
from sync.visits import card_hmac
from terminal.core.clock import SystemClock, rfc3339
from terminal.core.ids import new_ulid
from terminal.db.outbox import GENESIS, hash_of

EXAMPLES_PER_OPERATION = 80
# The platform's per-device request rate is not limited; the bound is the number
# of requests, so the run takes seconds, not minutes, on two cores.


PEPPER = bytes(range(32))  # the district pepper (city-wide meals, spec 1.2)
_VISIT_SCHEMAS = {
    "/v1/visits/eligibility": "VisitEligibilityRequest",
    "/v1/visits/claims": "VisitClaimRequest",
}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    tmp = tmp_path_factory.mktemp("schemathesis")
    pepper = tmp / "district-pepper"
    pepper.write_bytes(PEPPER)
    pepper.chmod(0o600)
    with start_platform(tmp, "--district-pepper", str(pepper)) as p:
        yield p


def _known_key() -> dict[str, str]:
    """The key of a senior of the seeded roster (demo resident R00001's card)."""
    return {"key_type": "card", "key": card_hmac(PEPPER, "C000001")}


def _person(p: Platform) -> str:
    """That senior's person id, from the platform."""
    if not Seen.person:
        body = {"centre_id": CENTRE, "day": "2026-01-05", "slot": "lunch", **_known_key()}
        status, _h, raw = p.request(
            "POST", "/v1/visits/eligibility", body=json.dumps(body).encode("utf-8")
        )
        assert status == 200, raw
        Seen.person = str(json.loads(raw)["person_id"])
    return Seen.person


def _spec_for_generation() -> dict[str, Any]:
    """The spec, with one change for request generation only: a batch's record
    items are any objects. schemathesis cannot build a generator for the records'
    per-kind ``oneOf`` with ``if``/``then``; the records a request carries are made
    by :func:`_make_valid` instead. Every response schema is the spec's own."""
    doc = copy.deepcopy(schemas.spec())
    batch = doc["components"]["schemas"]["BatchRequest"]["properties"]["records"]
    batch["items"] = {"type": "object", "maxProperties": 3}
    batch["maxItems"] = 12
    return dict(doc)


schema = schemathesis.openapi.from_dict(_spec_for_generation())


class Seen:
    """What the run saw, for the assertions after it."""

    statuses: ClassVar[dict[str, set[int]]] = {}
    requests = 0
    accepted = 0
    person = ""


def _head(p: Platform, stream: str) -> tuple[int, str]:
    status, _h, body = p.request("GET", f"/v1/devices/{DEVICE}/streams/{stream}")
    assert status == 200, body
    doc = json.loads(body)
    return int(doc["next_seq"]), str(doc["head_hash"])


def _make_valid(p: Platform, case: Any) -> None:
    """Point the case at this device and centre, and chain generated records
    onto the stream head (their payloads stay as generated)."""
    params = case.path_parameters or {}
    if "device_id" in params:
        params["device_id"] = DEVICE
    if "centre_id" in params:
        params["centre_id"] = CENTRE
    body = case.body
    if isinstance(body, dict) and case.path in _VISIT_SCHEMAS:
        # a visit request for this centre; every other one about a known senior
        body["centre_id"] = CENTRE
        debit = body.get("wallet_debit_fen")
        if isinstance(debit, float) and debit.is_integer():
            # the spec's convention: an integer field holds digits only (1, never
            # 1.0), which plain JSON Schema does not say (422 not_integer otherwise)
            body["wallet_debit_fen"] = int(debit)
        if case.path == "/v1/visits/claims":
            body["person_id"] = _person(p)
        elif Seen.requests % 2 == 0:
            body.update(_known_key())
        return
    if not (isinstance(body, dict) and isinstance(body.get("records"), list)):
        return
    # Each generated item decides what record stands in its place: a valid record
    # of a kind picked by its size, or (one in four) the generated object itself,
    # which the platform must refuse with a per-record answer.
    items: list[Any] = body["records"]
    stream = "agent" if len(items) % 5 == 0 else "kiosk"
    kinds = sorted(k for k in schemas.RECORD_KINDS if schemas.stream_of(k) == stream)
    now = SystemClock().now()
    seq, prev = _head(p, stream)
    records: list[Any] = []
    for n, item in enumerate(items):
        if isinstance(item, dict) and len(item) == 3:
            records.append(item)
            continue
        kind = kinds[(len(item) if isinstance(item, dict) else n) % len(kinds)]
        rec: dict[str, Any] = {
            "device_id": DEVICE,
            "centre_id": CENTRE,
            "stream": stream,
            "seq": seq,
            "record_id": new_ulid(),
            "kind": kind,
            "created_at": rfc3339(now),
            "prev_hash": prev,
            "hash_version": 2,
            "payload": sample_payload(kind, seq, now),
        }
        rec["hash"] = hash_of(rec)
        records.append(rec)
        seq, prev = seq + 1, rec["hash"]
    body.update(device_id=DEVICE, centre_id=CENTRE, stream=stream, records=records)


def _send(p: Platform, case: Any) -> httpx.Response:
    kw = case.as_transport_kwargs(base_url=p.url)
    method = str(kw["method"]).upper()
    url = httpx.URL(str(kw["url"]), params=kw.get("params") or None)
    if "json" in kw:
        body = json.dumps(kw["json"], ensure_ascii=False).encode("utf-8")
    else:
        raw = kw.get("data") or b""
        body = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
    generated = {str(k): str(v) for k, v in (kw.get("headers") or {}).items()}
    signing = ("content-digest", "signature-input", "signature")
    headers = {k: v for k, v in generated.items() if k.lower() not in (*signing, "content-length")}
    if method == "POST":
        headers["Content-Type"] = "application/json"
        key = headers.get("Idempotency-Key")
        if key is not None and re.fullmatch(r"[\x21-\x7e]{1,255}", key):
            # Generated keys repeat across cases with other bodies, which the spec
            # answers 422 idempotency_key_reused (tests/sync/test_idempotency_http.py);
            # here each valid key is made unique so that every case is judged alone.
            headers["Idempotency-Key"] = f"{key[:200]}.{Seen.requests}"
    query = url.query.decode("ascii") if isinstance(url.query, bytes) else str(url.query)
    signed = p.signer.sign(method, url.path, query, body, headers, created=int(time.time()))
    # A signature header the case leaves out (a negative case: a required header
    # missing) stays out; one it carries is replaced by a valid one.
    present = {k.lower() for k in generated}
    headers.update({k: v for k, v in signed.items() if k.lower() in present})
    return httpx.request(method, url, content=body, headers=headers, timeout=20)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_platform_answers_as_the_spec_says(case: Any, live: Platform) -> None:
    _make_valid(live, case)
    resp = _send(live, case)
    op = f"{case.method.upper()} {case.path}"
    Seen.requests += 1
    Seen.statuses.setdefault(op, set()).add(resp.status_code)
    assert resp.status_code < 500, resp.text[:500]
    if resp.status_code == 200 and case.path == "/v1/batches":
        Seen.accepted += sum(1 for r in resp.json()["results"] if r["result"] == "accepted")
    excluded = []
    if _rewritten_batch_is_valid(case):
        # A negative body whose records were replaced above is a valid batch shell
        # now; the spec answers 200 with a result per record (refused records
        # included), so "negative data must be rejected" does not apply to it.
        excluded.append(schemathesis.checks.negative_data_rejection)
    case.validate_response(resp, excluded_checks=excluded)


def _rewritten_batch_is_valid(case: Any) -> bool:
    body = case.body
    if case.path in _VISIT_SCHEMAS and isinstance(body, dict):
        # the fields set above may be what made a negative body invalid
        return schemas.is_valid(_VISIT_SCHEMAS[case.path], body)
    return (
        case.method.upper() == "POST"
        and isinstance(body, dict)
        and isinstance(body.get("records"), list)
        and not schemas.batch_shell_problems(body)
    )


def test_the_run_reached_every_operation_and_stored_records(live: Platform) -> None:
    """Runs after the generated cases (same module): every operation was exercised
    with authenticated requests that succeeded, and generated records were stored."""
    ops = Seen.statuses
    assert Seen.requests >= 200, Seen.requests
    assert {"POST /v1/batches", "GET /v1/devices/{device_id}/streams/{stream}"} <= set(ops), ops
    assert any(op.startswith("GET /v1/centres/") for op in ops), ops
    paths = schemas.spec()["paths"]
    for op, seen in ops.items():
        method, path = op.split(" ", 1)
        if method.lower() in paths[path]:
            assert 200 in seen or 304 in seen, (op, seen)
        else:  # schemathesis also tries methods the spec does not list
            assert seen == {405}, (op, seen)
    assert Seen.accepted > 0
    db = Path(live.log).parent / "platform.db"
    assert db.exists()
    next_seq, head = _head(live, "kiosk")
    assert next_seq > 1 and head != GENESIS
