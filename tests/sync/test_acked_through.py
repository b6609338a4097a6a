"""The kiosk's unsynced exposure counts only what the platform has not settled:
it follows the kiosk stream's high-water mark in the agent's sync.db."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sync.store.outbox import SyncStore
from sync.store.status import AckedThrough
from terminal.db.outbox import GENESIS


def test_follows_the_agents_high_water_mark(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/sync.db"
    now = [0.0]
    acked = AckedThrough(url, ttl_s=5.0, clock=lambda: now[0])
    assert acked() == 0  # no sync.db yet: nothing is settled
    store = SyncStore(url)
    store.apply_batch_outcome("kiosk", 42, "a" * 64, [], [], [], datetime.now(UTC))
    store.apply_batch_outcome("agent", 7, GENESIS, [], [], [], datetime.now(UTC))
    assert acked() == 0  # cached for ttl_s: a payment never waits on sync.db
    now[0] = 6.0
    assert acked() == 42  # the kiosk stream only
    store.close()
    (tmp_path / "sync.db").unlink()
    now[0] = 12.0
    assert acked() == 42  # never moves backwards when sync.db is unreadable
    acked.close()
