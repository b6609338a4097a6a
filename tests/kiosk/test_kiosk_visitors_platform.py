"""Visiting seniors through the running kiosk against a real ``care-terminal
platform serve`` process on loopback (spec 1.2): two terminals of centre B, the
senior registered at centre A taps their card. The first terminal's kiosk asks
the platform, claims the slot before the confirm screen and records the meal
with the platform's claim; the second terminal is told the subsidy of this
meal is already used in the district. Real stores on SQLite, real signed HTTP."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from payment.domain import Menu
from payment.flow import CardTapped, Confirm, Done, Touch
from payment.visiting import Source, VisitRefusal
from sync.agent import sync_now
from terminal.app.demo import DEMO_POLICY, ShiftedClock
from terminal.app.kiosk_compose import KIOSK_TIMEOUTS, KioskApp, build_kiosk
from terminal.app.services import Services
from terminal.config.settings import Settings
from terminal.core.clock import CHINA_TZ
from terminal.kiosk.runner import wait_for
from terminal.kiosk.visitors import PlatformVisitors, platform_visitors

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sync"))
from test_visits_platform import PEPPER, District, start_district, stop  # noqa: E402

LUNCH = datetime(2026, 1, 5, 11, 40, tzinfo=CHINA_TZ)
CARD = "CA0001"  # 张桂华 of centre-a (the platform test's district)


@pytest.fixture
def district(tmp_path: Path) -> Iterator[District]:
    d = start_district(tmp_path / "platform")
    try:
        yield d
    finally:
        stop(d)


class Terminal:
    """One kiosk of centre B: its own data directory, device key and the district pepper."""

    def __init__(self, base: Path, district: District, device: str) -> None:
        settings = Settings(
            data_dir=base / "data",
            cache_dir=base / "cache",
            centre={"centre_id": "centre-b", "device_id": device, "centre_name": "B 中心"},
            sync={"platform_url": district.url},
        )
        keys = settings.data_dir / "keys"
        keys.mkdir(parents=True)
        shutil.copy(district.keys[device], settings.device_key_file)
        settings.device_key_file.chmod(0o600)
        (keys / "district-pepper").write_bytes(PEPPER)
        (keys / "district-pepper").chmod(0o600)
        self.services = Services(settings, clock=ShiftedClock(LUNCH))
        store = self.services.payment
        store.set_policy(DEMO_POLICY)
        menu = {"item_id": "L1", "name": "午餐套餐", "price_fen": 1500, "slots": ["lunch"]}
        store.set_menu(Menu.from_dict({"date": "2026-01-05", "items": [menu]}), "S-1")
        port = platform_visitors(settings)
        assert isinstance(port, PlatformVisitors) and port.client is not None
        self.port = port
        cfg = replace(self.services.flow_config, timeouts=KIOSK_TIMEOUTS)
        self.app: KioskApp = build_kiosk(
            self.services, camera=False, sync=False, flow_config=cfg, visitors=port
        )
        self.app.start()

    def state(self) -> Any:
        return self.app.runner.current().state

    def wait(self, name: str) -> Any:
        assert wait_for(lambda: type(self.state()).__name__ == name, 15), self.state()
        return self.state()

    def close(self) -> None:
        self.app.close()
        self.port.close()
        self.services.close()


def test_two_terminals_one_subsidised_meal_online(tmp_path: Path, district: District) -> None:
    b1 = Terminal(tmp_path / "b1", district, "dev-b1")
    b2 = Terminal(tmp_path / "b2", district, "dev-b2")
    try:
        b1.app.runner.post(CardTapped(CARD))
        confirm = b1.wait("Confirm")
        assert isinstance(confirm, Confirm)
        visit = confirm.payment.visit
        assert visit is not None and visit.source is Source.ONLINE
        assert visit.home_centre_id == "centre-a" and visit.claim_id
        assert confirm.payment.quote.subsidy.fen > 0
        person = visit.person_id
        [(record, centre)] = district.sql(
            "SELECT record_id, centre_id FROM visit_claims WHERE person_id = ?", person
        )
        assert centre == "centre-b"
        # the senior steps back (cancel) and taps again: their own unused claim
        # does not cost them the subsidy, and no second claim is made
        b1.app.runner.post(Touch("cancel"))
        b1.wait("Idle")
        b1.app.runner.post(CardTapped(CARD))
        confirm = b1.wait("Confirm")
        assert confirm.payment.visit.claim_id == visit.claim_id
        assert confirm.payment.quote.subsidy.fen > 0
        assert district.sql("SELECT count(*) FROM visit_claims") == [(1,)]
        b1.app.runner.post(Touch("confirm"))
        done = b1.wait("Done")
        assert isinstance(done, Done) and done.record_id == record  # the claimed meal
        # the same senior at the other terminal of the centre, same slot
        b2.app.runner.post(CardTapped(CARD))
        again = b2.wait("Confirm")
        v2 = again.payment.visit
        assert v2 is not None and v2.refusal is VisitRefusal.ALREADY_SUBSIDISED
        assert (again.payment.quote.subsidy.fen, v2.claim_id) == (0, None)
        b2.app.runner.post(Touch("cancel"))
        b2.wait("Idle")
        # a card nobody in the district holds is still a stranger's
        b2.app.runner.post(CardTapped("ZZ9999"))
        failed = b2.wait("Failed")
        assert failed.reason.value == "card_unknown"
        meals = b1.services.payment.visitors.rows(LUNCH.date())
        assert [(m.record_id, m.review) for m in meals] == [(record, False)]
        # the terminal's agent uploads the meal: stored as a record, the claim its own
        report = sync_now(b1.services.settings)
        assert report["uploads"], report
        rows = district.sql(
            "SELECT record_id, home_centre_id, person_id, stored_as, held_by_record_id "
            "FROM visit_meals"
        )
        assert rows == [(record, "centre-a", person, "record", None)]
    finally:
        b1.close()
        b2.close()
