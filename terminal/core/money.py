"""Money is an integer number of fen (0.01 yuan). Never a float."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_YUAN_RE = re.compile(r"^\s*(-)?(\d+)(?:\.(\d{1,2}))?\s*$")


@dataclass(frozen=True, order=True, slots=True)
class Money:
    """An amount in fen. Arithmetic stays integer; formatting is for display only."""

    fen: int

    def __post_init__(self) -> None:
        if isinstance(self.fen, bool) or not isinstance(self.fen, int):
            raise TypeError("Money takes an integer number of fen")

    @classmethod
    def zero(cls) -> Money:
        return cls(0)

    @classmethod
    def parse_yuan(cls, text: str) -> Money:
        """Parse '12', '12.5' or '12.50' (yuan) exactly, without floats."""
        m = _YUAN_RE.match(text)
        if not m:
            raise ValueError(f"not an amount in yuan: {text!r}")
        sign, whole, frac = m.groups()
        fen = int(whole) * 100 + int((frac or "0").ljust(2, "0"))
        return cls(-fen if sign else fen)

    def __add__(self, other: Any) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        return Money(self.fen + other.fen)

    def __sub__(self, other: Any) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        return Money(self.fen - other.fen)

    def __neg__(self) -> Money:
        return Money(-self.fen)

    def __bool__(self) -> bool:
        return self.fen != 0

    def yuan_str(self) -> str:
        """'12.50' style text; '-3.00' for negatives."""
        sign = "-" if self.fen < 0 else ""
        a = abs(self.fen)
        return f"{sign}{a // 100}.{a % 100:02d}"

    def __str__(self) -> str:
        return "¥" + self.yuan_str()
