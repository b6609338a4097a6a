"""Structured JSON logging that never logs faces, embeddings, names or ID numbers.

Call sites log an event name plus key/value fields::

    log = get_logger(__name__)
    log.info("enrolled", resident=rid_hash, templates=3)

A filter drops fields whose *key* is on the deny list (``name``, ``id_number``,
``embedding``, ``image``, ``template``, ``phone`` ...) and redacts values that
look like an ID number or an embedding-sized numeric array, so a mistake at a
call site cannot leak personal data into the journal.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

DENY_KEYS = frozenset(
    {
        "name",
        "full_name",
        "resident_name",
        "id_number",
        "id_card",
        "idcard",
        "phone",
        "embedding",
        "embeddings",
        "template",
        "templates_blob",
        "face",
        "image",
        "frame",
        "crop",
        "pin",
        "password",
        "key",
    }
)
# 18-digit resident ID (last may be X) or 15-digit legacy ID, or 11-digit mobile numbers.
_ID_RE = re.compile(r"(?<!\d)(\d{17}[\dXx]|\d{15}|1\d{10})(?!\d)")
REDACTED = "[redacted]"


def redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return _ID_RE.sub(REDACTED, value)
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if isinstance(value, list | tuple) and len(value) >= 32:
        return f"<sequence of {len(value)}>"
    if hasattr(value, "shape") and hasattr(value, "dtype"):  # numpy arrays, without importing numpy
        return f"<array {getattr(value, 'shape', '?')}>"
    if isinstance(value, Mapping):
        return redact_fields(value)
    return value


def redact_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in fields.items():
        out[k] = REDACTED if k.lower() in DENY_KEYS else redact_value(v)
    return out


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", {})
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": redact_value(record.getMessage()),
        }
        doc.update(redact_fields(fields))
        if record.exc_info and record.exc_info[0] is not None:
            doc["exc_type"] = record.exc_info[0].__name__
            doc["exc"] = redact_value(self.formatException(record.exc_info))
        return json.dumps(doc, ensure_ascii=False, default=str)


class StructLogger:
    """A thin wrapper giving ``log.info("event", key=value)`` over stdlib logging."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def _log(self, level: int, event: str, exc_info: bool = False, **fields: Any) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(level, event, exc_info=exc_info, extra={"fields": fields})

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, **fields)

    def exception(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, exc_info=True, **fields)


def get_logger(name: str) -> StructLogger:
    return StructLogger(logging.getLogger(name))


def setup_logging(level: str = "INFO", stream: Any = None) -> None:
    """Route all logging to one JSON-lines handler (stderr by default; journald
    picks it up on the device)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
