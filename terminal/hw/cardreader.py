"""Card reader codecs. No IO: bytes and key strokes in, frames and card events out.

GA/T 467 resident ID card readers (serial, usually 115200 8N1)
    Frame: ``AA AA AA 96 69 | LEN_HI LEN_LO | body | CHK``. ``LEN`` counts the
    body plus the checksum byte; ``CHK`` is the XOR of the length bytes and the
    body. A request body is ``CMD PARA [data]``; a response body is
    ``SW1 SW2 SW3 [data]`` where ``00 00 90`` is success (``9F`` after "find card").

    Reading a card is three requests: find (``20 01``), select (``20 02``), read
    base info (``30 01``). The base-info data is ``text_len(2) photo_len(2) text
    photo``; the 256-byte text is UCS-2LE fixed-width fields, space padded. The
    photo is the card's encrypted (WLT) image: it is dropped here, never kept.

USB keyboard-wedge IC card readers
    They "type" the card number and Enter much faster than a person can;
    :class:`WedgeParser` accepts a number only when every key arrived within
    ``max_gap`` seconds of the previous one.

Privacy: :class:`IdCardInfo` hides name, birth date, address, ID number and issuer
from ``repr``; nothing here logs.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Literal

from terminal.core.errors import DeviceError

HEADER = b"\xaa\xaa\xaa\x96\x69"
_PREFIX_LEN = len(HEADER) + 2  # header + 2 length bytes
MIN_LENGTH = 3  # smallest body + checksum we accept (CMD PARA CHK)
DEFAULT_MAX_LENGTH = 4096  # base info with fingerprints is 2314

# Requests (CMD, PARA)
CMD_FIND_CARD = (0x20, 0x01)
CMD_SELECT_CARD = (0x20, 0x02)
CMD_READ_BASE = (0x30, 0x01)
CMD_READ_BASE_FP = (0x30, 0x10)
CMD_SAM_STATUS = (0x11, 0xFF)
CMD_SAM_ID = (0x12, 0xFF)

# SW3 values
SW_OK = 0x90
SW_FIND_OK = 0x9F
SW_MESSAGES: dict[int, str] = {
    0x90: "ok",
    0x9F: "card found",
    0x10: "reader got a bad checksum",
    0x11: "reader got a bad length",
    0x21: "reader got a bad command",
    0x23: "operation not allowed",
    0x24: "unknown command",
    0x31: "card authentication failed",
    0x32: "SAM authentication failed",
    0x33: "card data verification failed",
    0x40: "unknown card type",
    0x41: "reading the card failed",
    0x47: "SAM key error",
    0x60: "SAM self-test failed",
    0x66: "SAM not authorised",
    0x80: "no card found",
    0x81: "selecting the card failed",
    0x91: "card has no such data",
}


class CardDataError(DeviceError):
    """A card or reader answer that cannot be decoded. Messages never contain card data."""

    code = "card_data_invalid"


def checksum(data: bytes | bytearray | memoryview) -> int:
    c = 0
    for b in bytes(data):
        c ^= b
    return c


def build_frame(body: bytes) -> bytes:
    """Wrap ``body`` (request ``CMD PARA data`` or response ``SW1 SW2 SW3 data``)."""
    length = len(body) + 1
    if length > 0xFFFF:
        raise ValueError("frame body too long")
    ln = length.to_bytes(2, "big")
    return HEADER + ln + body + bytes([checksum(ln + body)])


def build_request(cmd: int, para: int, data: bytes = b"") -> bytes:
    return build_frame(bytes([cmd, para]) + data)


def build_response(sw3: int, data: bytes = b"", *, sw1: int = 0, sw2: int = 0) -> bytes:
    """A reader's answer (for test peers and simulators)."""
    return build_frame(bytes([sw1, sw2, sw3]) + data)


FIND_CARD = build_request(*CMD_FIND_CARD)
SELECT_CARD = build_request(*CMD_SELECT_CARD)
READ_BASE = build_request(*CMD_READ_BASE)


@dataclass(frozen=True, slots=True)
class Frame:
    """One checked frame. ``body`` excludes header, length and checksum.

    Read it as a response (``sw1``..``sw3``, ``data``) or as a request
    (``cmd``, ``para``, ``params``) depending on which side you are.
    """

    body: bytes

    @property
    def sw1(self) -> int:
        return self.body[0] if len(self.body) > 0 else -1

    @property
    def sw2(self) -> int:
        return self.body[1] if len(self.body) > 1 else -1

    @property
    def sw3(self) -> int:
        return self.body[2] if len(self.body) > 2 else -1

    @property
    def data(self) -> bytes:
        return self.body[3:]

    @property
    def ok(self) -> bool:
        return self.sw1 == 0 and self.sw2 == 0 and self.sw3 in (SW_OK, SW_FIND_OK)

    @property
    def cmd(self) -> tuple[int, int]:
        return (self.sw1, self.sw2)

    @property
    def params(self) -> bytes:
        return self.body[2:]

    def encode(self) -> bytes:
        return build_frame(self.body)


FrameErrorKind = Literal["garbage", "bad_length", "checksum", "truncated"]
_KIND_RANK: dict[str, int] = {"garbage": 0, "truncated": 1, "bad_length": 2, "checksum": 3}


@dataclass(frozen=True, slots=True)
class FrameError:
    """Bytes the parser threw away since the last frame. ``kind`` is the most
    telling reason seen (checksum > bad_length > truncated > garbage)."""

    kind: FrameErrorKind
    dropped: int


class FrameParser:
    """Incremental GA/T 467 frame parser.

    ``feed`` never raises on any input, resyncs on the next header after garbage or
    a bad frame, and keeps at most ``max_buffer`` bytes between calls. A header
    followed by a plausible length makes it wait for the rest of that frame; call
    :meth:`on_idle` when the line has been quiet longer than a frame takes so a
    truncated frame (or a false header in noise) is dropped and what follows it is
    parsed.
    """

    def __init__(self, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        if not MIN_LENGTH <= max_length <= 0xFFFF:
            raise ValueError("max_length out of range")
        self.max_length = max_length
        self._buf = bytearray()
        self._drop_count = 0
        self._drop_kind: FrameErrorKind = "garbage"

    @property
    def max_buffer(self) -> int:
        return _PREFIX_LEN + self.max_length

    @property
    def buffered(self) -> int:
        return len(self._buf)

    @property
    def pending(self) -> bool:
        """True when bytes that may start a frame are waiting for more."""
        return bool(self._buf)

    def reset(self) -> None:
        self._buf.clear()
        self._drop_count = 0
        self._drop_kind = "garbage"

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame | FrameError]:
        out: list[Frame | FrameError] = []
        self._buf += data
        self._scan(out)
        self._flush_drop(out)
        return out

    def on_idle(self) -> list[Frame | FrameError]:
        """Give up on the partial frame at the front of the buffer (if any) and
        parse whatever follows it."""
        out: list[Frame | FrameError] = []
        while self._buf:
            self._drop(1, "truncated")
            del self._buf[:1]
            self._scan(out)
        self._flush_drop(out)
        return out

    # -- internals
    def _drop(self, count: int, kind: FrameErrorKind) -> None:
        if count <= 0:
            return
        if self._drop_count == 0 or _KIND_RANK[kind] > _KIND_RANK[self._drop_kind]:
            self._drop_kind = kind
        self._drop_count += count

    def _flush_drop(self, out: list[Frame | FrameError]) -> None:
        if self._drop_count:
            out.append(FrameError(self._drop_kind, self._drop_count))
            self._drop_count = 0
            self._drop_kind = "garbage"

    def _scan(self, out: list[Frame | FrameError]) -> None:
        buf = self._buf
        n = len(buf)
        pos = 0
        while True:
            i = buf.find(HEADER, pos)
            if i < 0:
                keep = 0
                for k in range(min(len(HEADER) - 1, n - pos), 0, -1):
                    if buf[n - k :] == HEADER[:k]:
                        keep = k
                        break
                self._drop(n - keep - pos, "garbage")
                pos = n - keep
                break
            self._drop(i - pos, "garbage")
            pos = i
            if n - pos < _PREFIX_LEN:
                break
            length = (buf[pos + 5] << 8) | buf[pos + 6]
            if length < MIN_LENGTH or length > self.max_length:
                self._drop(1, "bad_length")
                pos += 1
                continue
            end = pos + _PREFIX_LEN + length
            if end > n:
                break
            if checksum(memoryview(buf)[pos + 5 : end - 1]) != buf[end - 1]:
                self._drop(1, "checksum")
                pos += 1
                continue
            self._flush_drop(out)
            out.append(Frame(bytes(buf[pos + _PREFIX_LEN : end - 1])))
            pos = end
        del buf[:pos]


# --------------------------------------------------------------- base info (text)

TEXT_LEN = 256
PHOTO_LEN = 1024
# (field, characters) in the order of the text block
_TEXT_FIELDS: tuple[tuple[str, int], ...] = (
    ("name", 15),
    ("sex_code", 1),
    ("nation_code", 2),
    ("birth_date", 8),
    ("address", 35),
    ("id_number", 18),
    ("issuer", 15),
    ("valid_from", 8),
    ("valid_until", 8),
    ("reserved", 18),
)
_CARD_TYPE_CHAR = 124  # character index of the card-type mark (inside "reserved")
SUPPORTED_CARD_TYPES = {"": "resident_id", "J": "hmt_residence_permit"}

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_ID_RE = re.compile(r"^\d{17}[\dX]$")


def id_number_checksum_ok(id_number: str) -> bool:
    """ISO 7064 MOD 11-2 check digit of an 18-character resident ID number."""
    if not _ID_RE.match(id_number):
        return False
    total = sum(int(c) * w for c, w in zip(id_number[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == id_number[17]


@dataclass(frozen=True, slots=True)
class IdCardInfo:
    """The text fields of a resident ID card (or HK/Macao/Taiwan residence permit).

    Personal fields are left out of ``repr`` so a stray log line or traceback
    cannot carry them. ``valid_until`` may be ``长期`` (no expiry).
    """

    name: str = field(repr=False)
    sex_code: str
    nation_code: str
    birth_date: str = field(repr=False)
    address: str = field(repr=False)
    id_number: str = field(repr=False)
    issuer: str = field(repr=False)
    valid_from: str
    valid_until: str
    card_type: str = "resident_id"
    id_checksum_ok: bool = True

    @property
    def sex(self) -> Literal["male", "female", "unknown"]:
        return {"1": "male", "2": "female"}.get(self.sex_code, "unknown")  # type: ignore[return-value]

    def card_key(self) -> str:
        """A stable, non-reversible key for "same card again" checks (SHA-256 of
        the ID number); the number itself need not be kept for that."""
        return hashlib.sha256(("idcard:" + self.id_number).encode()).hexdigest()


def encode_base_text(
    *,
    name: str,
    sex_code: str,
    nation_code: str,
    birth_date: str,
    address: str,
    id_number: str,
    issuer: str,
    valid_from: str,
    valid_until: str,
    card_type: str = "",
) -> bytes:
    """The 256-byte UCS-2LE text block (inverse of :func:`decode_base_text`; for
    test peers and simulators)."""
    values = {
        "name": name,
        "sex_code": sex_code,
        "nation_code": nation_code,
        "birth_date": birth_date,
        "address": address,
        "id_number": id_number,
        "issuer": issuer,
        "valid_from": valid_from,
        "valid_until": valid_until,
        "reserved": "",
    }
    chars: list[str] = []
    for fname, width in _TEXT_FIELDS:
        v = values[fname]
        if len(v) > width:
            raise ValueError(f"{fname} longer than {width} characters")
        chars.append(v.ljust(width))
    text = "".join(chars)
    if card_type:
        text = text[:_CARD_TYPE_CHAR] + card_type[:1] + text[_CARD_TYPE_CHAR + 1 :]
    out = text.encode("utf-16-le")
    assert len(out) == TEXT_LEN
    return out


def decode_base_text(text: bytes) -> IdCardInfo:
    """Decode the 256-byte text block. Raises :class:`CardDataError`."""
    if len(text) != TEXT_LEN:
        raise CardDataError("ID card text block has the wrong size")
    try:
        chars = text.decode("utf-16-le")
    except UnicodeDecodeError:
        raise CardDataError("ID card text block is not valid UCS-2") from None
    if len(chars) != TEXT_LEN // 2:
        raise CardDataError("ID card text block is not valid UCS-2")
    mark = chars[_CARD_TYPE_CHAR].strip(" \x00")
    if mark not in SUPPORTED_CARD_TYPES:
        raise CardDataError("this card type is not supported", code="card_unsupported")
    fields: dict[str, str] = {}
    pos = 0
    for fname, width in _TEXT_FIELDS:
        fields[fname] = chars[pos : pos + width].strip(" \x00\u3000")
        pos += width
    id_number = fields["id_number"].upper()
    if not id_number:
        raise CardDataError("ID card text has no ID number")
    return IdCardInfo(
        name=fields["name"],
        sex_code=fields["sex_code"],
        nation_code=fields["nation_code"],
        birth_date=fields["birth_date"],
        address=fields["address"],
        id_number=id_number,
        issuer=fields["issuer"],
        valid_from=fields["valid_from"],
        valid_until=fields["valid_until"],
        card_type=SUPPORTED_CARD_TYPES[mark],
        id_checksum_ok=id_number_checksum_ok(id_number),
    )


def build_base_info_data(text: bytes, photo: bytes = b"\x00" * PHOTO_LEN) -> bytes:
    """Response data of "read base info" (for test peers and simulators)."""
    return len(text).to_bytes(2, "big") + len(photo).to_bytes(2, "big") + text + photo


def decode_base_info(frame: Frame) -> IdCardInfo:
    """Decode the response to "read base info" (``30 01`` or ``30 10``).
    Raises :class:`CardDataError`; the photo (and fingerprints) are discarded."""
    if not frame.ok or frame.sw3 != SW_OK:
        raise CardDataError(
            "reader reported: " + SW_MESSAGES.get(frame.sw3, f"status {frame.sw3:#04x}")
        )
    data = frame.data
    if len(data) < 4:
        raise CardDataError("base info answer too short")
    t_len = int.from_bytes(data[0:2], "big")
    p_len = int.from_bytes(data[2:4], "big")
    start = 4
    if 4 + t_len + p_len != len(data):
        # the fingerprint variant carries a third length
        f_len = int.from_bytes(data[4:6], "big") if len(data) >= 6 else -1
        if f_len < 0 or 6 + t_len + p_len + f_len != len(data):
            raise CardDataError("base info lengths do not add up")
        start = 6
    return decode_base_text(data[start : start + t_len])


# ------------------------------------------------------------------------ events


@dataclass(frozen=True, slots=True)
class IdCardRead:
    info: IdCardInfo
    source: str = "idcard"


@dataclass(frozen=True, slots=True)
class IcCardRead:
    """An IC card number: ``format`` is ``decimal`` (8-10 digits) or ``hex``
    (a 4-, 7- or 10-byte UID, upper case)."""

    number: str = field(repr=False)
    format: Literal["decimal", "hex"]
    source: str = "wedge"


@dataclass(frozen=True, slots=True)
class CardReadFailed:
    """A card was presented but could not be read. ``reason`` is a stable code;
    ``message`` is safe to show and log (no card data)."""

    reason: str
    message: str
    source: str = "idcard"


CardEvent = IdCardRead | IcCardRead | CardReadFailed


# ------------------------------------------------------------------ ID card poller

PollerState = Literal["idle", "wait_find", "wait_select", "wait_read"]


class IdCardPoller:
    """The find -> select -> read conversation with a GA/T 467 reader, pure.

    The port owner calls :meth:`tick` regularly and :meth:`on_frame` for every
    frame; both return ``(bytes_to_send | None, events)``. A card that stays on
    the reader is reported once: it is reported again only after the reader
    said "no card" in between.
    """

    def __init__(
        self,
        *,
        poll_interval: float = 0.4,
        response_timeout: float = 1.0,
        read_timeout: float = 3.0,
    ) -> None:
        self.poll_interval = poll_interval
        self.response_timeout = response_timeout
        self.read_timeout = read_timeout
        self.state: PollerState = "idle"
        self._deadline = 0.0
        self._next_poll = 0.0
        self._last_key: str | None = None
        self.unanswered = 0  # consecutive requests without an answer

    def reset(self, now: float) -> None:
        self.state = "idle"
        self._next_poll = now
        self._last_key = None

    def _send(self, frame: bytes, state: PollerState, now: float, timeout: float) -> bytes:
        self.state = state
        self._deadline = now + timeout
        return frame

    def _idle(self, now: float) -> None:
        self.state = "idle"
        self._next_poll = now + self.poll_interval

    def tick(self, now: float) -> tuple[bytes | None, list[CardEvent]]:
        if self.state == "idle":
            if now >= self._next_poll:
                return self._send(FIND_CARD, "wait_find", now, self.response_timeout), []
            return None, []
        if now < self._deadline:
            return None, []
        self.unanswered += 1
        events: list[CardEvent] = []
        if self.state == "wait_read":
            events.append(CardReadFailed("timeout", "the card reader did not answer in time"))
        self._idle(now)
        return None, events

    def on_frame(self, frame: Frame, now: float) -> tuple[bytes | None, list[CardEvent]]:
        self.unanswered = 0
        if self.state == "wait_find":
            if frame.sw3 == SW_FIND_OK:
                return self._send(SELECT_CARD, "wait_select", now, self.response_timeout), []
            self._last_key = None  # no card (or not one that answers): forget the last one
            self._idle(now)
            return None, []
        if self.state == "wait_select":
            if frame.ok:
                return self._send(READ_BASE, "wait_read", now, self.read_timeout), []
            self._idle(now)
            return None, []
        if self.state == "wait_read":
            self._idle(now)
            if frame.sw3 != SW_OK:
                msg = SW_MESSAGES.get(frame.sw3, "the card could not be read")
                return None, [CardReadFailed(f"sw_{frame.sw3 & 0xFF:02x}", msg)]
            try:
                info = decode_base_info(frame)
            except CardDataError as err:
                return None, [CardReadFailed(err.code, str(err))]
            key = info.card_key()
            if key == self._last_key:
                return None, []
            self._last_key = key
            return None, [IdCardRead(info)]
        return None, []  # unsolicited frame

    def on_frame_error(self, error: FrameError, now: float) -> tuple[bytes | None, list[CardEvent]]:
        """A damaged answer while reading the card is a failed read (the card
        stays unreported so the next poll reads it again)."""
        if self.state == "wait_read" and error.kind in ("checksum", "truncated", "bad_length"):
            self._idle(now)
            return None, [CardReadFailed("bad_frame", "the card reader sent a damaged answer")]
        return None, []


# ------------------------------------------------------------ keyboard wedge (IC)

_DEC_RE = re.compile(r"^\d{8,10}$")
_HEX_RE = re.compile(r"^[0-9A-F]+$")
_HEX_LENGTHS = (8, 14, 20)
_ENTER_KEYS = frozenset({"\r", "\n", "Enter", "Return", "KP_Enter"})


def classify_card_number(text: str) -> IcCardRead | None:
    """Decimal 8-10 digits, or a hex UID of 4, 7 or 10 bytes; ``None`` otherwise."""
    t = text.strip()
    if _DEC_RE.match(t):
        return IcCardRead(t, "decimal")
    u = t.upper()
    if len(u) in _HEX_LENGTHS and _HEX_RE.match(u):
        return IcCardRead(u, "hex")
    return None


class WedgeParser:
    """Turns key strokes from a USB keyboard-wedge reader into card numbers.

    ``feed(key, now)``: ``key`` is one character or an Enter key name; ``now`` is
    a monotonic time in seconds. Keys more than ``max_gap`` apart restart the
    buffer, so a person typing digits is never taken for a card. Returns an
    :class:`IcCardRead`, a :class:`CardReadFailed` (fast input that is not a card
    number), or ``None``.
    """

    def __init__(self, *, max_gap: float = 0.06, min_len: int = 4, max_len: int = 32) -> None:
        self.max_gap = max_gap
        self.min_len = min_len
        self.max_len = max_len
        self._buf: list[str] = []
        self._last = 0.0

    @property
    def pending(self) -> int:
        return len(self._buf)

    def reset(self) -> None:
        self._buf.clear()

    def feed(self, key: str, now: float) -> IcCardRead | CardReadFailed | None:
        if self._buf and now - self._last > self.max_gap:
            self._buf.clear()
        self._last = now
        if key in _ENTER_KEYS:
            typed = "".join(self._buf)
            self._buf.clear()
            if len(typed) < self.min_len:
                return None
            card = classify_card_number(typed)
            if card is None:
                return CardReadFailed("bad_card_number", "not a card number", source="wedge")
            return card
        if len(key) != 1 or not key.isprintable():
            self._buf.clear()
            return None
        self._buf.append(key)
        if len(self._buf) > self.max_len:
            self._buf.clear()
        return None
