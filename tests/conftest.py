"""Shared fixtures: isolated data dirs and the shared test faces."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def testdata_dir() -> Path:
    return Path(os.environ.get("CARE_TESTDATA", REPO.parent / "shared" / "testdata"))


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
    d = testdata_dir() / "faces"
    assert (d / "labels.csv").is_file(), f"shared test faces missing at {d}"
    return d
