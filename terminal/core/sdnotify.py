"""systemd service notifications (``Type=notify`` and ``WatchdogSec=``), stdlib only.

The one implementation of the sd_notify datagram protocol in the terminal; the
kiosk and the agent both use it:

* ``READY=1`` once start-up is done (systemd holds ordered units until then);
* ``WATCHDOG=1`` from the loop that does the work, never from a timer thread of
  its own: :meth:`Notifier.alive` is called by each iteration of that loop, so
  a loop that hangs stops the pings and systemd restarts the service;
* ``STATUS=...`` one line a technician reads in ``systemctl status``;
* ``STOPPING=1`` when a clean shutdown begins.

``NOTIFY_SOCKET`` may be a path or an abstract-namespace name (``@name``).
``WATCHDOG_USEC`` is set by systemd from ``WatchdogSec=``; when
``WATCHDOG_PID`` names another process the watchdog is not ours. Outside
systemd every call is a cheap no-op that returns False.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Mapping


def _address(env: Mapping[str, str]) -> str | None:
    addr = env.get("NOTIFY_SOCKET", "")
    if not addr:
        return None
    if addr.startswith("@"):
        return "\0" + addr[1:]
    if not addr.startswith("/"):
        return None  # vsock and other transports are not used on a terminal
    return addr


def notify(*assignments: str, env: Mapping[str, str] | None = None) -> bool:
    """Send one datagram with the ``KEY=value`` lines (e.g. ``"READY=1"``,
    ``"STATUS=sync: 3 queued"``). Returns False when not under systemd or when
    the socket refused the message; never raises."""
    addr = _address(os.environ if env is None else env)
    if addr is None or not assignments:
        return False
    message = "\n".join(a.replace("\n", " ") for a in assignments).encode("utf-8")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(addr)
            s.sendall(message)
    except OSError:
        return False
    return True


def watchdog_usec(env: Mapping[str, str] | None = None, *, pid: int | None = None) -> int | None:
    """``WatchdogSec=`` in microseconds when the watchdog is ours, else None."""
    e = os.environ if env is None else env
    usec = e.get("WATCHDOG_USEC", "").strip()
    if not usec.isdigit() or int(usec) == 0:
        return None
    owner = e.get("WATCHDOG_PID", "").strip()
    if owner.isdigit() and int(owner) != (os.getpid() if pid is None else pid):
        return None
    return int(usec)


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Half of ``WatchdogSec=`` in seconds: the longest allowed gap between two
    pings (systemd's own recommendation), or None without a watchdog."""
    usec = watchdog_usec(env)
    return None if usec is None else usec / 2_000_000


class Notifier:
    """READY / WATCHDOG / STATUS / STOPPING for one service process.

    ``alive()`` is meant for the work loop: it sends ``WATCHDOG=1`` when about
    a quarter of ``WatchdogSec`` has passed since the last ping, so a loop that
    calls it at least every quarter period keeps the gap under half the period.
    A ``STATUS=`` line is only sent when its text changed (or with a ping).
    """

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._env: Mapping[str, str] = dict(os.environ if env is None else env)
        usec = watchdog_usec(self._env)
        self.watchdog_s: float | None = None if usec is None else usec / 1_000_000
        self._mono = monotonic
        self._last_ping = float("-inf")
        self._status = ""
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """True under systemd (``NOTIFY_SOCKET`` set)."""
        return _address(self._env) is not None

    @property
    def ping_every_s(self) -> float | None:
        """How often the work loop should call :meth:`alive` (a quarter of
        ``WatchdogSec``), or None without a watchdog."""
        return None if self.watchdog_s is None else self.watchdog_s / 4

    def send(self, *assignments: str) -> bool:
        return notify(*assignments, env=self._env)

    def ready(self, status: str = "") -> bool:
        lines = ["READY=1"]
        if status:
            self._status = status
            lines.append(f"STATUS={status}")
        sent = self.send(*lines)
        if sent and self.watchdog_s is not None:
            with self._lock:
                self._last_ping = self._mono()
        return sent

    def status(self, text: str) -> bool:
        """Send ``STATUS=text`` when it differs from the last one sent."""
        with self._lock:
            if text == self._status:
                return False
            self._status = text
        return self.send(f"STATUS={text}")

    def alive(self, status: str | None = None) -> bool:
        """Called by each iteration of the work loop. Pings the watchdog when
        due and updates the status line when it changed. Returns True when a
        datagram was sent."""
        lines: list[str] = []
        with self._lock:
            now = self._mono()
            # 10 % slack: a timer that fires a little early still pings
            if self.watchdog_s is not None and now - self._last_ping >= self.watchdog_s * 0.225:
                self._last_ping = now
                lines.append("WATCHDOG=1")
            if status is not None and status != self._status:
                self._status = status
                lines.append(f"STATUS={status}")
        return bool(lines) and self.send(*lines)

    def stopping(self, status: str = "") -> bool:
        lines = ["STOPPING=1"]
        if status:
            lines.append(f"STATUS={status}")
        return self.send(*lines)
