"""OTA fixtures: a real goosebit DDI server (own venv, subprocess, SQLite),
release keys, and the simulated device from tests/deploy."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "deploy"))

from goosebit_server import GoosebitServer

# The CI interpreter (Python 3.11.7) has the tarfile flaw CVE-2024-6232, so
# extraction is allowed here explicitly; test_archive_hardening.py checks the
# refusal itself with this variable removed.
os.environ.setdefault("CARE_OTA_ALLOW_FLAWED_TARFILE", "1")


@pytest.fixture(scope="session")
def goosebit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GoosebitServer]:
    """One goosebit for the session (about 3-5 s to start; the venv is created
    once and cached, about 40-90 s the first time)."""
    if os.environ.get("CARE_SKIP_GOOSEBIT") == "1":
        pytest.skip(
            "CARE_SKIP_GOOSEBIT=1: the goosebit end-to-end tests were switched off explicitly"
        )
    server = GoosebitServer(tmp_path_factory.mktemp("goosebit"), poll_time="00:00:05")
    try:
        server.start()
    except Exception:
        print(server.log_tail(), file=sys.stderr)
        server.stop()
        raise
    yield server
    server.stop()


@pytest.fixture(scope="session")
def session_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()
