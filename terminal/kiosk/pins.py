"""Staff PINs.

Staff PINs live in ``<data_dir>/staff/pins.json`` as scrypt hashes (a slow,
memory-hard hash from the standard library), never in clear. Repeated wrong
PINs lock the PIN pad: after ``MAX_TRIES`` failures for 1 minute, doubling with
every further lockout up to 30 minutes; the lockout survives a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from terminal.core.atomic import atomic_write_bytes
from terminal.core.errors import TerminalError
from ui.model import PinResult

MAX_TRIES = 5
LOCK_BASE_S = 60
LOCK_MAX_S = 1800
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
MIN_PIN_LEN = 4
MAX_PIN_LEN = 8

Role = Literal["staff", "manager"]


class PinError(TerminalError):
    code = "bad_pin"


def hash_pin(
    pin: str, salt: bytes, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P
) -> bytes:
    return hashlib.scrypt(pin.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=32)


def validate_pin(pin: str) -> str:
    if not (pin.isdigit() and MIN_PIN_LEN <= len(pin) <= MAX_PIN_LEN):
        raise PinError(f"a PIN is {MIN_PIN_LEN} to {MAX_PIN_LEN} digits")
    if len(set(pin)) == 1 or pin in "0123456789" or pin in "9876543210":
        raise PinError("this PIN is too easy to guess (all the same digit or a run)")
    return pin


class StaffPins:
    """Staff PIN hashes and the lockout state in one JSON file (atomic writes)."""

    def __init__(self, path: Path, *, wall: Callable[[], float] = time.time) -> None:
        self.path = path
        self._wall = wall
        self._lock = threading.Lock()

    def _load(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"version": 1, "staff": {}, "lockout": {"failures": 0, "until": 0.0, "level": 0}}
        except (OSError, ValueError) as exc:
            raise TerminalError(
                f"the staff PIN file {self.path.name} cannot be read: {exc}"
            ) from exc
        doc.setdefault("staff", {})
        doc.setdefault("lockout", {"failures": 0, "until": 0.0, "level": 0})
        return dict(doc)

    def _save(self, doc: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps(doc, ensure_ascii=False, indent=1, sort_keys=True).encode()
        atomic_write_bytes(self.path, data, mode=0o600)

    def set_pin(self, staff_id: str, name: str, pin: str, role: Role = "staff") -> None:
        sid = staff_id.strip()
        if not sid or not all(c.isalnum() or c in "-_." for c in sid) or len(sid) > 32:
            raise PinError("staff id must be 1-32 letters, digits, '-', '_' or '.'")
        if role not in ("staff", "manager"):
            raise PinError("role must be staff or manager")
        validate_pin(pin)
        with self._lock:
            doc = self._load()
            for other, rec in doc["staff"].items():
                if other != sid and self._matches(rec, pin):
                    raise PinError("another staff member already uses this PIN")
            salt = secrets.token_bytes(16)
            doc["staff"][sid] = {
                "name": name.strip() or sid,
                "role": role,
                "salt": salt.hex(),
                "hash": hash_pin(pin, salt).hex(),
                "n": SCRYPT_N,
                "r": SCRYPT_R,
                "p": SCRYPT_P,
            }
            self._save(doc)

    def remove(self, staff_id: str) -> bool:
        with self._lock:
            doc = self._load()
            gone = doc["staff"].pop(staff_id, None) is not None
            if gone:
                self._save(doc)
            return gone

    def list(self) -> list[tuple[str, str, str]]:
        doc = self._load()
        return sorted(
            (sid, rec.get("name", sid), rec.get("role", "staff"))
            for sid, rec in doc["staff"].items()
        )

    @staticmethod
    def _matches(rec: dict[str, Any], pin: str) -> bool:
        try:
            want = bytes.fromhex(rec["hash"])
            got = hash_pin(
                pin, bytes.fromhex(rec["salt"]), int(rec["n"]), int(rec["r"]), int(rec["p"])
            )
        except (KeyError, ValueError):
            return False
        return hmac.compare_digest(want, got)

    def check(self, pin: str) -> PinResult:
        """Verify a PIN (slow on purpose); counts failures and locks out."""
        with self._lock:
            doc = self._load()
            lock = doc["lockout"]
            now = self._wall()
            if lock.get("until", 0.0) > now:
                return PinResult(False, locked_for_s=int(lock["until"] - now + 0.999))
            match: tuple[str, dict[str, Any]] | None = None
            if pin.isdigit() and MIN_PIN_LEN <= len(pin) <= MAX_PIN_LEN:
                for sid, rec in doc["staff"].items():
                    if self._matches(rec, pin):
                        match = (sid, rec)
                        break
            if match is not None:
                doc["lockout"] = {"failures": 0, "until": 0.0, "level": 0}
                self._save(doc)
                sid, rec = match
                role: Role = "manager" if rec.get("role") == "manager" else "staff"
                return PinResult(True, sid, str(rec.get("name", sid)), role, MAX_TRIES)
            failures = int(lock.get("failures", 0)) + 1
            if failures >= MAX_TRIES:
                level = int(lock.get("level", 0))
                seconds = min(LOCK_MAX_S, LOCK_BASE_S * 2**level)
                doc["lockout"] = {"failures": 0, "until": now + seconds, "level": level + 1}
                self._save(doc)
                return PinResult(False, locked_for_s=seconds)
            doc["lockout"] = {
                "failures": failures,
                "until": 0.0,
                "level": int(lock.get("level", 0)),
            }
            self._save(doc)
            return PinResult(False, tries_left=MAX_TRIES - failures)
