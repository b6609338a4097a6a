"""One sd_notify implementation: only terminal.core.sdnotify reads systemd's
notification environment (``NOTIFY_SOCKET``, ``WATCHDOG_USEC``, ``WATCHDOG_PID``).
Everything else sends through its ``Notifier``. (deploy/updater is a separate
stdlib-only program installed apart from this package and is not checked.)"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("terminal", "face", "payment", "sync", "ui")
THE_ONE = REPO / "terminal" / "core" / "sdnotify.py"
SYSTEMD_NAMES = frozenset({"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"})


def systemd_names_used(source: str) -> list[str]:
    """String literals naming systemd's variables (docstrings mentioning them
    in prose do not count: only a literal that is exactly the name)."""
    return sorted(
        {
            node.value
            for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Constant) and node.value in SYSTEMD_NAMES
        }
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("os.environ.get('NOTIFY_SOCKET')", ["NOTIFY_SOCKET"]),
        (
            "addr = os.environ['NOTIFY_SOCKET']\nu = env['WATCHDOG_USEC']",
            ["NOTIFY_SOCKET", "WATCHDOG_USEC"],
        ),
        ('"""Sends READY=1 over NOTIFY_SOCKET via terminal.core.sdnotify."""', []),
        ("notifier.send('READY=1')", []),
    ],
)
def test_the_checker(source: str, expected: list[str]) -> None:
    assert systemd_names_used(source) == expected


def test_only_terminal_core_sdnotify_handles_the_notify_socket() -> None:
    assert systemd_names_used(THE_ONE.read_text(encoding="utf-8")), "the rule lost its anchor"
    found = {
        str(path.relative_to(REPO)): names
        for package in PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
        if path != THE_ONE and (names := systemd_names_used(path.read_text(encoding="utf-8")))
    }
    assert found == {}, f"use terminal.core.sdnotify.Notifier instead: {found}"
