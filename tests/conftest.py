"""Shared fixtures: isolated data dirs and the labelled test faces (the
repository's own, plus extra cases when present: see ``testfaces.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import testfaces

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test touches the user's real data, config or cache directories."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.delenv("CARE_CONFIG", raising=False)
    monkeypatch.delenv("CARE_DATA_DIR", raising=False)
    monkeypatch.setenv("CARE_DEVICE", "0")


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    return testfaces.faces_dir()
