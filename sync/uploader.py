"""The outbox uploader: one stream, strictly in sequence order.

Per round: read the next ``batch_size`` records after the acknowledged
high-water mark, check their hash chain locally, POST them as one batch
(Idempotency-Key derived from the body and the send generation, see below;
each record's own idempotency key is its ``record_id``), then settle what the
reply says in one ``sync.db`` transaction:

* ``accepted`` / ``duplicate``: the record is acknowledged (the high-water mark
  moves over it). Nothing else ever acknowledges a record.
* ``rejected`` and final: the record becomes a dead letter with the reason
  (visible in :func:`sync.store.status.sync_status` and the heartbeat) and is sent
  again at once as a *quarantined* record, so the platform's sequence stays
  gap-free and the hole in the paid data is explained. Records after it then
  continue. If the platform refuses even the quarantined copy (hash or chain
  wrong, seq taken), the stream is *blocked*: uploading stops there and the
  status says why; district IT must look. Never a silent drop.
* ``rejected`` and retryable (``seq_gap``, ``not_processed``): resend from where
  the platform stands; on ``seq_gap`` the platform's head is checked against the
  local chain before moving the mark.
* transport failures, 5xx/408/425/429 and invalid replies: nothing is acked;
  the next try waits ``Retry-After`` or full-jitter backoff.
* final HTTP failures (400/401/403/409/422): nothing is acked, no record is
  dead-lettered (the records are not at fault); the stream is blocked with the
  reason and retried after the backoff cap.

Send generation: a random value drawn when the uploader starts, again on
every ``seq_gap`` answer and after every final HTTP refusal of a batch (the
platform stores and replays final answers per key, so the retry after the
cause is fixed must be a new request), mixed into each batch's Idempotency-Key. A retry after
a lost reply (same records, same generation) is a replay of the platform's
first answer, as the spec intends. But a ``seq_gap`` means the platform's stream
is not where an earlier answer left it (it lost records it had acknowledged):
the batches sent after the rewind can repeat earlier bodies byte for byte, and
under the same key the platform would replay its stored answer (the stale
``seq_gap`` for ever, or ``accepted`` for records it no longer holds) instead of
looking again. A new generation makes them new requests; per-record
idempotency (``record_id``) still answers ``duplicate`` for anything the
platform holds. The generation is not persisted: after a restart a retry is a
new request answered per record, which is just as safe.
"""

from __future__ import annotations

import random
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sync import schemas
from sync.client import PlatformClient, PlatformError
from sync.retry import BackoffPolicy, next_delay
from sync.store.kiosk_reader import PendingRecord
from sync.store.outbox import DeadLetter, ResultEntry, SyncStore
from terminal.core.clock import Clock, rfc3339
from terminal.core.log import get_logger
from terminal.db.outbox import GENESIS, hash_of, row_envelope

log = get_logger(__name__)


class RecordSource(Protocol):
    stream: str

    def read_after(self, after_seq: int, limit: int) -> list[PendingRecord]: ...

    def read_one(self, seq: int) -> PendingRecord | None: ...

    def head_seq(self) -> int: ...


@dataclass
class UploadReport:
    stream: str
    batches: int = 0
    sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    dead_lettered: int = 0
    failures: list[str] = field(default_factory=list)
    blocked: str | None = None
    drained: bool = False
    waiting_until: float | None = None
    acked_seq: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Uploader:
    def __init__(
        self,
        store: SyncStore,
        client: PlatformClient,
        source: RecordSource,
        device_id: str,
        centre_id: str,
        clock: Clock,
        *,
        batch_size: int = 500,
        policy: BackoffPolicy | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.store = store
        self.client = client
        self.source = source
        self.stream = source.stream
        self.device_id = device_id
        self.centre_id = centre_id
        self.clock = clock
        self.batch_size = batch_size
        self.policy = policy or BackoffPolicy()
        self.rand = rand
        self._head_checked = False
        self._generation = ""
        self._new_generation()

    # ------------------------------------------------------------------------------
    def _new_generation(self) -> None:
        """Start a new send generation (module docstring): batches sent from now on
        are new requests, never replays of answers given before."""
        self._generation = secrets.token_hex(8)

    def _epoch(self) -> float:
        return self.clock.now().timestamp()

    def _fail(self, report: UploadReport, err: PlatformError | str, attempts: int) -> None:
        now = self.clock.now()
        if isinstance(err, PlatformError):
            retryable = err.retryable
            delay = next_delay(self.policy, attempts, self.rand, now, err.retry_after)
            if not retryable:
                delay = max(delay, self.policy.cap_s)
            text = str(err)
        else:
            retryable, text = False, err
            delay = self.policy.cap_s
        until = now.timestamp() + delay
        self.store.record_failure(self.stream, text, until, now, blocked=not retryable)
        report.failures.append(text)
        report.waiting_until = until
        if not retryable:
            report.blocked = text
        log.warning(
            "upload_failed", stream=self.stream, error=text[:200], retry_in_s=round(delay, 3)
        )

    def _local_prefix(
        self, rows: list[PendingRecord], prev_hash: str
    ) -> tuple[list[PendingRecord], str | None]:
        """The rows whose chain verifies locally; and the problem with the first that does not."""
        good: list[PendingRecord] = []
        expected_seq = rows[0].seq if rows else 0
        for row in rows:
            if row.seq != expected_seq:
                return good, f"local outbox has a sequence gap before seq {row.seq}"
            if row.prev_hash != prev_hash:
                return good, f"local record seq {row.seq} does not link to the previous record"
            try:
                digest = hash_of(row_envelope(row, self.device_id, self.stream, self.centre_id))
            except ValueError:
                digest = None
            if digest != row.hash:
                return good, f"local record seq {row.seq} fails its hash check"
            good.append(row)
            prev_hash = row.hash
            expected_seq += 1
        return good, None

    def _envelope(self, row: PendingRecord, dead: DeadLetter | None) -> dict[str, Any]:
        env = row_envelope(row, self.device_id, self.stream, self.centre_id)
        env["hash"] = row.hash
        if dead is not None:
            env["quarantine"] = {
                "reason": dead.reason,
                "detail": dead.detail,
                "dead_at": dead.dead_at,
            }
        return env

    def _precheck(
        self, envelopes: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], DeadLetter | None]:
        """Send only the records that pass the spec locally. A record that fails is
        cut from the batch; when it is the first one it becomes a dead letter."""
        for i, env in enumerate(envelopes):
            if "quarantine" in env or schemas.is_valid("RecordEnvelope", env):
                continue
            if i > 0:
                return envelopes[:i], None
            problems = schemas.problems("RecordEnvelope", env)
            return [], DeadLetter(
                self.stream,
                env["seq"],
                env["record_id"],
                env["kind"],
                "schema_invalid",
                ("refused by the terminal before upload: " + "; ".join(problems[:3]))[:500],
                rfc3339(self.clock.now()),
                "pending",
            )
        return envelopes, None

    def _hash_at(self, seq: int) -> str | None:
        if seq == 0:
            return GENESIS
        row = self.source.read_one(seq)
        return row.hash if row else None

    def _resync(self, report: UploadReport, only_forward: bool = False) -> bool:
        """Align the high-water mark with the platform's head (after a seq_gap, or
        at the start with no acknowledgement state). Returns False when the stream
        had to be blocked or nothing could be learnt."""
        head = self.client.stream_head(self.device_id, self.stream)
        platform_last = int(head["next_seq"]) - 1
        current = self.store.stream_state(self.stream).acked_seq
        if only_forward and platform_last <= current:
            return True
        if platform_last == current:
            self._fail(
                report,
                PlatformError(
                    f"platform reported a sequence gap but its head is at our mark {current}",
                    retryable=True,
                    error="seq_gap",
                ),
                0,
            )
            return False
        local = self._hash_at(platform_last)
        now = self.clock.now()
        if local is None or local != head["head_hash"]:
            self._fail(
                report,
                f"platform holds seq 1..{platform_last} of stream {self.stream} but its chain "
                "differs from this terminal's (fork or lost records): needs district IT",
                0,
            )
            return False
        log.warning("upload_resync", stream=self.stream, platform_last=platform_last)
        self.store.rewind(
            self.stream, platform_last, local, f"resynced to platform head {platform_last}", now
        )
        report.acked_seq = platform_last
        return True

    # ------------------------------------------------------------------------------
    def run_once(
        self,
        *,
        max_batches: int | None = None,
        ignore_schedule: bool = False,
        stop: threading.Event | None = None,
    ) -> UploadReport:
        """Upload until the stream is drained, a failure schedules a retry, the stream
        is blocked, ``max_batches`` is reached or ``stop`` is set."""
        report = UploadReport(stream=self.stream)
        while True:
            if stop is not None and stop.is_set():
                break
            if max_batches is not None and report.batches >= max_batches:
                break
            state = self.store.stream_state(self.stream)
            report.acked_seq = state.acked_seq
            if not ignore_schedule and state.next_attempt_at > self._epoch():
                report.waiting_until = state.next_attempt_at
                report.blocked = state.blocked_reason
                break
            rows = self.source.read_after(state.acked_seq, self.batch_size)
            if not rows:
                report.drained = True
                break
            if state.acked_seq == 0 and not self._head_checked:
                # Fresh or lost sync.db: ask where the platform stands before resending.
                try:
                    if not self._resync(report, only_forward=True):
                        break
                except PlatformError as err:
                    self._fail(report, err, state.attempts)
                    break
                self._head_checked = True
                continue
            if rows[0].seq != state.acked_seq + 1:
                self._fail(
                    report, f"local outbox is missing seq {state.acked_seq + 1}", state.attempts
                )
                break
            rows, problem = self._local_prefix(rows, state.acked_hash)
            if not rows:
                self._fail(report, problem or "local chain problem", state.attempts)
                break
            dead = self.store.dead_letter_map(self.stream, state.acked_seq)
            envelopes = [self._envelope(r, dead.get(r.seq)) for r in rows]
            envelopes, local_dead = self._precheck(envelopes)
            if local_dead is not None:
                # The first record breaks the spec: dead-letter it here; the next
                # round sends it as a quarantined record.
                self.store.add_dead_letter(local_dead)
                report.dead_lettered += 1
                log.warning(
                    "record_dead_lettered",
                    stream=self.stream,
                    seq=local_dead.seq,
                    reason=local_dead.reason,
                )
                continue
            report.batches += 1
            report.sent += len(envelopes)
            try:
                reply = self.client.upload_batch(
                    self.device_id,
                    self.centre_id,
                    self.stream,
                    envelopes,
                    key_generation=self._generation,
                )
            except PlatformError as err:
                if err.status is not None and not err.retryable:
                    # The platform stores its final answer under the batch's
                    # Idempotency-Key and replays it: once the cause is fixed (a
                    # re-registration, a platform update), only a new key is heard.
                    self._new_generation()
                self._fail(report, err, state.attempts)
                break
            if not self._settle(
                report, state.acked_seq, state.acked_hash, envelopes, reply, state.attempts
            ):
                break
        return report

    def _settle(
        self,
        report: UploadReport,
        acked_seq: int,
        acked_hash: str,
        envelopes: list[dict[str, Any]],
        reply: dict[str, Any],
        attempts: int,
    ) -> bool:
        now = self.clock.now()
        hwm, hwm_hash = acked_seq, acked_hash
        notable: list[ResultEntry] = []
        new_dead: list[DeadLetter] = []
        q_updates: list[tuple[int, str]] = []
        blocked: str | None = None
        gap = False
        for env, res in zip(envelopes, reply["results"], strict=True):
            seq = env["seq"]
            quarantined = "quarantine" in env
            entry = ResultEntry(
                seq,
                env["record_id"],
                res["result"],
                res.get("stored_as"),
                res.get("reason"),
                res.get("detail"),
            )
            if res["result"] in ("accepted", "duplicate"):
                hwm, hwm_hash = seq, env["hash"]
                if quarantined:
                    q_updates.append((seq, "accepted"))
                    report.quarantined += 1
                    notable.append(entry)
                elif res["result"] == "duplicate":
                    report.duplicates += 1
                    notable.append(entry)
                else:
                    report.accepted += 1
                continue
            notable.append(entry)
            if res["retryable"]:
                gap = res.get("reason") == "seq_gap"
                break
            if quarantined:
                q_updates.append((seq, "refused"))
                blocked = (
                    f"record seq {seq} ({env['kind']}) was refused even as a quarantined record "
                    f"({res.get('reason')}): uploading of stream {self.stream} stopped; needs district IT"
                )
            else:
                report.dead_lettered += 1
                new_dead.append(
                    DeadLetter(
                        self.stream,
                        seq,
                        env["record_id"],
                        env["kind"],
                        str(res.get("reason")),
                        res.get("detail"),
                        rfc3339(now),
                        "pending",
                    )
                )
                log.warning(
                    "record_dead_lettered", stream=self.stream, seq=seq, reason=res.get("reason")
                )
            break
        self.store.apply_batch_outcome(
            self.stream, hwm, hwm_hash, notable, new_dead, q_updates, now
        )
        report.acked_seq = hwm
        if blocked:
            self._fail(report, blocked, attempts)
            return False
        if gap:
            # The platform is not where its earlier answers left it: nothing sent
            # from here on may be answered from what it stored before.
            self._new_generation()
            try:
                return self._resync(report)
            except PlatformError as err:
                self._fail(report, err, attempts)
                return False
        return True
