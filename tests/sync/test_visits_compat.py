"""Spec 1.2 is additive: terminals of 1.0 and 1.1 keep syncing with a 1.2
platform. Their replies are checked against the frozen schemas they validate
with (``sync/spec/history``), also when the city-wide rules touch their meals:
a centre's own senior's subsidised meal claims the slot in the district (so a
visitor elsewhere is then refused online), and one whose slot a visiting meal
already held is stored as before (those terminals cannot know the new
quarantine reason) and listed for review. A real ``platform serve`` process."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from test_visits_platform import (
    DAY,
    District,
    Stream,
    person_of,
    signed_get,
    start_district,
    stop,
    visit_meal,
)

from sync import schemas
from terminal.core.ids import new_ulid

HISTORY = Path(schemas.SPEC_PATH).parent / "history"


@cache
def _validator(version: str, name: str) -> Draft202012Validator:
    doc = yaml.safe_load((HISTORY / f"openapi-{version}.yaml").read_text("utf-8"))
    assert doc["info"]["version"] == version
    uri = f"urn:spec-{version}"
    registry: Registry[Any] = Registry().with_resource(uri, DRAFT202012.create_resource(doc))
    return Draft202012Validator({"$ref": f"{uri}#/components/schemas/{name}"}, registry=registry)


def problems(version: str, name: str, doc: Any) -> list[str]:
    return [e.message for e in _validator(version, name).iter_errors(doc)]


@pytest.fixture
def district(tmp_path: Path) -> Any:
    d = start_district(tmp_path)
    try:
        yield d
    finally:
        stop(d)


def home_meal() -> dict[str, Any]:
    """Senior A001's lunch at their own centre, as a 1.1 terminal records it."""
    p = visit_meal("A001", source="online", claim_id=None)
    del p["visit"]
    return p


def test_the_1_1_schemas_are_frozen_and_know_no_visit() -> None:
    """The history file is what 1.1 terminals hold: it refuses what 1.2 added."""
    meal = visit_meal("P-x", source="roster", claim_id=None)
    assert problems("1.1.0", "MealTransaction", meal) != []
    assert problems("1.1.0", "MealTransaction", home_meal()) == []
    result = {"seq": 1, "record_id": new_ulid(), "result": "accepted", "retryable": False}
    assert problems("1.1.0", "RecordResult", result) == []
    assert problems(
        "1.1.0", "RecordResult", dict(result, quarantine_reason="citywide_duplicate_subsidy")
    )
    assert (
        "district_roster"
        not in yaml.safe_load((HISTORY / "openapi-1.1.0.yaml").read_text("utf-8"))["components"][
            "schemas"
        ]["DatasetKind"]["enum"]
    )


def test_a_1_1_terminals_home_meal_claims_the_slot_and_its_replies_stay_1_1(
    district: District,
) -> None:
    a = Stream(district, "dev-a1")
    rec = a.record("meal_transaction", home_meal())
    reply = a.client.upload_batch("dev-a1", "centre-a", "kiosk", [rec])
    assert problems("1.1.0", "BatchResponse", reply) == []
    assert problems("1.0.0", "BatchResponse", reply) == []
    assert reply["results"][0]["stored_as"] == "record"
    assert district.sql("SELECT source, centre_id, record_id FROM visit_claims") == [
        ("home", "centre-a", rec["record_id"])
    ]
    # the senior then visits centre B in the same slot: refused online
    assert person_of(district).subsidised_in_district is True
    for kind in ("roster", "subsidy_policy", "menu"):
        status, doc = signed_get(district, "dev-a1", f"/v1/centres/centre-a/datasets/{kind}")
        assert status == 200 and problems("1.1.0", "DatasetDocument", doc) == [], kind
    status, head = signed_get(district, "dev-a1", "/v1/devices/dev-a1/streams/kiosk")
    assert status == 200 and problems("1.1.0", "StreamHead", head) == []


def test_a_home_meal_on_a_slot_a_visit_held_is_stored_as_before_and_reviewed(
    district: District,
) -> None:
    person = person_of(district).person_id
    with district.client("dev-b1") as b:
        b.claim(
            person_id=person,
            day=DAY,
            slot="lunch",
            record_id=(held := new_ulid()),
            centre_id="centre-b",
        )
    a = Stream(district, "dev-a1")
    rec = a.record("meal_transaction", home_meal())
    reply = a.client.upload_batch("dev-a1", "centre-a", "kiosk", [rec])
    result = reply["results"][0]
    assert (result["result"], result["stored_as"]) == ("accepted", "record")
    assert "quarantine_reason" not in result
    assert problems("1.1.0", "BatchResponse", reply) == []
    # a replay under another key: a duplicate, still a 1.1 answer
    again = a.client.upload_batch(
        "dev-a1", "centre-a", "kiosk", [copy.deepcopy(rec)], key_generation="0123456789abcdef"
    )
    assert again["results"][0]["result"] == "duplicate"
    assert problems("1.1.0", "BatchResponse", again) == []
    for device in ("dev-a1", "dev-b1"):
        status, doc = signed_get(
            district, device, "/v1/visits/reviews?from=2026-01-05&to=2026-01-05"
        )
        assert status == 200, doc
        assert [(i["record_id"], i["held_by_record_id"]) for i in doc["items"]] == [
            (rec["record_id"], held)
        ], device
    # not a visiting meal: nothing to settle
    status, report = signed_get(district, "dev-a1", "/v1/settlements?from=2026-01-05&to=2026-01-05")
    assert status == 200 and report["lines"] == []
