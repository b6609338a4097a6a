"""The spec's registration procedure and worked signing example are enough to sign
without our code: the example is recomputed here from the spec's text with the
``cryptography`` library alone (not through ``sync.auth``), and a request signed
that way is refused with the uniform 401 before registration and accepted after
``platform serve --register``."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import time
from pathlib import Path
from typing import Any

import rfc8785
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_http import start_platform

from sync import schemas

SPEC = schemas.SPEC_PATH


def _reg() -> dict[str, Any]:
    doc = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    reg = doc["x-device-registration"]
    assert isinstance(reg, dict)
    return reg


def _digest(body: bytes) -> str:
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"


def _sign(
    key: Ed25519PrivateKey,
    keyid: str,
    method: str,
    path: str,
    query: str,
    body: bytes,
    idempotency_key: str | None,
    created: int,
    nonce: str,
) -> tuple[dict[str, str], str]:
    """Sign as the spec's text says (RFC 9421 section 2.5): the headers and the base."""
    headers = {"Content-Digest": _digest(body)}
    comps = ["@method", "@path", "@query", "content-digest"]
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
        comps.append("idempotency-key")
    params = (
        "(" + " ".join(f'"{c}"' for c in comps) + ")"
        f';created={created};nonce="{nonce}";keyid="{keyid}";alg="ed25519"'
    )
    values = {
        "@method": method.upper(),
        "@path": path,
        "@query": "?" + query if query else "?",
        "content-digest": headers["Content-Digest"],
        "idempotency-key": idempotency_key,
    }
    lines = [f'"{c}": {values[c]}' for c in comps] + [f'"@signature-params": {params}']
    base = "\n".join(lines)
    sig = base64.b64encode(key.sign(base.encode("utf-8"))).decode()
    headers["Signature-Input"] = f"sig1={params}"
    headers["Signature"] = f"sig1=:{sig}:"
    return headers, base


def test_worked_example_recomputes_from_the_spec_text() -> None:
    reg = _reg()
    ex = reg["example"]
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(ex["private_key_seed_hex"]))
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert len(raw) == 32
    assert base64.b64encode(raw).decode() == ex["public_key"]
    pattern = schemas.spec()["components"]["schemas"]["DevicePublicKey"]["pattern"]
    assert re.fullmatch(pattern, ex["public_key"])
    assert ex["registration"] == f"{ex['device_id']}:{ex['centre_id']}:{ex['public_key']}"
    schemas.validate(
        "DeviceRegistration",
        {
            "device_id": ex["device_id"],
            "centre_id": ex["centre_id"],
            "public_key": ex["public_key"],
        },
    )

    body = ex["body"].encode("utf-8")
    headers, base = _sign(
        key,
        ex["device_id"],
        ex["method"],
        ex["path"],
        ex["query"],
        body,
        ex["headers"]["Idempotency-Key"],
        ex["created"],
        ex["nonce"],
    )
    assert base == ex["signature_base"]
    for name in ("Content-Digest", "Signature-Input", "Signature"):
        assert headers[name] == ex["headers"][name], name
    assert headers["Signature"] == f"sig1=:{ex['signature']}:"
    key.public_key().verify(base64.b64decode(ex["signature"]), base.encode("utf-8"))

    # the example body is a valid batch whose record hash is right
    doc = json.loads(body)
    schemas.validate("BatchRequest", doc)
    rec = doc["records"][0]
    assert rec["hash_version"] == 2  # what a spec 1.1 device sends
    fields = ("device_id", "centre_id", "stream", "seq", "record_id", "kind", "created_at")
    hashed = {k: rec[k] for k in (*fields, "prev_hash", "payload")} | {"hash_version": 2}
    assert hashlib.sha256(rfc8785.dumps(hashed)).hexdigest() == rec["hash"]
    # the procedure names the registration input and the answer before registration
    text = reg["description"]
    assert "--register DEVICE:CENTRE:PUBKEY" in text and "401" in text
    assert "bad_signature" in text and "base64" in text


def _post(p: Any, key: Ed25519PrivateKey, device: str, body: bytes, idem: str) -> tuple[int, Any]:
    headers, _ = _sign(
        key,
        device,
        "POST",
        "/v1/batches",
        "",
        body,
        idem,
        int(time.time()),
        secrets.token_urlsafe(18),
    )
    status, _h, raw = p.request(
        "POST",
        "/v1/batches",
        body=body,
        headers={"Content-Type": "application/json", **headers},
        sign=False,
    )
    return status, json.loads(raw)


def test_a_terminal_is_401_until_registered_then_accepted(tmp_path: Path) -> None:
    ex = _reg()["example"]
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(ex["private_key_seed_hex"]))
    body = ex["body"].encode("utf-8")
    p = start_platform(tmp_path)
    try:
        status, doc = _post(p, key, ex["device_id"], body, "reg-1")
        assert status == 401 and doc["error"] == "bad_signature" and doc["retryable"] is False
        # the very answer of a bad signature from a registered device
        status2, doc2 = _post(p, key, "dev-01", body, "reg-1")
        assert (status2, doc2) == (status, doc)
    finally:
        p.stop()
    p = start_platform(tmp_path, "--register", ex["registration"])
    try:
        status, doc = _post(p, key, ex["device_id"], body, "reg-2")
        assert status == 200, doc
        assert [r["result"] for r in doc["results"]] == ["accepted"]
        schemas.validate("BatchResponse", doc)
    finally:
        p.stop()
