"""pty peers for the serial adapter tests: the test plays the device on the master side."""

from __future__ import annotations

import errno
import os
import select
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path

from terminal.hw.cardreader import (
    CMD_FIND_CARD,
    CMD_READ_BASE,
    CMD_SELECT_CARD,
    SW_FIND_OK,
    SW_OK,
    Frame,
    FrameParser,
    build_base_info_data,
    build_response,
)


class PtyPeer:
    """The device end of a pty pair. ``path`` is what the adapter opens."""

    def __init__(self) -> None:
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo before the adapter configures the port
        self.path = os.ttyname(self._slave)
        self.closed = False

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def read_available(self, timeout: float) -> bytes:
        """Whatever arrives within ``timeout`` (returns at the first chunk)."""
        r, _, _ = select.select([self.master], [], [], timeout)
        if not r:
            return b""
        try:
            return os.read(self.master, 65536)
        except OSError as exc:
            if exc.errno == errno.EIO:
                return b""
            raise

    def read_until(self, pred: Callable[[bytes], bool], timeout: float = 5.0) -> bytes:
        buf = b""
        deadline = time.monotonic() + timeout
        while not pred(buf):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"peer timed out; got {len(buf)} bytes: {buf[:200]!r}")
            buf += self.read_available(min(left, 0.1))
        return buf

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.master)
            os.close(self._slave)


class PeerThread:
    """Runs ``serve(peer)`` in a thread until stopped."""

    def __init__(self, peer: PtyPeer, serve: Callable[[PtyPeer, threading.Event], None]):
        self.peer = peer
        self.stop_event = threading.Event()
        self.errors: list[BaseException] = []

        def run() -> None:
            try:
                serve(peer, self.stop_event)
            except BaseException as exc:  # surfaced by the test via .errors
                if not self.stop_event.is_set():
                    self.errors.append(exc)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(2)


class IdCardReaderPeer:
    """A simulated GA/T 467 reader: answers find/select/read for ``card_text``
    (a 256-byte text block) or "no card" when it is ``None``."""

    def __init__(self, card_text: bytes | None = None) -> None:
        self.card_text = card_text
        self.requests: list[tuple[int, int]] = []
        self.reads = 0
        self.corrupt_next_read = False

    def answer(self, frame: Frame) -> bytes:
        self.requests.append(frame.cmd)
        if frame.cmd == CMD_FIND_CARD:
            if self.card_text is None:
                return build_response(0x80, b"\x00" * 4)
            return build_response(SW_FIND_OK, b"\x00" * 4)
        if frame.cmd == CMD_SELECT_CARD:
            if self.card_text is None:
                return build_response(0x81, b"\x00" * 8)
            return build_response(SW_OK, b"\x00" * 8)
        if frame.cmd == CMD_READ_BASE and self.card_text is not None:
            self.reads += 1
            out = build_response(SW_OK, build_base_info_data(self.card_text))
            if self.corrupt_next_read:
                self.corrupt_next_read = False
                out = out[:-1] + bytes([out[-1] ^ 0xFF])
            return out
        return build_response(0x24)

    def serve(self, peer: PtyPeer, stop: threading.Event) -> None:
        parser = FrameParser()
        while not stop.is_set():
            data = peer.read_available(0.05)
            if not data:
                continue
            for item in parser.feed(data):
                if isinstance(item, Frame):
                    peer.write(self.answer(item))


class SwitchablePort:
    """A symlink (like a udev name) that the test repoints to a fresh pty, so a
    port can vanish and come back under the same path."""

    def __init__(self, directory: Path) -> None:
        self.link = directory / "device"
        self.peers: list[PtyPeer] = []

    def new_peer(self) -> PtyPeer:
        peer = PtyPeer()
        self.peers.append(peer)
        tmp = self.link.with_name("device.tmp")
        if tmp.is_symlink():
            tmp.unlink()
        os.symlink(peer.path, tmp)
        os.replace(tmp, self.link)
        return peer

    def close_all(self) -> None:
        for p in self.peers:
            p.close()


class PrinterPeer:
    """A simulated ESC/POS printer: records everything it receives and answers
    ``DLE EOT n`` with ``answers[n]`` (no answer for a missing ``n``)."""

    def __init__(self, answers: dict[int, int] | None = None) -> None:
        self.answers = answers or {}
        self.received = bytearray()
        self.cond = threading.Condition()

    def serve(self, peer: PtyPeer, stop: threading.Event) -> None:
        scanned = 0
        while not stop.is_set():
            data = peer.read_available(0.05)
            if not data:
                continue
            with self.cond:
                self.received += data
                self.cond.notify_all()
                buf = bytes(self.received)
            while True:
                i = buf.find(b"\x10\x04", scanned)
                if i < 0:
                    scanned = max(scanned, len(buf) - 1)
                    break
                if i + 2 >= len(buf):
                    scanned = i
                    break
                scanned = i + 3
                answer = self.answers.get(buf[i + 2])
                if answer is not None:
                    peer.write(bytes([answer]))

    def wait_for(self, pred: Callable[[bytes], bool], timeout: float = 5.0) -> bytes:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred(bytes(self.received)):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"printer peer got {bytes(self.received)[:200]!r}")
                self.cond.wait(left)
            return bytes(self.received)

    def snapshot(self) -> bytes:
        with self.cond:
            return bytes(self.received)


def wait_until(pred: Callable[[], bool], timeout: float = 5.0, step: float = 0.01) -> bool:
    """Poll a condition owned by another thread (for counters without an event)."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True
