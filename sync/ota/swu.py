"""The bundle container: an SWUpdate ``.swu`` file (cpio "newc"/"crc" archive).

DDI servers such as goosebit only accept ``.swu`` (or RAUC) uploads, read the
first entry ``sw-description`` for ``software.version`` and the hardware
compatibility, and read nothing else. We carry our own signed manifest and the
payloads as further entries, so the container is just a transport: every byte
that matters is covered by the manifest signature and hashes.

The reader is strict and streams (bundles can be large): it never loads a
payload into memory, refuses anything but regular files with plain names, and
refuses trailing garbage, duplicate names and entries that run past the end.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sync.ota.errors import BundleRejected

HEADER_LEN = 110
TRAILER = "TRAILER!!!"
SW_DESCRIPTION = "sw-description"
MAX_ENTRIES = 64
MAX_NAME = 128
_MAGICS = (b"070701", b"070702")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SAFE_TEXT = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_CHUNK = 1 << 16


@dataclass(frozen=True, slots=True)
class SwuEntry:
    name: str
    offset: int  # of the data in the container file
    size: int


def _pad4(n: int) -> int:
    return (-n) % 4


MAX_ENTRY_BYTES = 0xFFFF_FFFF  # the newc size field is 8 hex digits: 4 GiB - 1


class EntryTooLarge(ValueError):
    """An entry cannot be stored in a cpio newc container."""


def _header(ino: int, mode: int, size: int, namesize: int) -> bytes:
    if not 0 <= size <= MAX_ENTRY_BYTES:
        raise EntryTooLarge(
            f"a {size}-byte entry does not fit a cpio newc header "
            f"(at most {MAX_ENTRY_BYTES} bytes, 4 GiB - 1); split the payload"
        )
    fields = (ino, mode, 0, 0, 1, 0, size, 0, 0, 0, 0, namesize, 0)
    if not all(0 <= v <= 0xFFFF_FFFF for v in fields):
        raise EntryTooLarge("a cpio newc header field is out of range")
    return b"070701" + b"".join(b"%08X" % v for v in fields)


def sw_description(
    version: str, boards: Mapping[str, Sequence[str]], description: str = ""
) -> bytes:
    """A minimal libconfig ``sw-description`` that goosebit and SWUpdate parse.

    ``boards`` maps a hardware board name (the DDI config data ``hw_boardname``)
    to the hardware revisions (``hw_revision``) the bundle is for."""
    for text in (version, *boards.keys(), *(r for revs in boards.values() for r in revs)):
        if not _SAFE_TEXT.fullmatch(text):
            raise ValueError(f"{text!r} may only use letters, digits, '.', '_' and '-'")
    desc = re.sub(r"[^A-Za-z0-9 ._-]", "", description)[:120]
    lines = ["software =", "{", f'    version = "{version}";', f'    description = "{desc}";']
    for board, revisions in boards.items():
        revs = ", ".join(f'"{r}"' for r in revisions)
        lines += [f"    {board} = {{", f"        hardware-compatibility = [ {revs} ];", "    };"]
    lines.append("};")
    return ("\n".join(lines) + "\n").encode("ascii")


def write_swu(dest: Path, entries: Sequence[tuple[str, bytes | Path]]) -> None:
    """Write a ``.swu`` with ``entries`` in order (the first should be
    ``sw-description``). Payload files are streamed, not loaded. An entry of
    4 GiB or more raises EntryTooLarge before ``dest`` is created."""
    sizes = [len(data) if isinstance(data, bytes) else data.stat().st_size for _, data in entries]
    for (name, _), size in zip(entries, sizes, strict=True):
        try:
            _header(0, stat.S_IFREG | 0o644, size, len(name) + 1)
        except EntryTooLarge as exc:
            raise EntryTooLarge(f"bundle entry {name}: {exc}") from None
    with dest.open("wb") as out:
        for ino, ((name, data), size) in enumerate(zip(entries, sizes, strict=True), start=1):
            raw_name = name.encode("ascii") + b"\0"
            head = _header(ino, stat.S_IFREG | 0o644, size, len(raw_name)) + raw_name
            out.write(head + b"\0" * _pad4(len(head)))
            if isinstance(data, bytes):
                out.write(data)
            else:
                left = size
                with data.open("rb") as src:
                    while left and (chunk := src.read(min(_CHUNK, left))):
                        out.write(chunk)
                        left -= len(chunk)
                if left or data.stat().st_size != size:
                    raise ValueError(f"bundle entry {name} changed size while being written")
            out.write(b"\0" * _pad4(size))
        raw = TRAILER.encode("ascii") + b"\0"
        head = _header(0, 0, 0, len(raw)) + raw
        out.write(head + b"\0" * _pad4(len(head)))


def _hex(field: bytes, what: str) -> int:
    try:
        text = field.decode("ascii")
    except UnicodeDecodeError:
        text = ""
    if len(text) != 8 or not re.fullmatch(r"[0-9A-Fa-f]{8}", text):
        raise BundleRejected(f"cpio header field {what} is not hexadecimal", code="bad_container")
    return int(text, 16)


def read_swu(fh: BinaryIO, file_size: int, *, max_entries: int = MAX_ENTRIES) -> list[SwuEntry]:
    """Parse the container's directory (names, offsets, sizes); raise
    BundleRejected(bad_container) on anything unexpected."""
    entries: list[SwuEntry] = []
    seen: set[str] = set()
    pos = 0
    while True:
        if pos + HEADER_LEN > file_size:
            raise BundleRejected(
                "the bundle ends inside a cpio header (truncated)", code="bad_container"
            )
        fh.seek(pos)
        head = fh.read(HEADER_LEN)
        if len(head) != HEADER_LEN or head[:6] not in _MAGICS:
            raise BundleRejected("not a cpio newc archive (bad magic)", code="bad_container")
        mode = _hex(head[14:22], "mode")
        nlink = _hex(head[38:46], "nlink")
        size = _hex(head[54:62], "filesize")
        namesize = _hex(head[94:102], "namesize")
        if not 2 <= namesize <= MAX_NAME + 1:
            raise BundleRejected("cpio entry name has a bad length", code="bad_container")
        name_end = pos + HEADER_LEN + namesize
        if name_end > file_size:
            raise BundleRejected(
                "the bundle ends inside an entry name (truncated)", code="bad_container"
            )
        raw_name = fh.read(namesize)
        if raw_name[-1:] != b"\0" or b"\0" in raw_name[:-1]:
            raise BundleRejected("cpio entry name is not NUL-terminated", code="bad_container")
        try:
            name = raw_name[:-1].decode("ascii")
        except UnicodeDecodeError:
            raise BundleRejected("cpio entry name is not ASCII", code="bad_container") from None
        data_off = name_end + _pad4(name_end)
        if name == TRAILER:
            if size != 0:
                raise BundleRejected("cpio trailer carries data", code="bad_container")
            tail_start = data_off
            break
        if not _NAME_RE.fullmatch(name):
            raise BundleRejected(
                f"bundle entry name {name[:40]!r} is not a plain file name", code="bad_container"
            )
        if not stat.S_ISREG(mode) or nlink > 1:
            raise BundleRejected(f"bundle entry {name} is not a regular file", code="bad_container")
        if name in seen:
            raise BundleRejected(f"bundle entry {name} appears twice", code="bad_container")
        if data_off + size > file_size:
            raise BundleRejected(
                f"bundle entry {name} runs past the end (truncated)", code="bad_container"
            )
        if not entries and name != SW_DESCRIPTION:
            raise BundleRejected(
                "the first bundle entry must be sw-description", code="bad_container"
            )
        seen.add(name)
        entries.append(SwuEntry(name, data_off, size))
        if len(entries) > max_entries:
            raise BundleRejected("the bundle has too many entries", code="bad_container")
        pos = data_off + size + _pad4(size)
    # Only zero padding may follow the trailer (cpio pads to its block size).
    fh.seek(min(tail_start, file_size))
    remaining = file_size - tail_start
    if remaining > 1 << 16:
        raise BundleRejected("data after the end of the cpio archive", code="bad_container")
    if remaining > 0 and fh.read(remaining).strip(b"\0"):
        raise BundleRejected("data after the end of the cpio archive", code="bad_container")
    if not entries:
        raise BundleRejected("the bundle is empty", code="bad_container")
    return entries


def iter_entry(fh: BinaryIO, entry: SwuEntry, chunk: int = _CHUNK) -> Iterator[bytes]:
    """Stream one entry's data."""
    fh.seek(entry.offset)
    left = entry.size
    while left > 0:
        data = fh.read(min(chunk, left))
        if not data:
            raise BundleRejected(f"bundle entry {entry.name} is truncated", code="bad_container")
        left -= len(data)
        yield data


def read_entry(fh: BinaryIO, entry: SwuEntry, max_size: int) -> bytes:
    """Read a small entry (manifest, signature) whole, refusing big ones."""
    if entry.size > max_size:
        raise BundleRejected(
            f"bundle entry {entry.name} is larger than {max_size} bytes", code="oversize"
        )
    return b"".join(iter_entry(fh, entry))
