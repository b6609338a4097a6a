"""A payment runs the same SQL texts, however many meals came before it.

Each connection keeps a compiled statement per distinct SQL text (Python's
sqlite3 module caches 128 per connection). A query whose text grows with the
data, such as an IN list of the day's meal ids, adds a new and larger statement
with every payment: the soak's kiosk grew by about 6 MB an hour that way (see
the README, "Unattended operation"). Forty card payments by one resident in one
lunch: the texts of the last thirty are the texts of the first ten.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event

from payment.domain import Menu
from payment.flow import CardTapped, Done, Touch
from payment.headless import drive
from terminal.app.services import Services
from terminal.config.settings import load_settings
from terminal.core.clock import CHINA_TZ, FakeClock
from terminal.core.money import Money
from terminal.db.engine import write_session

MENU = {
    "date": "2026-01-05",
    "items": [{"item_id": "L1", "name": "午餐套餐", "price_fen": 1500, "slots": ["lunch"]}],
}


def test_sql_texts_do_not_grow_with_the_meals_of_the_day(tmp_path: Path) -> None:
    # no subsidy category and no guard on unsubsidised meals: the same resident
    # pays again and again, as in the soak (terminal.app.soak.prepare_world)
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f"data_dir = {str(tmp_path / 'data')!r}\n"
        "[payment]\n"
        "duplicate_guard_any_meal = false\n"
        "max_unsynced_per_resident_fen = 10000000\n"
        "max_unsynced_per_terminal_fen = 100000000\n",
        encoding="utf-8",
    )
    clock = FakeClock(datetime(2026, 1, 5, 11, 0, tzinfo=CHINA_TZ))
    services = Services(load_settings(config_file=cfg), clock=clock)
    store, db = services.payment, services.db
    with write_session(db.sessions) as s:
        services.roster.upsert(s, "R1", "张三华", clock.now(), categories=[], card_ids=["C-1"])
    store.set_menu(Menu.from_dict(MENU), "staff-1")
    store.topup("R1", Money(1_000_000), "staff-1")

    texts: list[set[str]] = [set()]

    def seen(_c: Any, _cur: Any, statement: str, *_a: Any) -> None:
        texts[-1].add(statement)

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        for i in range(40):
            if i == 10:
                texts.append(set())
            d = drive(
                store.context(), store.charge, [CardTapped("C-1"), Touch("confirm")], clock.now
            )
            assert isinstance(d.state, Done), d.state
            clock.advance(30)
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
        db.close()
    first, later = texts
    assert later <= first, "\n\n".join(sorted(later - first))
