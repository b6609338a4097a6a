"""When may an update start? Maintenance windows, meal service and payments.

Rules (all in the centre's local time):

* never during a meal-service slot (``meal_slots``, e.g. 10:30-13:30);
* only inside an allowed window when any are configured (``allowed``, e.g.
  14:00-16:30 and 21:00-06:00; windows may wrap past midnight);
* never while a payment flow is active on the kiosk;
* never while the DDI server says the maintenance window is unavailable.

Downloading and verifying may happen at any time (they do not disturb the
kiosk); only activation (switching releases, restarting the kiosk) is gated.

The payment-active signal is a small file the kiosk keeps while a payment
flow is between "started" and "finished" (see :class:`PaymentActivityFlag`):
``/run/care-terminal/payment-active`` by default, JSON with the kiosk's pid,
boot id and start time. ``/run`` is a tmpfs, so a reboot clears it; a flag
from a dead process or older than ``stale_after_s`` is ignored (and logged),
so a crashed kiosk cannot block updates forever.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, time, timedelta, tzinfo
from pathlib import Path

from sync.ota.errors import OtaConfigError
from terminal.core.atomic import atomic_write_text
from terminal.core.clock import CHINA_TZ
from terminal.core.log import get_logger

log = get_logger(__name__)

DEFAULT_PAYMENT_FLAG = Path("/run/care-terminal/payment-active")
_SLOT_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]|24):([0-5]\d)$")


@dataclass(frozen=True, slots=True)
class Slot:
    """A daily time range [start, end); end <= start means it wraps midnight."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> Slot:
        m = _SLOT_RE.fullmatch(text.strip())
        if not m:
            raise OtaConfigError(f"time slot {text!r} must look like 14:00-16:30")
        sh, sm, eh, em = (int(g) for g in m.groups())
        if eh == 24 and em != 0:
            raise OtaConfigError(f"time slot {text!r}: 24 only as 24:00")
        start, end = time(sh, sm), time(0, 0) if eh == 24 else time(eh, em)
        if start == end and eh != 24:
            raise OtaConfigError(f"time slot {text!r} is empty")
        return cls(start, end)

    def contains(self, t: time) -> bool:
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end  # wraps midnight (or 00:00-24:00)

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


@dataclass(frozen=True, slots=True)
class WindowPolicy:
    allowed: tuple[Slot, ...] = ()
    meal_slots: tuple[Slot, ...] = ()
    tz: tzinfo = CHINA_TZ

    @classmethod
    def from_strings(
        cls, allowed: Sequence[str] = (), meal_slots: Sequence[str] = (), tz: tzinfo = CHINA_TZ
    ) -> WindowPolicy:
        return cls(
            tuple(Slot.parse(s) for s in allowed), tuple(Slot.parse(s) for s in meal_slots), tz
        )


@dataclass(frozen=True, slots=True)
class GateDecision:
    allowed: bool
    reason: str  # "ok", "meal_service", "outside_window", "payment_active", "server_window"
    retry_in_s: float


def _clock_allows(policy: WindowPolicy, t: time) -> str:
    if any(s.contains(t) for s in policy.meal_slots):
        return "meal_service"
    if policy.allowed and not any(s.contains(t) for s in policy.allowed):
        return "outside_window"
    return "ok"


def _next_opening(policy: WindowPolicy, local: datetime) -> float:
    """Seconds until the clock rules next allow activation (scans minute steps
    at slot boundaries over two days; 3600 s when nothing opens)."""
    day0 = local.replace(hour=0, minute=0, second=0, microsecond=0)
    candidates: list[datetime] = []
    for d in range(3):
        day = day0 + timedelta(days=d)
        for s in (*policy.allowed, *policy.meal_slots):
            for t in (s.start, s.end):
                candidates.append(day.replace(hour=t.hour, minute=t.minute))
    for c in sorted(candidates):
        if c > local and _clock_allows(policy, c.timetz().replace(tzinfo=None)) == "ok":
            return max(1.0, (c - local).total_seconds())
    return 3600.0


def decide(
    now: datetime,
    policy: WindowPolicy,
    *,
    payment_active: bool,
    server_window_available: bool = True,
) -> GateDecision:
    """May activation start at ``now``? Pure."""
    if now.tzinfo is None:
        raise ValueError("decide() needs an aware datetime")
    local = now.astimezone(policy.tz)
    reason = _clock_allows(policy, local.time())
    if reason != "ok":
        return GateDecision(False, reason, _next_opening(policy, local))
    if not server_window_available:
        return GateDecision(False, "server_window", 60.0)
    if payment_active:
        return GateDecision(False, "payment_active", 15.0)
    return GateDecision(True, "ok", 0.0)


# -- the payment-active flag ------------------------------------------------------------


def current_boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PaymentActivityFlag:
    """The kiosk marks "a payment flow is active" here; the OTA agent reads it.

    Kiosk side::

        flag = PaymentActivityFlag()
        with flag.active():          # from payment flow start ...
            run_payment_flow()       # ... until it finished or was abandoned
    """

    def __init__(self, path: Path = DEFAULT_PAYMENT_FLAG, stale_after_s: float = 900.0) -> None:
        self.path = path
        self.stale_after_s = stale_after_s

    def set(self, now: datetime) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"pid": os.getpid(), "boot_id": current_boot_id(), "since": now.isoformat()}
        atomic_write_text(self.path, json.dumps(doc))

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    @contextmanager
    def active(self, now: datetime | None = None) -> Iterator[None]:
        self.set(now or datetime.now(CHINA_TZ))
        try:
            yield
        finally:
            self.clear()

    def is_active(self, now: datetime) -> bool:
        """True while a live kiosk process holds the flag (not stale)."""
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            pid, boot, since = int(doc["pid"]), str(doc.get("boot_id", "")), str(doc["since"])
            started = datetime.fromisoformat(since)
        except FileNotFoundError:
            return False
        except (OSError, ValueError, KeyError, TypeError):
            # Damaged flag (it is written atomically, so this is unusual): honour
            # it while it is fresh, ignore it once stale.
            try:
                age = now.timestamp() - self.path.stat().st_mtime
            except OSError:
                return False
            return age <= self.stale_after_s
        if boot and boot != current_boot_id():
            log.warning("payment_flag_stale", reason="other_boot")
            return False
        if not _pid_alive(pid):
            log.warning("payment_flag_stale", reason="process_gone")
            return False
        age = (now - started).total_seconds() if started.tzinfo else 0.0
        if age > self.stale_after_s:
            log.warning("payment_flag_stale", reason="too_old", age_s=round(age))
            return False
        return True
