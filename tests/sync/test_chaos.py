"""Chaos proof: records flow through the uploader while the platform injects
faults of every kind and the uploader process is SIGKILLed at random times.
Afterwards the platform holds exactly the records the terminal made."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from sync_helpers import CENTRE, DEVICE, Env, append_records

from sync.platform.server import FAULT_KINDS, Faults
from sync.store.outbox import SyncStore
from terminal.db.database import open_database
from terminal.db.outbox import verify_outbox
from terminal.db.tables import OutboxRow

REPO = Path(__file__).resolve().parents[2]


def _drain_cmd(env: Env, batch: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "sync.agent",
        "drain",
        "--terminal-db",
        env.terminal_url,
        "--sync-db",
        env.sync_url,
        "--url",
        env.platform.url,
        "--device-id",
        DEVICE,
        "--centre-id",
        CENTRE,
        "--key",
        str(env.key_path),
        "--batch-size",
        str(batch),
        "--backoff-base",
        "0.02",
        "--backoff-cap",
        "0.2",
        "--timeout",
        "5",
        "--max-seconds",
        "300",
    ]


def _chaos(env: Env, total: int, kills: int, batch: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    faults = Faults(
        error_rate=0.08,
        retry_after_rate=0.05,
        reset_rate=0.07,
        drop_after_commit_rate=0.08,
        bad_reply_rate=0.04,
        latency_rate=0.04,
        latency_s=0.05,
        retry_after_s=1,
        seed=seed,
    )
    assert faults.total_rate >= 0.30
    env.platform.server.faults = faults
    chunk = total // (kills + 1)
    made = 0
    killed = 0
    for _ in range(kills):
        append_records(env.terminal_url, chunk, start=made)  # the kiosk keeps writing
        made += chunk
        proc = subprocess.Popen(
            _drain_cmd(env, batch), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        time.sleep(rng.uniform(0.6, 2.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.communicate(timeout=30)
    append_records(env.terminal_url, total - made, start=made)
    final = subprocess.run(
        _drain_cmd(env, batch), cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert final.returncode == 0, final.stderr[-2000:]
    assert killed >= max(1, kills // 2), "the uploader was hardly ever killed mid-run"
    return {"killed": killed, **faults.counts}


def _assert_exact(env: Env, total: int) -> None:
    db = open_database(env.terminal_url)
    with db.sessions() as s:
        local = [
            (r.seq, r.record_id, r.hash)
            for r in s.scalars(select(OutboxRow).order_by(OutboxRow.seq))
        ]
        assert verify_outbox(s, DEVICE) is None
    db.close()
    assert len(local) == total
    stored = env.platform.store.records(DEVICE, "kiosk")
    remote = [(r.seq, r.record_id, r.hash) for r in stored]
    missing = set(local) - set(remote)
    extra = set(remote) - set(local)
    assert not missing, f"{len(missing)} records missing at the platform"
    assert not extra, f"{len(extra)} records at the platform the terminal never made"
    assert len(remote) == len(set(r[1] for r in remote)) == total, "duplicates at the platform"
    assert remote == local
    assert all(r.stored_as == "record" for r in stored)
    assert env.platform.store.verify_chain(DEVICE, "kiosk") is None
    store = SyncStore(env.sync_url)
    try:
        assert store.stream_state("kiosk").acked_seq == total
        assert store.dead_letters() == []
    finally:
        store.close()


def test_chaos_2000_records_with_kills_and_faults(env: Env) -> None:
    counts = _chaos(env, total=2000, kills=6, batch=50, seed=7)
    injected = sum(v for k, v in counts.items() if k in FAULT_KINDS)
    assert injected / (injected + counts.get("none", 0)) >= 0.25
    assert sum(1 for k in FAULT_KINDS if counts.get(k)) >= 5, counts
    _assert_exact(env, 2000)


@pytest.mark.slow
def test_chaos_10000_records_with_kills_and_faults(env: Env) -> None:
    counts = _chaos(env, total=10_000, kills=14, batch=100, seed=11)
    injected = sum(v for k, v in counts.items() if k in FAULT_KINDS)
    assert injected / (injected + counts.get("none", 0)) >= 0.25
    assert all(counts.get(k) for k in FAULT_KINDS), counts
    _assert_exact(env, 10_000)
