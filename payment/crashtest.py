"""Crash harness for the payment store (used by the tests and ``bench payment``).

A child process (``python -m payment.crashtest child DATA_DIR``) pays meals in a
loop. Before each charge the request is pickled to ``inflight.pkl`` (fsync);
after ``store.charge`` returned ``ChargeCommitted`` (after COMMIT) the record id
is appended to ``acked.log`` (fsync): the moment the senior is told "paid". On
start, a request left in flight by a kill is submitted again, as the kiosk does
after a restart; the store must answer with the same record, never a second
charge.

:func:`run_harness` kills the child with SIGKILL at random moments and then
checks: ``PRAGMA integrity_check`` ok, every acknowledged payment present, no
charge nobody was told about, no duplicate, balances equal the ledger, sequence
and hash chain intact, one outbox row per ledger record.
"""

from __future__ import annotations

import os
import pickle
import random
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from payment.domain import Menu
from payment.flow import Charge, ChargeCommitted, FlowConfig, Idle, StaffLookup, Touch, step
from payment.limits import ExposureLimits
from payment.store import LedgerRow, PaymentStore
from terminal.core.clock import CHINA_TZ, FakeClock
from terminal.core.money import Money
from terminal.db.crypto import FieldCipher, load_or_create_key
from terminal.db.database import open_database
from terminal.db.engine import write_session
from terminal.db.outbox import Outbox
from terminal.db.roster import RosterStore
from terminal.db.tables import OutboxRow

RESIDENTS = [f"R{i}" for i in range(8)]
_BIG = Money(10**8)
DAY0 = datetime(2026, 1, 5, 11, 0, tzinfo=CHINA_TZ)


class HarnessFailure(AssertionError):
    pass


def make_store(data: Path) -> PaymentStore:
    db = open_database(f"sqlite:///{data}/t.db")
    roster = RosterStore(FieldCipher(load_or_create_key(data / "k")))
    config = FlowConfig(limits=ExposureLimits(_BIG, _BIG, _BIG), large_amount=_BIG)
    return PaymentStore(
        db.sessions,
        Outbox("crash-dev"),
        roster,
        device_id="crash-dev",
        centre_id="c",
        clock=FakeClock(DAY0),
        config=config,
    )


def _durable_append(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _durable_write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _settle_inflight(store: PaymentStore, data: Path) -> None:
    inflight = data / "inflight.pkl"
    if not inflight.exists():
        return
    request = pickle.loads(inflight.read_bytes())  # noqa: S301 - written by this harness
    outcome = store.charge(request)
    if isinstance(outcome, ChargeCommitted):
        _durable_append(data / "acked.log", outcome.record_id)
    inflight.unlink()


def child_main(data: Path, finish: bool = False) -> int:
    store = make_store(data)
    _settle_inflight(store, data)
    if finish:
        return 0
    rng = random.Random(os.getpid())
    ctx = store.context()
    session_base = rng.randrange(1, 10**9)
    n = 0
    while True:
        n += 1
        rid = rng.choice(RESIDENTS)
        now = DAY0 + timedelta(milliseconds=n)
        state, _ = step(Idle(session_base + n), StaffLookup(rid, "staff-1"), now, ctx)
        state, effects = step(state, Touch("confirm"), now, ctx)
        charges = [e for e in effects if isinstance(e, Charge)]
        if not charges:
            continue
        _durable_write(data / "inflight.pkl", pickle.dumps(charges[0].request))
        outcome = store.charge(charges[0].request)
        if isinstance(outcome, ChargeCommitted):
            _durable_append(data / "acked.log", outcome.record_id)
        (data / "inflight.pkl").unlink()
        if n % 7 == 0:
            store.topup(rng.choice(RESIDENTS), Money(1000), "staff-1")


def seed(data: Path) -> None:
    data.mkdir(parents=True, exist_ok=True)
    store = make_store(data)
    with write_session(store._sessions) as s:
        for rid in RESIDENTS:
            store._roster.upsert(s, rid, "测试老人", DAY0, categories=["age_70_79"])
    store.set_menu(
        Menu.from_dict(
            {
                "date": "2026-01-05",
                "items": [{"item_id": "L1", "name": "午餐", "price_fen": 1200, "slots": ["lunch"]}],
            }
        ),
        "staff-1",
    )
    for rid in RESIDENTS:
        store.topup(rid, Money(10**6), "staff-1")


def _child(data: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "payment.crashtest", "child", str(data), *extra]


def _wait_progress(data: Path, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    log = data / "acked.log"
    start = log.stat().st_size if log.exists() else 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise HarnessFailure(f"child exited early: {err[-2000:]}")
        if log.exists() and log.stat().st_size > start:
            return
        time.sleep(0.01)
    raise HarnessFailure("child made no progress")


def run_harness(data: Path, kills: int, seed_value: int = 7) -> dict[str, Any]:
    seed(data)
    rng = random.Random(seed_value)
    for _ in range(kills):
        proc = subprocess.Popen(_child(data), stderr=subprocess.PIPE)
        _wait_progress(data, proc)
        time.sleep(rng.uniform(0.0, 0.25))  # land the kill at a random moment of the loop
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.stderr:
            proc.stderr.close()
    subprocess.run(_child(data, "--finish"), check=True)
    return check(data, kills)


def check(data: Path, kills: int) -> dict[str, Any]:
    conn = sqlite3.connect(data / "t.db")
    try:
        integrity = conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()
    if integrity != [("ok",)]:
        raise HarnessFailure(f"integrity_check: {integrity[:3]}")
    acked = (data / "acked.log").read_text().split()
    store = make_store(data)
    with store._sessions() as s:
        charges = list(s.scalars(select(LedgerRow.entry_id).where(LedgerRow.kind == "charge")))
        ledger_rows = int(s.scalar(select(func.count()).select_from(LedgerRow)) or 0)
        outbox_rows = int(s.scalar(select(func.count()).select_from(OutboxRow)) or 0)
    lost = set(acked) - set(charges)
    untold = set(charges) - set(acked)
    result = {
        "kills": kills,
        "acknowledged": len(set(acked)),
        "acknowledged_again_after_restart": len(acked) - len(set(acked)),
        "charges": len(charges),
        "lost": len(lost),
        "duplicated": len(charges) - len(set(charges)),
        "charged_but_not_acknowledged": len(untold),
        "ledger_records": ledger_rows,
        "outbox_rows": outbox_rows,
        "integrity_check": "ok",
    }
    verify = store.verify()
    result["ledger_verify"] = "ok" if verify.ok else verify.problem
    if lost or untold or result["duplicated"] or ledger_rows != outbox_rows or not verify.ok:
        raise HarnessFailure(f"crash harness found damage: {result}")
    return result


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "child":
        sys.exit(child_main(Path(sys.argv[2]), finish="--finish" in sys.argv))
    print("usage: python -m payment.crashtest child DATA_DIR [--finish]", file=sys.stderr)
    sys.exit(2)
