"""Typed settings: one model with a section per feature, from one TOML file
(defaults < ``config.toml`` < environment, ``CARE_`` prefix), validated at once."""

from terminal.config.settings import Settings, load_settings

__all__ = ["Settings", "load_settings"]
