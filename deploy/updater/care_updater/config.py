"""Updater settings: ``/etc/care-terminal/updater.toml`` (or ``--config``)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

DEFAULT_CONFIG = Path("/etc/care-terminal/updater.toml")
_UNITS = ["care-terminal-kiosk.service", "care-terminal-agent.service"]


class UpdaterConfigError(Exception):
    pass


@dataclass
class UpdaterConfig:
    root: Path = Path("/opt/care-terminal")
    db_path: Path = Path("/var/lib/care-terminal/terminal.db")
    health_file: Path = Path("/run/care-terminal/health.json")
    health_timeout_s: float = 180.0
    health_poll_s: float = 1.0
    stop_command: list[str] = field(default_factory=lambda: ["systemctl", "stop", *_UNITS])
    start_command: list[str] = field(default_factory=lambda: ["systemctl", "start", *_UNITS])
    recover_command: list[str] = field(
        default_factory=lambda: ["systemctl", "reset-failed", "care-terminal-kiosk.service"]
    )
    command_timeout_s: float = 120.0
    migrate_timeout_s: float = 900.0
    keep_releases: int = 3
    crash_threshold: int = 3
    crash_window_s: float = 900.0
    max_boot_attempts: int = 2
    feedback_retries: int = 3
    feedback_timeout_s: float = 15.0

    @property
    def releases(self) -> Path:
        return self.root / "releases"

    @property
    def current(self) -> Path:
        return self.root / "current"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    @property
    def backups(self) -> Path:
        return self.root / "backups"

    @property
    def state_file(self) -> Path:
        return self.root / "updater-state.json"


def load_config(path: Path | None, overrides: dict[str, Any] | None = None) -> UpdaterConfig:
    doc: dict[str, Any] = {}
    p = path or DEFAULT_CONFIG
    if p.is_file():
        try:
            with p.open("rb") as fh:
                doc = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise UpdaterConfigError(f"{p}: {exc}") from None
    elif path is not None:
        raise UpdaterConfigError(f"config file {p} does not exist")
    doc.update(overrides or {})
    cfg = UpdaterConfig()
    known = {f.name: f for f in fields(cfg)}
    for key, value in doc.items():
        if key not in known:
            raise UpdaterConfigError(f"{p}: unknown setting {key!r}")
        default = getattr(cfg, key)
        try:
            if isinstance(default, Path):
                value = Path(value)
            elif isinstance(default, bool):
                value = bool(value)
            elif isinstance(default, int):
                value = int(value)
            elif isinstance(default, float):
                value = float(value)
            elif isinstance(default, list) and (
                not isinstance(value, list) or not all(isinstance(v, str) for v in value)
            ):
                raise TypeError("must be a list of strings")
        except (TypeError, ValueError) as exc:
            raise UpdaterConfigError(f"{p}: {key}: {exc}") from None
        setattr(cfg, key, value)
    if cfg.health_timeout_s <= 0 or cfg.keep_releases < 2 or cfg.crash_threshold < 1:
        raise UpdaterConfigError(
            f"{p}: health_timeout_s > 0, keep_releases >= 2, crash_threshold >= 1"
        )
    return cfg
