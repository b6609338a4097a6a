"""Typed settings: defaults < TOML file < environment (``CARE_`` prefix)."""

from terminal.config.settings import Settings, load_settings

__all__ = ["Settings", "load_settings"]
