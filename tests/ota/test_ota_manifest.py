"""Parsing the bundle manifest: the pydantic types refuse every malformed
document with one ``bad_manifest`` rejection that names the problem."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from sync.ota.errors import BundleRejected
from sync.ota.manifest import Manifest, Payload, parse_manifest

GOOD = Manifest(
    version="1.4.0",
    counter=17,
    created="2026-05-01T10:00:00+08:00",
    payloads=(
        Payload("app.tar.gz", "app", "a" * 64, 1234, 5678),
        Payload("model-pack.tar.gz", "model_pack", "b" * 64, 10, 20),
    ),
    boards={"care-pi4": ("1", "2")},
    health_timeout_s=120,
    notes="spring release",
)


def _doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(GOOD.encode())
    return doc


def test_round_trip_keeps_every_field() -> None:
    assert parse_manifest(GOOD.encode()) == GOOD
    doc = _doc()
    doc["downgrade"] = True
    assert parse_manifest(json.dumps(doc).encode()).downgrade is True


Edit = Callable[[dict[str, Any]], object]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(run_as_root=True), "unknown key 'run_as_root'"),
        (lambda d: d["payloads"][0].update(mode="0777"), "unknown key 'payloads[0].mode'"),
        (lambda d: d.pop("format"), "format is missing"),
        (lambda d: d.pop("product"), "product is missing"),
        (lambda d: d["payloads"][1].pop("sha256"), "payloads[1].sha256 is missing"),
        (lambda d: d.update(format=2), "format: Input should be 1"),
        (lambda d: d.update(counter="17"), "counter: Input should be a valid integer"),
        (lambda d: d.update(counter=True), "counter: Input should be a valid integer"),
        (lambda d: d.update(counter=0), "counter: Input should be greater than or equal to 1"),
        (lambda d: d.update(version="1.2.0-beta"), "version is not 1-4 dot-separated numbers"),
        (lambda d: d.update(downgrade="yes"), "downgrade: Input should be a valid boolean"),
        (lambda d: d.update(health_timeout_s=1), "health_timeout_s: Input should be greater"),
        (lambda d: d.update(notes="x" * 2001), "notes: String should have at most 2000"),
        (lambda d: d.update(boards={"a b": ["1"]}), "boards['a b'] (key) must be a short plain"),
        (lambda d: d.update(boards={"pi": []}), "boards.pi: Tuple should have at least 1"),
        (lambda d: d.update(payloads=[]), "payloads: Tuple should have at least 1"),
        (
            lambda d: d["payloads"][0].update(name="../app.tar"),
            "payloads[0].name must be a plain .tar / .tar.gz file name",
        ),
        (
            lambda d: d["payloads"][0].update(sha256="A" * 64),
            "payloads[0].sha256 must be 64 lower-case hex digits",
        ),
        (lambda d: d["payloads"][0].update(role="kernel"), "payloads[0].role: Input should be"),
        (lambda d: d["payloads"][0].update(size=0), "payloads[0].size: Input should be greater"),
        (lambda d: d["payloads"][0].update(role="migrations"), "exactly one app payload"),
        (
            lambda d: d["payloads"][1].update(name="app.tar.gz"),
            "payload names must be unique",
        ),
    ],
)
def test_malformed_manifest_is_one_clear_rejection(edit: Edit, message: str) -> None:
    doc = _doc()
    edit(doc)
    with pytest.raises(BundleRejected) as err:
        parse_manifest(json.dumps(doc).encode())
    assert err.value.code == "bad_manifest"
    assert str(err.value).startswith(f"manifest: {message}")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"this is not json {", "not valid UTF-8 JSON"),
        (b"\xff\xfe{}", "not valid UTF-8 JSON"),
        (b"[1, 2]", "must be a JSON object"),
    ],
)
def test_unparseable_manifest_is_one_clear_rejection(raw: bytes, message: str) -> None:
    with pytest.raises(BundleRejected, match=message) as err:
        parse_manifest(raw)
    assert err.value.code == "bad_manifest"
