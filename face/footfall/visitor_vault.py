"""The day's anonymous visitors across a service restart, encrypted at rest.

:class:`DailyVisitors` (``identity.py``) matches returning visitors by face
embedding in memory. To keep "one person walking in five times is one
visitor" true across a *restart of the service* within the day, the service
hands the state to :class:`VisitorVault`, which writes it to one file
(``footfall-visitors.bin``, mode 0600, with ``terminal.core.atomic``) only as

    MAGIC (8 bytes) | nonce (12 bytes) | AES-256-GCM(ciphertext + tag)

with associated data binding the centre, the device and the centre-local day.
The 32-byte key is random, made per day, and exists only in process memory
and in the Linux kernel keyring - never on disk, never logged. Without the
key the file is useless; a file that cannot be decrypted (no key, a wrong or
expired key, another day, another device, a damaged file) is overwritten and
deleted, and the day's visitors start afresh.

Which keyring, and why
    The footfall counter runs as the ``care`` user under systemd
    (``deploy/systemd/care-terminal-*.service``: ``User=care``, no
    ``KeyringMode=``). For system services ``KeyringMode=`` defaults to
    ``private``: every start gets a new anonymous *session* keyring, not
    linked to the user keyring, so a key in the session keyring would die
    with every service restart. The key therefore goes into the *user*
    keyring of ``care`` (``KEY_SPEC_USER_KEYRING``, ``@u``), which belongs to
    the kernel's record of the UID: it survives a restart of the service
    (the other ``care`` processes, the kiosk and the agent, keep the record
    alive, and current kernels keep user keyrings in the user namespace)
    but lives in kernel memory only, so it never survives a reboot. Because
    ``private`` does not link ``@u`` into the session keyring, a new process
    does not *possess* the key: the key is made in the process keyring (where
    it is possessed, so it can get its timeout and permissions), given user
    permissions view/read/write/search/setattr for its own UID (no group, no
    other), linked into ``@u`` and unlinked from the process keyring. A
    later process of the same UID then finds and reads it through ``@u``
    without possessing it (tested in a new process with a fresh session
    keyring, as systemd gives each start).

    The keyring is reached with the ``add_key(2)`` and ``keyctl(2)`` system
    calls through ``ctypes`` on libc's ``syscall``: no ``keyutils`` package
    (the ``keyctl`` command is not installed by default on Raspberry Pi OS
    Lite, nor here) and no ``libkeyutils`` needed; the syscall numbers for
    x86_64, aarch64 (Raspberry Pi OS 64-bit), 32-bit ARM (armhf) and i386
    are below. Every key gets a timeout at the end of its centre-local day
    (plus a minute), so it expires with the day even when the service is
    not running at midnight; a new day gets a new key (the day is part of
    the key's description).

When there is no keyring
    Where the syscalls are missing or refused (a container's seccomp filter,
    an unknown architecture, a kernel without ``CONFIG_KEYS``), the vault is
    off: visitors stay in memory only, as before, and a warning is logged
    once per process. After a reboot (the key is gone) the file is deleted
    and the day's unique visitors may double count; after a service restart
    they do not.

Nothing here logs or prints an embedding or the key: log lines carry event
names, counts and exception type names only.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import secrets
import struct
import threading
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Protocol

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from terminal.core.atomic import atomic_write_bytes
from terminal.core.log import get_logger

log = get_logger(__name__)

FILE_NAME = "footfall-visitors.bin"
MAGIC = b"CTFFVV1\n"
NONCE_LEN = 12
KEY_LEN = 32
_HEADER = struct.Struct("<III")  # visitors, vectors, dimension

# (add_key, keyctl) syscall numbers per machine
_SYSCALLS: dict[str, tuple[int, int]] = {
    "x86_64": (248, 250),
    "amd64": (248, 250),
    "aarch64": (217, 219),
    "arm64": (217, 219),
    "armv6l": (309, 311),
    "armv7l": (309, 311),
    "armv8l": (309, 311),
    "i386": (286, 288),
    "i686": (286, 288),
}
KEY_SPEC_PROCESS_KEYRING = -2
KEY_SPEC_USER_KEYRING = -4
KEYCTL_REVOKE = 3
KEYCTL_SETPERM = 5
KEYCTL_LINK = 8
KEYCTL_UNLINK = 9
KEYCTL_SEARCH = 10
KEYCTL_READ = 11
KEYCTL_SET_TIMEOUT = 15
KEYCTL_INVALIDATE = 21
# possessor: all; user (same UID, a later process that does not possess it):
# view, read, write, search, setattr; group and other: nothing
KEY_PERM = 0x3F000000 | 0x00010000 | 0x00020000 | 0x00040000 | 0x00080000 | 0x00200000


class KeyringUnavailable(RuntimeError):
    """The kernel keyring cannot be used here (the reason is the message)."""


class KeyStore(Protocol):
    """Where the per-day key lives besides process memory."""

    def get(self, name: str) -> bytes | None: ...

    def put(self, name: str, key: bytes, timeout_s: int) -> None: ...

    def drop(self, name: str) -> None: ...


class KernelKeyring:
    """``user`` keys in the user keyring (``@u``) via ``add_key``/``keyctl``."""

    def __init__(self) -> None:
        nrs = _SYSCALLS.get(platform.machine().lower())
        if nrs is None:
            raise KeyringUnavailable(f"no keyctl syscall numbers for {platform.machine()!r}")
        self._add_key, self._keyctl = nrs
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            self._syscall = libc.syscall
        except (OSError, AttributeError) as exc:
            raise KeyringUnavailable(f"libc syscall() not reachable: {exc}") from None
        self._syscall.restype = ctypes.c_long
        # probe: the user keyring must be searchable (ENOKEY is fine, ENOSYS/EPERM are not)
        try:
            self.get("care-terminal:probe")
        except OSError as exc:
            raise KeyringUnavailable(
                f"keyctl(KEYCTL_SEARCH) failed: {os.strerror(exc.errno or 0)}"
            ) from None

    def _call(self, nr: int, *args: object) -> int:
        ctypes.set_errno(0)
        res = int(self._syscall(ctypes.c_long(nr), *args))
        if res < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return res

    def _kc(self, op: int, *args: object) -> int:
        return self._call(self._keyctl, ctypes.c_long(op), *args)

    def _find(self, name: str) -> int | None:
        try:
            return self._kc(
                KEYCTL_SEARCH,
                ctypes.c_long(KEY_SPEC_USER_KEYRING),
                ctypes.c_char_p(b"user"),
                ctypes.c_char_p(name.encode()),
                ctypes.c_long(0),
            )
        except OSError as exc:
            if exc.errno in (2, 126, 127, 128):  # ENOENT, ENOKEY, EKEYEXPIRED, EKEYREVOKED
                return None
            raise

    def get(self, name: str) -> bytes | None:
        serial = self._find(name)
        if serial is None:
            return None
        buf = ctypes.create_string_buffer(64)
        try:
            n = self._kc(KEYCTL_READ, ctypes.c_long(serial), buf, ctypes.c_size_t(len(buf)))
        except OSError as exc:
            if exc.errno in (2, 126, 127, 128):
                return None
            raise
        data = buf.raw[: min(n, len(buf))]
        ctypes.memset(buf, 0, len(buf))
        return data

    def put(self, name: str, key: bytes, timeout_s: int) -> None:
        # made in the process keyring, where this process possesses it (under
        # KeyringMode=private the user keyring is not reachable from the session
        # keyring, so a key added there directly could not be given a timeout),
        # then linked into the user keyring and unlinked from the process keyring
        serial = self._call(
            self._add_key,
            ctypes.c_char_p(b"user"),
            ctypes.c_char_p(name.encode()),
            ctypes.c_char_p(key),
            ctypes.c_size_t(len(key)),
            ctypes.c_long(KEY_SPEC_PROCESS_KEYRING),
        )
        try:
            self._kc(KEYCTL_SET_TIMEOUT, ctypes.c_long(serial), ctypes.c_uint(max(1, timeout_s)))
            self._kc(KEYCTL_SETPERM, ctypes.c_long(serial), ctypes.c_uint(KEY_PERM))
            self._kc(KEYCTL_LINK, ctypes.c_long(serial), ctypes.c_long(KEY_SPEC_USER_KEYRING))
        except OSError:
            with contextlib.suppress(OSError):
                self._kc(KEYCTL_INVALIDATE, ctypes.c_long(serial))
            raise
        with contextlib.suppress(OSError):
            self._kc(KEYCTL_UNLINK, ctypes.c_long(serial), ctypes.c_long(KEY_SPEC_PROCESS_KEYRING))

    def drop(self, name: str) -> None:
        while (serial := self._find(name)) is not None:
            try:
                self._kc(KEYCTL_INVALIDATE, ctypes.c_long(serial))
            except OSError:
                self._kc(KEYCTL_REVOKE, ctypes.c_long(serial))


_warned = threading.Event()


def kernel_keyring() -> KeyStore | None:
    """The kernel keyring, or None (memory only) with a warning logged once."""
    try:
        return KernelKeyring()
    except KeyringUnavailable as exc:
        if not _warned.is_set():
            _warned.set()
            log.warning("footfall_visitors_memory_only", reason=str(exc))
        return None


@dataclass(frozen=True)
class VisitorState:
    visitors: int
    owners: np.ndarray  # int32, one per vector
    vectors: np.ndarray  # float32 rows


def seconds_left_in_day(now: datetime) -> int:
    """Seconds until the next centre-local midnight, plus a minute of slack."""
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), now.tzinfo)
    return max(1, int((midnight - now).total_seconds()) + 60)


class VisitorVault:
    """The encrypted file of the day's visitors and its key's two homes."""

    def __init__(self, directory: Path, *, centre_id: str, device_id: str, keys: KeyStore) -> None:
        self.path = Path(directory) / FILE_NAME
        self.centre_id = centre_id
        self.device_id = device_id
        self.keys = keys
        scope = f"{self.path.resolve()}|{centre_id}|{device_id}".encode()
        self._scope = hashlib.sha256(scope).hexdigest()[:16]
        self._day: str | None = None
        self._key: bytes | None = None

    def __repr__(self) -> str:  # never show the key
        return f"VisitorVault(path={str(self.path)!r}, day={self._day!r})"

    def key_name(self, day: str) -> str:
        return f"care-terminal:footfall:{self._scope}:{day}"

    def _aad(self, day: str) -> bytes:
        return (
            f"care-terminal footfall visitors v1|{self.centre_id}|{self.device_id}|{day}".encode()
        )

    # ----------------------------------------------------------------- public
    def load(self, day: str) -> VisitorState | None:
        """The day's visitors from the file, or None (and the file is gone)
        when there is no file, no key for the day or the file does not decrypt.
        The previous day's key, if still there, is dropped."""
        self._drop_previous(day)
        if not self.path.exists():
            return None
        key = self._key if self._day == day else None
        if key is None:
            try:
                key = self.keys.get(self.key_name(day))
            except OSError as exc:
                log.warning("footfall_visitors_key_read_failed", error=type(exc).__name__)
                key = None
        if key is None or len(key) != KEY_LEN:
            log.info("footfall_visitors_key_gone", day=day)
            self.wipe_file()
            return None
        try:
            state = self._decrypt(self.path.read_bytes(), key, day)
        except (InvalidTag, ValueError, OSError) as exc:
            log.warning("footfall_visitors_file_unusable", error=type(exc).__name__)
            self.wipe_file()
            return None
        self._day, self._key = day, key
        log.info("footfall_visitors_restored", day=day, visitors=state.visitors)
        return state

    def save(self, day: str, now: datetime, state: VisitorState) -> None:
        """Encrypt and atomically write the day's visitors (nothing held: no file)."""
        if state.visitors == 0 and len(state.owners) == 0:
            self.wipe_file()
            return
        key = self._day_key(day, now)
        atomic_write_bytes(self.path, self._encrypt(state, key, day), mode=0o600)

    def forget(self, day: str | None = None) -> None:
        """Day rollover or a reset: overwrite and delete the file, drop the key."""
        self.wipe_file()
        for d in {day, self._day} - {None}:
            assert d is not None
            with contextlib.suppress(OSError):
                self.keys.drop(self.key_name(d))
        self._day, self._key = None, None

    def wipe_file(self) -> None:
        """Overwrite the file with random bytes, then delete it."""
        with contextlib.suppress(FileNotFoundError):
            size = self.path.stat().st_size
            with contextlib.suppress(OSError):
                atomic_write_bytes(self.path, secrets.token_bytes(size), mode=0o600)
            self.path.unlink()

    # -------------------------------------------------------------- internals
    def _drop_previous(self, day: str) -> None:
        try:
            previous = (date.fromisoformat(day) - timedelta(days=1)).isoformat()
        except ValueError:
            return
        with contextlib.suppress(OSError):
            self.keys.drop(self.key_name(previous))

    def _day_key(self, day: str, now: datetime) -> bytes:
        if self._day == day and self._key is not None:
            return self._key
        if self._day is not None and self._day != day:
            self.forget(self._day)
        name = self.key_name(day)
        key = self.keys.get(name)
        if key is None or len(key) != KEY_LEN:
            key = AESGCM.generate_key(bit_length=8 * KEY_LEN)
            self.keys.put(name, key, seconds_left_in_day(now))
        self._day, self._key = day, key
        return key

    def _encrypt(self, state: VisitorState, key: bytes, day: str) -> bytes:
        owners = np.ascontiguousarray(state.owners, dtype="<i4")
        vectors = np.ascontiguousarray(state.vectors, dtype="<f4")
        dim = int(vectors.shape[1]) if vectors.ndim == 2 else 0
        plain = (
            _HEADER.pack(state.visitors, len(owners), dim) + owners.tobytes() + vectors.tobytes()
        )
        nonce = secrets.token_bytes(NONCE_LEN)
        return MAGIC + nonce + AESGCM(key).encrypt(nonce, plain, self._aad(day))

    def _decrypt(self, blob: bytes, key: bytes, day: str) -> VisitorState:
        if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + NONCE_LEN + 16:
            raise ValueError("not a visitor vault file")
        nonce = blob[len(MAGIC) : len(MAGIC) + NONCE_LEN]
        plain = AESGCM(key).decrypt(nonce, blob[len(MAGIC) + NONCE_LEN :], self._aad(day))
        visitors, n, dim = _HEADER.unpack_from(plain)
        off = _HEADER.size
        if len(plain) != off + 4 * n + 4 * n * dim:
            raise ValueError("visitor vault size mismatch")
        owners = np.frombuffer(plain, dtype="<i4", count=n, offset=off).astype(np.int32)
        vectors = np.frombuffer(plain, dtype="<f4", count=n * dim, offset=off + 4 * n)
        return VisitorState(visitors, owners, vectors.reshape(n, dim).astype(np.float32))
