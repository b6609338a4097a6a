"""Typed settings: one model, one file, loaded once at start.

Precedence: defaults < TOML file < environment. The TOML file is, in order,
``$CARE_CONFIG`` or ``<config dir>/config.toml`` (``/etc/care-terminal/config.toml``
on a device); it is read and parsed once per load. Environment variables use the
``CARE_`` prefix and ``__`` for nesting, e.g. ``CARE_FACE__ACCEPT_THRESHOLD=0.5``.

Sections: ``[face]``, ``[camera]``, ``[centre]``, ``[payment]``, ``[footfall]``
(:mod:`terminal.config.footfall`), ``[sync]`` and ``[ota]``
(:mod:`terminal.config.ota`). Every section refuses unknown keys. Features build
their runtime objects from the validated sections (``face.footfall.config``,
``sync.ota.config``) and do not validate raw tables again.

Data directory: ``/var/lib/care-terminal`` on a device (when it exists or
``CARE_DEVICE=1``), otherwise ``$XDG_DATA_HOME/care-terminal``
(``~/.local/share/care-terminal``). ``CARE_DATA_DIR`` overrides both.

Invalid config makes :func:`load_settings` raise
:class:`terminal.core.errors.ConfigError` listing every problem in every
section at once; the kiosk boots into "out of service" with it (code
``config_invalid``, the full text in the journal) and every ``care-terminal``
command prints it and exits 2.

OTA settings lived in a separate ``ota.toml`` before they moved into ``[ota]``.
A terminal updated over the air from such a release still has that file and no
``[ota]`` table (the services cannot write ``/etc/care-terminal``), so the file
is read as the ``[ota]`` table, validated by the same model, with a warning in
the journal: the update keeps working and OTA stays on.
``care-terminal provision`` moves it into config.toml for good. An ``ota.toml``
beside a config.toml that has its own ``[ota]`` is a problem (which one is
meant cannot be guessed).
"""

from __future__ import annotations

import itertools
import os
import re
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from terminal.config.footfall import FootfallSettings, line_problems
from terminal.config.ota import OtaSettings
from terminal.config.section import Section
from terminal.core.errors import ConfigError, field_path
from terminal.core.log import get_logger

log = get_logger(__name__)

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


# payment.domain.MealSlot: the English names (any case) or the Chinese labels.
_MEAL_SLOT_NAMES = frozenset({"breakfast", "lunch", "dinner", "早餐", "午餐", "晚餐"})
_HHMM_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")

# The parsed TOML document of the load in progress (see load_settings).
_TOML_DOC: ContextVar[dict[str, Any] | None] = ContextVar("care_toml_doc", default=None)


class FaceSettings(Section):
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


class CameraSettings(Section):
    # "v4l2:0", "/dev/video0", a video file path, or an image folder.
    source: str = "v4l2:0"
    width: int = Field(640, ge=160)
    height: int = Field(480, ge=120)
    fps: int = Field(15, ge=1, le=60)


class PaymentSettings(Section):
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
    # City-wide meals: what this terminal may subsidise visitors of other centres
    # while the district platform does not answer (payment.visiting.OfflineVisitLimits).
    visit_offline_max_per_slot: int = Field(20, ge=0)
    visit_offline_max_subsidy_fen_per_day: int = Field(20000, ge=0)

    @field_validator("slot_windows")
    @classmethod
    def _windows(cls, v: dict[str, str]) -> dict[str, str]:
        # The rules of payment.domain.SlotWindows.from_dict, checked at boot.
        problems: list[str] = []
        spans: list[tuple[str, str, str]] = []
        for key, text in v.items():
            if key.strip().lower() not in _MEAL_SLOT_NAMES:
                problems.append(f"unknown meal slot {key!r} (breakfast, lunch or dinner)")
                continue
            parts = [p.strip() for p in text.split("-")]
            if len(parts) != 2 or not all(_HHMM_RE.fullmatch(p) for p in parts):
                problems.append(f"window for {key} must be 'HH:MM-HH:MM', not {text!r}")
                continue
            start, end = parts  # zero-padded: text order is time order
            if not start < end:
                problems.append(f"window for {key} must start before it ends ({text!r})")
                continue
            spans.append((start, end, key))
        for a, b in itertools.pairwise(sorted(spans)):
            if b[0] < a[1]:
                problems.append(f"meal slot windows {a[2]} and {b[2]} overlap")
        if problems:
            raise ValueError("; ".join(problems))
        return v


class CentreSettings(Section):
    centre_id: str = "demo-centre"
    centre_name: str = "示范居家养老服务照料中心"
    device_id: str = "demo-terminal-01"


class SyncSettings(Section):
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
    footfall: FootfallSettings = Field(default_factory=FootfallSettings)
    sync: SyncSettings = Field(default_factory=SyncSettings)
    ota: OtaSettings = Field(default_factory=OtaSettings)

    @field_validator("footfall")
    @classmethod
    def _footfall_line_fits(cls, v: FootfallSettings, info: ValidationInfo) -> FootfallSettings:
        # The line's geometry needs a frame size: [camera] width x height, the size
        # the footfall camera is opened with (declared above, so already validated).
        camera = info.data.get("camera")
        if not isinstance(camera, CameraSettings):
            return v  # [camera] itself is invalid: reported there
        problems = line_problems(v.line, camera.width, camera.height)
        if problems:
            raise ValueError("; ".join(problems))
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        doc = _TOML_DOC.get()
        if doc is None:  # Settings() made directly, not by load_settings
            doc = read_config_file(default_config_file())
        return (init_settings, env_settings, InitSettingsSource(settings_cls, init_kwargs=doc))

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


def read_config_file(path: Path) -> dict[str, Any]:
    """The parsed TOML document at ``path`` (empty when there is no file)."""
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc


LEGACY_OTA_FILE = "ota.toml"


def merge_legacy_ota(doc: dict[str, Any], config_file: Path) -> list[str]:
    """Fold a leftover ``ota.toml`` into ``doc`` as its ``[ota]`` table (OTA on,
    as the file's presence meant), or say why it cannot be. Returns problems."""
    problems = []
    old = config_file.parent / LEGACY_OTA_FILE
    if old.exists():
        if "ota" in doc:
            problems.append(
                f"{old}: OTA settings are both in the [ota] section of {config_file} and in "
                f"{old.name}; run `care-terminal provision` again (it merges them into [ota] "
                f"and renames {old.name} to {old.name}.migrated)"
            )
        else:
            try:
                doc["ota"] = {"enabled": True, **read_config_file(old)}
            except ConfigError as exc:
                problems.append(str(exc))
            else:
                log.warning("legacy_ota_config", file=str(old), fix="care-terminal provision")
    if os.environ.get("CARE_OTA_CONFIG"):
        problems.append(
            f"CARE_OTA_CONFIG is no longer read: OTA settings live in the [ota] section of "
            f"{config_file}; move them there and remove the variable "
            "(e.g. from /etc/care-terminal/environment)"
        )
    return problems


def validation_problems(err: ValidationError) -> list[str]:
    """One ``section.key: message`` line per problem."""
    lines = []
    for e in err.errors():
        loc = field_path(e["loc"]) or "(root)"
        msg = e["msg"].removeprefix("Value error, ")  # our own validators' messages
        lines.append(f"{loc}: {msg}")
    return lines


def load_settings(*, config_file: Path | None = None, **overrides: Any) -> Settings:
    """Load and validate every section once. Raises ConfigError listing every
    problem (all sections, and an ota.toml that cannot be read) in one message.

    ``config_file`` replaces ``$CARE_CONFIG`` / the default location (provisioning
    checks the file it wrote); ``overrides`` beat the file and the environment."""
    cfg = config_file or default_config_file()
    settings: Settings | None = None
    doc = read_config_file(cfg)
    problems = merge_legacy_ota(doc, cfg)
    token = _TOML_DOC.set(doc)
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        problems.extend(validation_problems(exc))
    finally:
        _TOML_DOC.reset(token)
    if problems or settings is None:
        raise ConfigError(f"invalid configuration ({cfg}): {'; '.join(problems)}")
    return settings
