"""Chain verification (``care-terminal ledger verify``): the outbox sequence and
hash chain, one outbox record per ledger entry, the ledger's own rules and the
wallet balances derived from it. Reads only."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from payment.ledger import verify_entries
from payment.store.deps import StoreDeps
from payment.store.schema import LedgerRow, WalletRow, ledger_entry
from terminal.core.money import Money
from terminal.db.outbox import verify_outbox
from terminal.db.tables import OutboxRow


@dataclass(frozen=True)
class LedgerCheck:
    ok: bool
    entries: int
    problem: str | None = None
    record_id: str | None = None
    seq: int | None = None


class LedgerVerifier:
    def __init__(self, deps: StoreDeps) -> None:
        self._d = deps

    def verify(self) -> LedgerCheck:
        """Balances equal the ledger, sequence gap-free, hash chain intact, one
        outbox row per ledger record. Reports the first bad record."""
        with self._d.sessions() as s:
            problem = verify_outbox(s, self._d.device_id)
            if problem is not None:
                return LedgerCheck(False, 0, problem.problem, problem.record_id, problem.seq)
            rows = list(s.scalars(select(LedgerRow).order_by(LedgerRow.seq)))
            for r in rows:
                ob = s.get(OutboxRow, r.seq)
                if ob is None or ob.record_id != r.entry_id or ob.hash != r.hash:
                    return LedgerCheck(
                        False,
                        len(rows),
                        "ledger entry has no matching outbox record",
                        r.entry_id,
                        r.seq,
                    )
            entries = [ledger_entry(r) for r in rows]
            result = verify_entries(entries, overdraft_limit=self._d.config.overdraft_limit)
            if not result.ok:
                bad = rows[result.first_bad_index] if result.first_bad_index is not None else None
                return LedgerCheck(
                    False,
                    len(rows),
                    result.message,
                    bad.entry_id if bad else None,
                    bad.seq if bad else None,
                )
            derived = (
                {rid.removeprefix("wallet:"): m for rid, m in result.balances.items()}
                if result.balances
                else {}
            )
            for w in s.scalars(select(WalletRow)):
                want = derived.get(w.resident_id, derived.get(f"wallet:{w.resident_id}", Money(0)))
                if Money(w.balance_fen) != want:
                    return LedgerCheck(
                        False,
                        len(rows),
                        f"wallet balance {w.balance_fen} != ledger {want.fen}",
                        w.last_entry_id,
                        None,
                    )
            return LedgerCheck(True, len(rows))
