"""The spec is complete enough to implement without our Python code: records in a
batch are linked to the envelope and the per-kind payload schemas (a ``oneOf``
with a discriminator on ``kind``), and one valid record of every kind can be
built from the spec's own examples."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import pytest
import yaml

from sync import schemas

SPEC = schemas.SPEC_PATH
GENESIS = "0" * 64


def _spec() -> dict[str, Any]:
    doc = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def _hash(device_id: str, seq: int, prev: str, kind: str, rid: str, payload: Any) -> str:
    """The record hash exactly as the spec's description words it."""
    doc = {
        "device_id": device_id,
        "seq": seq,
        "prev_hash": prev,
        "kind": kind,
        "record_id": rid,
        "payload": payload,
    }
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _record(kind: str, payload: Any, seq: int = 1, prev: str = GENESIS) -> dict[str, Any]:
    rid = f"01JAAAAAAAAAAAAAAAAAAAA{seq:03d}"
    return {
        "device_id": "dev-01",
        "centre_id": "centre-01",
        "stream": schemas.stream_of(kind),
        "seq": seq,
        "record_id": rid,
        "kind": kind,
        "created_at": "2026-01-05T11:30:00.000+08:00",
        "prev_hash": prev,
        "hash": _hash("dev-01", seq, prev, kind, rid, payload),
        "payload": payload,
    }


def _kind_map() -> dict[str, str]:
    """kind -> payload schema name, read from the spec's discriminator mapping."""
    comps = _spec()["components"]["schemas"]
    record = comps["Record"]
    assert record["discriminator"]["propertyName"] == "kind"
    mapping = record["discriminator"]["mapping"]
    assert sorted(mapping) == sorted(comps["RecordKind"]["enum"])
    assert [b["$ref"] for b in record["oneOf"]] == list(mapping.values())
    out = {}
    for kind, ref in mapping.items():
        per_kind = comps[ref.rsplit("/", 1)[-1]]
        assert per_kind["properties"]["kind"]["const"] == kind
        text = json.dumps(per_kind)
        payload_refs = [
            name
            for name in comps
            if f'"#/components/schemas/{name}"' in text and name != "RecordEnvelope"
        ]
        assert len(payload_refs) == 1, (kind, payload_refs)
        out[kind] = payload_refs[0]
    return out


def test_batch_records_link_to_the_record_schema_with_a_discriminator() -> None:
    comps = _spec()["components"]["schemas"]
    items = comps["BatchRequest"]["properties"]["records"]["items"]
    assert items == {"$ref": "#/components/schemas/Record"}
    assert _kind_map() == schemas.PAYLOAD_SCHEMAS


@pytest.mark.parametrize("kind", schemas.RECORD_KINDS)
def test_a_record_of_every_kind_built_from_the_spec_example_is_valid(kind: str) -> None:
    comps = _spec()["components"]["schemas"]
    payload_schema = _kind_map()[kind]
    examples = comps[payload_schema].get("examples")
    assert examples, f"{payload_schema} has no example in the spec"
    rec = _record(kind, copy.deepcopy(examples[0]))
    schemas.validate("Record", rec)
    schemas.validate_record(rec)
    schemas.validate("RecordEnvelope", rec)
    batch = {"device_id": "dev-01", "centre_id": "centre-01", "stream": rec["stream"]}
    schemas.validate("BatchRequest", {**batch, "records": [rec]})
    # and a plain JSON Schema 2020-12 validator (no code of ours) agrees
    from jsonschema import Draft202012Validator
    from referencing import Registry
    from referencing.jsonschema import DRAFT202012

    registry: Registry[Any] = Registry().with_resource(
        "urn:x", DRAFT202012.create_resource(_spec())
    )
    plain = Draft202012Validator({"$ref": "urn:x#/components/schemas/Record"}, registry=registry)
    assert plain.is_valid(rec)


@pytest.mark.parametrize("kind", schemas.RECORD_KINDS)
def test_a_payload_of_another_kind_is_refused(kind: str) -> None:
    comps = _spec()["components"]["schemas"]
    kinds = _kind_map()
    other = next(k for k in schemas.RECORD_KINDS[::-1] if k != kind)
    wrong = copy.deepcopy(comps[kinds[other]]["examples"][0])
    rec = _record(kind, wrong)  # hash right, payload of the wrong kind
    assert not schemas.is_valid("Record", rec)
    with pytest.raises(schemas.SchemaViolation):
        schemas.validate_record(rec)
    batch = {"device_id": "dev-01", "centre_id": "centre-01", "stream": rec["stream"]}
    assert not schemas.is_valid("BatchRequest", {**batch, "records": [rec]})
    # the batch's own fields are fine: the platform refuses the record, not the batch
    assert schemas.batch_shell_problems({**batch, "records": [rec]}) == []
    assert schemas.batch_shell_problems({**batch, "records": []}) != []
    # quarantined, the same record is acceptable: its payload is not checked
    rec["quarantine"] = {
        "reason": "schema_invalid",
        "detail": None,
        "dead_at": "2026-01-05T11:31:00.000+08:00",
    }
    schemas.validate_record(rec)
    # a payload missing a required field of its own kind is refused too
    own = copy.deepcopy(comps[kinds[kind]]["examples"][0])
    own.pop(comps[kinds[kind]]["required"][0])
    assert not schemas.is_valid("Record", _record(kind, own))


def test_unknown_kind_is_refused() -> None:
    comps = _spec()["components"]["schemas"]
    rec = _record("meal_transaction", comps["MealTransaction"]["examples"][0])
    rec["kind"] = "meal_transaction_v0"
    assert not schemas.is_valid("Record", rec)
