"""City-wide meals (全城通吃), issue 14's proof, with processes only: one
platform (``care-terminal platform serve``), two centres with three terminals
(A1 at centre A; B1 and B2 at centre B), each terminal a data directory driven
by the ``care-terminal`` command (``pay``, ``sync now``), all on loopback.

The visitor is a senior of a third centre H (on H's roster at the platform; no
terminal of H takes part). The district pepper is the platform's file, installed
on every terminal.

1. Online, lunch: the visitor pays by card at B1 and gets the subsidy (the
   platform grants B1's claim); at A1 in the same slot the subsidy is refused
   (the platform says it is taken) and the meal is sold at the full price.
2. The platform down, dinner: B2 and A1 decide from the pulled district roster,
   within their offline limits: both subsidise and mark the meal for review.
3. The platform back: B2 uploads first and its dinner claims the slot; A1's
   dinner is accepted but stored quarantined ``citywide_duplicate_subsidy`` and
   listed for review to both centres.
4. ``care-terminal platform settlement``: exactly B1's lunch and B2's dinner, as
   centre B's claim against centre H.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from sync.auth import provision_device_key
from sync.samples import demo_datasets
from sync.visits import VisitsClient
from terminal.config.settings import CentreSettings, Settings, SyncSettings
from terminal.core.clock import SystemClock

CARE = [sys.executable, "-m", "terminal.app.cli"]
PEPPER = bytes(range(101, 133))
VISITOR_CARD = "0000009001"
POLICY = {
    "policy_id": "district-2026",
    "version": 1,
    "effective_from": "2026-01-01",
    "effective_until": None,
    "rules": [{"category": "age_80_89", "slot": "*", "type": "fixed", "amount_fen": 300}],
}
TERMINALS = {"a1": "centre-a", "b1": "centre-b", "b2": "centre-b"}


def _resident(rid: str, name: str, card: str) -> dict[str, Any]:
    return {
        "resident_id": rid,
        "name": name,
        "name_masked": name[0] + "*" + name[2:],
        "id_number_hmac": None,
        "phone_last4": "1234",
        "categories": ["age_80_89"],
        "card_ids": [card],
        "consent_face_pay": False,
        "consent_attendance": False,
        "active": True,
    }


def _seed(pubs: dict[str, str]) -> dict[str, Any]:
    datasets: list[dict[str, Any]] = []
    residents = {
        "centre-h": [_resident("H001", "张桂华", VISITOR_CARD)],
        "centre-a": [_resident("A001", "李建国", "0000001001")],
        "centre-b": [_resident("B001", "王秀英", "0000002001")],
    }
    for centre, people in residents.items():
        for ds in demo_datasets(centre):
            if ds["kind"] == "roster":
                ds = {**ds, "data": {**ds["data"], "residents": people}}
            if ds["kind"] == "subsidy_policy":
                ds = {**ds, "data": POLICY}
            datasets.append(ds)
    devices = [
        {"device_id": f"dev-{t}", "centre_id": c, "public_key": pubs[t]}
        for t, c in TERMINALS.items()
    ]
    return {"devices": devices, "datasets": datasets}


@dataclass
class PlatformProc:
    proc: subprocess.Popen[str]
    url: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_platform(tmp: Path, port: int, seed: Path | None, *extra: str) -> PlatformProc:
    cmd = [
        *CARE,
        "platform",
        "serve",
        "--port",
        str(port),
        "--db",
        f"sqlite:///{tmp / 'platform.db'}",
    ]
    cmd += ["--district-pepper", str(tmp / "district-pepper"), "--print-url"]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    cmd += extra
    log = (tmp / "platform.log").open("a")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
    log.close()
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, (tmp / "platform.log").read_text()[-2000:]
    url = json.loads(line)["url"]
    httpx.get(url + "/healthz", timeout=30).raise_for_status()
    return PlatformProc(proc, url)


def stop_platform(p: PlatformProc) -> None:
    if p.proc.poll() is None:
        p.proc.send_signal(signal.SIGTERM)
        p.proc.wait(timeout=30)
    if p.proc.stdout is not None:
        p.proc.stdout.close()


@dataclass
class Terminal:
    name: str
    data: Path
    url: str

    def env(self, slot: str) -> dict[str, str]:
        return {
            "CARE_DATA_DIR": str(self.data),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.data),
            "CARE_CENTRE__CENTRE_ID": TERMINALS[self.name],
            "CARE_CENTRE__DEVICE_ID": f"dev-{self.name}",
            "CARE_SYNC__PLATFORM_URL": self.url,
            # whatever the hour the test runs: the slot under test is served all day
            "CARE_PAYMENT__SLOT_WINDOWS": json.dumps({slot: "00:00-23:59"}),
        }

    def settings(self) -> Settings:
        return Settings(
            data_dir=self.data,
            centre=CentreSettings(device_id=f"dev-{self.name}", centre_id=TERMINALS[self.name]),
            sync=SyncSettings(platform_url=self.url),
        )

    def run(self, *args: str, slot: str = "lunch") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CARE, *args], env=self.env(slot), text=True, capture_output=True, timeout=120
        )

    def pay_by_card(self, slot: str, card: str = VISITOR_CARD) -> dict[str, Any]:
        r = self.run("pay", "--method", "card", "--card", card, "--yes", "--json", slot=slot)
        assert r.returncode == 0, (self.name, r.stderr[-2000:])
        return dict(json.loads(r.stdout))

    def sync(self) -> dict[str, Any]:
        r = self.run("sync", "now", "--json")
        assert r.returncode == 0, (self.name, r.stderr[-2000:])
        return dict(json.loads(r.stdout))


def _install_pepper(path: Path) -> None:
    """The district's pepper file (as district IT hands it out), mode 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, PEPPER)
    finally:
        os.close(fd)


def open_district(
    tmp_path: Path, names: tuple[str, ...], *extra: str
) -> tuple[PlatformProc, dict[str, Terminal]]:
    """The platform (``extra``: more ``platform serve`` options) and the terminals
    ``names``, each with the menu and the policy set and the datasets pulled."""
    _install_pepper(tmp_path / "district-pepper")
    pubs = {
        t: provision_device_key(tmp_path / t / "keys" / "device_ed25519.pem") for t in TERMINALS
    }
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps(_seed(pubs), ensure_ascii=False), encoding="utf-8")
    platform = start_platform(tmp_path, _free_port(), seed, *extra)
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(POLICY), encoding="utf-8")
    terminals: dict[str, Terminal] = {}
    try:
        for t in names:
            term = terminals[t] = Terminal(t, tmp_path / t, platform.url)
            _install_pepper(term.data / "keys" / "district-pepper")
            for args in (
                [
                    "menu",
                    "set",
                    "--staff",
                    "s1",
                    "--item",
                    "L1,午餐套餐,15.00,breakfast+lunch+dinner",
                ],
                ["policy", "set", str(policy)],
            ):
                r = term.run(*args)
                assert r.returncode == 0, (t, args, r.stderr[-2000:])
            pulled = {p["kind"]: p["status"] for p in term.sync()["pulls"]}
            assert pulled["district_roster"] == "updated", pulled
    except BaseException:
        stop_platform(platform)
        raise
    return platform, terminals


@pytest.fixture
def district(tmp_path: Path) -> Iterator[tuple[Path, PlatformProc, dict[str, Terminal]]]:
    platform, terminals = open_district(tmp_path, tuple(TERMINALS))
    try:
        yield tmp_path, platform, terminals
    finally:
        stop_platform(platform)


def _records(db: Path) -> dict[str, tuple[str, str | None, str]]:
    with sqlite3.connect(db) as c:
        rows = c.execute(
            "SELECT record_id, stored_as, quarantine_reason, device_id FROM records "
            "WHERE kind = 'meal_transaction'"
        ).fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


# About 45 s on an idle two-core machine (15 command processes and two platform
# starts): part of every run, as the proof.
def test_a_visitor_eats_once_per_slot_across_the_district_and_centres_settle(
    district: tuple[Path, PlatformProc, dict[str, Terminal]],
) -> None:
    tmp, platform, t = district

    # 1. online, lunch: subsidised at B1, refused the subsidy at A1
    lunch_b1 = t["b1"].pay_by_card("lunch")
    assert lunch_b1["subsidy_fen"] == 300 and lunch_b1["visit"]["source"] == "online"
    assert lunch_b1["visit"]["home_centre_id"] == "centre-h" and lunch_b1["visit"]["claim_id"]
    lunch_a1 = t["a1"].pay_by_card("lunch")
    assert lunch_a1["subsidy_fen"] == 0 and lunch_a1["due_fen"] == 1500
    assert lunch_a1["visit"]["source"] == "online" and lunch_a1["visit"]["claim_id"] is None

    # 2. the platform down, dinner: both decide from the roster, for review
    port = int(platform.url.rsplit(":", 1)[1])
    stop_platform(platform)
    dinner_b2 = t["b2"].pay_by_card("dinner")
    dinner_a1 = t["a1"].pay_by_card("dinner")
    for meal in (dinner_b2, dinner_a1):
        assert meal["subsidy_fen"] == 300, meal
        assert (meal["visit"]["source"], meal["visit"]["review"]) == ("roster", True)

    # 3. the platform back (same address): B2 uploads first, then A1 and B1
    platform = start_platform(tmp, port, None)
    try:
        for name in ("b2", "a1", "b1"):
            up = t[name].sync()
            assert all(u.get("drained", True) for u in up["uploads"]), (name, up)
        today = SystemClock().now().date()
        held = _records(tmp / "platform.db")
        ids = {
            k: m["record_id"]
            for k, m in (
                ("lunch_b1", lunch_b1),
                ("lunch_a1", lunch_a1),
                ("dinner_b2", dinner_b2),
                ("dinner_a1", dinner_a1),
            )
        }
        assert held[ids["lunch_b1"]][:2] == ("record", None)
        assert held[ids["lunch_a1"]][:2] == ("record", None)  # full price: nothing to flag
        assert held[ids["dinner_b2"]][:2] == ("record", None)
        assert held[ids["dinner_a1"]][:2] == ("quarantined", "citywide_duplicate_subsidy")

        # A1's flagged dinner is on the review list of both centres
        for name in ("a1", "b2"):
            with VisitsClient.from_settings(t[name].settings()) as c:
                reviews = c.reviews(today, today)
            assert [(r["record_id"], r["held_by_record_id"]) for r in reviews] == [
                (ids["dinner_a1"], ids["dinner_b2"])
            ], name

        # 4. the settlement: exactly B's two subsidised meals, against centre H
        span = [
            "--from",
            (today - timedelta(days=1)).isoformat(),
            "--to",
            (today + timedelta(days=1)).isoformat(),
        ]
        r = subprocess.run(
            [*CARE, "platform", "settlement", "--db", f"sqlite:///{tmp / 'platform.db'}", *span],
            text=True,
            capture_output=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr[-2000:]
        report = json.loads(r.stdout)
        [line] = report["lines"]
        assert (line["claimant_centre_id"], line["debtor_centre_id"]) == ("centre-b", "centre-h")
        assert (line["meals"], line["subsidy_fen"]) == (2, 600)
        assert sorted(line["record_ids"]) == sorted([ids["lunch_b1"], ids["dinner_b2"]])
        r = subprocess.run(
            [
                *CARE,
                "platform",
                "settlement",
                "--db",
                f"sqlite:///{tmp / 'platform.db'}",
                *span,
                "--csv",
            ],
            text=True,
            capture_output=True,
            timeout=120,
        )
        rows = list(csv.reader(io.StringIO(r.stdout)))
        assert rows[1][:2] + rows[1][4:7] == ["centre-b", "centre-h", "2", "600", "6.00"]
    finally:
        stop_platform(platform)
