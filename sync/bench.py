"""``care-terminal bench sync --json``: drain rate to the loopback reference platform.

Method: fill a fresh ``terminal.db`` with ``records`` spec-valid records through
``Outbox.append`` (the kiosk's own path; 90 % meal transactions), measure the
file growth, start the reference platform as a separate process on loopback
(SQLite, synchronous=FULL, no faults), then time one uploader draining the
whole queue in ``batch_size`` batches: every record is validated by the
terminal and the platform, hashes recomputed, everything committed on both
sides. Prints/returns JSON.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sync import schemas
from sync.auth import Signer, load_device_key, provision_device_key
from sync.client import PlatformClient
from sync.samples import sample_payload
from sync.store.kiosk_reader import KioskOutboxReader
from sync.store.outbox import SyncStore
from sync.uploader import Uploader
from terminal.core.clock import SystemClock
from terminal.core.ids import new_ulid
from terminal.db.database import open_database
from terminal.db.engine import write_session
from terminal.db.outbox import Outbox

_KINDS = ("wallet_topup", "footfall_hourly", "attendance", "enrolment")


def _size(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return path.stat().st_size


def fill_outbox(
    db_url: str, device_id: str, centre_id: str, records: int, chunk: int = 5000
) -> None:
    db = open_database(db_url)
    clock = SystemClock()
    ob = Outbox(device_id, centre_id)
    try:
        for start in range(0, records, chunk):
            with write_session(db.sessions) as s:
                for i in range(start, min(records, start + chunk)):
                    kind = _KINDS[i % len(_KINDS)] if i % 10 == 0 else "meal_transaction"
                    now = clock.now()
                    ob.append(s, kind, new_ulid(), sample_payload(kind, i, now), now)
    finally:
        db.close()


def bench_sync(
    records: int = 100_000, batch_size: int = 500, work_dir: Path | None = None
) -> dict[str, Any]:
    device, centre = "bench-01", "bench-centre"
    tmp_ctx = tempfile.TemporaryDirectory(prefix="bench-sync-") if work_dir is None else None
    root = Path(tmp_ctx.name) if tmp_ctx else Path(work_dir)  # type: ignore[arg-type]
    root.mkdir(parents=True, exist_ok=True)
    try:
        term = root / "terminal.db"
        empty = open_database(f"sqlite:///{term}")
        empty.close()
        size0 = _size(term)
        t0 = time.perf_counter()
        fill_outbox(f"sqlite:///{term}", device, centre, records)
        fill_s = time.perf_counter() - t0
        size1 = _size(term)
        pub = provision_device_key(root / "device.pem")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sync.platform.server",
                "serve",
                "--port",
                "0",
                "--print-url",
                "--db",
                f"sqlite:///{root / 'platform.db'}",
                "--register",
                f"{device}:{centre}:{pub}",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            url = json.loads(proc.stdout.readline())["url"]
            clock = SystemClock()
            store = SyncStore(f"sqlite:///{root / 'sync.db'}")
            client = PlatformClient(
                url, Signer(device, load_device_key(root / "device.pem")), clock, timeout_s=120
            )
            up = Uploader(
                store,
                client,
                KioskOutboxReader(f"sqlite:///{term}"),
                device,
                centre,
                clock,
                batch_size=batch_size,
            )
            t1 = time.perf_counter()
            rep = up.run_once()
            drain_s = time.perf_counter() - t1
            client.close()
            store.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        return {
            "records": records,
            "batch_size": batch_size,
            "drained": rep.drained and rep.acked_seq == records,
            "accepted": rep.accepted,
            "drain_seconds": round(drain_s, 2),
            "records_per_second": round(records / drain_s, 1),
            "fill_seconds": round(fill_s, 2),
            "outbox_bytes_per_10000_records": int((size1 - size0) * 10_000 / records),
            "validation": "jsonschema + jsonschema-rs fast path"
            if schemas.accelerated()
            else "jsonschema",
            "machine": f"{platform.machine()} {os.cpu_count()} cpu, Python {platform.python_version()}",
        }
    finally:
        if tmp_ctx is not None:
            tmp_ctx.cleanup()


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="care-terminal bench sync")
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    print(json.dumps(bench_sync(args.records, args.batch_size), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
