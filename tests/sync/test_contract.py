"""Contract tests against the real reference platform on loopback: every message
validated on both sides, idempotency rules, dead letters and quarantine,
invalid replies, pulls swapped whole."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import timedelta

import httpx
import pytest
from sync_helpers import (
    CENTRE,
    DEVICE,
    Env,
    append_records,
    platform_loses_records_scenario,
)

from sync import schemas
from sync.auth import Signer, load_device_key
from sync.client import PlatformError, ReplyInvalid, body_idempotency_key, encode_body
from sync.platform.server import Faults
from sync.pull import Puller
from sync.samples import sample_payload
from sync.store.outbox import SyncStore
from sync.store.status import latest_dataset, sync_status
from terminal.core.clock import SystemClock

NOW = SystemClock().now()


def _store(env: Env) -> SyncStore:
    return SyncStore(env.sync_url)


def test_upload_then_replay_is_all_duplicates_and_chain_valid(env: Env) -> None:
    append_records(env.terminal_url, 250)
    store = _store(env)
    with env.client() as client:
        rep = env.uploader(client, store).run_once()
        assert rep.drained and rep.accepted == 250 and rep.acked_seq == 250
        assert env.platform.store.verify_chain(DEVICE) is None
        # Lose the acknowledgement state: the platform's head lets the terminal resume
        # without resending anything.
        store.rewind("kiosk", 0, "0" * 64, "test", NOW)
        rep2 = env.uploader(client, store).run_once()
        assert rep2.drained and rep2.sent == 0 and store.stream_state("kiosk").acked_seq == 250
        # Resending known records in other batches: each answered as a duplicate.
        h100 = env.platform.store.records(DEVICE)[99].hash
        store.rewind("kiosk", 100, h100, "test", NOW)
        rep3 = env.uploader(client, store, batch_size=70).run_once()
        assert rep3.drained and rep3.duplicates == 150 and rep3.accepted == 0
        assert store.stream_state("kiosk").acked_seq == 250
    assert env.platform.store.record_count() == 250
    store.close()


@pytest.mark.parametrize("answers", ["restored_from_backup", "kept"])
def test_platform_losing_acknowledged_records_is_resent_not_replayed(
    env: Env, answers: str
) -> None:
    platform_loses_records_scenario(env, from_backup=answers == "restored_from_backup")


def test_batch_key_follows_body_and_send_generation() -> None:
    import hashlib

    body = encode_body({"records": [1]})
    other = encode_body({"records": [2]})
    key = body_idempotency_key(body, "a1b2c3d4e5f60718")
    assert key == "batch-" + hashlib.sha256(b"a1b2c3d4e5f60718\n" + body).hexdigest()[:32]
    assert body_idempotency_key(body, "a1b2c3d4e5f60718") == key  # a retry replays
    assert body_idempotency_key(body, "0011223344556677") != key  # a new generation
    assert body_idempotency_key(other, "a1b2c3d4e5f60718") != key
    assert body_idempotency_key(body) == "batch-" + hashlib.sha256(body).hexdigest()[:32]


def _now_s() -> int:
    """Signing time: now, not the module's import time (the platform allows a
    few minutes of skew, and a full test run takes longer than that)."""
    return int(time.time())


def _raw_post(env: Env, body: bytes, key: str) -> httpx.Response:
    signer = Signer(DEVICE, load_device_key(env.key_path))
    headers = {"Idempotency-Key": key, "Content-Type": "application/json"}
    headers.update(signer.sign("POST", "/v1/batches", "", body, headers, created=_now_s()))
    return httpx.post(env.platform.url + "/v1/batches", content=body, headers=headers)


def _envelope(
    seq: int, prev: str, kind: str = "meal_transaction", payload: dict | None = None
) -> dict:
    from terminal.db.outbox import record_hash

    rid = f"01JAAAAAAAAAAAAAAAAAAAA{seq:03d}"
    payload = payload or sample_payload(kind, seq, NOW)
    return {
        "device_id": DEVICE,
        "centre_id": CENTRE,
        "stream": "kiosk",
        "seq": seq,
        "record_id": rid,
        "kind": kind,
        "created_at": "2026-01-05T11:30:00.000+08:00",
        "prev_hash": prev,
        "hash": record_hash(DEVICE, seq, prev, kind, rid, payload),
        "payload": payload,
    }


def test_idempotency_key_same_body_replays_and_different_body_is_422(env: Env) -> None:
    rec = _envelope(1, "0" * 64)
    body = encode_body(
        {"device_id": DEVICE, "centre_id": CENTRE, "stream": "kiosk", "records": [rec]}
    )
    key = body_idempotency_key(body)
    first = _raw_post(env, body, key)
    again = _raw_post(env, body, key)  # a new signature/nonce, same key and body
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert first.json()["results"][0]["result"] == "accepted"
    assert again.headers.get("Idempotent-Replayed") == "true"
    schemas.validate("BatchResponse", first.json())
    other = encode_body(
        {
            "device_id": DEVICE,
            "centre_id": CENTRE,
            "stream": "kiosk",
            "records": [_envelope(2, rec["hash"])],
        }
    )
    reused = _raw_post(env, other, key)
    assert reused.status_code == 422
    assert reused.json()["error"] == "idempotency_key_reused"
    schemas.validate("Error", reused.json())
    # Same record under a new key: answered per record as a duplicate.
    dup = _raw_post(env, body.replace(b'"records"', b'"records"', 1) + b" ", "another-key")
    assert dup.status_code == 200 and dup.json()["results"][0]["result"] == "duplicate"


def test_replayed_signed_request_and_stale_or_forged_signatures_are_refused(env: Env) -> None:
    signer = Signer(DEVICE, load_device_key(env.key_path))
    path = f"/v1/devices/{DEVICE}/streams/kiosk"
    hdrs = signer.sign("GET", path, "", b"", {}, created=_now_s())
    ok = httpx.get(env.platform.url + path, headers=hdrs)
    assert ok.status_code == 200
    schemas.validate("StreamHead", ok.json())
    replay = httpx.get(env.platform.url + path, headers=hdrs)
    assert replay.status_code == 401 and replay.json()["error"] == "replayed_request"
    stale = signer.sign("GET", path, "", b"", {}, created=_now_s() - 3600)
    r = httpx.get(env.platform.url + path, headers=stale)
    assert r.status_code == 401 and r.json()["error"] == "clock_skew"
    forged = signer.sign(
        "GET", f"/v1/devices/{DEVICE}/streams/agent", "", b"", {}, created=_now_s()
    )
    r = httpx.get(env.platform.url + path, headers=forged)  # signature for another path
    assert r.status_code == 401 and r.json()["error"] == "bad_signature"
    r = httpx.get(env.platform.url + path)
    assert r.status_code == 401


def test_client_adopts_platform_clock_after_clock_skew(env: Env) -> None:
    env.platform.server.clock_offset_s = 3600  # the terminal's clock is an hour slow
    with env.client() as client:
        head = client.stream_head(DEVICE, "kiosk")
        assert head["next_seq"] == 1
        assert abs(client.clock_offset_s - 3600) <= 2


def test_schema_violating_reply_is_rejected_and_nothing_is_lost(env: Env) -> None:
    append_records(env.terminal_url, 30)
    env.platform.server.faults = Faults(bad_reply_rate=1.0)
    store = _store(env)
    with env.client() as client:
        up = env.uploader(client, store, batch_size=10)
        rep = up.run_once(ignore_schedule=True)
        assert rep.acked_seq == 0 and rep.accepted == 0
        assert "violates the data spec" in rep.failures[0]
        assert store.stream_state("kiosk").acked_seq == 0
        with pytest.raises(ReplyInvalid, match="violates the data spec"):
            client.get_dataset(CENTRE, "menu")
        # The platform did commit the first batch; once replies are sane again the
        # same batch (same Idempotency-Key and body) gets the first answer replayed.
        env.platform.server.faults = Faults()
        rep = up.run_once(ignore_schedule=True)
        assert rep.drained and rep.acked_seq == 30 and rep.accepted == 30
    assert env.platform.store.record_count() == 30
    store.close()


def test_final_rejection_dead_letters_then_quarantines_and_later_records_flow(env: Env) -> None:
    bad = sample_payload("meal_transaction", 3, NOW)
    bad["amount_due_fen"] += 1  # arithmetic the schema cannot see
    bad2 = sample_payload("meal_transaction", 5, NOW)
    bad2["slot"] = "brunch"  # schema violation
    append_records(env.terminal_url, 12, payload_override={3: bad, 5: bad2})
    store = _store(env)
    with env.client() as client:
        rep = env.uploader(client, store, batch_size=50).run_once()
    assert rep.drained and rep.acked_seq == 12
    assert rep.dead_lettered == 2 and rep.quarantined == 2
    dead = store.dead_letters("kiosk")
    assert [(d.seq, d.reason, d.quarantine) for d in dead] == [
        (4, "amount_mismatch", "accepted"),
        (6, "schema_invalid", "accepted"),
    ]
    assert "张" not in (dead[1].detail or "") and "brunch" not in (dead[1].detail or "")
    stored = env.platform.store.records(DEVICE)
    assert [r.seq for r in stored] == list(range(1, 13))
    assert [r.seq for r in stored if r.stored_as == "quarantined"] == [4, 6]
    assert env.platform.store.verify_chain(DEVICE) is None
    st = sync_status(env.terminal_url, env.sync_url, NOW + timedelta(seconds=5))
    assert st.queue_depth == 0 and st.dead_letter_count == 2 and st.blocked_streams == []
    store.close()


def test_tampered_local_record_blocks_the_stream_and_is_never_sent(env: Env) -> None:
    append_records(env.terminal_url, 10)
    conn = sqlite3.connect(env.tmp / "terminal.db")
    row = conn.execute("SELECT payload FROM outbox WHERE seq=7").fetchone()
    doc = json.loads(row[0])
    doc["amount_due_fen"] = 0
    conn.execute("UPDATE outbox SET payload=? WHERE seq=7", (json.dumps(doc),))
    conn.commit()
    conn.close()
    store = _store(env)
    with env.client() as client:
        up = env.uploader(client, store, batch_size=50)
        up.run_once()
        rep = up.run_once(ignore_schedule=True)
    assert rep.blocked and "seq 7 fails its hash check" in rep.blocked
    assert store.stream_state("kiosk").acked_seq == 6
    assert [r.seq for r in env.platform.store.records(DEVICE)] == [1, 2, 3, 4, 5, 6]
    st = sync_status(env.terminal_url, env.sync_url, NOW)
    assert st.blocked_streams == ["kiosk"] and st.streams["kiosk"].queue_depth == 4
    store.close()


def test_platform_fork_blocks_instead_of_guessing(env: Env) -> None:
    append_records(env.terminal_url, 5)
    store = _store(env)
    with env.client() as client:
        env.uploader(client, store).run_once()
    # A restored-from-backup terminal: a fresh outbox with other records, same device.
    (env.tmp / "terminal.db").unlink()
    for side in ("-wal", "-shm"):
        (env.tmp / f"terminal.db{side}").unlink(missing_ok=True)
    append_records(env.terminal_url, 3)
    store.rewind("kiosk", 0, "0" * 64, "test", NOW)
    with env.client() as client:
        rep = env.uploader(client, store).run_once()
    assert rep.blocked and "fork" in rep.blocked and rep.sent == 0
    assert store.dead_letters("kiosk") == []
    assert sync_status(env.terminal_url, env.sync_url, NOW).blocked_streams == ["kiosk"]
    assert env.platform.store.record_count() == 5
    store.close()


def test_http_final_errors_never_dead_letter(env: Env) -> None:
    append_records(env.terminal_url, 3)
    env.platform.store.revoke_device(DEVICE)
    store = _store(env)
    with env.client() as client:
        rep = env.uploader(client, store).run_once()
    assert rep.blocked and "403" in rep.blocked
    assert store.dead_letters() == [] and store.stream_state("kiosk").acked_seq == 0
    store.close()


def test_retryable_errors_wait_for_retry_after(env: Env) -> None:
    append_records(env.terminal_url, 3)
    env.platform.server.faults = Faults(retry_after_rate=1.0, retry_after_s=7)
    store = _store(env)
    with env.client() as client:
        rep = env.uploader(client, store).run_once()
    assert rep.failures and rep.waiting_until is not None and rep.blocked is None
    wait = rep.waiting_until - SystemClock().now().timestamp()
    assert 5.0 < wait <= 7.5
    st = store.stream_state("kiosk")
    assert st.attempts == 1 and st.acked_seq == 0
    store.close()


def test_pulls_are_conditional_validated_and_swapped_whole(env: Env) -> None:
    store = _store(env)
    with env.client() as client:
        puller = Puller(store, client, CENTRE, SystemClock())
        first = {o.kind: o.status for o in puller.pull_all()}
        assert first == {k: "updated" for k in schemas.DATASET_KINDS}
        again = {o.kind: o.status for o in puller.pull_all(ignore_schedule=True)}
        assert again == {k: "unchanged" for k in schemas.DATASET_KINDS}
        menu_v1 = latest_dataset(env.sync_url, "menu")
        assert menu_v1 is not None and menu_v1.version == 1
        # A new menu version arrives.
        data = dict(menu_v1.data)
        data["items"] = data["items"][:1]
        env.platform.store.put_dataset(CENTRE, "menu", data, NOW)
        assert puller.pull("menu", ignore_schedule=True).status == "updated"
        menu_v2 = latest_dataset(env.sync_url, "menu")
        assert menu_v2 is not None and menu_v2.version == 2 and len(menu_v2.data["items"]) == 1
        # A roster that breaks a rule the schema cannot express is refused whole.
        roster = latest_dataset(env.sync_url, "roster")
        assert roster is not None
        broken = json.loads(json.dumps(roster.data))
        broken["residents"][1]["resident_id"] = broken["residents"][0]["resident_id"]
        env.platform.store.put_dataset(CENTRE, "roster", broken, NOW)
        out = puller.pull("roster", ignore_schedule=True)
        assert out.status == "failed" and "duplicate resident_id" in (out.error or "")
        kept = latest_dataset(env.sync_url, "roster")
        assert kept is not None and kept.version == 1 and kept.data == roster.data
        # Consent changes arrive by cursor and are folded into one document.
        for i, fp in enumerate((False, True, False)):
            env.platform.store.add_consent_change(
                CENTRE,
                {
                    "change_id": f"01JAAAAAAAAAAAAAAAAAAAA{i:03d}",
                    "resident_id": "R00001",
                    "consent_face_pay": fp,
                    "consent_attendance": None,
                    "changed_at": "2026-01-05T11:30:00.000+08:00",
                    "source": "platform_app",
                },
            )
        assert puller.pull("consent_changes", ignore_schedule=True).status == "updated"
        consent = latest_dataset(env.sync_url, "consent_changes")
        assert consent is not None and consent.cursor == "3"
        assert consent.data["consents"]["R00001"]["consent_face_pay"] is False
        assert puller.pull("consent_changes", ignore_schedule=True).status == "unchanged"
    store.close()


def test_encrypted_datasets_need_the_key(env: Env, tmp_path) -> None:
    from terminal.core.errors import StorageError
    from terminal.db.crypto import FieldCipher, load_or_create_key

    cipher = FieldCipher(load_or_create_key(tmp_path / "k" / "data.key"))
    store = SyncStore(env.sync_url, cipher)
    with env.client() as client:
        Puller(store, client, CENTRE, SystemClock()).pull("roster")
    raw = (env.tmp / "sync.db").read_bytes() + (env.tmp / "sync.db-wal").read_bytes()
    assert "张桂华".encode() not in raw
    ds = latest_dataset(env.sync_url, "roster", cipher)
    assert ds is not None and ds.data["residents"][0]["name"] == "张桂华"
    with pytest.raises(StorageError, match="data key"):
        latest_dataset(env.sync_url, "roster")
    store.close()


def test_unreachable_platform_is_retryable(env: Env) -> None:
    url = env.platform.url
    env.platform.stop()
    from sync.client import PlatformClient

    client = PlatformClient(
        url, Signer(DEVICE, load_device_key(env.key_path)), SystemClock(), timeout_s=2
    )
    with pytest.raises(PlatformError) as info:
        client.stream_head(DEVICE, "kiosk")
    assert info.value.retryable and info.value.error == "network"
    client.close()
    env.platform.stop = lambda: None  # type: ignore[method-assign]


def test_a_final_refusal_is_not_replayed_after_its_cause_is_fixed(env: Env) -> None:
    """The platform stores a batch's final 4xx under its Idempotency-Key and
    replays it. When district IT fixes the cause (here: the device was registered
    to the wrong centre, then back), the running uploader must be heard again,
    not served the stored refusal until it restarts."""
    from sync_helpers import CENTRE, DEVICE

    append_records(env.terminal_url, 5)
    store = _store(env)
    with env.client() as client:
        up = env.uploader(client, store)
        assert up.run_once().accepted == 5
        append_records(env.terminal_url, 3)
        now = SystemClock().now()
        env.platform.store.register_device(DEVICE, "C-WRONG", env.public_key, now)
        refused = up.run_once(ignore_schedule=True)
        assert refused.blocked and "centre" in refused.blocked, refused.to_dict()
        env.platform.store.register_device(DEVICE, CENTRE, env.public_key, now)
        again = up.run_once(ignore_schedule=True)
        assert again.accepted == 3 and again.drained, again.to_dict()
