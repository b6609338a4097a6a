"""The published spec: rendered page up to date, schemas well-formed, every kind
covered with a valid sample, labels and PII markings present, and the fast
validator agreeing with jsonschema."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from sync import schemas
from sync.samples import demo_datasets, sample_payload
from sync.spec import render
from terminal.core.clock import SystemClock

NOW = SystemClock().now()


def test_rendered_page_is_up_to_date() -> None:
    assert render.main(["--check"]) == 0, "run: python -m sync.spec.render"


def test_spec_is_openapi_31_and_every_schema_is_valid_2020_12() -> None:
    doc = schemas.spec()
    assert doc["openapi"].startswith("3.1")
    for name, schema in doc["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)
        assert schemas.validator(name) is not None


@pytest.mark.parametrize("kind", schemas.RECORD_KINDS)
def test_every_record_kind_has_a_valid_sample_and_rejects_extras(kind: str) -> None:
    payload = sample_payload(kind, 3, NOW)
    schemas.validate_payload(kind, payload)
    with pytest.raises(schemas.SchemaViolation, match="unexpected field"):
        schemas.validate_payload(kind, {**payload, "face_image": "AAAA"})


def test_labels_and_pii_markings() -> None:
    comps = schemas.spec()["components"]["schemas"]
    for name in [
        *schemas.PAYLOAD_SCHEMAS.values(),
        "RecordEnvelope",
        "RosterResident",
        "MealTransaction",
    ]:
        for field, prop in comps[name].get("properties", {}).items():
            assert "x-label-zh" in prop or "$ref" in prop, f"{name}.{field} has no Chinese label"
    roster = comps["RosterResident"]["properties"]
    assert roster["name"]["x-pii"] == "direct" and roster["card_ids"]["x-pii"] == "direct"
    assert comps["IdNumberHmac"]["x-pii"] and comps["IdNumberHmac"]["pattern"] == "^[0-9a-f]{64}$"
    assert "id_number" not in str(sorted(roster)).replace("id_number_hmac", "")
    # Money is integer fen everywhere.
    for name, schema in comps.items():
        for field, prop in schema.get("properties", {}).items():
            if field.endswith("_fen"):
                assert prop.get("type") == "integer" or "$ref" in prop or "oneOf" in prop, (
                    f"{name}.{field}"
                )


def test_face_verification_requires_score_and_liveness() -> None:
    p = sample_payload("meal_transaction", 1, NOW)
    p["verification"] = {
        "method": "face",
        "match_score": None,
        "match_threshold": 0.5,
        "liveness": None,
    }
    assert not schemas.is_valid("MealTransaction", p)
    p["verification"] = {"method": "card", "card_id_hmac": "a" * 64}
    assert schemas.is_valid("MealTransaction", p)
    p["verification"] = {"method": "id_card", "id_number_hmac": None}
    assert not schemas.is_valid("MealTransaction", p)


def test_demo_datasets_are_valid() -> None:
    for ds in demo_datasets("c1"):
        doc = {
            "kind": ds["kind"],
            "centre_id": "c1",
            "version": 1,
            "etag": "x",
            "issued_at": "2026-01-05T11:30:00.000+08:00",
            "data": ds["data"],
        }
        schemas.validate("DatasetDocument", doc)


def test_error_texts_never_echo_values() -> None:
    p = sample_payload("meal_transaction", 1, NOW)
    p["resident_id"] = "张桂华 110105194912310021"
    p["items"][0]["name"] = 12345
    probs = schemas.problems("MealTransaction", p)
    assert probs and not any("张" in x or "1101" in x or "12345" in x for x in probs)


def _mutations(doc: Any, rng: random.Random) -> Any:
    out = copy.deepcopy(doc)
    node = out
    path = []
    while isinstance(node, dict | list) and node:
        key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
        path.append((node, key))
        if rng.random() < 0.35 or not isinstance(node[key], dict | list):
            break
        node = node[key]
    parent, key = path[-1]
    choice = rng.randrange(6)
    if choice == 0 and isinstance(parent, dict):
        del parent[key]
    elif choice == 1:
        parent[key] = None
    elif choice == 2:
        parent[key] = "x" * rng.randrange(0, 300)
    elif choice == 3:
        parent[key] = rng.choice([-1, 0, 10**12, 1.5, True])
    elif choice == 4 and isinstance(parent, dict):
        parent["extra_field"] = 1
    else:
        parent[key] = [] if rng.random() < 0.5 else {}
    return out


def test_fast_path_agrees_with_jsonschema_on_valid_and_mutated_messages() -> None:
    if not schemas.accelerated():
        pytest.skip("jsonschema-rs not installed: jsonschema alone is used, nothing to compare")
    rng = random.Random(5)
    fast = schemas._fast_validator("RecordEnvelope")
    slow = schemas.validator("RecordEnvelope")
    checked = disagreements = 0
    for kind in schemas.RECORD_KINDS:
        env = {
            "device_id": "d",
            "centre_id": "c",
            "stream": schemas.stream_of(kind),
            "seq": 1,
            "record_id": "01JAAAAAAAAAAAAAAAAAAAAAAA",
            "kind": kind,
            "created_at": "2026-01-05T11:30:00.000+08:00",
            "prev_hash": "0" * 64,
            "hash": "1" * 64,
            "payload": sample_payload(kind, 2, NOW),
        }
        assert fast.is_valid(env) and slow.is_valid(env)
        for _ in range(150):
            m = _mutations(env, rng)
            checked += 1
            disagreements += fast.is_valid(m) != slow.is_valid(m)
    assert checked == 1500 and disagreements == 0


@pytest.mark.parametrize(
    ("where", "value", "valid"),
    [
        (("payload", "verification", "liveness", "signals", "blink"), 1.0, True),  # number
        (("payload", "verification", "match_score"), 1.0, True),  # number at its maximum
        (("payload", "verification", "match_score"), -1.0, True),  # number at its minimum
        (("payload", "verification", "match_score"), 2.0, False),  # above its maximum
        (("seq",), 1.0, False),  # integer
        (("hash_version",), 2.0, False),  # integer enum
        (("payload", "amount_due_fen"), 800.0, False),  # money is integer fen
    ],
)
def test_integral_floats_are_judged_strictly_on_the_fast_path(
    where: tuple[str, ...], value: float, valid: bool
) -> None:
    """The compiled validator takes 1.0 for an integer; is_valid must still refuse
    it where the spec says integer and accept it where the spec says number, and
    agree with the strict jsonschema validator either way."""
    env = {
        "device_id": "d",
        "centre_id": "c",
        "stream": "kiosk",
        "seq": 1,
        "record_id": "01JAAAAAAAAAAAAAAAAAAAAAAA",
        "kind": "meal_transaction",
        "created_at": "2026-01-05T11:30:00.000+08:00",
        "prev_hash": "0" * 64,
        "hash": "1" * 64,
        "hash_version": 2,
        "payload": sample_payload("meal_transaction", 2, NOW),
    }
    node = env
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    assert schemas.is_valid("RecordEnvelope", env) is valid
    assert schemas.validator("RecordEnvelope").is_valid(env) is valid
