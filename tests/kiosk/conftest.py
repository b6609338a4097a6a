"""Fixtures for the Qt-free kiosk runner tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from kiosk_world import World, build_pack, make_world


@pytest.fixture(scope="session")
def open_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_pack(tmp_path_factory.mktemp("packs") / "open")


@pytest.fixture
def world(tmp_path: Path, open_pack: Path) -> Iterator[World]:
    w = make_world(tmp_path, open_pack)
    before = {t.ident for t in threading.enumerate()}
    yield w
    w.close()
    # no runner, camera or worker thread may outlive its test
    leaked = [t.name for t in threading.enumerate() if t.ident not in before and t.is_alive()]
    assert not leaked, f"threads left running: {leaked}"
