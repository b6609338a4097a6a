"""The demo's simulated printer: the real ESC/POS serial adapter prints to a pty,
the peer answers status queries like a printer with paper and writes the receipt
as text, so a demo payment ends with a printed receipt."""

from __future__ import annotations

import time
from pathlib import Path

from terminal.app.demo_printer import DemoPrinter
from terminal.hw.ports import Printer, SerialConfig


def test_receipt_reaches_the_demo_printer_as_text(tmp_path: Path) -> None:
    out = tmp_path / "receipts.txt"
    peer = DemoPrinter(out)
    printer = Printer(SerialConfig(peer.path))
    printer.start()
    try:
        assert printer.wait_connected(5)
        result = printer.print_lines(
            ["  阳光照料中心", "姓名            张*华", "实付             2.50"]
        )
        assert result.ok and result.outcome == "printed"  # status answered: online, paper ok
        deadline = time.monotonic() + 5
        while not (out.exists() and "=" * 32 in out.read_text(encoding="utf-8")):
            assert time.monotonic() < deadline, "no receipt written"
            time.sleep(0.05)
    finally:
        printer.stop()
        peer.close()
    text = out.read_text(encoding="utf-8")
    assert "阳光照料中心" in text and "张*华" in text and "2.50" in text
    assert "\x1b" not in text and "\x1d" not in text  # printer commands stripped
