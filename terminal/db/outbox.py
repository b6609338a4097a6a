"""The transactional outbox with the device's gap-free sequence and hash chain.

Every record the terminal makes (meal transaction, top-up, enrolment event,
footfall aggregate ...) is appended here *in the same transaction* as the
record itself. Appending assigns the next sequence number and links the record
into a SHA-256 hash chain::

    hash = sha256(canonical_json({
        "device_id", "seq", "prev_hash", "kind", "record_id", "payload"
    }))

with ``prev_hash`` of the first record = 64 zeros. Canonical JSON is
``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` in
UTF-8. The platform recomputes the chain, so a dropped, inserted or edited
record is detectable. Rows are never deleted; uploads move them to ``acked``
(or ``dead`` with a reason, never silently).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from terminal.core.clock import rfc3339
from terminal.core.errors import StorageError
from terminal.db.tables import ChainHead, OutboxRow

GENESIS = "0" * 64


def canonical_json(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record_hash(
    device_id: str, seq: int, prev_hash: str, kind: str, record_id: str, payload: Mapping[str, Any]
) -> str:
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


@dataclass(frozen=True, slots=True)
class Appended:
    seq: int
    record_id: str
    prev_hash: str
    hash: str


class Outbox:
    """Appends records to the outbox. Use inside a write session (BEGIN IMMEDIATE)
    so the sequence and chain head are updated atomically with the record."""

    def __init__(self, device_id: str) -> None:
        self.device_id = device_id

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
        digest = record_hash(self.device_id, seq, head.hash, kind, record_id, body)
        session.add(
            OutboxRow(
                seq=seq,
                record_id=record_id,
                kind=kind,
                payload=canonical_json(body),
                created_at=rfc3339(created_at),
                prev_hash=head.hash,
                hash=digest,
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


def verify_chain(rows: Iterable[OutboxRow], device_id: str) -> ChainProblem | None:
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
        payload = json.loads(row.payload)
        digest = record_hash(device_id, row.seq, row.prev_hash, row.kind, row.record_id, payload)
        if digest != row.hash:
            return ChainProblem(row.seq, row.record_id, "hash does not match the record content")
        prev = row.hash
        expected_seq += 1
    return None


def verify_outbox(session: Session, device_id: str) -> ChainProblem | None:
    rows = session.scalars(select(OutboxRow).order_by(OutboxRow.seq)).yield_per(1000)
    problem = verify_chain(rows, device_id)
    if problem is None:
        head = session.get(ChainHead, 1)
        last = session.scalar(select(func.max(OutboxRow.seq))) or 0
        if head is not None and head.seq != last:
            return ChainProblem(head.seq, "", f"chain head at {head.seq} but last record is {last}")
    return problem


def queue_stats(session: Session) -> dict[str, int]:
    rows = session.execute(select(OutboxRow.status, func.count()).group_by(OutboxRow.status)).all()
    return {status: int(n) for status, n in rows}
