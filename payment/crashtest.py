"""Crash harness for the payment store (used by the tests and ``bench payment``).

A child process (``python -m payment.crashtest child DATA_DIR``) pays meals in a
loop (a second meal of a resident in the slot goes through staff approval, as
at the kiosk). Before each charge the request is pickled to ``inflight.pkl``
(fsync); after ``store.charge`` returned ``ChargeCommitted`` (after COMMIT) the
record id is appended to ``acked.log`` (fsync): the moment the senior is told
"paid"; then the store records it as shown. On start, the store's recovery
closes open intents and reports committed charges nobody was told about (they
are appended to ``acked.log``: reported at restart), then a request left in
flight by a kill is submitted again, as a runner retry would; the store must
answer with the same record or a refusal, never a second charge.

:func:`run_kill_after_commit` is the field report "killed after COMMIT, before
"paid" was shown, then a retry": the child stops right after the charge
committed and is killed; after the restart the charge is reported as paid, the
same request retried returns the same record, and the senior trying again is
told the meal is already paid.

:func:`run_harness` kills the child with SIGKILL at random moments and then
checks: ``PRAGMA integrity_check`` ok, every acknowledged payment present, no
charge nobody was told about, no duplicate, balances equal the ledger, sequence
and hash chain intact, one outbox row per ledger record.
"""

from __future__ import annotations

import json
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

from payment.domain import Menu
from payment.flow import (
    AlreadyPaid,
    Charge,
    ChargeCommitted,
    FlowConfig,
    Idle,
    StaffApprove,
    StaffLookup,
    Touch,
    step,
)
from payment.limits import ExposureLimits
from payment.store import PaymentStore
from terminal.core.atomic import atomic_write_bytes
from terminal.core.clock import CHINA_TZ, FakeClock
from terminal.core.money import Money
from terminal.db.crypto import FieldCipher, load_or_create_key
from terminal.db.database import open_database
from terminal.db.engine import write_session
from terminal.db.outbox import Outbox
from terminal.db.roster import RosterStore

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
        Outbox("crash-dev", "c"),
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


def _recover(store: PaymentStore, data: Path) -> list[str]:
    """Start-up: what the store reports as paid but never shown counts as told."""
    reported = [t.record_id for t in store.recover_intents().paid]
    for record_id in reported:
        _durable_append(data / "acked.log", record_id)
    return reported


def _settle_inflight(store: PaymentStore, data: Path) -> str | None:
    inflight = data / "inflight.pkl"
    if not inflight.exists():
        return None
    request = pickle.loads(inflight.read_bytes())  # noqa: S301 - written by this harness
    outcome = store.charge(request)
    record_id = None
    if isinstance(outcome, ChargeCommitted):
        _durable_append(data / "acked.log", outcome.record_id)
        store.mark_shown(request.request_id)
        record_id = outcome.record_id
    inflight.unlink()
    return record_id


def _confirmed_charge(store: PaymentStore, rid: str, session: int, now: datetime) -> Charge | None:
    """Staff lookup + confirm through the real flow (staff approve a second meal)."""
    ctx = store.context()
    state, _ = step(Idle(session), StaffLookup(rid, "staff-1"), now, ctx)
    if isinstance(state, AlreadyPaid):
        state, _ = step(state, StaffApprove("staff-1"), now, ctx)
    state, effects = step(state, Touch("confirm"), now, ctx)
    charges = [e for e in effects if isinstance(e, Charge)]
    return charges[0] if charges else None


def child_main(data: Path, finish: bool = False) -> int:
    store = make_store(data)
    _recover(store, data)
    _settle_inflight(store, data)
    if finish:
        return 0
    rng = random.Random(os.getpid())
    session_base = rng.randrange(1, 10**9)
    n = 0
    while True:
        n += 1
        rid = rng.choice(RESIDENTS)
        now = DAY0 + timedelta(milliseconds=n)
        charge = _confirmed_charge(store, rid, session_base + n, now)
        if charge is None:
            continue
        atomic_write_bytes(data / "inflight.pkl", pickle.dumps(charge.request))
        outcome = store.charge(charge.request)
        if isinstance(outcome, ChargeCommitted):
            _durable_append(data / "acked.log", outcome.record_id)
            store.mark_shown(charge.request.request_id)
        (data / "inflight.pkl").unlink()
        if n % 7 == 0:
            store.topup(rng.choice(RESIDENTS), Money(1000), "staff-1")


def pause_after_commit_main(data: Path) -> int:
    """Pay one meal for R0 and stop right after COMMIT, before "paid" is told:
    the record id goes to ``committed.txt`` and the process waits to be killed."""
    store = make_store(data)
    charge = _confirmed_charge(store, RESIDENTS[0], 1, DAY0)
    assert charge is not None
    atomic_write_bytes(data / "inflight.pkl", pickle.dumps(charge.request))
    outcome = store.charge(charge.request)
    assert isinstance(outcome, ChargeCommitted)
    atomic_write_bytes(data / "committed.txt", outcome.record_id.encode())
    while True:  # the kill lands here: after COMMIT, before acked.log / the screen
        time.sleep(1)


def retry_main(data: Path) -> int:
    """The restart after the kill, then the retries; prints a JSON summary."""
    store = make_store(data)
    reported = _recover(store, data)
    same = _settle_inflight(store, data)  # the same request again
    # the senior, told nothing, tries again: a new request through the flow
    ctx = store.context()
    shown, _ = step(Idle(1), StaffLookup(RESIDENTS[0], "staff-1"), DAY0, ctx)
    _state, effects = step(shown, Touch("confirm"), DAY0, ctx)  # taps whatever is shown
    new_charges = [e for e in effects if isinstance(e, Charge)]
    print(
        json.dumps(
            {
                "reported_after_restart": reported,
                "same_request_retry": same,
                "new_attempt_state": type(shown).__name__,
                "new_attempt_charges": len(new_charges),
            }
        )
    )
    return 0


def seed(data: Path) -> None:
    data.mkdir(parents=True, exist_ok=True)
    store = make_store(data)
    with write_session(store.deps.sessions) as s:
        for rid in RESIDENTS:
            store.deps.roster.upsert(s, rid, "测试老人", DAY0, categories=["age_70_79"])
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


def _wait_progress(data: Path, proc: subprocess.Popen[bytes], timeout: float = 180.0) -> None:
    """Until the child acknowledged one more payment. Progress, not time, decides
    when to kill: a loaded machine (or an emulated one) can take many seconds
    for one payment; ``timeout`` only catches a child that is stuck."""
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
        try:
            _wait_progress(data, proc)
            time.sleep(rng.uniform(0.0, 0.25))  # land the kill at a random moment of the loop
        finally:  # never leave a child running, also when the harness fails
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            if proc.stderr:
                proc.stderr.close()
    subprocess.run(_child(data, "--finish"), check=True)
    return check(data, kills)


def run_kill_after_commit(data: Path) -> dict[str, Any]:
    """SIGKILL after COMMIT and before "paid" was shown, restart, retry."""
    seed(data)
    proc = subprocess.Popen(_child(data, "--pause-after-commit"), stderr=subprocess.PIPE)
    marker = data / "committed.txt"
    deadline = time.monotonic() + 30
    while not marker.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise HarnessFailure(f"child did not reach the commit: {err[-2000:]}")
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if proc.stderr:
        proc.stderr.close()
    committed = marker.read_text()
    told_before_kill = (data / "acked.log").exists()
    out = subprocess.run(_child(data, "--retry"), check=True, capture_output=True, text=True)
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    result = check(data, 1)
    result.update(summary, committed=committed, told_before_kill=told_before_kill)
    return result


def check(data: Path, kills: int) -> dict[str, Any]:
    conn = sqlite3.connect(data / "t.db")
    try:
        integrity = conn.execute("PRAGMA integrity_check").fetchall()
        if integrity != [("ok",)]:
            raise HarnessFailure(f"integrity_check: {integrity[:3]}")
        # read straight from the file, not through the store under test
        charges = [
            r for (r,) in conn.execute("SELECT entry_id FROM ledger_entries WHERE kind = 'charge'")
        ]
        (ledger_rows,) = conn.execute("SELECT count(*) FROM ledger_entries").fetchone()
        (outbox_rows,) = conn.execute("SELECT count(*) FROM outbox").fetchone()
    finally:
        conn.close()
    acked = (data / "acked.log").read_text().split()
    store = make_store(data)
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
        where = Path(sys.argv[2])
        if "--pause-after-commit" in sys.argv:
            sys.exit(pause_after_commit_main(where))
        if "--retry" in sys.argv:
            sys.exit(retry_main(where))
        sys.exit(child_main(where, finish="--finish" in sys.argv))
    print(
        "usage: python -m payment.crashtest child DATA_DIR "
        "[--finish | --pause-after-commit | --retry]",
        file=sys.stderr,
    )
    sys.exit(2)
