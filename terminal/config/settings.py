"""Typed settings, loaded once at start.

Precedence: defaults < TOML file < environment. The TOML file is, in order,
``$CARE_CONFIG`` or ``<config dir>/config.toml``. Environment variables use the
``CARE_`` prefix and ``__`` for nesting, e.g. ``CARE_FACE__ACCEPT_THRESHOLD=0.5``.

Data directory: ``/var/lib/care-terminal`` on a device (when it exists or
``CARE_DEVICE=1``), otherwise ``$XDG_DATA_HOME/care-terminal``
(``~/.local/share/care-terminal``). ``CARE_DATA_DIR`` overrides both.

Invalid config raises :class:`terminal.core.errors.ConfigError` with every
problem listed; the composition root boots into "out of service" with it.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from terminal.core.errors import ConfigError

DEVICE_DATA_DIR = Path("/var/lib/care-terminal")
DEVICE_CONFIG_DIR = Path("/etc/care-terminal")


def _on_device() -> bool:
    flag = os.environ.get("CARE_DEVICE")
    if flag is not None:
        return flag not in ("", "0", "false", "no")
    return DEVICE_DATA_DIR.is_dir()


def default_data_dir() -> Path:
    if _on_device():
        return DEVICE_DATA_DIR
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "care-terminal"


def default_config_file() -> Path:
    explicit = os.environ.get("CARE_CONFIG")
    if explicit:
        return Path(explicit)
    if _on_device():
        return DEVICE_CONFIG_DIR / "config.toml"
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(xdg) / "care-terminal" / "config.toml"


def device_key_path(data_dir: Path) -> Path:
    """The device's Ed25519 key: one convention for provisioning, the agent and the docs."""
    return data_dir / "keys" / "device_ed25519.pem"


def default_cache_dir() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "care-terminal"


class FaceSettings(BaseModel):
    """Recognition settings. Threshold calibration is documented in README.md."""

    pack: Literal["open", "insightface"] = "open"
    # Directory of the model pack; empty means <data_dir>/models/<pack>.
    pack_dir: Path | None = None
    # Cosine similarity on L2-normalised 512-d embeddings. Defaults calibrated
    # for the open pack on ../shared/testdata/faces (see notes/calibration.md):
    # same-identity pairs 0.53..0.85, different identities <= 0.15 (<= 0.38 with
    # insightface's sample faces). Recalibrate for another pack (`face eval`).
    accept_threshold: float = Field(0.50, ge=-1.0, le=1.0)
    # Below accept but above this: "uncertain" (needs a second factor).
    uncertain_threshold: float = Field(0.40, ge=-1.0, le=1.0)
    # Best identity must beat the second-best identity by this much.
    min_margin: float = Field(0.10, ge=0.0, le=2.0)
    min_face_px: int = Field(80, ge=16)
    max_yaw_deg: float = Field(30.0, gt=0)
    max_pitch_deg: float = Field(30.0, gt=0)
    max_roll_deg: float = Field(35.0, gt=0)
    # Variance of the Laplacian on the aligned 112x112 grey face (see face/quality.py).
    min_sharpness: float = Field(60.0, ge=0)
    min_brightness: float = Field(50.0, ge=0, le=255)
    max_brightness: float = Field(210.0, ge=0, le=255)
    # A second face at least this fraction of the largest face's width -> "one person please".
    multi_face_ratio: float = Field(0.7, gt=0, le=1.0)
    # Passive model (fr_liveness) live probability needed by the passive signal.
    liveness_threshold: float = Field(0.5, ge=0, le=1)
    # Liveness signals that must all pass: the active challenge (always: a 3-D head
    # turn to a random side, by the re-identified paying face; optionally a blink
    # too), the passive model's median over the challenge frames, an IR camera.
    # There is no setting that skips the challenge (see docs/liveness.md).
    liveness_passive: bool = True
    liveness_challenge: Literal["turn", "turn_and_blink"] = "turn"
    liveness_ir: bool = False
    # Seconds the senior has for the turn, counted from the prompt.
    liveness_challenge_seconds: float = Field(6.0, gt=0, le=60)
    # The prompt appears after a random delay in this range (seconds), so a
    # recording cannot be timed to it.
    liveness_prompt_delay_s: tuple[float, float] = (0.2, 0.6)
    intra_op_threads: int = Field(2, ge=1, le=16)
    # onnxruntime graph optimisation; "all" measured fastest on x86, re-measure on the Pi.
    graph_optimization: Literal["disabled", "basic", "extended", "all"] = "all"
    # Detector of an open pack: fr_detect + 68 landmarks, or CenterFace (5 landmarks, slower).
    detector: Literal["default", "centerface"] = "default"
    enrol_min_images: int = Field(1, ge=1)
    enrol_max_templates: int = Field(5, ge=1, le=20)

    @field_validator("liveness_challenge", mode="before")
    @classmethod
    def _no_weaker_challenge(cls, v: object) -> object:
        if v in ("none", "blink", "blink_or_turn"):
            raise ValueError(
                f"face.liveness_challenge={v!r} is no longer offered: a still photo can pass it; "
                "use 'turn' (default) or 'turn_and_blink'"
            )
        return v

    @model_validator(mode="after")
    def _ordered(self) -> FaceSettings:
        lo, hi = self.liveness_prompt_delay_s
        if not 0 <= lo <= hi <= 5:
            raise ValueError("face.liveness_prompt_delay_s must be 0 <= min <= max <= 5 seconds")
        if self.uncertain_threshold > self.accept_threshold:
            raise ValueError("face.uncertain_threshold must not exceed face.accept_threshold")
        if self.min_brightness >= self.max_brightness:
            raise ValueError("face.min_brightness must be below face.max_brightness")
        return self


class CameraSettings(BaseModel):
    # "v4l2:0", "/dev/video0", a video file path, or an image folder.
    source: str = "v4l2:0"
    width: int = Field(640, ge=160)
    height: int = Field(480, ge=120)
    fps: int = Field(15, ge=1, le=60)


class PaymentSettings(BaseModel):
    """Meal payment limits and windows (subsidy policies and menus are data, not config)."""

    # "HH:MM-HH:MM" per slot, centre-local time.
    slot_windows: dict[str, str] = Field(
        default_factory=lambda: {
            "breakfast": "06:30-09:00",
            "lunch": "10:30-13:30",
            "dinner": "16:30-19:00",
        }
    )
    max_per_transaction_fen: int = Field(5000, ge=0)
    max_unsynced_per_resident_fen: int = Field(20000, ge=0)
    max_unsynced_per_terminal_fen: int = Field(500000, ge=0)
    # Face payments at or above this amount also need phone last-4 or a card tap.
    large_amount_fen: int = Field(2000, ge=0)
    overdraft_limit_fen: int = Field(0, ge=0)
    # Any earlier meal in the slot blocks a second one (staff or 再来一份 let it through);
    # False narrows the guard to subsidised meals only.
    duplicate_guard_any_meal: bool = True
    # Below this passive liveness score an identification fails at once (a crude
    # screen replay); above it the active challenge is always asked.
    liveness_reject_below: float = Field(0.10, ge=0, le=1)


class CentreSettings(BaseModel):
    centre_id: str = "demo-centre"
    centre_name: str = "示范居家养老服务照料中心"
    device_id: str = "demo-terminal-01"


class SyncSettings(BaseModel):
    """Sync with the district platform (see sync/README.md)."""

    # Base URL of the district platform; the reference server listens on 127.0.0.1:8470.
    platform_url: str = "http://127.0.0.1:8470"
    # Records per upload batch (the spec allows up to 2000).
    batch_size: int = Field(500, ge=1, le=2000)
    timeout_s: float = Field(30.0, gt=0, le=600)
    # Exponential backoff with full jitter: uniform(0, min(cap, base * 2**attempt)).
    backoff_base_s: float = Field(1.0, gt=0)
    backoff_cap_s: float = Field(300.0, gt=0)
    # Longest Retry-After the terminal honours (a bad header cannot park it for days).
    max_retry_after_s: float = Field(3600.0, ge=0)
    # Agent loop: pause when the queue is empty, pull and heartbeat periods.
    idle_interval_s: float = Field(15.0, gt=0)
    pull_interval_s: float = Field(300.0, gt=0)
    heartbeat_interval_s: float = Field(600.0, gt=0)
    # Empty means <data_dir>/sync.db.
    sync_db_url: str | None = None
    # Device Ed25519 key; empty means <data_dir>/keys/device_ed25519.pem.
    device_key_file: Path | None = None
    # TLS: CA bundle for the platform certificate (empty: system store); client
    # certificate and key for mutual TLS (both or neither).
    tls_ca_file: Path | None = None
    tls_client_cert: Path | None = None
    tls_client_key: Path | None = None
    # The kiosk writes camera/printer health here for the heartbeat; empty means
    # <data_dir>/run/kiosk_health.json.
    health_file: Path | None = None

    @model_validator(mode="after")
    def _pairs(self) -> SyncSettings:
        if (self.tls_client_cert is None) != (self.tls_client_key is None):
            raise ValueError("sync.tls_client_cert and sync.tls_client_key go together")
        if self.backoff_base_s > self.backoff_cap_s:
            raise ValueError("sync.backoff_base_s must not exceed sync.backoff_cap_s")
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CARE_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    data_dir: Path = Field(default_factory=default_data_dir)
    cache_dir: Path = Field(default_factory=default_cache_dir)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    language: Literal["zh_CN", "en"] = "zh_CN"
    # Path of the AES key file for data at rest; empty means <data_dir>/keys/data.key,
    # or $CREDENTIALS_DIRECTORY/care-terminal-data-key under systemd.
    key_file: Path | None = None
    db_url: str | None = None
    face: FaceSettings = Field(default_factory=FaceSettings)
    camera: CameraSettings = Field(default_factory=CameraSettings)
    centre: CentreSettings = Field(default_factory=CentreSettings)
    payment: PaymentSettings = Field(default_factory=PaymentSettings)
    # [footfall] table, validated by face.footfall.config.FootfallConfig.from_mapping
    # when the counter starts (line, source, detector, staff_ids, ...).
    footfall: dict[str, Any] = Field(default_factory=dict)
    sync: SyncSettings = Field(default_factory=SyncSettings)

    # toml file location is resolved at load time (see load_settings)
    _toml_file: Path | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = default_config_file()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)

    # Derived paths -------------------------------------------------------
    @property
    def db_path(self) -> Path:
        return self.data_dir / "terminal.db"

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.db_path}"

    @property
    def sync_db_url(self) -> str:
        return self.sync.sync_db_url or f"sqlite:///{self.data_dir / 'sync.db'}"

    @property
    def device_key_file(self) -> Path:
        return self.sync.device_key_file or device_key_path(self.data_dir)

    @property
    def kiosk_health_file(self) -> Path:
        return self.sync.health_file or (self.data_dir / "run" / "kiosk_health.json")

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def face_pack_dir(self) -> Path:
        return self.face.pack_dir or (self.models_dir / self.face.pack)

    @property
    def data_key_file(self) -> Path:
        if self.key_file:
            return self.key_file
        creds = os.environ.get("CREDENTIALS_DIRECTORY")
        if creds and (Path(creds) / "care-terminal-data-key").is_file():
            return Path(creds) / "care-terminal-data-key"
        return self.data_dir / "keys" / "data.key"


def _format_validation(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(root)"
        lines.append(f"{loc}: {e['msg']}")
    return "; ".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Load and validate settings once. Raises ConfigError with every problem."""
    cfg = default_config_file()
    if cfg.is_file():
        try:
            with cfg.open("rb") as fh:
                tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {cfg} is not valid TOML: {exc}") from exc
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration ({cfg}): {_format_validation(exc)}") from exc
