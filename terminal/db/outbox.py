"""The transactional outbox with the device's gap-free sequence and hash chain.

Every record the terminal makes (meal transaction, top-up, enrolment event,
footfall aggregate ...) is appended here *in the same transaction* as the
record itself. Appending assigns the next sequence number and links the record
into a SHA-256 hash chain. Hash version 2 (what this software writes) binds the
whole envelope::

    hash = sha256(JCS({
        "hash_version": 2, "device_id", "centre_id", "stream", "seq", "record_id",
        "kind", "created_at", "prev_hash", "payload"
    }))

where JCS is the JSON Canonicalization Scheme of RFC 8785 (the ``rfc8785``
package). Version 1, written by terminals of spec 1.0 and still verified, hashed
only ``{"device_id", "seq", "prev_hash", "kind", "record_id", "payload"}`` as
``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)``. Each
row keeps the version it was hashed with (rows older than version 2 are 1). The
first record's ``prev_hash`` is 64 zeros. The platform recomputes the chain, so a
dropped, inserted or edited record is detectable. Rows are never deleted;
uploads move them to ``acked`` (or ``dead`` with a reason, never silently).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import rfc8785
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from terminal.core.clock import rfc3339
from terminal.core.errors import StorageError
from terminal.db.tables import ChainHead, OutboxRow

GENESIS = "0" * 64
HASH_VERSION = 2  # what this software writes; see hash_of()
HASH_VERSIONS = (1, 2)  # what it verifies


def canonical_json(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record_hash(
    device_id: str, seq: int, prev_hash: str, kind: str, record_id: str, payload: Mapping[str, Any]
) -> str:
    """Hash version 1 (spec 1.0 terminals): the envelope's centre, stream and time
    are not bound, and the canonical form is Python's ``json.dumps``."""
    body = canonical_json(
        {
            "device_id": device_id,
            "seq": seq,
            "prev_hash": prev_hash,
            "kind": kind,
            "record_id": record_id,
            "payload": payload,
        }
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


# The envelope fields hash version 2 binds, besides "hash_version" itself.
V2_FIELDS = (
    "device_id",
    "centre_id",
    "stream",
    "seq",
    "record_id",
    "kind",
    "created_at",
    "prev_hash",
    "payload",
)


_NOT_PLAIN = object()  # a value json.dumps would not write in RFC 8785 form


def _plain_for_jcs(doc: Any) -> Any:
    """``doc`` with integral floats as ints, or ``_NOT_PLAIN`` when ``json.dumps``
    would not write the RFC 8785 form of it.

    For the documents records hold, Python's ``json.dumps(sort_keys=True,
    separators=(",", ":"), ensure_ascii=False)`` writes JCS byte for byte as long as
    every key is ASCII (code point order is then UTF-16 order), every float is an
    integer below 2**53 (JCS writes ``1.0`` as ``1``: converted here) or has a
    magnitude in [1e-4, 1e16) (where both write the shortest round-trip digits in
    plain notation), every integer is within 2**53 and no value is NaN or
    infinite. Strings are escaped alike (quote, backslash, the five short escapes,
    other control characters as lowercase \\u00xx). Anything else goes to the
    ``rfc8785`` package; a property test holds the two to each other."""
    if isinstance(doc, float):
        if doc.is_integer():
            return int(doc) if abs(doc) < 2.0**53 else _NOT_PLAIN
        return doc if 1e-4 <= abs(doc) < 1e16 else _NOT_PLAIN  # NaN fails too
    if isinstance(doc, dict):
        out: dict[str, Any] = {}
        for key, value in doc.items():
            plain = _plain_for_jcs(value)
            if not isinstance(key, str) or not key.isascii() or plain is _NOT_PLAIN:
                return _NOT_PLAIN
            out[key] = plain
        return out
    if isinstance(doc, list):
        items = [_plain_for_jcs(v) for v in doc]
        return _NOT_PLAIN if any(v is _NOT_PLAIN for v in items) else items
    if doc is None or isinstance(doc, (bool, str)):
        return doc
    if isinstance(doc, int):
        return doc if abs(doc) < 2**53 else _NOT_PLAIN
    return _NOT_PLAIN


def jcs(doc: Any) -> bytes:
    """The RFC 8785 (JCS) canonical form of ``doc``, as UTF-8 bytes."""
    plain = _plain_for_jcs(doc)
    if plain is _NOT_PLAIN:
        return bytes(rfc8785.dumps(doc))
    text = json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def record_hash_v2(envelope: Mapping[str, Any]) -> str:
    """Hash version 2: SHA-256 of the RFC 8785 (JCS) form of the envelope's
    ``V2_FIELDS`` plus ``"hash_version": 2``. Raises ``ValueError`` for a value JCS
    cannot represent (an integer beyond 2**53, NaN, infinity)."""
    doc: dict[str, Any] = {name: envelope[name] for name in V2_FIELDS}
    doc["hash_version"] = 2
    try:
        canonical = jcs(doc)
    except (rfc8785.CanonicalizationError, UnicodeEncodeError) as exc:
        raise ValueError(f"record cannot be canonicalised (RFC 8785): {exc}") from exc
    return hashlib.sha256(canonical).hexdigest()


def hash_of(envelope: Mapping[str, Any]) -> str:
    """The hash a record envelope should carry, by its ``hash_version`` (absent: 1).

    ``envelope`` holds the envelope fields (``payload`` as a JSON value, not text)."""
    version = envelope.get("hash_version", 1)
    if version == 2:
        return record_hash_v2(envelope)
    if version == 1:
        return record_hash(
            envelope["device_id"],
            envelope["seq"],
            envelope["prev_hash"],
            envelope["kind"],
            envelope["record_id"],
            envelope["payload"],
        )
    raise ValueError(f"unknown hash_version {version!r}")


def row_envelope(
    row: Any, device_id: str, stream: str, centre_id: str | None = None
) -> dict[str, Any]:
    """The hashed envelope fields of a stored outbox row (``OutboxRow`` or a
    ``PendingRecord``): what is sent, and what :func:`hash_of` checks. A version 2
    row carries the centre it was hashed with; a version 1 row (whose hash does not
    bind the centre) is sent with ``centre_id``."""
    env: dict[str, Any] = {
        "device_id": device_id,
        "centre_id": row.centre_id if row.centre_id is not None else centre_id,
        "stream": stream,
        "seq": row.seq,
        "record_id": row.record_id,
        "kind": row.kind,
        "created_at": row.created_at,
        "prev_hash": row.prev_hash,
        "payload": json.loads(row.payload),
    }
    version = getattr(row, "hash_version", 1)  # a platform row does not store it
    if version != 1:
        env["hash_version"] = version
    return env


@dataclass(frozen=True, slots=True)
class Appended:
    seq: int
    record_id: str
    prev_hash: str
    hash: str


class Outbox:
    """Appends records to the outbox. Use inside a write session (BEGIN IMMEDIATE)
    so the sequence and chain head are updated atomically with the record.

    ``centre_id`` and ``stream`` are bound into every record's hash (version 2):
    the kiosk's outbox is the ``kiosk`` stream, the agent's own one ``agent``."""

    def __init__(self, device_id: str, centre_id: str, stream: str = "kiosk") -> None:
        self.device_id = device_id
        self.centre_id = centre_id
        self.stream = stream

    def append(
        self,
        session: Session,
        kind: str,
        record_id: str,
        payload: Mapping[str, Any],
        created_at: datetime,
    ) -> Appended:
        head = session.get(ChainHead, 1)
        if head is None:
            head = ChainHead(id=1, device_id=self.device_id, seq=0, hash=GENESIS)
            session.add(head)
        elif head.device_id != self.device_id:
            raise StorageError(f"database belongs to device {head.device_id}, not {self.device_id}")
        seq = head.seq + 1
        body = dict(payload)
        stamp = rfc3339(created_at)
        try:
            digest = record_hash_v2(
                {
                    "device_id": self.device_id,
                    "centre_id": self.centre_id,
                    "stream": self.stream,
                    "seq": seq,
                    "record_id": record_id,
                    "kind": kind,
                    "created_at": stamp,
                    "prev_hash": head.hash,
                    "payload": body,
                }
            )
        except ValueError as exc:
            raise StorageError(f"{kind} record not stored: {exc}") from exc
        session.add(
            OutboxRow(
                seq=seq,
                record_id=record_id,
                kind=kind,
                payload=canonical_json(body),
                created_at=stamp,
                prev_hash=head.hash,
                hash=digest,
                hash_version=HASH_VERSION,
                centre_id=self.centre_id,
                status="pending",
                attempts=0,
                next_attempt_at=0.0,
            )
        )
        appended = Appended(seq=seq, record_id=record_id, prev_hash=head.hash, hash=digest)
        head.seq = seq
        head.hash = digest
        session.flush()
        return appended


@dataclass(frozen=True, slots=True)
class ChainProblem:
    seq: int
    record_id: str
    problem: str


def verify_chain(
    rows: Iterable[OutboxRow], device_id: str, stream: str = "kiosk"
) -> ChainProblem | None:
    """Walk rows in sequence order; return the first problem or None."""
    expected_seq = 1
    prev = GENESIS
    for row in rows:
        if row.seq != expected_seq:
            return ChainProblem(row.seq, row.record_id, f"sequence gap: expected {expected_seq}")
        if row.prev_hash != prev:
            return ChainProblem(
                row.seq, row.record_id, "prev_hash does not match the previous record"
            )
        try:
            digest = hash_of(row_envelope(row, device_id, stream))
        except ValueError as exc:
            return ChainProblem(row.seq, row.record_id, str(exc))
        if digest != row.hash:
            return ChainProblem(row.seq, row.record_id, "hash does not match the record content")
        prev = row.hash
        expected_seq += 1
    return None


def verify_outbox(session: Session, device_id: str, stream: str = "kiosk") -> ChainProblem | None:
    rows = session.scalars(select(OutboxRow).order_by(OutboxRow.seq)).yield_per(1000)
    problem = verify_chain(rows, device_id, stream)
    if problem is None:
        head = session.get(ChainHead, 1)
        last = session.scalar(select(func.max(OutboxRow.seq))) or 0
        if head is not None and head.seq != last:
            return ChainProblem(head.seq, "", f"chain head at {head.seq} but last record is {last}")
    return problem


def queue_stats(session: Session) -> dict[str, int]:
    rows = session.execute(select(OutboxRow.status, func.count()).group_by(OutboxRow.status)).all()
    return {status: int(n) for status, n in rows}
