"""The reference platform on PostgreSQL: the real server, the real uploader and
puller, a real throw-away PostgreSQL server (tests/sync/pg_server.py), and the
stored rows checked with plain SQL through psycopg, independently of the store.

Skips (naming what is missing) only where PostgreSQL binaries or the psycopg
driver are absent."""

from __future__ import annotations

import base64
import json
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pg_server import PgServer, missing_reason, pg_server
from sync_helpers import CENTRE, DEVICE, Env, append_records, platform_loses_records_scenario

from sync import auth, schemas
from sync.auth import Signer, load_device_key, provision_device_key
from sync.client import PlatformClient, PlatformError, body_idempotency_key, encode_body
from sync.platform.server import Faults, serve
from sync.platform.store import PlatformStore, PlatformStoreError, PlatformUnavailable
from sync.pull import Puller
from sync.samples import demo_datasets, sample_payload
from sync.store.outbox import SyncStore
from sync.store.status import latest_dataset
from terminal.core.clock import SystemClock
from terminal.db.outbox import GENESIS, hash_of, record_hash

pytestmark = pytest.mark.skipif(missing_reason() is not None, reason=str(missing_reason()))

NOW = SystemClock().now()
REPO = Path(__file__).resolve().parents[2]


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer]:
    with pg_server() as server:
        yield server


@dataclass
class PgEnv(Env):
    dbname: str
    pg: PgServer

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        """Plain SQL against the platform database, bypassing the store."""
        import psycopg

        with psycopg.connect(self.pg.dsn(self.dbname)) as conn:
            return list(conn.execute(query, args).fetchall())


def _make_pg_env(tmp_path: Path, pg: PgServer) -> PgEnv:
    key = tmp_path / "keys" / "device.pem"
    pub = provision_device_key(key)
    dbname = pg.create_database()
    handle = serve(
        "127.0.0.1",
        0,
        pg.url(dbname),
        Faults(),
        seed={
            "devices": [{"device_id": DEVICE, "centre_id": CENTRE, "public_key": pub}],
            "datasets": demo_datasets(CENTRE),
        },
    )
    return PgEnv(
        tmp_path,
        f"sqlite:///{tmp_path}/terminal.db",
        f"sqlite:///{tmp_path}/sync.db",
        key,
        pub,
        handle,
        dbname,
        pg,
    )


@pytest.fixture
def penv(tmp_path: Path, pg: PgServer) -> Iterator[PgEnv]:
    e = _make_pg_env(tmp_path, pg)
    try:
        yield e
    finally:
        e.platform.stop()


# -- helpers --------------------------------------------------------------------------------


def _post(env: Env, body: bytes, key: str) -> httpx.Response:
    signer = Signer(DEVICE, load_device_key(env.key_path))
    headers = {"Idempotency-Key": key, "Content-Type": "application/json"}
    created = int(SystemClock().now().timestamp())
    headers.update(signer.sign("POST", "/v1/batches", "", body, headers, created=created))
    return httpx.post(env.platform.url + "/v1/batches", content=body, headers=headers)


def _envelope(seq: int, prev: str, rid: str | None = None, **over: Any) -> dict[str, Any]:
    rid = rid or f"01JBBBBBBBBBBBBBBBBBBBB{seq:03d}"
    payload = sample_payload("meal_transaction", seq, NOW)
    rec = {
        "device_id": DEVICE,
        "centre_id": CENTRE,
        "stream": "kiosk",
        "seq": seq,
        "record_id": rid,
        "kind": "meal_transaction",
        "created_at": "2026-01-05T11:30:00.000+08:00",
        "prev_hash": prev,
        "hash": record_hash(DEVICE, seq, prev, "meal_transaction", rid, payload),
        "payload": payload,
    }
    rec.update(over)
    return rec


def _batch(*records: dict[str, Any], stream: str = "kiosk") -> bytes:
    return encode_body(
        {"device_id": DEVICE, "centre_id": CENTRE, "stream": stream, "records": list(records)}
    )


def _check_chain_in_sql(env: PgEnv, expected: int) -> None:
    """Count, contiguity, links and hashes of the stored rows, read with plain SQL."""
    rows = env.sql(
        "SELECT seq, record_id, kind, prev_hash, hash, payload, centre_id, created_at "
        "FROM records WHERE device_id = %s AND stream = 'kiosk' ORDER BY seq",
        DEVICE,
    )
    assert len(rows) == expected
    assert env.sql("SELECT count(*) FROM records")[0][0] == expected
    prev = GENESIS
    for i, (seq, rid, kind, prev_hash, digest, payload, centre, created) in enumerate(rows, 1):
        assert seq == i and prev_hash == prev
        envelope = {
            "device_id": DEVICE,
            "centre_id": centre,
            "stream": "kiosk",
            "seq": seq,
            "record_id": rid,
            "kind": kind,
            "created_at": created,
            "prev_hash": prev_hash,
            "payload": json.loads(payload),
        }
        # the row holds no hash version: it is one of the two (version 2, or 1)
        assert digest in (hash_of({**envelope, "hash_version": 2}), hash_of(envelope))
        prev = digest
    head = env.sql(
        "SELECT next_seq, head_hash FROM streams WHERE device_id = %s AND stream = 'kiosk'", DEVICE
    )
    assert head == [(expected + 1, prev)]


# -- tests ----------------------------------------------------------------------------------


def test_schema_on_postgres_has_distinct_named_constraints(penv: PgEnv) -> None:
    cons = {
        name: definition
        for name, definition in penv.sql(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'records'::regclass"
        )
    }
    assert cons["uq_records_device_stream_seq"] == "UNIQUE (device_id, stream, seq)"
    assert cons["uq_records_device_record_id"] == "UNIQUE (device_id, record_id)"
    # Nonce timestamps are 64-bit (past 2038) on PostgreSQL.
    assert penv.sql(
        "SELECT data_type FROM information_schema.columns "
        "WHERE table_name = 'nonces' AND column_name = 'created'"
    ) == [("bigint",)]


def test_upload_replay_and_refusals_store_an_exact_chain(penv: PgEnv) -> None:
    ids = append_records(penv.terminal_url, 300)
    store = SyncStore(penv.sync_url)
    with penv.client() as client:
        rep = penv.uploader(client, store, batch_size=100).run_once()
        assert rep.drained and rep.accepted == 300 and rep.acked_seq == 300 and not rep.failures
        _check_chain_in_sql(penv, 300)
        stored_ids = [r[0] for r in penv.sql("SELECT record_id FROM records ORDER BY seq")]
        assert stored_ids == ids
        # Lost acknowledgement state: the platform head lets the terminal resume.
        store.rewind("kiosk", 0, GENESIS, "test", NOW)
        rep = penv.uploader(client, store).run_once()
        assert rep.drained and rep.sent == 0 and store.stream_state("kiosk").acked_seq == 300
        # Records re-sent in other batches are duplicates, stored once.
        h100 = penv.platform.store.records(DEVICE)[99].hash
        store.rewind("kiosk", 100, h100, "test", NOW)
        rep = penv.uploader(client, store, batch_size=70).run_once()
        assert rep.drained and rep.duplicates == 200 and rep.accepted == 0
    store.close()
    _check_chain_in_sql(penv, 300)

    head = penv.sql("SELECT head_hash FROM streams")[0][0]
    rec = _envelope(301, head)
    body = _batch(rec)
    key = body_idempotency_key(body)
    first = _post(penv, body, key)
    again = _post(penv, body, key)  # new signature and nonce, same key and body
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json() and first.json()["results"][0]["result"] == "accepted"
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers.get("Idempotent-Replayed") == "true"
    schemas.validate("BatchResponse", again.json())

    reused = _post(penv, _batch(_envelope(302, rec["hash"])), key)  # same key, other body
    assert reused.status_code == 422 and reused.json()["error"] == "idempotency_key_reused"
    schemas.validate("Error", reused.json())

    dup = _post(penv, body + b" ", "another-key")  # the same record under a new key
    assert dup.status_code == 200
    assert dup.json()["results"][0]["result"] == "duplicate"

    def only(resp: httpx.Response) -> dict[str, Any]:
        assert resp.status_code == 200, resp.text
        schemas.validate("BatchResponse", resp.json())
        return dict(resp.json()["results"][0])

    gap = only(_post(penv, _batch(_envelope(305, rec["hash"])), "gap-key"))
    assert (gap["result"], gap["reason"], gap["expected_seq"], gap["retryable"]) == (
        "rejected",
        "seq_gap",
        302,
        True,
    )
    bad_hash = only(_post(penv, _batch(_envelope(302, rec["hash"], hash="f" * 64)), "hash-key"))
    assert (bad_hash["reason"], bad_hash["retryable"]) == ("hash_mismatch", False)
    broken = only(_post(penv, _batch(_envelope(302, "e" * 64)), "chain-key"))
    assert broken["reason"] == "chain_broken"
    rid_again = only(_post(penv, _batch(_envelope(302, rec["hash"], rid=ids[0])), "rid-key"))
    assert rid_again["reason"] == "seq_conflict"  # one code for a held id or seq (spec)
    conflict = only(_post(penv, _batch(_envelope(5, GENESIS)), "conflict-key"))
    assert conflict["reason"] == "seq_conflict"

    _check_chain_in_sql(penv, 301)
    assert penv.platform.store.verify_chain(DEVICE) is None
    assert penv.sql("SELECT count(*) FROM idempotency_keys WHERE key = %s", key) == [(1,)]


@pytest.mark.parametrize("from_backup", [True, False], ids=["restored_from_backup", "kept"])
def test_platform_losing_acknowledged_records_is_resent_not_replayed(
    penv: PgEnv, from_backup: bool
) -> None:
    platform_loses_records_scenario(penv, from_backup=from_backup)
    _check_chain_in_sql(penv, 50)


def test_pulls_with_etags_and_consent_cursor(penv: PgEnv) -> None:
    store = SyncStore(penv.sync_url)
    with penv.client() as client:
        puller = Puller(store, client, CENTRE, SystemClock())
        assert {o.kind: o.status for o in puller.pull_all()} == {
            k: "updated" for k in schemas.DATASET_KINDS
        }
        assert {o.kind: o.status for o in puller.pull_all(ignore_schedule=True)} == {
            k: "unchanged" for k in schemas.DATASET_KINDS
        }
        menu = client.get_dataset(CENTRE, "menu")
        assert menu is not None and menu.etag.startswith("menu-v1-")
        assert client.get_dataset(CENTRE, "menu", etag=menu.etag) is None  # 304
        data = dict(menu.doc["data"])
        data["items"] = data["items"][:1]
        penv.platform.store.put_dataset(CENTRE, "menu", data, NOW)
        assert client.get_dataset(CENTRE, "menu", etag=menu.etag) is not None  # changed
        assert puller.pull("menu", ignore_schedule=True).status == "updated"
        v2 = latest_dataset(penv.sync_url, "menu")
        assert v2 is not None and v2.version == 2 and len(v2.data["items"]) == 1
        assert penv.sql("SELECT version FROM datasets WHERE kind = 'menu'") == [(2,)]

        for i, face_pay in enumerate((False, True, False)):
            penv.platform.store.add_consent_change(
                CENTRE,
                {
                    "change_id": f"01JCCCCCCCCCCCCCCCCCCCC{i:03d}",
                    "resident_id": "R00001",
                    "consent_face_pay": face_pay,
                    "consent_attendance": None,
                    "changed_at": "2026-01-05T11:30:00.000+08:00",
                    "source": "platform_app",
                },
            )
        assert puller.pull("consent_changes", ignore_schedule=True).status == "updated"
        consent = latest_dataset(penv.sync_url, "consent_changes")
        assert consent is not None and consent.cursor == "3"
        assert consent.data["consents"]["R00001"]["consent_face_pay"] is False
        # A cursor beyond PostgreSQL's 32-bit ids is an empty page, not a server error.
        far = client.get_dataset(CENTRE, "consent_changes", cursor="99999999999")
        assert far is not None and far.doc["changes"] == [] and not far.doc["has_more"]
    store.close()


def test_concurrent_first_batches_race_for_the_stream_head(penv: PgEnv) -> None:
    """SQLite serialises writers; PostgreSQL lets these race to create the stream's
    head row. Same key and body: one answer for all. Other keys: one accepted, the
    rest duplicates. Never an error, never a record twice."""
    rec = _envelope(1, GENESIS)
    body = _batch(rec)
    key = body_idempotency_key(body)
    n = 8
    bodies = [(body, key)] * n + [(body + b" " * (i + 1), f"other-{i}") for i in range(n)]
    gate = threading.Barrier(len(bodies))
    answers: list[httpx.Response | BaseException] = [ValueError("not run")] * len(bodies)

    def send(i: int) -> None:
        b, k = bodies[i]
        gate.wait()
        try:
            answers[i] = _post(penv, b, k)
        except BaseException as exc:  # reported below with the index
            answers[i] = exc

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    codes = [a.status_code if isinstance(a, httpx.Response) else repr(a) for a in answers]
    assert codes == [200] * len(bodies)
    replies = [a for a in answers if isinstance(a, httpx.Response)]
    same_key, others = replies[:n], replies[n:]
    assert all(r.json() == same_key[0].json() for r in same_key)
    assert [r.headers.get("Idempotent-Replayed") for r in same_key].count(None) == 1
    outcomes = [same_key[0].json()["results"][0]["result"]]
    outcomes += [r.json()["results"][0]["result"] for r in others]
    assert sorted(outcomes) == ["accepted"] + ["duplicate"] * n  # exactly one applied it
    assert penv.sql("SELECT count(*), min(seq), max(seq) FROM records") == [(1, 1, 1)]
    assert penv.sql("SELECT next_seq, head_hash FROM streams") == [(2, rec["hash"])]
    assert penv.sql("SELECT count(*) FROM idempotency_keys") == [(n + 1,)]


def _signed_raw_get(env: Env, path: str, nonce: str, keyid: str) -> bytes:
    """A request with signature parameters the client library refuses to produce
    (a NUL character), signed with the device key, sent over a raw socket."""
    comps = auth._BASE_COMPONENTS
    quoted = " ".join(f'"{c}"' for c in comps)
    created = int(SystemClock().now().timestamp())
    params = f'({quoted});created={created};nonce="{nonce}";keyid="{keyid}";alg="ed25519"'
    digest = auth.content_digest(b"")
    base = auth.signature_base("GET", path, "", {"content-digest": digest}, comps, params)
    sig = base64.b64encode(load_device_key(env.key_path).sign(base)).decode("ascii")
    host, port = env.platform.address
    req = (
        f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Digest: {digest}\r\n"
        f"Signature-Input: sig1={params}\r\nSignature: sig1=:{sig}:\r\n\r\n"
    )
    with socket.create_connection((str(host), int(port)), timeout=10) as s:
        s.sendall(req.encode("latin-1"))
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


@pytest.mark.parametrize(
    ("what", "record", "reason"),
    [
        ("seq below PostgreSQL's INTEGER", {"seq": -(2**40)}, "schema_invalid"),
        ("NUL in record_id", {"record_id": "01JBBBBBBBBBBBBBBBBBBBB\x0001"}, "schema_invalid"),
        ("over-long record_id", {"record_id": "0" * 300}, "schema_invalid"),
    ],
)
def test_malformed_records_get_per_record_answers(
    penv: PgEnv, what: str, record: dict[str, Any], reason: str
) -> None:
    """Values PostgreSQL cannot bind are answered per record, as on SQLite."""
    good = _envelope(1, GENESIS)
    bad = {**_envelope(2, good["hash"]), **record}
    resp = _post(penv, _batch(good, bad), f"bad-{len(what)}")
    assert resp.status_code == 200, what
    results = resp.json()["results"]
    assert [r["result"] for r in results] == ["accepted", "rejected"]
    assert results[1]["reason"] == reason
    assert penv.sql("SELECT count(*) FROM records") == [(1,)]


def test_nul_characters_never_reach_postgres(penv: PgEnv) -> None:
    path = f"/v1/devices/{DEVICE}/streams/kiosk"
    # A NUL in a header field is not HTTP (RFC 9110 section 5.5): the server's HTTP
    # parser refuses the request (a JSON 400) before the platform sees it.
    for keyid, nonce in (("dev\x0001", "n" * 20), (DEVICE, "nonce-\x00-with-nul")):
        answer = _signed_raw_get(penv, path, nonce, keyid)
        assert answer.startswith(b"HTTP/1.1 400") and b'"malformed_request"' in answer
    assert penv.sql("SELECT count(*) FROM nonces") == [(0,)]
    # The store refuses them on its own too (a NUL cannot be stored or compared).
    assert penv.platform.store.device("dev\x0001") is None
    assert penv.platform.store.remember_nonce(DEVICE, "nonce-\x00-with-nul", 1, 1, 300)
    # A quarantined re-send keeps its free-text detail (NUL shown as U+FFFD).
    rec = _envelope(1, GENESIS)
    rec["payload"] = {"anything": True}  # quarantined records skip payload validation
    rec["hash"] = record_hash(DEVICE, 1, GENESIS, rec["kind"], rec["record_id"], rec["payload"])
    rec["quarantine"] = {
        "reason": "schema_invalid",
        "detail": "bad\x00detail",
        "dead_at": "2026-01-05T11:31:00.000+08:00",
    }
    resp = _post(penv, _batch(rec), "quarantine-key")
    assert resp.status_code == 200
    assert resp.json()["results"][0]["stored_as"] == "quarantined"
    assert penv.sql("SELECT stored_as, quarantine_detail FROM records") == [
        ("quarantined", "bad\ufffddetail")
    ]
    # Registration refuses ids PostgreSQL could not store (and SQLite gets the same rule).
    with pytest.raises(PlatformStoreError, match="device id"):
        penv.platform.store.register_device("d" * 65, CENTRE, penv.public_key, NOW)


def test_database_restart_answers_503_then_recovers(tmp_path: Path) -> None:
    with pg_server() as own:
        env = _make_pg_env(tmp_path, own)
        try:
            append_records(env.terminal_url, 40)
            store = SyncStore(env.sync_url)
            with env.client() as client:
                up = env.uploader(client, store, batch_size=20)
                assert up.run_once().acked_seq == 40
                own.stop()  # PostgreSQL goes away under a running platform
                with pytest.raises(PlatformError) as info:
                    client.stream_head(DEVICE, "kiosk")
                assert info.value.status == 503 and info.value.error == "unavailable"
                assert info.value.retryable
                append_records(env.terminal_url, 20, start=40)
                rep = up.run_once(ignore_schedule=True)
                assert rep.failures and "503" in rep.failures[0] and rep.acked_seq == 40
                own.start()
                # The pool replaces its dead connections itself: no 503 after the restart.
                assert client.stream_head(DEVICE, "kiosk")["next_seq"] == 41
                rep = up.run_once(ignore_schedule=True)
                assert rep.drained and rep.acked_seq == 60 and rep.accepted == 20
            store.close()
            _check_chain_in_sql(env, 60)
        finally:
            env.platform.stop()


def test_command_line_server_on_a_postgres_url(tmp_path: Path, pg: PgServer) -> None:
    key = tmp_path / "keys" / "device.pem"
    pub = provision_device_key(key)
    dbname = pg.create_database("cli")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sync.platform.server",
            "serve",
            "--port",
            "0",
            "--db",
            pg.url(dbname),
            "--register",
            f"{DEVICE}:{CENTRE}:{pub}",
            "--print-url",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        url = json.loads(line)["url"]
        with PlatformClient(url, Signer(DEVICE, load_device_key(key)), SystemClock()) as client:
            assert client.stream_head(DEVICE, "kiosk")["next_seq"] == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    store = PlatformStore(pg.url(dbname))
    try:
        device = store.device(DEVICE)
        assert device is not None and device.centre_id == CENTRE
    finally:
        store.close()
    # `platform serve` migrated the fresh database to the head revision
    import psycopg

    from sync.platform.migrate import VERSION_TABLE, head_revision

    with psycopg.connect(pg.dsn(dbname)) as conn:
        held = conn.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchall()
    assert held == [(head_revision(),)]


@pytest.mark.parametrize("url", ["nosuchdialect://x/y", "postgresql+psycopg//user:pw@host/db"])
def test_unusable_database_url_is_a_clear_error(url: str) -> None:
    with pytest.raises(PlatformStoreError, match="cannot open") as info:
        PlatformStore(url)
    assert "pw" not in str(info.value) and info.value.code == "bad_database_url"


def test_unreachable_postgres_at_start_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PlatformUnavailable, match="unavailable"):
        PlatformStore(f"postgresql+psycopg://nobody@/platform?host={tmp_path}&port=1")
