"""ULIDs made on the device: unique across the fleet, sortable by creation time.

Format: 48-bit millisecond timestamp + 80 bits of randomness, Crockford base32,
26 characters. Within one millisecond the generator increments the random part,
so ids from one process are strictly increasing (monotonic ULID).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE = {c: i for i, c in enumerate(_ALPHABET)}
_RANDOM_BITS = 80
_MAX_RANDOM = (1 << _RANDOM_BITS) - 1


def _encode(value: int, length: int) -> str:
    out = []
    for _ in range(length):
        out.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


def is_ulid(text: str) -> bool:
    """True when ``text`` is a syntactically valid 26-character ULID."""
    if len(text) != 26 or text[0] not in "01234567":
        return False
    return all(c in _DECODE for c in text)


def ulid_timestamp_ms(text: str) -> int:
    """Milliseconds since the epoch encoded in a ULID."""
    if not is_ulid(text):
        raise ValueError("not a ULID")
    value = 0
    for c in text[:10]:
        value = (value << 5) | _DECODE[c]
    return value


class UlidGenerator:
    """Thread-safe monotonic ULID generator."""

    def __init__(self, now_ms: Callable[[], int] | None = None) -> None:
        self._now_ms = now_ms or (lambda: time.time_ns() // 1_000_000)
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_rand = 0

    def new(self) -> str:
        with self._lock:
            ms = int(self._now_ms())
            if ms <= self._last_ms:
                ms = self._last_ms
                rand = self._last_rand + 1
                if rand > _MAX_RANDOM:  # pragma: no cover - 2**80 ids in one ms
                    ms += 1
                    rand = secrets.randbits(_RANDOM_BITS - 1)
            else:
                # keep headroom so increments within the millisecond never overflow
                rand = secrets.randbits(_RANDOM_BITS - 1)
            self._last_ms, self._last_rand = ms, rand
            return _encode(ms, 10) + _encode(rand, 16)


_default = UlidGenerator()


def new_ulid() -> str:
    """A new ULID from the process-wide monotonic generator."""
    return _default.new()
