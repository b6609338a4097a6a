"""The ``[ota]`` section of config.toml: the DDI server, the hardware, release
paths, the update policy and the maintenance windows.

``care-terminal provision --ddi URL`` writes it (``enabled = true`` and the
``[ota.ddi]``, ``[ota.device]``, ``[ota.paths]``, ``[ota.window]`` and
``[ota.updater]`` tables it owns); district IT may add or change the rest.
Secrets (the DDI target token, TLS keys) are referenced by file path, never
written inline. Example::

    [ota]
    enabled = true

    [ota.ddi]
    base_url = "https://ota.district.example"
    tenant = "DEFAULT"
    controller_id = "centre-0012-t01"
    target_token_file = "/etc/care-terminal/ddi-token"

    [ota.device]
    board = "care-pi4"
    revision = "1"

    [ota.window]
    allowed = ["14:00-16:30", "20:00-06:00"]
    meal_slots = ["10:30-13:30", "16:30-18:30"]

Every value is checked here, at boot, with the rest of the configuration
(time slots, the time zone, the DDI URL, TLS pairs). :mod:`sync.ota.config`
builds the OTA client's runtime objects from this validated section; what it
still checks at run time is the file system (the token file must be readable).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from terminal.config.section import Section

# Where the kiosk keeps its "a payment is running" flag (sync.ota.window.DEFAULT_PAYMENT_FLAG).
DEFAULT_PAYMENT_FLAG = Path("/run/care-terminal/payment-active")

# A daily slot "HH:MM-HH:MM" in the centre's time zone; end <= start wraps past
# midnight, "24:00" only as an end. Same rule as sync.ota.window.Slot.parse.
_SLOT_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]|24):([0-5]\d)$")


def slot_problem(text: str) -> str | None:
    """Why ``text`` is not a maintenance/meal time slot, or None when it is one."""
    m = _SLOT_RE.fullmatch(text.strip())
    if not m:
        return f"time slot {text!r} must look like 14:00-16:30"
    sh, sm, eh, em = (int(g) for g in m.groups())
    if eh == 24 and em != 0:
        return f"time slot {text!r}: 24 only as 24:00"
    if (sh, sm) == (eh, em):
        return f"time slot {text!r} is empty"
    return None


class DdiSection(Section):
    """``[ota.ddi]``: the hawkBit DDI server and this terminal's controller."""

    base_url: str = "http://127.0.0.1:60053"
    tenant: str = Field("DEFAULT", min_length=1)
    # Empty until provisioning writes it (the device id by default).
    controller_id: str = Field("", max_length=128)
    target_token_file: Path | None = None
    gateway_token_file: Path | None = None
    # TLS: CA bundle for the server certificate (empty: system store); client
    # certificate and key for mutual TLS (both or neither).
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    timeout_s: float = Field(30.0, gt=0, le=600)

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _pairs(self) -> DdiSection:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("ota.ddi.cert_file and ota.ddi.key_file go together")
        return self


class DeviceSection(Section):
    """``[ota.device]``: the hardware a bundle must be built for."""

    board: str = Field("care-pi", pattern=r"^[A-Za-z0-9._-]{1,64}$")
    revision: str = Field("1", pattern=r"^[A-Za-z0-9._-]{1,64}$")


class PathsSection(Section):
    """``[ota.paths]``."""

    root: Path = Path("/opt/care-terminal")  # releases/, current, spool/
    work_dir: Path = Path("/var/lib/care-terminal/ota")  # downloads, agent state
    trust_dir: Path = Path("/etc/care-terminal/ota-keys")  # <key_id>.pub release keys


class PolicySection(Section):
    """``[ota.policy]``."""

    allow_downgrade: bool = False
    max_bundle_mb: int = Field(1024, ge=1, le=16384)
    max_unpacked_mb: int = Field(4096, ge=1, le=65536)
    health_timeout_s: int = Field(180, ge=10, le=3600)
    # "staff": the kiosk asks a staff member to confirm a deployment.
    confirmation: Literal["auto", "staff"] = "auto"


class WindowSection(Section):
    """``[ota.window]``: when an update may be activated (sync/ota/window.py)."""

    # Maintenance windows; empty means any time outside meal service.
    allowed: list[str] = Field(default_factory=list)
    # Never during these (meal service).
    meal_slots: list[str] = Field(default_factory=lambda: ["10:30-13:30", "16:30-18:30"])
    timezone: str = "Asia/Shanghai"
    payment_flag: Path = DEFAULT_PAYMENT_FLAG
    payment_flag_stale_s: float = Field(900.0, gt=0)

    @field_validator("allowed", "meal_slots")
    @classmethod
    def _slots(cls, v: list[str]) -> list[str]:
        problems = [p for p in map(slot_problem, v) if p]
        if problems:
            raise ValueError("; ".join(problems))
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v


class UpdaterSection(Section):
    """``[ota.updater]``: how the agent starts the updater (it then runs on its
    own, outside the app). Empty: care-terminal-updater.path starts it when
    spool/request.json appears, so the unprivileged agent needs no right to
    start units."""

    trigger: list[str] = Field(default_factory=list)


class OtaSettings(Section):
    """``[ota]``. Off until provisioning (``--ddi``) turns it on."""

    enabled: bool = False
    ddi: DdiSection = Field(default_factory=DdiSection)
    device: DeviceSection = Field(default_factory=DeviceSection)
    paths: PathsSection = Field(default_factory=PathsSection)
    policy: PolicySection = Field(default_factory=PolicySection)
    window: WindowSection = Field(default_factory=WindowSection)
    updater: UpdaterSection = Field(default_factory=UpdaterSection)

    @model_validator(mode="after")
    def _controller(self) -> OtaSettings:
        if self.enabled and not self.ddi.controller_id:
            raise ValueError(
                "ota.enabled needs ota.ddi.controller_id (run `care-terminal provision --ddi URL`)"
            )
        return self
