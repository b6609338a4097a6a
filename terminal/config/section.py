"""The base of every settings section: unknown keys are refused.

A misspelt key (``[face] acept_threshold``) is an error at boot, not a setting
that silently keeps its default. Each section lives beside the others in
:class:`terminal.config.settings.Settings`; all of them are validated in one
pass, so every problem in every section is reported together.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")
