"""What every payment store job shares."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from payment.flow import FlowConfig
from terminal.core.clock import Clock
from terminal.db.roster import RosterStore


@dataclass
class StoreDeps:
    """One instance is shared by the job objects of one store, so they read and
    write the same ``terminal.db`` through one session factory (writes through
    :func:`terminal.db.engine.write_session`: BEGIN IMMEDIATE) and see the same
    flow configuration (the kiosk replaces ``config`` once it is wired)."""

    sessions: sessionmaker[Session]
    roster: RosterStore
    device_id: str
    centre_id: str
    clock: Clock
    config: FlowConfig
