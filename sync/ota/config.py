"""OTA settings: ``/etc/care-terminal/ota.toml`` (beside ``$CARE_CONFIG`` when that is
set; ``$CARE_OTA_CONFIG`` overrides both).

Kept in its own file so district IT can change the DDI server or the
maintenance windows without touching the terminal's main config. Secrets
(target token, TLS key) are referenced by file path, never written inline.

Example::

    [ddi]
    base_url = "https://ota.district.example"
    tenant = "DEFAULT"
    controller_id = "centre-0012-t01"
    target_token_file = "/etc/care-terminal/ddi-token"

    [device]
    board = "care-pi4"
    revision = "1"

    [window]
    allowed = ["14:00-16:30", "20:00-06:00"]
    meal_slots = ["10:30-13:30", "16:30-18:30"]
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sync.auth import client_ssl_context
from sync.ota.ddi import DdiConfig
from sync.ota.errors import OtaConfigError
from sync.ota.window import DEFAULT_PAYMENT_FLAG, Slot, WindowPolicy

DEFAULT_CONFIG = Path("/etc/care-terminal/ota.toml")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DdiSection(_Model):
    base_url: str = "http://127.0.0.1:60053"
    tenant: str = "DEFAULT"
    controller_id: str = Field(default="", max_length=128)
    target_token_file: Path | None = None
    gateway_token_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    timeout_s: float = Field(default=30.0, gt=0, le=600)

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")


class DeviceSection(_Model):
    board: str = Field(default="care-pi", pattern=r"^[A-Za-z0-9._-]{1,64}$")
    revision: str = Field(default="1", pattern=r"^[A-Za-z0-9._-]{1,64}$")


class PathsSection(_Model):
    root: Path = Path("/opt/care-terminal")  # releases/, current, spool/
    work_dir: Path = Path("/var/lib/care-terminal/ota")  # downloads, agent state
    trust_dir: Path = Path("/etc/care-terminal/ota-keys")


class PolicySection(_Model):
    allow_downgrade: bool = False
    max_bundle_mb: int = Field(default=1024, ge=1, le=16384)
    max_unpacked_mb: int = Field(default=4096, ge=1, le=65536)
    health_timeout_s: int = Field(default=180, ge=10, le=3600)
    confirmation: Literal["auto", "staff"] = "auto"


class WindowSection(_Model):
    allowed: list[str] = Field(default_factory=list)
    meal_slots: list[str] = Field(default_factory=lambda: ["10:30-13:30", "16:30-18:30"])
    timezone: str = "Asia/Shanghai"
    payment_flag: Path = DEFAULT_PAYMENT_FLAG
    payment_flag_stale_s: float = Field(default=900.0, gt=0)

    @field_validator("allowed", "meal_slots")
    @classmethod
    def _slots(cls, v: list[str]) -> list[str]:
        for s in v:
            try:
                Slot.parse(s)
            except OtaConfigError as exc:
                raise ValueError(str(exc)) from None
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v


class UpdaterSection(_Model):
    # How the agent starts the updater (it then runs on its own, outside the app).
    # Empty: care-terminal-updater.path starts it when spool/request.json appears,
    # so the unprivileged agent needs no right to start units.
    trigger: list[str] = Field(default_factory=list)


class OtaConfig(_Model):
    enabled: bool = True
    ddi: DdiSection = Field(default_factory=DdiSection)
    device: DeviceSection = Field(default_factory=DeviceSection)
    paths: PathsSection = Field(default_factory=PathsSection)
    policy: PolicySection = Field(default_factory=PolicySection)
    window: WindowSection = Field(default_factory=WindowSection)
    updater: UpdaterSection = Field(default_factory=UpdaterSection)

    def window_policy(self) -> WindowPolicy:
        return WindowPolicy.from_strings(
            self.window.allowed, self.window.meal_slots, ZoneInfo(self.window.timezone)
        )

    def ddi_config(self) -> DdiConfig:
        d = self.ddi
        if not d.controller_id:
            raise OtaConfigError("ota.toml: [ddi] controller_id is not set (run provisioning)")
        ctx = None
        if d.base_url.startswith("https://") or d.cert_file:
            ctx = client_ssl_context(d.ca_file, d.cert_file, d.key_file)
        return DdiConfig(
            base_url=d.base_url,
            controller_id=d.controller_id,
            tenant=d.tenant,
            target_token=_read_secret(d.target_token_file),
            gateway_token=_read_secret(d.gateway_token_file),
            ssl_context=ctx,
            timeout_s=d.timeout_s,
        )


def _read_secret(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise OtaConfigError(f"cannot read {path}: {exc.strerror}") from None
    if not text or len(text) > 512 or any(c.isspace() for c in text):
        raise OtaConfigError(f"{path} does not hold a single token")
    return text


def default_config_path() -> Path:
    """``$CARE_OTA_CONFIG``, else ``ota.toml`` beside ``$CARE_CONFIG`` (where
    provisioning writes it), else /etc/care-terminal/ota.toml."""
    explicit = os.environ.get("CARE_OTA_CONFIG")
    if explicit:
        return Path(explicit)
    main = os.environ.get("CARE_CONFIG")
    if main:
        return Path(main).parent / "ota.toml"
    return DEFAULT_CONFIG


def load_ota_config(path: Path | None = None) -> OtaConfig:
    """Load and validate; raise OtaConfigError listing every problem."""
    path = path or default_config_path()
    doc: dict[str, object] = {}
    if path.is_file():
        try:
            with path.open("rb") as fh:
                doc = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise OtaConfigError(f"{path} is not valid TOML: {exc}") from None
    try:
        return OtaConfig.model_validate(doc)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise OtaConfigError(f"invalid OTA configuration ({path}): {problems}") from None
