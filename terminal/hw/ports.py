"""Serial port owners and the device adapters on top of them.

One :class:`SerialPortOwner` thread per device owns the pyserial handle: it opens
the port (``serial.serial_for_url``, so device paths, pty paths and ``loop://``
all work), reads and hands bytes to its handler, writes queued payloads, and when
the port disappears (USB unplugged, pty closed) closes it and reopens it with
capped exponential backoff (:data:`RECONNECT`). Nothing else touches the handle.

Adapters:

* :class:`Printer` - ``print_receipt(doc) -> PrintResult``; never raises, never
  blocks longer than its time budget, and reports paper-out / cover-open / offline
  when the printer answers ``DLE EOT``. A payment never depends on it: the record
  is already committed and staff can reprint.
* :class:`IdCardReader` - drives a GA/T 467 ID card reader and emits card events.
* :class:`KeyboardWedgeReader` - feeds key strokes from a keyboard-wedge IC reader
  (delivered by the UI) to :class:`~terminal.hw.cardreader.WedgeParser`.

Events go to a ``sink`` callable (``queue.Queue.put`` works) called on the owner
thread; a sink that raises is logged and does not stop the port.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal, Protocol

import serial

from terminal.core.backoff import Backoff
from terminal.core.log import get_logger
from terminal.hw.cardreader import (
    CardEvent,
    CardReadFailed,
    Frame,
    FrameError,
    FrameParser,
    IcCardRead,
    IdCardPoller,
    WedgeParser,
)
from terminal.hw.escpos import (
    COLUMNS_58MM,
    Charset,
    PrinterStatus,
    ReceiptDoc,
    StatusKind,
    parse_status_answers,
    render_lines,
    render_receipt,
    status_request,
)

log = get_logger(__name__)

Monotonic = Callable[[], float]


# ------------------------------------------------------------------ configuration


@dataclass(frozen=True, slots=True)
class SerialConfig:
    """How to open one serial device. ``url`` is a device path (``/dev/ttyUSB0``,
    a udev symlink such as ``/dev/care-printer``), a pty path, or a pyserial URL
    (``loop://``)."""

    url: str
    baudrate: int = 9600
    bytesize: int = 8
    parity: str = "N"
    stopbits: float = 1
    rtscts: bool = False
    xonxoff: bool = False
    dsrdtr: bool = False
    exclusive: bool = True


# Reconnect delays: 0.2 s after the first failed open, doubling up to 5 s.
RECONNECT = Backoff(initial=0.2, maximum=5.0)


PortState = Literal["stopped", "connecting", "connected", "disconnected"]


@dataclass(frozen=True, slots=True)
class PortStatus:
    name: str
    url: str
    state: PortState
    last_error: str | None = None
    connects: int = 0  # successful opens since start
    failures: int = 0  # consecutive failed opens
    since: float = 0.0  # monotonic time of the last state change

    @property
    def connected(self) -> bool:
        return self.state == "connected"


class WriteTicket:
    """Completion of one queued write. ``wait`` returns True once the bytes were
    handed to the port; ``error`` says why not otherwise."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.error: str | None = None
        self._done = threading.Event()
        self._cancelled = False

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def ok(self) -> bool:
        return self._done.is_set() and self.error is None

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout) and self.error is None

    def cancel(self) -> None:
        """Do not write if not started yet (a late receipt is worse than none)."""
        self._cancelled = True

    def _finish(self, error: str | None = None) -> None:
        if not self._done.is_set():
            self.error = error
            self._done.set()


class PortHandler(Protocol):
    """Called on the owner thread. Handlers may call ``owner.write`` (it queues)."""

    def on_connect(self, now: float) -> None: ...

    def on_data(self, data: bytes, now: float) -> None: ...

    def on_tick(self, now: float) -> None: ...

    def on_disconnect(self, now: float) -> None: ...


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


# ------------------------------------------------------------------- port owner


class SerialPortOwner:
    """A thread that owns one serial port and keeps it open.

    ``read_timeout`` bounds how long the loop waits for input before it serves
    writes and ticks the handler (writes also wake it early).
    """

    def __init__(
        self,
        config: SerialConfig,
        handler: PortHandler | None = None,
        *,
        name: str = "serial",
        backoff: Backoff = RECONNECT,
        read_timeout: float = 0.05,
        write_timeout: float = 2.0,
        on_status: Callable[[PortStatus], None] | None = None,
        clock: Monotonic = time.monotonic,
    ) -> None:
        self.config = config
        self.handler = handler
        self.name = name
        self.backoff = backoff
        self.read_timeout = read_timeout
        self.write_timeout = write_timeout
        self._on_status = on_status
        self._clock = clock
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._queue: deque[WriteTicket] = deque()
        self._ser: serial.SerialBase | None = None
        # Guards ``_ser`` against a wake-up racing the close (a closed pipe fd
        # could be reused by another file before ``cancel_read`` writes to it).
        self._ser_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._status = PortStatus(name=name, url=config.url, state="stopped", since=clock())

    # -- public
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._set_status(state="connecting")
        self._thread = threading.Thread(target=self._run, name=f"port-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        """Stop the thread and close the port. Pending writes fail with ``stopped``."""
        self._stop.set()
        self._wake()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
            if t.is_alive():
                log.warning("port_stop_timeout", port=self.name)
        self._thread = None
        self._fail_pending("stopped")
        self._set_status(state="stopped")

    def status(self) -> PortStatus:
        with self._lock:
            return self._status

    @property
    def connected(self) -> bool:
        return self.status().connected

    def wait_connected(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._status.state != "connected":
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True

    def wait_state(self, state: PortState, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._status.state != state:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True

    def write(self, data: bytes) -> WriteTicket:
        """Queue ``data``; refused at once (ticket error ``disconnected``) when the
        port is not open, so nothing is printed late after a reconnect."""
        ticket = WriteTicket(bytes(data))
        with self._lock:
            if self._status.state != "connected":
                ticket._finish("disconnected")
                return ticket
            self._queue.append(ticket)
        self._wake()
        return ticket

    # -- internals
    def _wake(self) -> None:
        with self._ser_lock:
            if self._ser is None:
                return
            # best effort: the read times out anyway
            with contextlib.suppress(Exception):
                self._ser.cancel_read()

    def _set_status(self, **changes: object) -> None:
        with self._changed:
            if "state" in changes and changes["state"] != self._status.state:
                changes["since"] = self._clock()
            new = replace(self._status, **changes)  # type: ignore[arg-type]
            changed = new != self._status
            self._status = new
            self._changed.notify_all()
        if changed and self._on_status is not None:
            try:
                self._on_status(new)
            except Exception:
                log.exception("port_status_callback_failed", port=self.name)

    def _fail_pending(self, reason: str) -> None:
        with self._lock:
            pending = list(self._queue)
            self._queue.clear()
        for t in pending:
            t._finish(reason)

    def _call(self, fn: Callable[..., None], *args: object) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("port_handler_failed", port=self.name)

    def _open(self) -> serial.SerialBase:
        c = self.config
        ser = serial.serial_for_url(
            c.url,
            do_not_open=True,
            baudrate=c.baudrate,
            bytesize=c.bytesize,
            parity=c.parity,
            stopbits=c.stopbits,
            rtscts=c.rtscts,
            xonxoff=c.xonxoff,
            dsrdtr=c.dsrdtr,
            timeout=self.read_timeout,
            write_timeout=self.write_timeout,
        )
        if c.exclusive and not c.url.startswith(("loop://", "socket://", "rfc2217://")):
            ser.exclusive = True
        ser.open()
        # stale answers from before are meaningless now (not every URL handler can)
        with contextlib.suppress(Exception):
            ser.reset_input_buffer()
        return ser

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                ser = self._open()
            except Exception as exc:
                failures += 1
                err = _describe(exc)
                if failures == 1 or err != self.status().last_error:
                    log.warning("port_open_failed", port=self.name, error=err, attempt=failures)
                self._set_status(state="disconnected", last_error=err, failures=failures)
                self._stop.wait(self.backoff.delay(failures - 1))
                continue
            failures = 0
            with self._ser_lock:
                self._ser = ser
            with self._lock:
                self._queue.clear()  # nothing can be queued while disconnected
            if self.handler is not None:
                self._call(self.handler.on_connect, self._clock())
            st = self.status()
            self._set_status(state="connected", connects=st.connects + 1, failures=0)
            log.info("port_connected", port=self.name, url=self.config.url)
            error: str | None = None
            try:
                self._serve(ser)
            except Exception as exc:  # SerialException/OSError: the port went away
                error = _describe(exc)
            finally:
                with self._ser_lock:
                    self._ser = None
                with contextlib.suppress(Exception):  # the device may already be gone
                    ser.close()
            if self._stop.is_set():
                break
            log.warning("port_lost", port=self.name, error=error)
            self._set_status(state="disconnected", last_error=error)
            self._fail_pending("disconnected")
            if self.handler is not None:
                self._call(self.handler.on_disconnect, self._clock())
            failures = 1
            self._stop.wait(self.backoff.delay(0))
        self._fail_pending("stopped")

    def _serve(self, ser: serial.SerialBase) -> None:
        while not self._stop.is_set():
            self._drain_writes(ser)
            waiting = ser.in_waiting
            data = ser.read(waiting if waiting > 0 else 1)
            now = self._clock()
            if data and self.handler is not None:
                self._call(self.handler.on_data, bytes(data), now)
            if self.handler is not None:
                self._call(self.handler.on_tick, now)

    def _drain_writes(self, ser: serial.SerialBase) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    return
                ticket = self._queue.popleft()
            if ticket._cancelled:
                ticket._finish("cancelled")
                continue
            try:
                ser.write(ticket.data)
            except serial.SerialTimeoutException:
                # Flow control held us off (printer busy or out of paper): the
                # port is still there, only this payload failed.
                ticket._finish("write_timeout")
                continue
            except Exception as exc:
                ticket._finish("disconnected")
                raise exc
            ticket._finish()


# ---------------------------------------------------------------------- printer

PrintOutcome = Literal[
    "printed",
    "printed_unverified",
    "paper_out",
    "cover_open",
    "printer_error",
    "offline",
    "disconnected",
    "write_failed",
    "failed",
]
_PROBLEM_OUTCOME: dict[str, PrintOutcome] = {
    "paper_out": "paper_out",
    "cover_open": "cover_open",
    "error": "printer_error",
    "offline": "offline",
}
_STATUS_KINDS: tuple[StatusKind, ...] = (
    StatusKind.PRINTER,
    StatusKind.OFFLINE_CAUSE,
    StatusKind.PAPER_SENSOR,
)


@dataclass(frozen=True, slots=True)
class PrintResult:
    """What happened to a print job. ``ok`` means the bytes went to a printer
    that did not report a problem (``printed``) or did not answer the status
    request (``printed_unverified``). ``message`` is safe to log and show to staff;
    UIs translate ``outcome``."""

    outcome: PrintOutcome
    status: PrinterStatus | None = None
    message: str = ""
    bytes_written: int = 0

    @property
    def ok(self) -> bool:
        return self.outcome in ("printed", "printed_unverified")

    @property
    def paper_near_end(self) -> bool:
        return bool(self.status and self.status.paper_near_end)


class Printer:
    """An ESC/POS receipt printer on a serial port.

    Before sending a receipt it asks ``DLE EOT 1/2/4`` and waits at most
    ``status_timeout`` for the answers; a printer that reports paper out, cover
    open, an error or offline gets nothing (the outcome says why, staff reprint
    later). A printer that does not answer is printed to anyway
    (``printed_unverified``); after two silent queries it is not asked again until
    it reconnects. The whole call is bounded by ``status_timeout + write_timeout``.
    """

    def __init__(
        self,
        config: SerialConfig,
        *,
        columns: int = COLUMNS_58MM,
        charset: Charset = "gb18030",
        cut: bool = True,
        tail_feed: int = 3,
        query_status: bool = True,
        status_timeout: float = 0.5,
        write_timeout: float = 3.0,
        backoff: Backoff = RECONNECT,
        name: str = "printer",
        on_status: Callable[[PortStatus], None] | None = None,
    ) -> None:
        self.columns = columns
        self.charset: Charset = charset
        self.cut = cut
        self.tail_feed = tail_feed
        self.query_status_enabled = query_status
        self.status_timeout = status_timeout
        self.write_timeout = write_timeout
        self._job_lock = threading.Lock()
        self._rx = bytearray()
        self._rx_cond = threading.Condition()
        self._silent_queries = 0
        self.owner = SerialPortOwner(
            config,
            self,
            name=name,
            backoff=backoff,
            write_timeout=write_timeout,
            on_status=on_status,
        )

    # -- lifecycle
    def start(self) -> None:
        self.owner.start()

    def stop(self, timeout: float = 3.0) -> None:
        self.owner.stop(timeout)

    def status(self) -> PortStatus:
        return self.owner.status()

    def wait_connected(self, timeout: float) -> bool:
        return self.owner.wait_connected(timeout)

    # -- PortHandler
    def on_connect(self, now: float) -> None:
        with self._rx_cond:
            self._rx.clear()
        self._silent_queries = 0

    def on_data(self, data: bytes, now: float) -> None:
        with self._rx_cond:
            self._rx += data
            del self._rx[:-64]  # only recent answers matter
            self._rx_cond.notify_all()

    def on_tick(self, now: float) -> None:
        return None

    def on_disconnect(self, now: float) -> None:
        return None

    # -- jobs
    def query_status(self, timeout: float | None = None) -> PrinterStatus:
        """Ask the printer; fields it did not answer stay ``None``. Never raises."""
        with self._job_lock:
            try:
                return self._query(self.status_timeout if timeout is None else timeout)
            except Exception:
                log.exception("printer_status_failed")
                return PrinterStatus()

    def print_receipt(self, doc: ReceiptDoc) -> PrintResult:
        """Render and print; never raises (a bad document gives outcome ``failed``)."""
        try:
            payload = render_receipt(
                doc,
                columns=self.columns,
                charset=self.charset,
                cut=self.cut,
                tail_feed=self.tail_feed,
            )
        except Exception as exc:
            log.warning("receipt_render_failed", error=type(exc).__name__)
            return PrintResult("failed", message="the receipt could not be rendered")
        return self.print_bytes(payload)

    def print_lines(self, lines: Sequence[str]) -> PrintResult:
        """Print text lines laid out by the caller; never raises."""
        try:
            payload = render_lines(
                list(lines), charset=self.charset, cut=self.cut, tail_feed=self.tail_feed
            )
        except Exception as exc:
            log.warning("receipt_render_failed", error=type(exc).__name__)
            return PrintResult("failed", message="the receipt could not be rendered")
        return self.print_bytes(payload)

    def print_bytes(self, payload: bytes) -> PrintResult:
        """Print prepared ESC/POS bytes; never raises."""
        try:
            with self._job_lock:
                result = self._print(payload)
        except Exception:
            log.exception("print_failed")
            result = PrintResult("failed", message="printing failed unexpectedly")
        log.info("print_result", outcome=result.outcome, size=len(payload))
        return result

    def _query(self, timeout: float) -> PrinterStatus:
        with self._rx_cond:
            self._rx.clear()
        ticket = self.owner.write(b"".join(status_request(k) for k in _STATUS_KINDS))
        deadline = time.monotonic() + timeout
        if not ticket.wait(timeout):
            ticket.cancel()
            return PrinterStatus()
        with self._rx_cond:
            while True:
                status = parse_status_answers(_STATUS_KINDS, self._rx)
                if len(status.answered) == len(_STATUS_KINDS):
                    return status
                left = deadline - time.monotonic()
                if left <= 0:
                    return status
                self._rx_cond.wait(left)

    def _print(self, payload: bytes) -> PrintResult:
        if not self.owner.connected:
            return PrintResult(
                "disconnected", message=self.owner.status().last_error or "printer not connected"
            )
        status: PrinterStatus | None = None
        if self.query_status_enabled and self._silent_queries < 2:
            status = self._query(self.status_timeout)
            if status.known:
                self._silent_queries = 0
                problem = status.problem
                if problem is not None:
                    return PrintResult(
                        _PROBLEM_OUTCOME[problem], status, message=f"printer reports {problem}"
                    )
            else:
                self._silent_queries += 1
                status = None
        ticket = self.owner.write(payload)
        if not ticket.wait(self.write_timeout):
            ticket.cancel()
            err = ticket.error or "write_timeout"
            outcome: PrintOutcome = "disconnected" if err == "disconnected" else "write_failed"
            return PrintResult(outcome, status, message=err)
        return PrintResult(
            "printed" if status is not None else "printed_unverified",
            status,
            bytes_written=len(payload),
        )


# --------------------------------------------------------------- ID card reader

CardSink = Callable[[CardEvent], None]


class IdCardReader:
    """A GA/T 467 resident ID card reader on a serial port (usually 115200 baud).

    Polls find/select/read through :class:`IdCardPoller` and calls ``sink`` with
    :class:`IdCardRead` / :class:`CardReadFailed` events on the owner thread.
    """

    def __init__(
        self,
        config: SerialConfig,
        sink: CardSink,
        *,
        poller: IdCardPoller | None = None,
        frame_idle: float = 0.2,
        backoff: Backoff = RECONNECT,
        name: str = "idcard",
        on_status: Callable[[PortStatus], None] | None = None,
    ) -> None:
        self.sink = sink
        self.poller = poller or IdCardPoller()
        self.parser = FrameParser()
        self.frame_idle = frame_idle
        self._last_rx = 0.0
        self.frame_errors = 0
        self.owner = SerialPortOwner(config, self, name=name, backoff=backoff, on_status=on_status)

    def start(self) -> None:
        self.owner.start()

    def stop(self, timeout: float = 3.0) -> None:
        self.owner.stop(timeout)

    def status(self) -> PortStatus:
        return self.owner.status()

    def wait_connected(self, timeout: float) -> bool:
        return self.owner.wait_connected(timeout)

    # -- PortHandler
    def on_connect(self, now: float) -> None:
        self.parser.reset()
        self.poller.reset(now)

    def on_disconnect(self, now: float) -> None:
        self.parser.reset()
        self.poller.reset(now)

    def on_data(self, data: bytes, now: float) -> None:
        self._last_rx = now
        self._handle(self.parser.feed(data), now)

    def on_tick(self, now: float) -> None:
        if self.parser.pending and now - self._last_rx > self.frame_idle:
            self._handle(self.parser.on_idle(), now)
        self._apply(*self.poller.tick(now))

    def _handle(self, items: Sequence[Frame | FrameError], now: float) -> None:
        for item in items:
            if isinstance(item, Frame):
                self._apply(*self.poller.on_frame(item, now))
            else:
                self.frame_errors += 1
                if self.frame_errors & (self.frame_errors - 1) == 0:  # 1, 2, 4, 8 ...: no flood
                    log.warning(
                        "card_frame_error",
                        kind=item.kind,
                        dropped=item.dropped,
                        total=self.frame_errors,
                    )
                self._apply(*self.poller.on_frame_error(item, now))

    def _apply(self, send: bytes | None, events: Sequence[CardEvent]) -> None:
        if send is not None:
            self.owner.write(send)
        for ev in events:
            if isinstance(ev, CardReadFailed):
                log.info("card_read_failed", reason=ev.reason)
            else:
                log.info("card_read", source=ev.source)
            try:
                self.sink(ev)
            except Exception:
                log.exception("card_sink_failed")


class KeyboardWedgeReader:
    """Key strokes from a keyboard-wedge IC reader (forwarded by the UI) to card
    events. ``key`` returns True when it produced an event."""

    def __init__(
        self,
        sink: CardSink,
        *,
        parser: WedgeParser | None = None,
        clock: Monotonic = time.monotonic,
    ) -> None:
        self.sink = sink
        self.parser = parser or WedgeParser()
        self._clock = clock

    def key(self, key: str, now: float | None = None) -> bool:
        ev = self.parser.feed(key, self._clock() if now is None else now)
        if ev is None:
            return False
        if isinstance(ev, IcCardRead):
            log.info("card_read", source=ev.source)
        try:
            self.sink(ev)
        except Exception:
            log.exception("card_sink_failed")
        return True
