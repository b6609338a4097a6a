"""terminal.core.sdnotify against real AF_UNIX datagram sockets (path and
abstract namespace), as systemd's notify socket receives them."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from terminal.core.sdnotify import Notifier, notify, watchdog_interval, watchdog_usec


@pytest.fixture
def sock(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    s.bind(path)
    s.settimeout(2)
    yield s, path
    s.close()


def test_notify_sends_one_datagram_per_call(sock: tuple[socket.socket, str]) -> None:
    srv, path = sock
    assert notify("READY=1", "STATUS=sync: 0 queued", env={"NOTIFY_SOCKET": path})
    assert srv.recv(4096) == b"READY=1\nSTATUS=sync: 0 queued"
    # a newline inside a value cannot forge a second assignment
    assert notify("STATUS=a\nWATCHDOG=1", env={"NOTIFY_SOCKET": path})
    assert srv.recv(4096) == b"STATUS=a WATCHDOG=1"


def test_abstract_namespace_socket() -> None:
    name = f"care-terminal-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as srv:
        srv.bind("\0" + name)
        srv.settimeout(2)
        assert notify("WATCHDOG=1", env={"NOTIFY_SOCKET": "@" + name})
        assert srv.recv(100) == b"WATCHDOG=1"


def test_outside_systemd_everything_is_a_quiet_no_op(tmp_path: Path) -> None:
    assert not notify("READY=1", env={})
    assert not notify("READY=1", env={"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert not notify("READY=1", env={"NOTIFY_SOCKET": "relative/path"})
    n = Notifier({})
    assert not n.enabled and n.watchdog_s is None and n.ping_every_s is None
    assert not n.ready("x") and not n.alive("y") and not n.stopping()


@pytest.mark.parametrize(
    ("env", "usec"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "20000000"}, 20_000_000),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"}, None),  # another process's
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(os.getpid())}, 20_000_000),
        ({"WATCHDOG_USEC": "junk"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
    ],
)
def test_watchdog_from_environment(env: dict[str, str], usec: int | None) -> None:
    assert watchdog_usec(env) == usec
    assert watchdog_interval(env) == (None if usec is None else usec / 2_000_000)


def test_notifier_pings_only_when_due_and_status_only_when_changed(
    sock: tuple[socket.socket, str],
) -> None:
    srv, path = sock
    t = [100.0]
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"}, monotonic=lambda: t[0])
    assert n.watchdog_s == 4.0 and n.ping_every_s == 1.0
    assert n.ready("starting")
    assert srv.recv(100) == b"READY=1\nSTATUS=starting"
    t[0] += 0.5
    assert not n.alive("starting")  # too soon and nothing changed: nothing sent
    assert n.alive("sync: 3 queued")  # a new status goes at once, without a ping
    assert srv.recv(100) == b"STATUS=sync: 3 queued"
    t[0] += 0.5
    assert n.alive()
    assert srv.recv(100) == b"WATCHDOG=1"
    t[0] += 1.0
    assert n.alive("sync: 0 queued, last ack 12:03")
    assert srv.recv(100) == b"WATCHDOG=1\nSTATUS=sync: 0 queued, last ack 12:03"
    assert n.stopping("sync: stopping")
    assert srv.recv(100) == b"STOPPING=1\nSTATUS=sync: stopping"
