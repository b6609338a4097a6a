"""Helpers for the sync tests: a real terminal.db with outbox records, a device
key, and the reference platform server on loopback."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, select

from sync.auth import Signer, load_device_key, provision_device_key
from sync.client import PlatformClient
from sync.platform.server import Faults, PlatformHandle, serve
from sync.platform.store import IdempotencyRow, PlatformStore, RecordRow, StreamRow
from sync.samples import demo_datasets, sample_payload
from sync.store.kiosk_reader import KioskOutboxReader
from sync.store.outbox import SyncStore
from sync.uploader import Uploader
from terminal.core.clock import SystemClock
from terminal.core.ids import new_ulid
from terminal.db.database import open_database
from terminal.db.engine import write_session
from terminal.db.outbox import GENESIS, Outbox

DEVICE = "dev-01"
CENTRE = "centre-01"
KINDS = (
    "meal_transaction",
    "wallet_topup",
    "footfall_hourly",
    "attendance",
    "enrolment",
    "unenrolment",
    "meal_void",
    "meal_refund",
)


def append_records(
    db_url: str,
    n: int,
    start: int = 0,
    kinds: tuple[str, ...] = KINDS,
    payload_override: dict[int, dict] | None = None,
) -> list[str]:
    """Append ``n`` spec-valid records the way the kiosk does (Outbox.append in a
    write session on a real SQLite file). Returns their record ids."""
    db = open_database(db_url)
    clock = SystemClock()
    ob = Outbox(DEVICE, CENTRE)
    ids = []
    try:
        with write_session(db.sessions) as s:
            for i in range(start, start + n):
                kind = kinds[i % len(kinds)] if i % 4 == 0 else "meal_transaction"
                payload = (payload_override or {}).get(i) or sample_payload(kind, i, clock.now())
                rid = new_ulid()
                ob.append(s, kind, rid, payload, clock.now())
                ids.append(rid)
    finally:
        db.close()
    return ids


@dataclass
class Env:
    tmp: Path
    terminal_url: str
    sync_url: str
    key_path: Path
    public_key: str
    platform: PlatformHandle

    def client(self, **kw: object) -> PlatformClient:
        return PlatformClient(
            self.platform.url, Signer(DEVICE, load_device_key(self.key_path)), SystemClock(), **kw
        )  # type: ignore[arg-type]

    def uploader(
        self, client: PlatformClient, store: SyncStore, batch_size: int = 100, **kw: object
    ) -> Uploader:
        from sync.retry import BackoffPolicy

        return Uploader(
            store,
            client,
            KioskOutboxReader(self.terminal_url),
            DEVICE,
            CENTRE,
            SystemClock(),
            batch_size=batch_size,
            policy=BackoffPolicy(base_s=0.01, cap_s=0.05),
            **kw,
        )  # type: ignore[arg-type]


def make_env(tmp_path: Path) -> Env:
    key = tmp_path / "keys" / "device.pem"
    pub = provision_device_key(key)
    handle = serve(
        "127.0.0.1",
        0,
        f"sqlite:///{tmp_path}/platform.db",
        Faults(),
        seed={
            "devices": [{"device_id": DEVICE, "centre_id": CENTRE, "public_key": pub}],
            "datasets": demo_datasets(CENTRE),
        },
    )
    return Env(
        tmp_path,
        f"sqlite:///{tmp_path}/terminal.db",
        f"sqlite:///{tmp_path}/sync.db",
        key,
        pub,
        handle,
    )


def platform_answer_keys(store: PlatformStore) -> frozenset[str]:
    """Every Idempotency-Key the platform holds an answer for (a backup's view)."""
    with store.sessions() as s:
        return frozenset(s.scalars(select(IdempotencyRow.key)))


def platform_loses_records(
    store: PlatformStore,
    keep_seq: int,
    *,
    answers_from_backup: frozenset[str] | None = None,
    stream: str = "kiosk",
) -> None:
    """The platform loses every record of ``DEVICE``'s stream after ``keep_seq``
    that it had acknowledged, and its stream head moves back to ``keep_seq``.

    With ``answers_from_backup`` (the keys of :func:`platform_answer_keys` taken at
    backup time) it is a restored backup: the stored Idempotency-Key answers made
    since are lost too. Without it only the records go and every stored answer
    survives, the harsher case (answers that describe records no longer held)."""
    with store.sessions.begin() as s:
        kept = s.scalar(
            select(RecordRow.hash).where(
                RecordRow.device_id == DEVICE, RecordRow.stream == stream, RecordRow.seq == keep_seq
            )
        )
        s.execute(
            delete(RecordRow).where(
                RecordRow.device_id == DEVICE, RecordRow.stream == stream, RecordRow.seq > keep_seq
            )
        )
        head = s.get(StreamRow, (DEVICE, stream))
        assert head is not None
        head.next_seq = keep_seq + 1
        head.head_hash = kept if keep_seq else GENESIS
        if answers_from_backup is not None:
            s.execute(
                delete(IdempotencyRow).where(
                    IdempotencyRow.device_id == DEVICE,
                    IdempotencyRow.key.not_in(answers_from_backup),
                )
            )


def platform_loses_records_scenario(env: Env, *, from_backup: bool) -> None:
    """The platform loses records it had acknowledged (a database restored from a
    backup, or, with ``from_backup`` false, only the records without the stored
    Idempotency-Key answers). The terminal's next batch gets ``seq_gap``, it
    rewinds to the platform's head and resends. Batches after the rewind start at
    the same seqs as before, so their bodies repeat earlier ones byte for byte: a
    batch key derived from the body alone made the platform replay its stored
    answers (the stale ``seq_gap``, or ``accepted`` for records it no longer
    holds) for ever. Everything must arrive once, in order, chain intact."""
    ids = append_records(env.terminal_url, 20)
    store = SyncStore(env.sync_url)
    with env.client() as client:
        up = env.uploader(client, store, batch_size=10)
        assert up.run_once().acked_seq == 20
        backup = platform_answer_keys(env.platform.store)
        ids += append_records(env.terminal_url, 10, start=20)
        assert up.run_once().acked_seq == 30
        kept = backup if from_backup else None
        platform_loses_records(env.platform.store, 20, answers_from_backup=kept)
        assert client.stream_head(DEVICE, "kiosk")["next_seq"] == 21
        ids += append_records(env.terminal_url, 10, start=30)
        rep = up.run_once(max_batches=12)  # bounded: the defect looped for ever
        assert rep.drained and not rep.failures and rep.blocked is None, rep.failures
        assert rep.acked_seq == 40 and rep.accepted == 20
        # Lost again; the agent stops right after the seq_gap and a restarted one
        # (a new uploader) resumes from the rewound mark.
        platform_loses_records(env.platform.store, 30, answers_from_backup=kept)
        ids += append_records(env.terminal_url, 10, start=40)
        rep = up.run_once(max_batches=1)
        assert rep.sent == 10 and rep.accepted == 0 and rep.acked_seq == 30 and not rep.failures
        assert store.stream_state("kiosk").acked_seq == 30
        rep = env.uploader(client, store, batch_size=10).run_once(max_batches=12)
        assert rep.drained and not rep.failures and rep.acked_seq == 50 and rep.accepted == 20
    stored = env.platform.store.records(DEVICE)
    assert [r.record_id for r in stored] == ids and [r.seq for r in stored] == list(range(1, 51))
    assert env.platform.store.verify_chain(DEVICE) is None
    assert store.stream_state("kiosk").blocked_reason is None
    store.close()
