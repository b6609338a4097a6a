"""Error roots. Every error a user can cause carries a message fit to show."""

from __future__ import annotations


class TerminalError(Exception):
    """Root of all expected errors. ``str(err)`` is safe to show and to log
    (no names, ID numbers, embeddings or images ever go into it)."""

    code: str = "terminal_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class ConfigError(TerminalError):
    code = "config_invalid"


class StorageError(TerminalError):
    code = "storage_error"


class DatabaseCorrupt(StorageError):
    code = "db_corrupt"


class ModelPackError(TerminalError):
    code = "model_pack_invalid"


class ImageError(TerminalError):
    code = "bad_image"


class NoFaceError(TerminalError):
    code = "no_face"


class SourceError(TerminalError):
    code = "source_unavailable"


class NotFound(TerminalError):
    code = "not_found"


class DeviceError(TerminalError):
    code = "device_error"


def field_path(loc: tuple[int | str, ...]) -> str:
    """Where a validation problem is, as a reader writes it:
    ``("payloads", 0, "sha256")`` -> ``payloads[0].sha256`` (pydantic's ``loc``)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            out += " (key)"
        elif part.isidentifier():
            out += f".{part}"
        else:
            out += f"[{part!r}]"
    return out.lstrip(".")
