"""``care-terminal bench payment``: durable commit latency and throughput on this
disk with ``synchronous=FULL``, plus a crash-harness run."""

from __future__ import annotations

import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from payment.crashtest import DAY0, RESIDENTS, make_store, run_harness, seed
from payment.flow import Charge, Idle, StaffLookup, Touch, step
from terminal.db.engine import pragma


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[idx]


def bench_payment(
    payments: int = 300, kills: int = 20, workdir: Path | None = None
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="care-bench-pay-", dir=workdir) as tmp:
        data = Path(tmp) / "commit"
        seed(data)
        store = make_store(data)
        ctx = store.context()
        latencies: list[float] = []
        t_all = time.perf_counter()
        for n in range(payments):
            now = DAY0 + timedelta(milliseconds=n)
            state, _ = step(
                Idle(n), StaffLookup(RESIDENTS[n % len(RESIDENTS)], "staff-1"), now, ctx
            )
            state, effects = step(state, Touch("confirm"), now, ctx)
            request = next(e.request for e in effects if isinstance(e, Charge))
            t0 = time.perf_counter()
            store.charge(request)
            latencies.append((time.perf_counter() - t0) * 1000)
        elapsed = time.perf_counter() - t_all
        engine = store.deps.sessions.kw["bind"]
        sync_mode = pragma(engine, "synchronous")
        journal = pragma(engine, "journal_mode")
        kill = run_harness(Path(tmp) / "kill", kills=kills) if kills > 0 else None
    return {
        "method": (
            "store.charge() end to end (BEGIN IMMEDIATE, re-checks, ledger + wallet + outbox, COMMIT) "
            f"on a real SQLite file under {workdir or tempfile.gettempdir()}; flow steps included in payments_per_second"
        ),
        "journal_mode": journal,
        "synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(sync_mode, sync_mode),
        "payments": payments,
        "commit_ms": {
            "p50": round(statistics.median(latencies), 2),
            "p90": round(_percentile(latencies, 0.90), 2),
            "p99": round(_percentile(latencies, 0.99), 2),
            "max": round(max(latencies), 2),
        },
        "payments_per_second": round(payments / elapsed, 1),
        "kill_test": kill,
    }
