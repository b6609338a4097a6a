"""Field encryption at rest (AES-256-GCM) for face templates, names and ID numbers.

Associated data binds each ciphertext to its table, record and field, so a
ciphertext copied into another row or column does not decrypt. Layout of a
stored value: ``version(1) || nonce(12) || ciphertext+tag``.

The key is 32 random bytes in a file with 0600 permissions (created on first
use), or a systemd credential (``LoadCredentialEncrypted=care-terminal-data-key``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from terminal.core.atomic import atomic_write_bytes
from terminal.core.errors import StorageError

_VERSION = b"\x01"
KEY_BYTES = 32


class DataKeyError(StorageError):
    code = "data_key_invalid"


def load_or_create_key(path: Path, create: bool = True) -> bytes:
    """Read the data key; create it (0600, parent 0700) when missing and allowed.
    A key readable by group/others is refused."""
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise DataKeyError(
                f"data key {path} is readable by others (mode {mode:o}); run chmod 600 on it"
            )
        data = path.read_bytes()
        if len(data) != KEY_BYTES:
            raise DataKeyError(f"data key {path} has {len(data)} bytes, expected {KEY_BYTES}")
        return data
    if not create:
        raise DataKeyError(f"data key {path} is missing")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_bytes(KEY_BYTES)
    # Complete and durable before it is visible (a power cut never leaves a short
    # key or loses the directory entry); never replaces a key made meanwhile.
    atomic_write_bytes(path, key, mode=0o600, overwrite=False)
    return key


class FieldCipher:
    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise DataKeyError("data key must be 32 bytes")
        self._aead = AESGCM(key)
        self._index_key = hmac.new(key, b"care-terminal/v1/blind-index", hashlib.sha256).digest()

    @staticmethod
    def _aad(table: str, record_id: str, field: str) -> bytes:
        return f"care-terminal/v1/{table}/{record_id}/{field}".encode()

    def encrypt(self, plaintext: bytes, *, table: str, record_id: str, field: str) -> bytes:
        nonce = secrets.token_bytes(12)
        ct = self._aead.encrypt(nonce, plaintext, self._aad(table, record_id, field))
        return _VERSION + nonce + ct

    def decrypt(self, blob: bytes, *, table: str, record_id: str, field: str) -> bytes:
        if len(blob) < 1 + 12 + 16 or blob[:1] != _VERSION:
            raise StorageError(f"{table}.{field} value is not an encrypted field")
        try:
            return self._aead.decrypt(blob[1:13], blob[13:], self._aad(table, record_id, field))
        except InvalidTag as exc:
            raise StorageError(
                f"{table}.{field} could not be decrypted (wrong key or tampered value)"
            ) from exc

    def encrypt_text(self, text: str, *, table: str, record_id: str, field: str) -> bytes:
        return self.encrypt(text.encode("utf-8"), table=table, record_id=record_id, field=field)

    def decrypt_text(self, blob: bytes, *, table: str, record_id: str, field: str) -> str:
        return self.decrypt(blob, table=table, record_id=record_id, field=field).decode("utf-8")

    def blind_index(self, value: str, *, field: str) -> str:
        """Keyed hash for equality lookups of an encrypted field (e.g. find a
        resident by ID-card number) without storing the value in clear."""
        msg = f"{field}\x00{value.strip().upper()}".encode()
        return hmac.new(self._index_key, msg, hashlib.sha256).hexdigest()
