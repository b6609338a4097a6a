"""Fixtures for the peripheral tests (pty peers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hw_peers import PtyPeer, SwitchablePort


@pytest.fixture
def pty_peer() -> Iterator[PtyPeer]:
    peer = PtyPeer()
    yield peer
    peer.close()


@pytest.fixture
def switchable_port(tmp_path: Path) -> Iterator[SwitchablePort]:
    sp = SwitchablePort(tmp_path)
    yield sp
    sp.close_all()
