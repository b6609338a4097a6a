"""The catalogue: the day's menu and the versioned subsidy policies."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from payment.domain import Menu
from payment.errors import PaymentError
from payment.store.deps import StoreDeps
from payment.store.schema import MenuRow, PolicyRow
from payment.subsidy import SubsidyPolicy, parse_policy, select_policy
from terminal.core.clock import rfc3339
from terminal.db.engine import write_session
from terminal.db.roster import audit


class Catalogue:
    """Menus (one per day, set by staff, audited) and subsidy policies (one
    document per policy version; a version never changes its rules)."""

    def __init__(self, deps: StoreDeps) -> None:
        self._d = deps

    def set_menu(self, menu: Menu, staff_id: str) -> None:
        now = self._d.clock.now()
        with write_session(self._d.sessions) as s:
            row = s.get(MenuRow, menu.day.isoformat())
            doc = json.dumps(menu.to_dict(), ensure_ascii=False, sort_keys=True)
            if row is None:
                s.add(
                    MenuRow(day=menu.day.isoformat(), doc=doc, set_by=staff_id, set_at=rfc3339(now))
                )
            else:
                row.doc, row.set_by, row.set_at = doc, staff_id, rfc3339(now)
            audit(s, now, staff_id, "menu_set", menu.day.isoformat(), {"items": len(menu.items)})

    def menu(self, day: date, session: Session | None = None) -> Menu | None:
        if session is None:
            with self._d.sessions() as s:
                return self.menu(day, s)
        row = session.get(MenuRow, day.isoformat())
        return Menu.from_dict(json.loads(row.doc)) if row else None

    def set_policy(self, policy: SubsidyPolicy | Mapping[str, Any]) -> SubsidyPolicy:
        pol = policy if isinstance(policy, SubsidyPolicy) else parse_policy(policy)
        with write_session(self._d.sessions) as s:
            row = s.get(PolicyRow, (pol.policy_id, pol.version))
            doc = json.dumps(pol.to_dict(), ensure_ascii=False, sort_keys=True)
            if row is None:
                s.add(
                    PolicyRow(
                        policy_id=pol.policy_id,
                        version=pol.version,
                        effective_from=pol.effective_from.isoformat(),
                        doc=doc,
                    )
                )
            elif row.doc != doc:
                raise PaymentError(
                    f"policy {pol.policy_id} version {pol.version} exists with other rules; "
                    "publish a new version",
                    code="policy_version_conflict",
                )
        return pol

    def policies(self, session: Session) -> list[SubsidyPolicy]:
        return [parse_policy(json.loads(r.doc)) for r in session.scalars(select(PolicyRow))]

    def policy(self, day: date, session: Session | None = None) -> SubsidyPolicy | None:
        if session is None:
            with self._d.sessions() as s:
                return self.policy(day, s)
        return select_policy(self.policies(session), day)
