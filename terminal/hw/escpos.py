"""ESC/POS codec for serial receipt printers. No IO: everything here makes or reads bytes.

Chinese text
    Chinese thermal printers print GB-encoded text once *Chinese character mode* is
    selected with ``FS &``. In that mode a byte 0x81-0xFE starts a multi-byte GB
    character and bytes below 0x80 are ASCII, so single-byte code pages (``ESC t``)
    play no part; the builder keeps the printer in Chinese mode for the whole receipt.
    Text is encoded with ``gb18030``. Many cheap printers only carry the two-byte
    (GBK) part of the font and print garbage for the four-byte GB18030 sequences
    (rare characters, and a few common symbols such as the half-width ``¥``);
    ``charset="gbk"`` substitutes those characters instead of sending them.

Columns
    With the standard 12x24 font a 58 mm printer has 32 columns and an 80 mm printer
    48. Every multi-byte character is drawn from the 24x24 Chinese font and so takes
    two columns; ASCII takes one. That is the width rule used for layout here (it
    matches what the printer does better than Unicode East-Asian-width tables, e.g.
    for ``·`` or ``é`` which the printer also draws full width).

Status
    ``DLE EOT n`` is a real-time request: the printer answers one byte at once, even
    with data queued. Answers are recognised by their fixed bits (``0xx1xx10``);
    printers differ in what they report, so a missing answer means "unknown", never
    "broken", and nothing in the payment path may depend on it.

Text sent to the printer is sanitised: control characters (which would let a menu
item or a name coming from the platform inject printer commands such as a cut or a
cash-drawer kick) are replaced with spaces.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Literal, Self

ESC = 0x1B
GS = 0x1D
FS = 0x1C
DLE = 0x10
EOT = 0x04
LF = 0x0A

INIT = bytes([ESC, 0x40])  # ESC @
CHINESE_ON = bytes([FS, 0x26])  # FS &
CHINESE_OFF = bytes([FS, 0x2E])  # FS .

COLUMNS_58MM = 32
COLUMNS_80MM = 48

Charset = Literal["gb18030", "gbk", "ascii"]
Alignment = Literal["left", "center", "right"]
_ALIGN_CODE: dict[str, int] = {"left": 0, "center": 1, "right": 2}

# Characters whose GB18030 form is four bytes but which have a common two-byte
# look-alike every Chinese printer font carries.
_GBK_SUBSTITUTES: dict[str, str] = {
    "¥": "￥",  # U+00A5 -> U+FFE5
    "•": "·",  # U+2022 -> U+00B7
    "€": "EUR",
    "\u00a0": " ",
}
_REPLACEMENT = "?"


# --------------------------------------------------------------------------- text


def sanitize(text: str) -> str:
    """Replace control characters (C0, DEL, C1, and line/paragraph separators)
    with spaces so text can never carry printer commands; drop invisible format
    characters (BOM, zero-width joiners, bidi marks) that would print as junk."""
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Zl", "Zp"):
            out.append(" ")
        elif cat != "Cf":
            out.append(ch)
    return "".join(out)


def _printable(text: str, charset: Charset) -> str:
    """The text exactly as it will be encoded: sanitised, with characters the
    chosen charset cannot print substituted."""
    text = sanitize(text)
    if charset == "gb18030":
        # Surrogates (from bad decoding upstream) are not encodable at all.
        return "".join(_REPLACEMENT if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)
    out = []
    for ch in text:
        if ord(ch) < 0x80:
            out.append(ch)
            continue
        if charset == "ascii":
            out.append(_REPLACEMENT)
            continue
        sub = _GBK_SUBSTITUTES.get(ch, ch)
        if sub != ch:
            out.append(sub)
            continue
        try:
            encoded = ch.encode("gb18030")
        except UnicodeEncodeError:
            out.append(_REPLACEMENT)
            continue
        out.append(ch if len(encoded) == 2 else _REPLACEMENT)
    return "".join(out)


def _char_cols(ch: str) -> int:
    return 1 if ord(ch) < 0x80 else 2


def text_width(text: str, charset: Charset = "gb18030") -> int:
    """Printed width in columns of the normal font (ASCII 1, anything else 2)."""
    return sum(_char_cols(c) for c in _printable(text, charset))


def encode_text(text: str, charset: Charset = "gb18030") -> bytes:
    """Sanitise and encode text for a printer in Chinese mode (``ascii``: no
    Chinese mode, non-ASCII becomes ``?``)."""
    printable = _printable(text, charset)
    if charset == "ascii":
        return printable.encode("ascii")
    return printable.encode("gb18030")


def _split_cols(text: str, cols: int) -> tuple[str, str]:
    """Split printable text after at most ``cols`` columns without cutting a
    double-width character."""
    used = 0
    for i, ch in enumerate(text):
        w = _char_cols(ch)
        if used + w > cols:
            return text[:i], text[i:]
        used += w
    return text, ""


def wrap(text: str, columns: int, charset: Charset = "gb18030") -> list[str]:
    """Hard-wrap printable text into lines of at most ``columns`` columns."""
    if columns < 2:
        raise ValueError("columns must be at least 2")
    rest = _printable(text, charset)
    lines: list[str] = []
    while rest:
        head, rest = _split_cols(rest, columns)
        lines.append(head)
    return lines or [""]


def layout_two_columns(
    left: str, right: str, columns: int, charset: Charset = "gb18030"
) -> list[str]:
    """Lay out a left/right pair (an item and its price) in ``columns`` columns.

    Fits on one line when possible (at least one space between); otherwise the
    left text wraps and the right text is right-aligned on the last line, or on a
    line of its own when it does not fit beside it. Every returned line is at most
    ``columns`` wide; a right text wider than a line is wrapped too.
    """
    if columns < 2:
        raise ValueError("columns must be at least 2")
    left_p = _printable(left, charset)
    right_p = _printable(right, charset)
    lw = sum(_char_cols(c) for c in left_p)
    rw = sum(_char_cols(c) for c in right_p)
    if not right_p:
        return wrap(left_p, columns, charset)
    if lw + 1 + rw <= columns:
        return [left_p + " " * (columns - lw - rw) + right_p]
    lines = wrap(left_p, columns, charset) if left_p else []
    if rw > columns:
        return lines + wrap(right_p, columns, charset)
    if lines:
        last = lines[-1]
        last_w = sum(_char_cols(c) for c in last)
        if last_w + 1 + rw <= columns:
            lines[-1] = last + " " * (columns - last_w - rw) + right_p
            return lines
    return [*lines, " " * (columns - rw) + right_p]


# ------------------------------------------------------------------------ builder


class EscPosBuilder:
    """Accumulates ESC/POS commands; ``build()`` returns the bytes.

    Methods return ``self`` so calls chain. ``columns`` is the normal-font line
    width (32 for 58 mm, 48 for 80 mm); ``two_column`` and ``rule`` respect the
    current character width.
    """

    def __init__(self, columns: int = COLUMNS_58MM, *, charset: Charset = "gb18030") -> None:
        if columns < 8:
            raise ValueError("columns must be at least 8")
        self.columns = columns
        self.charset: Charset = charset
        self._buf = bytearray()
        self._width = 1

    # -- raw / state
    def raw(self, data: bytes) -> Self:
        self._buf += data
        return self

    def init(self) -> Self:
        """``ESC @`` then Chinese mode (``FS &``) unless the charset is ASCII."""
        self._buf += INIT
        self._width = 1
        return self.chinese_mode(self.charset != "ascii")

    def chinese_mode(self, on: bool = True) -> Self:
        self._buf += CHINESE_ON if on else CHINESE_OFF
        return self

    def align(self, how: Alignment) -> Self:
        self._buf += bytes([ESC, 0x61, _ALIGN_CODE[how]])  # ESC a n
        return self

    def bold(self, on: bool = True) -> Self:
        self._buf += bytes([ESC, 0x45, 1 if on else 0])  # ESC E n
        return self

    def size(self, width: int = 1, height: int = 1) -> Self:
        """Character magnification 1-8 (``GS !``) for ASCII, and ``FS !`` double
        width/height for Chinese characters (printers that ignore ``FS !`` apply
        ``GS !`` to both)."""
        if not (1 <= width <= 8 and 1 <= height <= 8):
            raise ValueError("width and height must be 1..8")
        self._buf += bytes([GS, 0x21, ((width - 1) << 4) | (height - 1)])
        fs = (0x04 if width > 1 else 0) | (0x08 if height > 1 else 0)
        self._buf += bytes([FS, 0x21, fs])
        self._width = width
        return self

    # -- text
    @property
    def line_columns(self) -> int:
        """Columns at the current character width."""
        return max(2, self.columns // self._width)

    def text(self, text: str) -> Self:
        self._buf += encode_text(text, self.charset)
        return self

    def line(self, text: str = "") -> Self:
        return self.text(text).lf()

    def lf(self, n: int = 1) -> Self:
        self._buf += bytes([LF]) * n
        return self

    def feed(self, lines: int) -> Self:
        """``ESC d n``: print and feed ``n`` lines."""
        if not 0 <= lines <= 255:
            raise ValueError("lines must be 0..255")
        self._buf += bytes([ESC, 0x64, lines])
        return self

    def two_column(self, left: str, right: str) -> Self:
        for row in layout_two_columns(left, right, self.line_columns, self.charset):
            self.line(row)
        return self

    def rule(self, char: str = "-") -> Self:
        if len(char) != 1 or ord(char) >= 0x80:
            raise ValueError("rule takes one ASCII character")
        return self.line(char * self.line_columns)

    # -- paper
    def cut(self, *, partial: bool = True, feed: int = 0) -> Self:
        """``GS V m n`` (function B): feed to the cutting position plus ``feed``
        motion units (dots), then cut. Printers without a cutter ignore it."""
        if not 0 <= feed <= 255:
            raise ValueError("feed must be 0..255")
        self._buf += bytes([GS, 0x56, 0x42 if partial else 0x41, feed])
        return self

    def status_request(self, kind: StatusKind) -> Self:
        self._buf += status_request(kind)
        return self

    def build(self) -> bytes:
        return bytes(self._buf)

    def __bytes__(self) -> bytes:
        return self.build()


# ------------------------------------------------------------------------ receipt


@dataclass(frozen=True, slots=True)
class ReceiptRow:
    """A left/right row (item and price). ``rule`` rows print a separator line."""

    left: str = ""
    right: str = ""
    bold: bool = False
    rule: bool = False


RULE = ReceiptRow(rule=True)


@dataclass(frozen=True, slots=True)
class ReceiptDoc:
    """What a receipt says, already translated and formatted by the caller.

    ``title`` is the centre name (printed large); ``header`` lines are centred
    under it (date-time, meal slot, terminal); ``rows`` are left/right pairs
    (items, subsidy, paid, balance, record id) given as ``(left, right)`` tuples or
    :class:`ReceiptRow`; ``footer`` lines are centred; ``verify_code`` is printed
    large after ``verify_label`` so staff can check a receipt against the record
    without a QR code; ``banner`` is printed above the title (e.g. the reprint mark).
    """

    title: str
    rows: Sequence[ReceiptRow | tuple[str, str]] = ()
    header: Sequence[str] = ()
    footer: Sequence[str] = ()
    verify_code: str | None = None
    verify_label: str = ""
    banner: str | None = None


def render_receipt(
    doc: ReceiptDoc,
    *,
    columns: int = COLUMNS_58MM,
    charset: Charset = "gb18030",
    cut: bool = True,
    tail_feed: int = 3,
) -> bytes:
    """ESC/POS bytes for one receipt: init, Chinese mode, content, feed and cut.

    ``tail_feed`` lines are fed before the cut so the last line clears the tear
    bar on printers without a cutter (many 58 mm models); set it to 0 for
    printers with a cutter to save paper. ``cut`` sends ``GS V B 0``.
    """
    b = EscPosBuilder(columns, charset=charset).init()
    b.align("center")
    if doc.banner:
        b.bold().line(doc.banner).bold(False)
    b.bold().size(2, 2)
    for ln in wrap(doc.title, b.line_columns, charset):
        b.line(ln)
    b.size(1, 1).bold(False)
    for h in doc.header:
        b.line(h)
    b.align("left")
    if doc.rows:
        b.rule()
        for row in doc.rows:
            r = row if isinstance(row, ReceiptRow) else ReceiptRow(row[0], row[1])
            if r.rule:
                b.rule()
                continue
            if r.bold:
                b.bold()
            b.two_column(r.left, r.right)
            if r.bold:
                b.bold(False)
        b.rule()
    if doc.footer or doc.verify_code:
        b.align("center")
        for f in doc.footer:
            b.line(f)
        if doc.verify_code:
            if doc.verify_label:
                b.line(doc.verify_label)
            b.bold().size(2, 2).line(doc.verify_code).size(1, 1).bold(False)
        b.align("left")
    if tail_feed:
        b.feed(tail_feed)
    if cut:
        b.cut(partial=True)
    return b.build()


def render_lines(
    lines: Iterable[str],
    *,
    charset: Charset = "gb18030",
    cut: bool = True,
    tail_feed: int = 3,
) -> bytes:
    """ESC/POS bytes for text already laid out by the caller, one line each
    (init, Chinese mode, the lines, feed and cut). Lines wider than the paper are
    wrapped by the printer; lay them out with :func:`text_width`."""
    b = EscPosBuilder(charset=charset).init()
    for ln in lines:
        b.line(ln)
    if tail_feed:
        b.feed(tail_feed)
    if cut:
        b.cut(partial=True)
    return b.build()


# ------------------------------------------------------------------------- status


class StatusKind(IntEnum):
    """``n`` of ``DLE EOT n``."""

    PRINTER = 1
    OFFLINE_CAUSE = 2
    ERROR_CAUSE = 3
    PAPER_SENSOR = 4


def status_request(kind: StatusKind | int) -> bytes:
    k = StatusKind(kind)
    return bytes([DLE, EOT, int(k)])


def is_status_byte(value: int) -> bool:
    """True when ``value`` has the fixed bits of a DLE EOT answer (``0xx1xx10``)."""
    return (value & 0x93) == 0x12


@dataclass(frozen=True, slots=True)
class PrinterStatus:
    """What the printer reported; ``None`` means it did not say."""

    online: bool | None = None
    cover_open: bool | None = None
    paper_out: bool | None = None
    paper_near_end: bool | None = None
    error: bool | None = None
    cutter_error: bool | None = None
    unrecoverable_error: bool | None = None
    recoverable_error: bool | None = None
    answered: frozenset[StatusKind] = field(default_factory=frozenset)

    def merge(self, other: PrinterStatus) -> PrinterStatus:
        """Combine answers; the worse report wins (a problem flag set by either,
        offline if either says so), unknown only when neither said."""
        vals: dict[str, bool | None] = {}
        for name in _PROBLEM_FLAGS:
            a, b = getattr(self, name), getattr(other, name)
            vals[name] = None if a is None and b is None else bool(a) or bool(b)
        a, b = self.online, other.online
        vals["online"] = None if a is None and b is None else (a is not False and b is not False)
        return PrinterStatus(**vals, answered=self.answered | other.answered)

    @property
    def known(self) -> bool:
        return bool(self.answered)

    @property
    def problem(self) -> str | None:
        """The most important reported problem, or ``None``:
        ``paper_out`` > ``cover_open`` > ``error`` > ``offline``."""
        if self.paper_out:
            return "paper_out"
        if self.cover_open:
            return "cover_open"
        if self.error or self.cutter_error or self.unrecoverable_error:
            return "error"
        if self.online is False:
            return "offline"
        return None


_PROBLEM_FLAGS = (
    "cover_open",
    "paper_out",
    "paper_near_end",
    "error",
    "cutter_error",
    "unrecoverable_error",
    "recoverable_error",
)


def parse_status(kind: StatusKind | int, value: int) -> PrinterStatus | None:
    """Decode one answer byte to ``DLE EOT kind``; ``None`` if it is not a status byte."""
    if not 0 <= value <= 0xFF or not is_status_byte(value):
        return None
    k = StatusKind(kind)
    answered = frozenset({k})
    if k is StatusKind.PRINTER:
        return PrinterStatus(online=not value & 0x08, answered=answered)
    if k is StatusKind.OFFLINE_CAUSE:
        return PrinterStatus(
            cover_open=bool(value & 0x04),
            paper_out=bool(value & 0x20),
            error=bool(value & 0x40),
            answered=answered,
        )
    if k is StatusKind.ERROR_CAUSE:
        return PrinterStatus(
            cutter_error=bool(value & 0x08),
            unrecoverable_error=bool(value & 0x20),
            recoverable_error=bool(value & 0x40),
            answered=answered,
        )
    return PrinterStatus(
        paper_near_end=(value & 0x0C) == 0x0C,
        paper_out=(value & 0x60) == 0x60,
        answered=answered,
    )


def parse_status_answers(kinds: Sequence[StatusKind | int], data: Iterable[int]) -> PrinterStatus:
    """Match answer bytes to the requests in order, skipping bytes that are not
    status answers (noise, echoes). Missing answers stay unknown."""
    result = PrinterStatus()
    pending = list(kinds)
    for value in data:
        if not pending:
            break
        parsed = parse_status(pending[0], value)
        if parsed is None:
            continue
        pending.pop(0)
        result = result.merge(parsed)
    return result
