"""systemd notifications (``Type=notify`` + ``WatchdogSec=``) without libsystemd.

The kiosk and the agent call :func:`notify` with ``READY=1`` once started and
run a :class:`WatchdogPinger` whose ``ping_if_alive`` is called from their
main loop (not from a free-running thread, so a hung main loop stops the
pings and systemd restarts the service). Outside systemd every call is a no-op.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable


def notify(state: str, *, env: dict[str, str] | None = None) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``, ``"WATCHDOG=1"``, ``"STATUS=..."``) to
    ``$NOTIFY_SOCKET``. Returns False when not under systemd."""
    e = env if env is not None else os.environ
    addr = e.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        try:
            s.connect(addr)
            s.sendall(state.encode("utf-8"))
        except OSError:
            return False
    return True


def watchdog_interval(env: dict[str, str] | None = None) -> float | None:
    """Half of ``WatchdogSec`` (the recommended ping period), or None."""
    e = env if env is not None else os.environ
    usec = e.get("WATCHDOG_USEC")
    pid = e.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return None
    return int(usec) / 2_000_000


class WatchdogPinger:
    """Ping the watchdog at most every half period, from the caller's loop."""

    def __init__(
        self, env: dict[str, str] | None = None, monotonic: Callable[[], float] = time.monotonic
    ):
        self._env = env
        self._interval = watchdog_interval(env)
        self._mono = monotonic
        self._last = float("-inf")

    @property
    def enabled(self) -> bool:
        return self._interval is not None

    def ping_if_alive(self) -> bool:
        if self._interval is None:
            return False
        now = self._mono()
        if now - self._last < self._interval:
            return False
        self._last = now
        return notify("WATCHDOG=1", env=self._env)
