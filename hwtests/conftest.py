"""Hardware tests for the real terminal: ``pytest hwtests`` (on the device).

Mode (``--hw-mode`` or ``CARE_HW_MODE``):

* ``real`` (default on an installed terminal, i.e. when
  ``/opt/care-terminal/current`` exists or ``CARE_DEVICE=1``): talk to the devices under their udev names
  (``/dev/care-printer``, ``/dev/care-idreader``, ``/dev/care-camera-pay``,
  ``/dev/input/care-touch``); a test whose device is absent is skipped with
  the reason. Override paths with ``CARE_HW_PRINTER``, ``CARE_HW_IDREADER``,
  ``CARE_HW_CAMERA``, ``CARE_HW_TOUCH``.
* ``sim`` (default elsewhere, and always when ``CI`` is set): the same tests against pty peers that
  behave like the printer and the ID card reader, a video file played as the
  camera, a synthetic touch event stream, a null audio sink and the local
  disk. Nothing is skipped in this mode.

Interactive checks on a real terminal (a person taps the screen, a test card
lies on the reader) are described in README.md.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "hw"))  # the contract suites' peers and fixtures
sys.path.insert(0, str(REPO / "hwtests"))
from hwsupport import device_path, require_device  # noqa: E402,F401  (re-exported for old imports)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--hw-mode",
        choices=("real", "sim"),
        default=None,
        help="real devices or simulated peers (default: sim when CI is set)",
    )


def pytest_report_header(config: pytest.Config) -> str:
    mode = config.getoption("--hw-mode") or os.environ.get("CARE_HW_MODE") or "auto"
    return f"care-terminal hardware tests, mode: {mode} (see hwtests/conftest.py)"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "interactive: needs a person at the terminal")


@pytest.fixture(scope="session")
def hw_mode(pytestconfig: pytest.Config) -> str:
    mode = pytestconfig.getoption("--hw-mode") or os.environ.get("CARE_HW_MODE")
    if not mode:
        on_device = (
            Path("/opt/care-terminal/current").exists() or os.environ.get("CARE_DEVICE") == "1"
        )
        mode = "real" if on_device and not os.environ.get("CI") else "sim"
    if mode not in ("real", "sim"):
        raise pytest.UsageError("CARE_HW_MODE must be real or sim")
    return mode


class Peer:
    """A pty peer thread playing a device (simulation)."""

    def __init__(self, device: object) -> None:
        from hw_peers import PeerThread, PtyPeer

        self.pty = PtyPeer()
        self.device = device
        self.thread = PeerThread(self.pty, device.serve)  # type: ignore[attr-defined]

    def close(self) -> None:
        self.thread.stop()
        self.pty.close()


@pytest.fixture
def printer_port(hw_mode: str) -> Iterator[tuple[str, object | None]]:
    """(port path, simulated printer or None)."""
    if hw_mode == "real":
        path = device_path("CARE_HW_PRINTER", "/dev/care-printer")
        require_device(path, "receipt printer")
        yield str(path), None
        return
    from hw_peers import PrinterPeer

    peer = Peer(PrinterPeer({1: 0x12, 2: 0x12, 4: 0x12}))
    yield peer.pty.path, peer.device
    peer.close()


@pytest.fixture
def idreader_port(hw_mode: str) -> Iterator[tuple[str, object | None]]:
    if hw_mode == "real":
        path = device_path("CARE_HW_IDREADER", "/dev/care-idreader")
        require_device(path, "ID card reader")
        yield str(path), None
        return
    from hw_peers import IdCardReaderPeer
    from test_hw_ports import card_text

    peer = Peer(IdCardReaderPeer(card_text()))
    yield peer.pty.path, peer.device
    peer.close()


@pytest.fixture
def stop_event() -> Iterator[threading.Event]:
    ev = threading.Event()
    yield ev
    ev.set()
