"""The signed bundle manifest.

``manifest.json`` lists every payload of a bundle with its role, SHA-256 and
length; ``manifest.sig`` holds an Ed25519 signature over the exact bytes of
``manifest.json`` (prefixed by a domain-separation label, so a release key can
never be tricked into signing something that verifies as a manifest).

The signature is checked over the raw bytes *before* the JSON is parsed. The
:class:`Manifest` and :class:`Payload` types are the parser (pydantic
dataclasses, ``extra="forbid"``, no coercion of scalars): unknown keys, wrong
types and impossible values are refused with one ``BundleRejected``
(``bad_manifest``) naming the first problem.

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic.dataclasses import dataclass as document

from sync.ota.errors import BundleRejected, OtaConfigError
from sync.ota.versions import is_valid_version
from terminal.core.errors import field_path

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


def _rule(check: Callable[[str], bool], problem: str) -> AfterValidator:
    """A string check whose failure reads ``problem``."""

    def validate(value: str) -> str:
        if not check(value):
            raise ValueError(problem)
        return value

    return AfterValidator(validate)


# The manifest's types are its parser: closed (an unknown key is refused) and
# strict about scalars (no coercion: "17" is not 17, true is not 1).
PayloadName = Annotated[
    StrictStr, _rule(_PAYLOAD_NAME.fullmatch, "must be a plain .tar / .tar.gz file name")
]
Sha256 = Annotated[StrictStr, _rule(_SHA256.fullmatch, "must be 64 lower-case hex digits")]
BoardName = Annotated[StrictStr, _rule(_BOARD.fullmatch, "must be a short plain string")]
Version = Annotated[
    StrictStr, _rule(is_valid_version, "is not 1-4 dot-separated numbers (e.g. 1.4.0)")
]
_CLOSED = ConfigDict(extra="forbid")


@document(frozen=True, slots=True, config=_CLOSED)
class Payload:
    name: PayloadName
    role: Role
    sha256: Sha256
    size: StrictInt = Field(ge=1, le=2**40)
    unpacked_size: StrictInt = Field(ge=0, le=2**40)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "sha256": self.sha256,
            "size": self.size,
            "unpacked_size": self.unpacked_size,
        }


@document(frozen=True, slots=True, config=_CLOSED)
class Manifest:
    version: Version
    counter: StrictInt = Field(ge=1, le=2**53)
    created: StrictStr = Field(max_length=40)  # RFC 3339
    payloads: tuple[Payload, ...] = Field(min_length=1, max_length=8)
    boards: Mapping[
        BoardName, Annotated[tuple[BoardName, ...], Field(min_length=1, max_length=32)]
    ] = Field(default_factory=dict, max_length=32)
    downgrade: StrictBool = False
    health_timeout_s: StrictInt | None = Field(default=None, ge=5, le=3600)
    notes: StrictStr = Field(default="", max_length=2000)
    product: StrictStr = Field(default=PRODUCT, min_length=1)
    format: Literal[1] = FORMAT

    @model_validator(mode="before")
    @classmethod
    def _states_what_it_is(cls, data: Any) -> Any:
        # A manifest document must name its format and product; code that
        # builds a Manifest (keyword arguments, not a dict) gets the defaults.
        if isinstance(data, dict):
            for key in ("format", "product"):
                if key not in data:
                    raise ValueError(f"{key} is missing")
        return data

    def __post_init__(self) -> None:
        names = [p.name for p in self.payloads]
        roles = [p.role for p in self.payloads]
        if len(set(names)) != len(names):
            raise ValueError("payload names must be unique")
        if len(set(roles)) != len(roles) or "app" not in roles:
            raise ValueError("exactly one app payload and at most one of each other role")

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
            "format": self.format,
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


_MANIFEST: Final = TypeAdapter(Manifest)


def _problem(err: ValidationError) -> str:
    """The first problem of a refused manifest, as one phrase."""
    e = err.errors(include_url=False)[0]
    loc = field_path(e["loc"])
    kind = e["type"]
    if kind == "json_invalid":
        return "not valid UTF-8 JSON"
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        return f"unknown key {loc!r}"
    if kind in ("missing", "missing_argument"):
        return f"{loc} is missing"
    if kind in ("dataclass_type", "dataclass_exact_type", "model_type") and not loc:
        return "must be a JSON object"
    if kind == "value_error" and "ctx" in e:  # our own rules: "<where> <what is wrong>"
        problem = str(e["ctx"]["error"])
        return f"{loc} {problem}" if loc else problem
    return f"{loc}: {e['msg']}" if loc else str(e["msg"])


def parse_manifest(raw: bytes) -> Manifest:
    """Parse verified manifest bytes strictly; BundleRejected(bad_manifest) naming
    the first problem otherwise."""
    try:
        return _MANIFEST.validate_json(raw)
    except ValidationError as exc:
        raise BundleRejected(f"manifest: {_problem(exc)}", code="bad_manifest") from None


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
