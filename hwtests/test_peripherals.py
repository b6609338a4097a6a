"""Printer and ID card reader, through the same adapters and peers as the
contract tests in tests/hw (test_hw_ports.py)."""

from __future__ import annotations

import queue

from test_hw_ports import DOC, ZHANG_SAN_GB

from terminal.core.backoff import Backoff
from terminal.hw.cardreader import CardEvent, IdCardPoller, IdCardRead
from terminal.hw.escpos import ReceiptDoc
from terminal.hw.ports import IdCardReader, Printer, SerialConfig

TEST_RECEIPT = ReceiptDoc(
    title="硬件测试 打印机",
    header=["居家养老服务照料中心"],
    rows=[("中文测试", "通过"), ("午餐", "12.00"), ("补贴", "-5.00"), ("实付", "7.00")],
    footer=["如能看清这些汉字，打印机正常"],
    verify_code="TEST",
)


def test_printer_prints_a_chinese_test_receipt(printer_port) -> None:
    path, sim = printer_port
    printer = Printer(SerialConfig(path), backoff=Backoff(initial=0.05, maximum=0.5))
    printer.start()
    try:
        assert printer.wait_connected(5), f"printer port {path} did not open"
        result = printer.print_receipt(TEST_RECEIPT)
        assert result.ok, result.message
        assert result.bytes_written > 100
        if sim is not None:
            got = sim.wait_for(lambda b: "打印机正常".encode("gb18030") in b)
            assert "中文测试".encode("gb18030") in got and result.outcome == "printed"
            # the contract-suite document prints the same way
            assert printer.print_receipt(DOC).ok
            assert ZHANG_SAN_GB in sim.wait_for(lambda b: ZHANG_SAN_GB in b)
    finally:
        printer.stop()


def test_card_reader_reads_a_card(idreader_port) -> None:
    """Real mode: lay the test ID card on the reader before running."""
    path, sim = idreader_port
    events: queue.Queue[CardEvent] = queue.Queue()
    reader = IdCardReader(
        SerialConfig(path, baudrate=115200),
        events.put,
        poller=IdCardPoller(poll_interval=0.1, response_timeout=0.8, read_timeout=2.0),
        backoff=Backoff(initial=0.05, maximum=0.5),
    )
    reader.start()
    try:
        assert reader.wait_connected(5), f"card reader port {path} did not open"
        ev = events.get(timeout=20)
        assert isinstance(ev, IdCardRead), f"card read failed: {ev}"
        assert ev.info.id_number and len(ev.info.id_number) == 18
        if sim is not None:
            assert ev.info.name == "张三"
    finally:
        reader.stop()
