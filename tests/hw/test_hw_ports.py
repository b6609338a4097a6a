"""Port owners and adapters against real ptys (the test plays the device)."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

import pytest
from hw_peers import (
    IdCardReaderPeer,
    PeerThread,
    PrinterPeer,
    PtyPeer,
    SwitchablePort,
    wait_until,
)

from terminal.core.backoff import Backoff
from terminal.hw.cardreader import (
    CardEvent,
    CardReadFailed,
    IcCardRead,
    IdCardPoller,
    IdCardRead,
    WedgeParser,
    encode_base_text,
)
from terminal.hw.escpos import ReceiptDoc
from terminal.hw.ports import (
    RECONNECT,
    IdCardReader,
    KeyboardWedgeReader,
    PortStatus,
    Printer,
    SerialConfig,
    SerialPortOwner,
)

FAST = Backoff(initial=0.02, maximum=0.1)
ZHANG_SAN_GB = "张三".encode("gb18030")
CUT = b"\x1bd\x03\x1dVB\x00"
DOC = ReceiptDoc(
    title="幸福里照料中心",
    header=["2026-01-05 11:32"],
    rows=[("张三", ""), ("午餐", "12.00"), ("实付", "7.00")],
    verify_code="7K3F",
)
OK_ANSWERS = {1: 0x12, 2: 0x12, 4: 0x12}
PAPER_OUT_ANSWERS = {1: 0x1A, 2: 0x32, 4: 0x72}


def card_text(id_number: str = "11010519491231002X", name: str = "张三") -> bytes:
    return encode_base_text(
        name=name,
        sex_code="1",
        nation_code="01",
        birth_date="19491231",
        address="北京市西城区",
        id_number=id_number,
        issuer="北京市公安局西城分局",
        valid_from="20200101",
        valid_until="20400101",
    )


class Recorder:
    """A PortHandler that records what the owner delivers."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.got = threading.Event()
        self.connects = 0
        self.disconnects = 0
        self.ticks = 0

    def on_connect(self, now: float) -> None:
        self.connects += 1

    def on_data(self, data: bytes, now: float) -> None:
        self.data += data
        self.got.set()

    def on_tick(self, now: float) -> None:
        self.ticks += 1

    def on_disconnect(self, now: float) -> None:
        self.disconnects += 1


# ------------------------------------------------------------------ owner


def test_owner_on_loop_url_reads_back_what_it_writes() -> None:
    rec = Recorder()
    owner = SerialPortOwner(SerialConfig("loop://"), rec, name="loop")
    owner.start()
    try:
        assert owner.wait_connected(5)
        ticket = owner.write(b"hello")
        assert ticket.wait(2) and ticket.ok
        assert rec.got.wait(2)
        assert bytes(rec.data) == b"hello"
        st = owner.status()
        assert st.connected and st.connects == 1 and st.last_error is None
        assert rec.connects == 1 and rec.ticks > 0
    finally:
        owner.stop()
    assert owner.status().state == "stopped"
    late = owner.write(b"x")
    assert late.done and not late.ok and late.error == "disconnected"


def test_owner_keeps_retrying_a_missing_device_with_capped_backoff(tmp_path: Path) -> None:
    seen: list[PortStatus] = []
    owner = SerialPortOwner(
        SerialConfig(str(tmp_path / "nope")),
        name="missing",
        backoff=Backoff(initial=0.01, maximum=0.03),
        on_status=seen.append,
    )
    owner.start()
    try:
        assert wait_until(lambda: owner.status().failures >= 5, timeout=5)
        st = owner.status()
        assert st.state == "disconnected" and not st.connected
        assert st.last_error and "nope" in st.last_error
    finally:
        t0 = time.monotonic()
        owner.stop()
        assert time.monotonic() - t0 < 1.0
    assert seen[0].state == "connecting" and seen[-1].state == "stopped"


def test_backoff_schedule_is_capped() -> None:
    # The owner waits RECONNECT.delay(failures - 1) after its n-th failed open in
    # a row (terminal.core.backoff counts retries from 0): the same delays as
    # before the schedule moved to terminal.core.
    assert [RECONNECT.delay(n) for n in range(8)] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]
    assert RECONNECT.delay(10_000) == 5.0


# ------------------------------------------------------------------ printer


def start_printer(path: str, **kw: object) -> Printer:
    printer = Printer(SerialConfig(path), backoff=FAST, **kw)  # type: ignore[arg-type]
    printer.start()
    assert printer.wait_connected(5)
    return printer


def test_receipt_arrives_on_the_pty(pty_peer: PtyPeer) -> None:
    printer = start_printer(pty_peer.path, query_status=False)
    try:
        result = printer.print_receipt(DOC)
        assert result.ok and result.outcome == "printed_unverified"
        assert result.bytes_written > 0
        got = pty_peer.read_until(lambda b: b.endswith(CUT))
        assert got.startswith(b"\x1b@\x1c&")
        assert ZHANG_SAN_GB in got and "幸福里照料中心".encode("gb18030") in got
        assert len(got) == result.bytes_written
        lines = printer.print_lines(["  就餐小票", "实付" + " " * 26 + "7.00"])
        assert lines.ok
        more = pty_peer.read_until(lambda b: b.endswith(CUT))
        assert "就餐小票\n".encode("gb18030") in more
    finally:
        printer.stop()


@pytest.mark.parametrize(
    ("answers", "outcome", "printed", "near_end"),
    [
        (OK_ANSWERS, "printed", True, False),
        ({1: 0x12, 2: 0x12, 4: 0x1E}, "printed", True, True),
        (PAPER_OUT_ANSWERS, "paper_out", False, False),
        ({1: 0x1A, 2: 0x16, 4: 0x12}, "cover_open", False, False),
        ({1: 0x1A, 2: 0x12, 4: 0x12}, "offline", False, False),
    ],
)
def test_printer_status_decides_whether_to_print(
    pty_peer: PtyPeer, answers: dict[int, int], outcome: str, printed: bool, near_end: bool
) -> None:
    device = PrinterPeer(answers)
    peer_thread = PeerThread(pty_peer, device.serve)
    printer = start_printer(pty_peer.path, status_timeout=1.0)
    try:
        result = printer.print_receipt(DOC)
        assert result.outcome == outcome
        assert result.ok is printed
        assert result.paper_near_end is near_end
        assert result.status is not None and result.status.known
        query = b"\x10\x04\x01\x10\x04\x02\x10\x04\x04"
        if printed:
            got = device.wait_for(lambda b: b.endswith(CUT))
            assert got.startswith(query) and ZHANG_SAN_GB in got
        else:
            # nothing but the query went out; a marker write proves the line is live
            printer.owner.write(b"MARK").wait(2)
            got = device.wait_for(lambda b: b.endswith(b"MARK"))
            assert got == query + b"MARK"
            assert result.status.problem is not None
    finally:
        printer.stop()
        peer_thread.stop()
    assert not peer_thread.errors


def test_silent_printer_is_printed_to_and_no_longer_asked(pty_peer: PtyPeer) -> None:
    device = PrinterPeer({})  # never answers status requests
    peer_thread = PeerThread(pty_peer, device.serve)
    printer = start_printer(pty_peer.path, status_timeout=0.15)
    try:
        outcomes = [printer.print_receipt(DOC).outcome for _ in range(2)]
        assert outcomes == ["printed_unverified"] * 2
        third = printer.print_receipt(DOC)
        assert third.outcome == "printed_unverified"
        got = device.wait_for(lambda b: b.count(CUT) == 3)
        assert got.count(b"\x10\x04\x01") == 2  # not asked a third time
        assert printer.query_status(0.1).known is False
    finally:
        printer.stop()
        peer_thread.stop()


def test_printer_never_raises_and_never_waits_when_unplugged(tmp_path: Path) -> None:
    printer = Printer(SerialConfig(str(tmp_path / "absent")), backoff=FAST)
    printer.start()
    try:
        assert wait_until(lambda: printer.status().state == "disconnected")
        t0 = time.monotonic()
        result = printer.print_receipt(DOC)
        assert time.monotonic() - t0 < 0.5
        assert result.outcome == "disconnected" and not result.ok
        assert "absent" in result.message
        bad = printer.print_receipt(ReceiptDoc(title="x", rows=[("a",)]))  # type: ignore[list-item]
        assert bad.outcome == "failed" and not bad.ok
    finally:
        printer.stop()


def test_printer_reconnects_when_the_port_comes_back(switchable_port: SwitchablePort) -> None:
    states: list[str] = []
    first = switchable_port.new_peer()
    printer = Printer(
        SerialConfig(str(switchable_port.link)),
        backoff=FAST,
        query_status=False,
        on_status=lambda st: states.append(st.state),
    )
    printer.start()
    try:
        assert printer.wait_connected(5)
        assert printer.print_receipt(DOC).ok
        assert ZHANG_SAN_GB in first.read_until(lambda b: b.endswith(CUT))

        first.close()  # the device vanishes (USB unplugged)
        assert printer.owner.wait_state("disconnected", 5)
        assert printer.print_receipt(DOC).outcome == "disconnected"

        second = switchable_port.new_peer()  # plugged in again, new tty behind the same name
        assert printer.wait_connected(5)
        result = printer.print_receipt(DOC)
        assert result.ok
        got = second.read_until(lambda b: b.endswith(CUT))
        assert got.startswith(b"\x1b@") and ZHANG_SAN_GB in got
        st = printer.status()
        assert st.connects == 2 and st.last_error is not None
    finally:
        printer.stop()
    assert states[:3] == ["connecting", "connected", "disconnected"]
    assert "connected" in states[3:] and states[-1] == "stopped"


# ------------------------------------------------------------------ ID card reader


def start_reader(path: str, sink: object) -> IdCardReader:
    reader = IdCardReader(
        SerialConfig(path, baudrate=115200),
        sink,  # type: ignore[arg-type]
        poller=IdCardPoller(poll_interval=0.05, response_timeout=0.5, read_timeout=1.0),
        backoff=FAST,
    )
    reader.start()
    assert reader.wait_connected(5)
    return reader


def test_id_card_reader_emits_the_card_once_per_presentation(pty_peer: PtyPeer) -> None:
    device = IdCardReaderPeer(card_text())
    peer_thread = PeerThread(pty_peer, device.serve)
    events: queue.Queue[CardEvent] = queue.Queue()
    reader = start_reader(pty_peer.path, events.put)
    try:
        ev = events.get(timeout=5)
        assert isinstance(ev, IdCardRead)
        assert ev.info.id_number == "11010519491231002X" and ev.info.name == "张三"
        # the card stays: the reader keeps reading it, nothing new is emitted
        assert wait_until(lambda: device.reads >= 3)
        assert events.empty()
        # taken away and presented again: one new event
        device.card_text = None
        n = len(device.requests)
        assert wait_until(lambda: len(device.requests) > n + 1)
        device.card_text = card_text()
        again = events.get(timeout=5)
        assert isinstance(again, IdCardRead) and again.info.id_number == "11010519491231002X"
    finally:
        reader.stop()
        peer_thread.stop()
    assert not peer_thread.errors
    assert device.requests[:3] == [(0x20, 0x01), (0x20, 0x02), (0x30, 0x01)]


def test_damaged_answer_is_reported_then_read_again(pty_peer: PtyPeer) -> None:
    device = IdCardReaderPeer(card_text())
    device.corrupt_next_read = True
    peer_thread = PeerThread(pty_peer, device.serve)
    events: queue.Queue[CardEvent] = queue.Queue()
    calls = 0

    def flaky_sink(ev: CardEvent) -> None:
        nonlocal calls
        calls += 1
        events.put(ev)
        if calls == 1:
            raise RuntimeError("consumer bug")  # must not stop the reader

    reader = start_reader(pty_peer.path, flaky_sink)
    try:
        first = events.get(timeout=5)
        assert isinstance(first, CardReadFailed) and first.reason == "bad_frame"
        second = events.get(timeout=5)
        assert isinstance(second, IdCardRead)
        assert reader.frame_errors >= 1 and reader.status().connected
    finally:
        reader.stop()
        peer_thread.stop()


def test_id_card_reader_survives_unplug(switchable_port: SwitchablePort) -> None:
    first = switchable_port.new_peer()
    device1 = IdCardReaderPeer(card_text())
    t1 = PeerThread(first, device1.serve)
    events: queue.Queue[CardEvent] = queue.Queue()
    reader = start_reader(str(switchable_port.link), events.put)
    try:
        assert isinstance(events.get(timeout=5), IdCardRead)
        t1.stop()
        first.close()
        assert reader.owner.wait_state("disconnected", 5)
        second = switchable_port.new_peer()
        other = "11010519491231003X"
        t2 = PeerThread(second, IdCardReaderPeer(card_text(other, "李四")).serve)
        try:
            ev = events.get(timeout=5)
            assert isinstance(ev, IdCardRead) and ev.info.name == "李四"
        finally:
            t2.stop()
    finally:
        reader.stop()


def test_keyboard_wedge_reader_forwards_card_numbers() -> None:
    got: list[CardEvent] = []
    wedge = KeyboardWedgeReader(got.append, parser=WedgeParser(max_gap=0.05))
    emitted = [wedge.key(ch, now=10.0 + i * 0.01) for i, ch in enumerate("3141592653\r")]
    assert emitted == [False] * 10 + [True]
    assert got == [IcCardRead("3141592653", "decimal")]
    assert wedge.key("1") is False  # real clock path
