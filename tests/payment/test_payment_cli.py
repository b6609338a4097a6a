"""`care-terminal pay` asks for the same confirmation as the touch screen (the
quote, then y/N on a terminal or --yes), names staff for a staff payment, and
charges a second meal only when asked for another portion. Real CLI processes
on a real data directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def cli(data: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"CARE_DATA_DIR": str(data), "PATH": "/usr/bin:/bin", "HOME": str(data)}
    return subprocess.run(
        [sys.executable, "-m", "terminal.app.cli", *args],
        env=env,
        text=True,
        input=stdin,
        capture_output=True,
        check=False,
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("data")
    for args in (
        ["menu", "set", "--staff", "s1", "--item", "D1,晚餐套餐,12.00,breakfast+lunch+dinner"],
        ["residents", "add", "--resident-id", "R1", "--name", "张三华", "--staff", "s1"],
        ["topup", "--resident", "R1", "--amount", "100", "--staff", "s1"],
    ):
        r = cli(d, *args)
        assert r.returncode == 0, (args, r.stderr)
    return d


def charges(data: Path) -> list[dict[str, object]]:
    r = cli(data, "ledger", "show", "--json")
    assert r.returncode == 0, r.stderr
    return [t for t in json.loads(r.stdout) if t["kind"] == "charge" and not t["voided"]]


PAY = ["pay", "--resident", "R1", "--slot", "dinner", "--method", "staff"]


def test_pay_needs_staff_and_a_confirmation(data: Path) -> None:
    r = cli(data, *PAY, "--yes")
    assert r.returncode != 0 and "--staff" in r.stderr
    r = cli(data, *PAY, "--staff", "s1", "--json")  # no terminal, no --yes
    assert r.returncode != 0 and "--yes" in r.stderr
    assert "to pay 12.00 yuan" in r.stderr  # the quote was shown first
    assert charges(data) == []


def test_pay_with_yes_then_a_second_meal_only_as_another_portion(data: Path) -> None:
    r = cli(data, *PAY, "--staff", "s1", "--yes", "--json")
    assert r.returncode == 0, r.stderr
    first = json.loads(r.stdout)
    assert first["due_fen"] == 1200
    r = cli(data, *PAY, "--staff", "s1", "--yes")  # the same meal again
    assert r.returncode != 0 and "AlreadyPaid" in r.stderr and "--another-portion" in r.stderr
    assert len(charges(data)) == 1
    r = cli(data, *PAY, "--staff", "s1", "--another-portion", "--yes", "--json")
    assert r.returncode == 0, r.stderr
    assert "another portion" in r.stderr and json.loads(r.stdout)["subsidy_fen"] == 0
    assert len(charges(data)) == 2
