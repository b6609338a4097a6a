"""The signed bundle manifest.

``manifest.json`` lists every payload of a bundle with its role, SHA-256 and
length; ``manifest.sig`` holds an Ed25519 signature over the exact bytes of
``manifest.json`` (prefixed by a domain-separation label, so a release key can
never be tricked into signing something that verifies as a manifest).

The signature is checked over the raw bytes *before* the JSON is parsed. The
parser is strict: unknown keys, wrong types and impossible values are refused.

Example::

    {"format": 1, "product": "care-terminal", "version": "1.4.0", "counter": 17,
     "created": "2026-05-01T10:00:00+08:00",
     "boards": {"care-pi4": ["1"]},
     "payloads": [{"name": "app.tar.gz", "role": "app", "sha256": "...",
                   "size": 1234, "unpacked_size": 5678}]}

``counter`` is a release counter that only grows (the release tooling keeps
it); the terminal refuses a manifest whose counter is not above the one it
last installed, so an old, validly signed manifest cannot be replayed.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sync.ota.errors import BundleRejected, OtaConfigError
from sync.ota.versions import parse_version

FORMAT: Final = 1
PRODUCT: Final = "care-terminal"
MANIFEST_NAME: Final = "manifest.json"
SIGNATURE_NAME: Final = "manifest.sig"
SIGNING_LABEL: Final = b"care-terminal/ota-manifest/v1\n"
MAX_MANIFEST_BYTES: Final = 64 * 1024
MAX_SIGNATURE_BYTES: Final = 4 * 1024

Role = Literal["app", "model_pack", "migrations"]
ROLES: Final[tuple[Role, ...]] = ("app", "model_pack", "migrations")
_PAYLOAD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\.(tar|tar\.gz|tgz)$")
_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_BOARD = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_TOP_KEYS = frozenset(
    {
        "format",
        "product",
        "version",
        "counter",
        "created",
        "boards",
        "payloads",
        "downgrade",
        "health_timeout_s",
        "notes",
    }
)
_PAYLOAD_KEYS = frozenset({"name", "role", "sha256", "size", "unpacked_size"})


@dataclass(frozen=True, slots=True)
class Payload:
    name: str
    role: Role
    sha256: str
    size: int
    unpacked_size: int

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "sha256": self.sha256,
            "size": self.size,
            "unpacked_size": self.unpacked_size,
        }


@dataclass(frozen=True, slots=True)
class Manifest:
    version: str
    counter: int
    created: str
    payloads: tuple[Payload, ...]
    boards: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    downgrade: bool = False
    health_timeout_s: int | None = None
    notes: str = ""
    product: str = PRODUCT

    def payload(self, role: Role) -> Payload | None:
        for p in self.payloads:
            if p.role == role:
                return p
        return None

    @property
    def has_migrations(self) -> bool:
        return self.payload("migrations") is not None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "format": FORMAT,
            "product": self.product,
            "version": self.version,
            "counter": self.counter,
            "created": self.created,
            "boards": {b: list(r) for b, r in self.boards.items()},
            "payloads": [p.to_json() for p in self.payloads],
        }
        if self.downgrade:
            doc["downgrade"] = True
        if self.health_timeout_s is not None:
            doc["health_timeout_s"] = self.health_timeout_s
        if self.notes:
            doc["notes"] = self.notes
        return doc

    def encode(self) -> bytes:
        """The bytes that go into ``manifest.json`` (and get signed)."""
        return json.dumps(self.to_json(), ensure_ascii=True, sort_keys=True, indent=1).encode(
            "ascii"
        )


def _bad(msg: str) -> BundleRejected:
    return BundleRejected(f"manifest: {msg}", code="bad_manifest")


def _int(doc: Mapping[str, Any], key: str, lo: int, hi: int) -> int:
    v = doc.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise _bad(f"{key} must be an integer in {lo}..{hi}")
    return v


def parse_manifest(raw: bytes) -> Manifest:
    """Parse verified manifest bytes strictly."""
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _bad("not valid UTF-8 JSON") from None
    if not isinstance(doc, dict):
        raise _bad("must be a JSON object")
    unknown = set(doc) - _TOP_KEYS
    if unknown:
        raise _bad(f"unknown keys {sorted(unknown)[:5]}")
    if doc.get("format") != FORMAT:
        raise _bad(f"format must be {FORMAT}")
    product = doc.get("product")
    if not isinstance(product, str) or not product:
        raise _bad("product is missing")
    version = doc.get("version")
    if not isinstance(version, str):
        raise _bad("version is missing")
    parse_version(version)
    counter = _int(doc, "counter", 1, 2**53)
    created = doc.get("created")
    if not isinstance(created, str) or len(created) > 40:
        raise _bad("created must be an RFC 3339 timestamp")
    boards_doc = doc.get("boards", {})
    if not isinstance(boards_doc, dict) or len(boards_doc) > 32:
        raise _bad("boards must be an object of board -> revisions")
    boards: dict[str, tuple[str, ...]] = {}
    for board, revs in boards_doc.items():
        if not _BOARD.fullmatch(board) or not isinstance(revs, list) or not revs or len(revs) > 32:
            raise _bad("boards must map a board name to a non-empty list of revisions")
        if not all(isinstance(r, str) and _BOARD.fullmatch(r) for r in revs):
            raise _bad("board revisions must be short plain strings")
        boards[board] = tuple(revs)
    payload_docs = doc.get("payloads")
    if not isinstance(payload_docs, list) or not 1 <= len(payload_docs) <= 8:
        raise _bad("payloads must be a list of 1-8 entries")
    payloads: list[Payload] = []
    for p in payload_docs:
        if not isinstance(p, dict) or set(p) != _PAYLOAD_KEYS:
            raise _bad(f"each payload needs exactly {sorted(_PAYLOAD_KEYS)}")
        name, role, digest = p["name"], p["role"], p["sha256"]
        if not isinstance(name, str) or not _PAYLOAD_NAME.fullmatch(name):
            raise _bad("payload name must be a plain .tar / .tar.gz file name")
        if role not in ROLES:
            raise _bad(f"payload role must be one of {', '.join(ROLES)}")
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise _bad("payload sha256 must be 64 lower-case hex digits")
        size = _int(p, "size", 1, 2**40)
        unpacked = _int(p, "unpacked_size", 0, 2**40)
        payloads.append(Payload(name, role, digest, size, unpacked))
    names = [p.name for p in payloads]
    roles = [p.role for p in payloads]
    if len(set(names)) != len(names):
        raise _bad("payload names must be unique")
    if len(set(roles)) != len(roles) or "app" not in roles:
        raise _bad("exactly one app payload and at most one of each other role")
    downgrade = doc.get("downgrade", False)
    if not isinstance(downgrade, bool):
        raise _bad("downgrade must be true or false")
    timeout = None if "health_timeout_s" not in doc else _int(doc, "health_timeout_s", 5, 3600)
    notes = doc.get("notes", "")
    if not isinstance(notes, str) or len(notes) > 2000:
        raise _bad("notes must be a short string")
    return Manifest(
        version=version,
        counter=counter,
        created=created,
        payloads=tuple(payloads),
        boards=boards,
        downgrade=downgrade,
        health_timeout_s=timeout,
        notes=notes,
        product=product,
    )


# -- signatures ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrustStore:
    """The release keys a terminal trusts, by key id."""

    keys: Mapping[str, Ed25519PublicKey]

    @classmethod
    def from_dir(cls, path: Path) -> TrustStore:
        """Load ``<key_id>.pub`` files (base64 of the 32 raw bytes, or PEM)."""
        if not path.is_dir():
            raise OtaConfigError(f"OTA trust directory {path} does not exist")
        keys: dict[str, Ed25519PublicKey] = {}
        for f in sorted(path.glob("*.pub")):
            keys[f.stem] = load_public_key(f.read_bytes(), f.name)
        if not keys:
            raise OtaConfigError(f"no release keys (*.pub) in {path}")
        return cls(keys)


def load_public_key(data: bytes, what: str = "key") -> Ed25519PublicKey:
    text = data.strip()
    try:
        if text.startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(text)
            if not isinstance(key, Ed25519PublicKey):
                raise ValueError("not Ed25519")
            return key
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except (ValueError, TypeError) as exc:
        raise OtaConfigError(f"{what} is not an Ed25519 public key") from exc


def public_key_text(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def sign_manifest(raw: bytes, key: Ed25519PrivateKey, key_id: str) -> bytes:
    """The ``manifest.sig`` document for ``raw`` manifest bytes."""
    if not _KEY_ID.fullmatch(key_id):
        raise ValueError("key id may only use letters, digits, '.', '_' and '-'")
    sig = key.sign(SIGNING_LABEL + raw)
    doc = {"alg": "ed25519", "key_id": key_id, "sig": base64.b64encode(sig).decode("ascii")}
    return json.dumps(doc, sort_keys=True).encode("ascii")


def verify_signature(raw: bytes, sig_doc: bytes, trust: TrustStore) -> str:
    """Check ``sig_doc`` over ``raw``; return the key id. Raises BundleRejected."""
    try:
        doc = json.loads(sig_doc.decode("ascii"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BundleRejected("manifest.sig is not valid JSON", code="bad_signature") from None
    if not isinstance(doc, dict) or doc.get("alg") != "ed25519":
        raise BundleRejected("manifest.sig must use alg ed25519", code="bad_signature")
    key_id, sig_text = doc.get("key_id"), doc.get("sig")
    if not isinstance(key_id, str) or not isinstance(sig_text, str):
        raise BundleRejected("manifest.sig lacks key_id or sig", code="bad_signature")
    key = trust.keys.get(key_id)
    if key is None:
        raise BundleRejected(
            f"manifest is signed by unknown key {key_id[:64]!r}", code="unknown_key"
        )
    try:
        sig = base64.b64decode(sig_text, validate=True)
        key.verify(sig, SIGNING_LABEL + raw)
    except (ValueError, InvalidSignature):
        raise BundleRejected("manifest signature does not verify", code="bad_signature") from None
    return key_id
