"""Helpers shared by the hardware tests (kept out of conftest.py so that a run
of ``tests`` and ``hwtests`` together does not mix up two ``conftest`` modules)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def device_path(env: str, default: str) -> Path:
    return Path(os.environ.get(env, default))


def require_device(path: Path, what: str) -> None:
    if not path.exists():
        pytest.skip(
            f"{what} not connected: {path} does not exist (real mode; use --hw-mode sim in CI)"
        )
