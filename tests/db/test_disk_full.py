"""A full data partition, on a real (small) tmpfs.

The terminal's data directory is a 6 MB tmpfs; a filler file takes the rest.
A payment is then refused with a one-line "disk full" message (CLI exit 2, a
failure screen in the kiosk), nothing recorded before is lost or moved aside,
and once space is freed the next payment succeeds on an intact hash chain.

Mounting needs root (CAP_SYS_ADMIN); without it these tests skip and say why.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from terminal.app.demo import demo_menu
from terminal.app.services import Services
from terminal.config.settings import Settings
from terminal.core.money import Money
from terminal.db.engine import write_session

CARE = Path(sys.executable).with_name("care-terminal")
WINDOWS = {"breakfast": "00:00-10:00", "lunch": "10:00-15:00", "dinner": "15:00-23:59"}
RESIDENTS = (("R-DF1", "张桂兰", "61000001"), ("R-DF2", "李志明", "61000002"))


def _umount(path: Path) -> None:
    r = subprocess.run(["umount", str(path)], capture_output=True, text=True)
    if r.returncode != 0 and os.path.ismount(path):
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "data"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m,mode=0700", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        _umount(mnt)
    assert not os.path.ismount(mnt)


@dataclass
class Terminal:
    data: Path
    config: Path
    env: dict[str, str]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(CARE), *args], env=self.env, capture_output=True, text=True, timeout=120
        )

    def pay(self, rid: str) -> subprocess.CompletedProcess[str]:
        return self.cli("pay", "--resident", rid, "--method", "card", "--yes", "--json")

    def ledger(self) -> list[dict[str, Any]]:
        r = self.cli("ledger", "show", "--json", "--limit", "100000")
        assert r.returncode == 0, r.stderr
        return list(json.loads(r.stdout))

    def verify(self) -> subprocess.CompletedProcess[str]:
        return self.cli("ledger", "verify", "--json")

    def settings(self) -> Settings:
        old = os.environ.get("CARE_CONFIG")
        os.environ["CARE_CONFIG"] = str(self.config)
        try:
            return Settings()
        finally:
            if old is None:
                os.environ.pop("CARE_CONFIG", None)
            else:
                os.environ["CARE_CONFIG"] = old


def _terminal(base: Path, data: Path) -> Terminal:
    cfg = base / "config.toml"
    windows = ", ".join(f'{k} = "{v}"' for k, v in WINDOWS.items())
    cfg.write_text(
        f'data_dir = "{data}"\n[payment]\nslot_windows = {{ {windows} }}\n'
        "max_unsynced_per_resident_fen = 10000000\nduplicate_guard_any_meal = false\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARE_")}
    env["CARE_CONFIG"] = str(cfg)
    t = Terminal(data, cfg, env)
    svc = Services(t.settings())
    try:
        now = svc.clock.now()
        with write_session(svc.db.sessions) as s:
            for rid, name, card in RESIDENTS:
                svc.roster.upsert(s, rid, name, now, categories=[], card_ids=[card])
        for rid, _n, _c in RESIDENTS:
            svc.payment.topup(rid, Money(500_000), "S-DF", reason="opening balance")
        svc.payment.set_menu(demo_menu(now.date()), "S-DF")
    finally:
        svc.close()
    return t


class Filler:
    """Takes every free block of the partition; ``release`` gives them back."""

    def __init__(self, where: Path) -> None:
        self.path = where / "filler.bin"

    def fill(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for chunk in (1 << 20, 1 << 16, 1 << 12, 1 << 9):
                block = b"\0" * chunk
                try:
                    while True:
                        os.write(fd, block)
                except OSError:
                    pass
        finally:
            os.close(fd)
        st = os.statvfs(self.path.parent)
        assert st.f_bavail * st.f_frsize < 4096, "the partition still has room"

    def release(self) -> None:
        self.path.unlink(missing_ok=True)


def _one_line_disk_full(r: subprocess.CompletedProcess[str]) -> None:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: disk full: the payment was not recorded; free space"), lines


def test_payment_on_a_full_disk_is_refused_and_nothing_is_lost(
    tmp_path: Path, small_disk: Path
) -> None:
    t = _terminal(tmp_path, small_disk)
    paid = []
    for rid, _n, _c in RESIDENTS:
        r = t.pay(rid)
        assert r.returncode == 0, r.stderr
        paid.append(json.loads(r.stdout)["record_id"])
    before = t.ledger()
    assert {e["record_id"] for e in before} >= set(paid)
    db_inode = (small_disk / "terminal.db").stat().st_ino

    filler = Filler(small_disk)
    filler.fill()
    _one_line_disk_full(t.pay(RESIDENTS[0][0]))
    # a read-only command says so too, without a traceback or an internal error
    r = t.verify()
    assert r.returncode == 2 and r.stderr.startswith("error: disk full"), r.stderr
    # nothing was moved aside: a full disk is not a corrupt database
    assert (small_disk / "terminal.db").stat().st_ino == db_inode
    assert not (small_disk / "quarantine").exists()

    filler.release()
    r = t.verify()
    assert r.returncode == 0 and json.loads(r.stdout)["ok"], r.stdout + r.stderr
    assert t.ledger() == before  # every earlier record, byte for byte as shown
    r = t.pay(RESIDENTS[0][0])
    assert r.returncode == 0, r.stderr
    new_id = json.loads(r.stdout)["record_id"]
    after = t.ledger()
    assert len(after) == len(before) + 1 and after[0]["record_id"] == new_id
    assert after[1:] == before
    r = t.verify()
    assert r.returncode == 0 and json.loads(r.stdout)["ok"], r.stdout


def test_kiosk_payment_on_a_full_disk_shows_a_failure_and_recovers(
    tmp_path: Path, small_disk: Path
) -> None:
    """The kiosk holds the database open (its WAL and shared memory exist), so
    the disk fills up under a running terminal: a payment fails inside its
    write transaction, the screen says it did not go through and nothing was
    charged, reads keep working, and the next payment after freeing space works."""
    from payment.flow import CardTapped, Done, Failed, Touch
    from terminal.app.kiosk_compose import build_kiosk
    from terminal.kiosk.runner import wait_for
    from ui.i18n import Translator
    from ui.model import IdleInfo
    from ui.presenters.kiosk import ResultVM, present

    t = _terminal(tmp_path, small_disk)
    svc = Services(t.settings())
    printed: list[Any] = []
    app = build_kiosk(
        svc,
        camera=False,
        sync=False,
        speaker=lambda _key: None,
        printer_port=lambda receipt: (printed.append(receipt) or True, "printed"),
    )
    app.start()
    filler = Filler(small_disk)
    try:
        runner = app.runner

        def pay(card: str) -> Any:
            runner.post(CardTapped(card))
            assert wait_for(lambda: type(runner.current().state).__name__ == "Confirm", 20)
            runner.post(Touch("confirm"))
            assert wait_for(lambda: isinstance(runner.current().state, Done | Failed), 30), (
                runner.current().state
            )
            st = runner.current().state
            runner.post(Touch("confirm"))  # close the result screen
            assert wait_for(lambda: type(runner.current().state).__name__ == "Idle", 20)
            return st

        first = pay(RESIDENTS[0][2])
        assert isinstance(first, Done)
        before = t.ledger()

        # Fill the partition, then pay until a payment fails (the first may
        # still fit into pages SQLite already owns).
        failed = None
        made = [first.record_id]
        for _ in range(40):
            filler.fill()
            st = pay(RESIDENTS[1][2])
            if isinstance(st, Failed):
                failed = st
                break
            made.append(st.record_id)
        assert failed is not None, "no payment failed on a full disk"
        assert failed.reason.value == "charge_failed"
        screen = present(
            failed,
            idle=IdleInfo(centre_name="", day=svc.clock.now().date(), slot=None),
            tr=Translator("zh_CN"),
            now=svc.clock.now(),
        )
        assert isinstance(screen.vm, ResultVM) and screen.vm.tone == "error"
        assert "没有扣款" in screen.vm.title + "".join(screen.vm.lines)

        # Reads still work while the disk is full; nothing recorded is lost.
        r = t.verify()
        assert r.returncode == 0 and json.loads(r.stdout)["ok"], r.stdout + r.stderr
        ids = {e["record_id"] for e in t.ledger()}
        assert set(made) <= ids and {e["record_id"] for e in before} <= ids
        count_full = len(ids)

        filler.release()
        st = pay(RESIDENTS[1][2])
        assert isinstance(st, Done), st
        after = t.ledger()
        assert len(after) == count_full + 1 and after[0]["record_id"] == st.record_id
        r = t.verify()
        assert r.returncode == 0 and json.loads(r.stdout)["ok"], r.stdout
    finally:
        filler.release()
        app.close()
        svc.close()
