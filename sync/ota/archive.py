"""Extract a payload archive with an allow-list.

Python 3.11's ``tarfile`` ``filter="data"`` has known bypasses in some patch
releases, so it is only a second opinion here. The real control is this
module:

* only regular files, directories, and links that stay inside the tree;
  no devices, FIFOs, sparse or unknown entry types;
* names are relative, have no ``..`` component, no NUL / backslash / control
  characters, bounded length and depth, and appear only once;
* a symbolic link must be relative and point inside the tree, and no other
  entry may pass *through* a symbolic link; a hard link may only point at a
  regular file that came earlier in the same archive;
* per-file, total and member-count caps, checked on the headers before a
  byte is written and again on the bytes actually written;
* every entry is first checked as a whole (nothing is written from an archive
  that has one bad entry); files are then created with ``O_EXCL|O_NOFOLLOW``
  below directory handles opened with ``O_NOFOLLOW`` and links are created
  last, so nothing can be written outside ``dest``;
* modes are reduced to 0644 / 0755 (no set-id bits, nothing world-writable),
  owners are not restored.

Before ``tarfile`` sees a byte, :func:`prescan` walks the raw 512-byte header
blocks of the (streamed, decompressed) archive itself, with byte caps on
everything: GNU long-name/long-link (``L``/``K``) and PAX (``x``/``g``)
headers larger than ``max_header_bytes`` are refused by their size field
before being read, PAX records must be well formed, the decompressed stream,
the file data and the header overhead are all capped, and only the entry
types listed above get through. ``tarfile`` reads long headers whole, and
before the fix for CVE-2024-6232 parsed PAX headers in quadratic time, so a
hostile archive of 133 KB could cost hundreds of MB and seconds of CPU before
being refused; the pre-scan refuses it after a few KB.

:func:`tarfile_flaw` names interpreters whose ``tarfile`` has that flaw
(CVE-2024-6232, quadratic PAX header parsing). It was fixed in CPython
3.8.20, 3.9.20, 3.10.15, 3.11.10, 3.12.6 and 3.13.0rc2 (so every 3.13 final
release); the stdlib sources of 3.11.7 and 3.12.1 still use the backtracking
regular expression, 3.13.0 no longer does. :func:`safe_extract` refuses to
run on such an interpreter (``unsafe_interpreter``) unless
``CARE_OTA_ALLOW_FLAWED_TARFILE=1`` is set (development machines and CI,
whose Python 3.11.7 has the flaw; the pre-scan still bounds every header
and refuses the long digit runs that the flawed parser scans quadratically).
The device image runs Python 3.13 (Raspberry Pi OS trixie).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import shutil
import stat
import sys
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sync.ota.errors import BundleRejected, OtaError
from terminal.core.log import get_logger

log = get_logger(__name__)

_CHUNK = 1 << 16
_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)
ALLOW_FLAWED_ENV = "CARE_OTA_ALLOW_FLAWED_TARFILE"


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    max_members: int = 100_000
    max_file_bytes: int = 1 << 30  # 1 GiB
    max_total_bytes: int = 4 << 30  # 4 GiB
    max_path_len: int = 1024
    max_depth: int = 40
    allow_symlinks: bool = True
    allow_hardlinks: bool = True
    # One GNU long-name/long-link or PAX header (its data, not counting the block).
    max_header_bytes: int = 8192
    # Everything in the decompressed stream that is not file data: header
    # blocks, PAX and long-name data, padding.
    max_meta_bytes: int = 128 << 20
    # Zero blocks after the end-of-archive marker (tar pads to its record size).
    max_trailer_bytes: int = 1 << 20


@dataclass(frozen=True, slots=True)
class ExtractReport:
    files: int
    dirs: int
    links: int
    bytes_written: int


def _unsafe(msg: str) -> BundleRejected:
    return BundleRejected(msg, code="unsafe_archive")


def _norm_name(raw: str, limits: ArchiveLimits) -> str:
    # Length first: nothing below scans more than max_path_len characters.
    if len(raw) > limits.max_path_len:
        raise _unsafe("archive entry path is too long or too deep")
    if not raw or "\x00" in raw or "\\" in raw or any(ord(c) < 32 or ord(c) == 127 for c in raw):
        raise _unsafe("archive entry name has forbidden characters")
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        raise _unsafe(f"archive entry {raw[:80]!r} is an absolute path")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise _unsafe(f"archive entry {raw[:80]!r} contains '..'")
    if not parts:
        return ""
    if len(raw) > limits.max_path_len or len(parts) > limits.max_depth:
        raise _unsafe("archive entry path is too long or too deep")
    if any(len(p.encode("utf-8", "surrogateescape")) > 255 for p in parts):
        raise _unsafe("archive entry name component is too long")
    return "/".join(parts)


def _inside(path: str) -> bool:
    norm = posixpath.normpath(path)
    return not (norm == ".." or norm.startswith("../") or norm.startswith("/"))


@dataclass(frozen=True, slots=True)
class _Planned:
    member: tarfile.TarInfo
    name: str
    kind: str  # "file" | "dir" | "symlink" | "hardlink"
    target: str = ""


def _plan(
    tf: tarfile.TarFile, dest: Path, limits: ArchiveLimits, declared: int | None
) -> list[_Planned]:
    plan: list[_Planned] = []
    seen: dict[str, str] = {}
    symlinks: set[str] = set()
    implied_dirs: set[str] = set()
    total = 0
    count = 0
    for m in tf:
        count += 1
        if count > limits.max_members:
            raise BundleRejected("archive has too many entries", code="oversize")
        name = _norm_name(m.name, limits)
        if name == "":
            if m.isdir():
                continue
            raise _unsafe("archive entry without a name")
        if name in seen:
            raise _unsafe(f"archive entry {name[:80]!r} appears twice")
        if name in implied_dirs and not m.isdir():
            raise _unsafe(f"archive entry {name[:80]!r} replaces a directory")
        if m.issparse() or m.type not in (
            tarfile.REGTYPE,
            tarfile.AREGTYPE,
            tarfile.DIRTYPE,
            tarfile.SYMTYPE,
            tarfile.LNKTYPE,
        ):
            kind = "device" if (m.ischr() or m.isblk()) else "FIFO" if m.isfifo() else "special"
            raise _unsafe(f"archive entry {name[:80]!r} is a {kind} file")
        if m.isreg():
            if m.size < 0 or m.size > limits.max_file_bytes:
                raise BundleRejected(f"archive entry {name[:80]!r} is too large", code="oversize")
            total += m.size
            if total > limits.max_total_bytes or (declared is not None and total > declared):
                raise BundleRejected("archive unpacks to more than allowed", code="oversize")
            p = _Planned(m, name, "file")
        elif m.isdir():
            p = _Planned(m, name, "dir")
        elif m.issym():
            if not limits.allow_symlinks:
                raise _unsafe(f"archive entry {name[:80]!r} is a symbolic link")
            target = m.linkname
            if len(target) > limits.max_path_len:
                raise _unsafe(f"symbolic link {name[:80]!r} has a too long target")
            if not target or "\x00" in target or target.startswith("/"):
                raise _unsafe(f"symbolic link {name[:80]!r} points to an absolute path")
            if not _inside(posixpath.join(posixpath.dirname(name), target)):
                raise _unsafe(f"symbolic link {name[:80]!r} points outside the archive")
            # Resolved against the whole planned tree once every entry is known.
            symlinks.add(name)
            p = _Planned(m, name, "symlink", target)
        else:  # hard link
            if not limits.allow_hardlinks:
                raise _unsafe(f"archive entry {name[:80]!r} is a hard link")
            target = _norm_name(m.linkname, limits) if m.linkname else ""
            if seen.get(target) != "file":
                raise _unsafe(
                    f"hard link {name[:80]!r} does not point at an earlier file in the archive"
                )
            p = _Planned(m, name, "hardlink", target)
        # No entry may live below (or be written through) a symbolic link.
        parts = name.split("/")
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            if prefix in symlinks:
                raise _unsafe(f"archive entry {name[:80]!r} goes through a symbolic link")
            if seen.get(prefix) not in (None, "dir"):
                raise _unsafe(f"archive entry {name[:80]!r} is below a non-directory")
        # Second opinion from the stdlib filter.
        try:
            tarfile.data_filter(m, str(dest))
        except tarfile.FilterError as exc:
            raise _unsafe(f"archive entry {name[:80]!r} refused: {type(exc).__name__}") from None
        seen[name] = p.kind
        implied_dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
        plan.append(p)
    # A directory entry that shadows an earlier symlink's path is caught above via seen.
    _check_links(plan, symlinks)
    return plan


def _resolve_link(name: str, target: str, symlinks: set[str]) -> str:
    """Where the symbolic link ``name -> target`` points, resolved against the
    planned tree: refused when the walk leaves the tree or passes *through*
    another planned symbolic link (whose own target could change where the
    rest of the path goes). Pointing *at* another link (a chain) is allowed:
    that link is checked the same way."""
    parts = name.split("/")[:-1]
    comps = [c for c in target.split("/") if c not in ("", ".")]
    for i, comp in enumerate(comps):
        if comp == "..":
            if not parts:
                raise _unsafe(f"symbolic link {name[:80]!r} points outside the archive")
            parts.pop()
            continue
        parts.append(comp)
        if i < len(comps) - 1 and "/".join(parts) in symlinks:
            raise _unsafe(f"symbolic link {name[:80]!r} points through another symbolic link")
    return "/".join(parts)


def _check_links(plan: list[_Planned], symlinks: set[str]) -> None:
    """Second pass over the complete plan: no entry path and no link target
    may traverse a planned symbolic link, whatever the order of the entries."""
    for p in plan:
        parts = p.name.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in symlinks:
                raise _unsafe(f"archive entry {p.name[:80]!r} goes through a symbolic link")
        if p.kind == "symlink":
            _resolve_link(p.name, p.target, symlinks)
        elif p.kind == "hardlink":
            tparts = p.target.split("/")
            for i in range(1, len(tparts) + 1):
                if "/".join(tparts[:i]) in symlinks:
                    raise _unsafe(f"hard link {p.name[:80]!r} goes through a symbolic link")


# -- the interpreter -----------------------------------------------------------------------------

# First patch release of each line whose tarfile parses PAX headers without
# the backtracking regular expression (CVE-2024-6232, python/cpython gh-121285).
_PAX_PARSER_FIXED: dict[tuple[int, int], tuple[int, int, int]] = {
    (3, 8): (3, 8, 20),
    (3, 9): (3, 9, 20),
    (3, 10): (3, 10, 15),
    (3, 11): (3, 11, 10),
    (3, 12): (3, 12, 6),
}


def tarfile_flaw(version: tuple[int | str, ...] = tuple(sys.version_info)) -> str | None:
    """Why this interpreter's ``tarfile`` must not parse update archives, or
    None. ``version`` is shaped like ``sys.version_info``."""
    major, minor, micro = (int(v) for v in version[:3])
    level = str(version[3]) if len(version) > 3 else "final"
    fixed = _PAX_PARSER_FIXED.get((major, minor))
    flawed = (
        (major, minor) < (3, 8)
        or (fixed is not None and (major, minor, micro) < fixed)
        # 3.13.0rc2 carried the fix; no pre-release belongs on a terminal.
        or ((major, minor, micro) == (3, 13, 0) and level != "final")
    )
    if not flawed:
        return None
    need = ".".join(map(str, fixed)) if fixed else "3.11.10"
    return (
        f"Python {major}.{minor}.{micro} parses tar PAX headers in quadratic time "
        f"(CVE-2024-6232); update archives need Python {need} or newer"
    )


def check_interpreter(version: tuple[int | str, ...] = tuple(sys.version_info)) -> None:
    """Refuse (``unsafe_interpreter``) to extract on a flawed interpreter
    unless ``CARE_OTA_ALLOW_FLAWED_TARFILE=1`` (development and CI only)."""
    flaw = tarfile_flaw(version)
    if flaw is None:
        return
    if os.environ.get(ALLOW_FLAWED_ENV) == "1":
        log.warning("ota_flawed_tarfile_allowed", reason=flaw)
        return
    raise OtaError(f"{flaw}; refusing to extract the bundle", code="unsafe_interpreter")


# -- the pre-scan -------------------------------------------------------------------------------


def _damaged(msg: str) -> BundleRejected:
    return BundleRejected(msg, code="damaged_archive")


def _oversize(msg: str) -> BundleRejected:
    return BundleRejected(msg, code="oversize")


def _decompressed(fh: IO[bytes], gz: bool) -> Iterator[bytes]:
    """The archive's bytes, decompressed in chunks of at most ``_CHUNK`` (a
    gzip bomb never sits in memory). Concatenated gzip members and zero
    padding between them are accepted, as ``gzip.GzipFile`` accepts them."""
    if not gz:
        while data := fh.read(_CHUNK):
            yield data
        return
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    data = b""
    while True:
        if not data:
            data = fh.read(_CHUNK)
        if not data:
            if d.eof:
                return
            out = d.decompress(b"", _CHUNK)  # output still held back by max_length
            if not out:
                raise _damaged("the gzip stream is truncated")
            yield out
            continue
        if d.eof:
            data = data.lstrip(b"\0")
            if not data:
                continue
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out = d.decompress(data, _CHUNK)
        data = d.unused_data if d.eof else d.unconsumed_tail
        if out:
            yield out


class _Blocks:
    """Exact reads and skips over the decompressed stream, every byte counted
    against ``cap`` before it is kept."""

    def __init__(self, chunks: Iterator[bytes], cap: int) -> None:
        self._chunks = chunks
        self._buf = bytearray()
        self.cap = cap
        self.total = 0

    def _pull(self) -> bytes:
        chunk = next(self._chunks, b"")
        self.total += len(chunk)
        if self.total > self.cap:
            raise _oversize("archive unpacks to more than allowed")
        return chunk

    def read(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self._pull()
            if not chunk:
                raise _damaged("the archive is truncated")
            self._buf += chunk
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def at_end(self) -> bool:
        if self._buf:
            return False
        chunk = self._pull()
        self._buf += chunk
        return not chunk

    def skip(self, n: int) -> None:
        take = min(n, len(self._buf))
        del self._buf[:take]
        n -= take
        while n > 0:
            chunk = self._pull()
            if not chunk:
                raise _damaged("the archive is truncated")
            if len(chunk) > n:
                self._buf += chunk[n:]
            n -= min(n, len(chunk))

    def only_zeros(self, limit: int) -> None:
        seen = len(self._buf)
        if self._buf.strip(b"\0"):
            raise _damaged("data after the end of the archive")
        self._buf.clear()
        while chunk := self._pull():
            seen += len(chunk)
            if seen > limit:
                raise _oversize("too much padding after the end of the archive")
            if chunk.strip(b"\0"):
                raise _damaged("data after the end of the archive")


def _field_num(field: bytes) -> int:
    """A numeric header field, read as ``tarfile`` reads it (octal, or GNU
    base-256), refusing what it would not parse."""
    if field[:1] in (b"\x80", b"\xff"):
        n = int.from_bytes(field[1:], "big")
        return n - (256 ** (len(field) - 1)) if field[:1] == b"\xff" else n
    text = field.split(b"\0", 1)[0].strip()
    if text and not all(0x30 <= c <= 0x37 for c in text):
        raise _damaged("a tar header field is not an octal number")
    return int(text or b"0", 8)


def _check_block(head: bytes) -> None:
    stored = _field_num(head[148:156])
    rest = head[:148] + head[156:]
    unsigned = 256 + sum(rest)
    signed = 256 + sum(b - 256 if b > 127 else b for b in rest)
    if stored not in (unsigned, signed):
        raise _damaged("a tar header has a bad checksum")


_LONG_DIGITS = re.compile(rb"[0-9]{33}")


def _pax_records(data: bytes, global_header: bool) -> dict[str, bytes]:
    """Parse PAX records ``"<len> <key>=<value>\n"`` strictly: the lengths tile
    the data exactly, keys are plain, values hold no newline. Whatever this
    accepts, ``tarfile`` reads the same way in linear time."""
    # Flawed interpreters scan digit runs quadratically (8 KiB of digits cost
    # 0.07 s, 64 KiB 4.3 s, 1 MiB over 5 minutes on 3.11.7); no PAX value
    # needs a run of more than 32 digits.
    if _LONG_DIGITS.search(data):
        raise _unsafe("a PAX header has a run of more than 32 digits")
    records: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos, pos + 8)
        digits = data[pos:space] if space > pos else b""
        if not digits or not digits.isdigit():
            raise _unsafe("a PAX header record has no length")
        end = pos + int(digits)
        if end > len(data) or end <= space + 2 or data[end - 1 : end] != b"\n":
            raise _unsafe("a PAX header record has a wrong length")
        body = data[space + 1 : end - 1]
        key, eq, value = body.partition(b"=")
        if not eq or not key or not all(0x21 <= c <= 0x7E for c in key) or b"\n" in value:
            raise _unsafe("a PAX header record is malformed")
        name = key.decode("ascii")
        if name.startswith("GNU.sparse"):
            raise _unsafe("archive has a sparse file")
        if global_header and name in ("path", "linkpath", "size"):
            raise _unsafe(f"a global PAX header sets {name} for every entry")
        records[name] = value
        pos = end
    return records


_TYPE_WORDS = {b"3": "device", b"4": "device", b"6": "FIFO"}


def prescan(archive: Path, limits: ArchiveLimits, declared_unpacked: int | None = None) -> int:
    """Walk the raw tar header blocks of ``archive`` (.tar or .tar.gz) with byte
    caps before ``tarfile`` reads it; return the number of entries or raise
    BundleRejected. Sizes are checked before anything is read, lengths before
    characters, and every read is bounded."""
    budget = limits.max_total_bytes
    if declared_unpacked is not None:
        budget = min(budget, declared_unpacked)
    gz = archive.name.endswith((".tar.gz", ".tgz"))
    try:
        return _walk(archive, gz, limits, budget)
    except zlib.error:
        raise _damaged(f"archive {archive.name} is not a valid gzip stream") from None


def _walk(archive: Path, gz: bool, limits: ArchiveLimits, budget: int) -> int:
    with archive.open("rb") as fh:
        s = _Blocks(_decompressed(fh, gz), budget + limits.max_meta_bytes)
        members = 0
        data_total = 0
        pending: set[bytes] = set()  # extended headers seen for the next entry
        pax_size: int | None = None
        while True:
            if s.at_end():
                raise _damaged("the archive has no end-of-archive marker")
            head = s.read(_BLOCK)
            if head == _ZERO_BLOCK:
                if pending:
                    raise _damaged("the archive ends after an extended header")
                s.only_zeros(limits.max_trailer_bytes)
                return members
            _check_block(head)
            kind = head[156:157]
            size = _field_num(head[124:136])
            if size < 0:
                raise _damaged("a tar header has a negative size")
            if kind in (b"L", b"K", b"x", b"g"):
                if size > limits.max_header_bytes:
                    raise _unsafe(
                        f"archive has a {size}-byte extended header "
                        f"(at most {limits.max_header_bytes} allowed)"
                    )
                if kind in pending:
                    raise _unsafe("archive has two extended headers of one kind for an entry")
                data = s.read(size)
                s.skip(-size % _BLOCK)
                if kind in (b"x", b"g"):
                    records = _pax_records(data, global_header=kind == b"g")
                    if kind == b"x" and "size" in records:
                        raw = records["size"]
                        if not raw.isdigit() or len(raw) > 20:
                            raise _unsafe("a PAX header has a bad size")
                        pax_size = int(raw)
                if kind != b"g":
                    pending.add(kind)
            else:
                members += 1
                if members > limits.max_members:
                    raise _oversize("archive has too many entries")
                n = size if pax_size is None else pax_size
                raw_name = head[:100].split(b"\0", 1)[0]
                if kind in (b"0", b"\0") and not raw_name.endswith(b"/"):
                    if n > limits.max_file_bytes:
                        raise _oversize("an archive entry is too large")
                    data_total += n
                    if data_total > budget:
                        raise _oversize("archive unpacks to more than allowed")
                    s.skip(n + (-n % _BLOCK))
                elif kind in (b"1", b"2", b"5", b"\0"):
                    if n != 0:
                        raise _unsafe("a link or directory entry in the archive carries data")
                else:
                    word = _TYPE_WORDS.get(kind, "special")
                    shown = raw_name[:80].decode("utf-8", "replace")
                    raise _unsafe(f"archive entry {shown!r} is a {word} file")
                pending.clear()
                pax_size = None
            if s.total - data_total > limits.max_meta_bytes:
                raise _oversize("archive headers take more space than allowed")


def _open_dir(root_fd: int, parts: list[str], create: bool) -> int:
    """Open (and create) the directory ``parts`` below ``root_fd`` without
    following any symbolic link. Caller closes the returned fd."""
    fd = os.dup(root_fd)
    try:
        for part in parts:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
            nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


def _copy(src: IO[bytes], fd: int, expected: int) -> int:
    written = 0
    while True:
        chunk = src.read(_CHUNK)
        if not chunk:
            break
        written += len(chunk)
        if written > expected:
            raise _unsafe("archive entry is longer than its header says")
        view = memoryview(chunk)
        while view:
            n = os.write(fd, view)
            view = view[n:]
    if written != expected:
        raise BundleRejected("archive entry is truncated", code="damaged_archive")
    return written


def safe_extract(
    archive: Path,
    dest: Path,
    limits: ArchiveLimits | None = None,
    declared_unpacked: int | None = None,
) -> ExtractReport:
    """Extract ``archive`` (.tar or .tar.gz) into ``dest``, which must not exist.
    On any refusal ``dest`` is removed again and BundleRejected is raised."""
    limits = limits or ArchiveLimits()
    check_interpreter()
    if dest.exists() or dest.is_symlink():
        raise _unsafe(f"extraction target {dest} already exists")
    dest.mkdir(mode=0o755, parents=False)
    try:
        try:
            prescan(archive, limits, declared_unpacked)
            gz = archive.name.endswith((".tar.gz", ".tgz"))
            with tarfile.open(archive, "r:gz") if gz else tarfile.open(archive, "r:") as tf:
                plan = _plan(tf, dest, limits, declared_unpacked)
                return _write(tf, plan, dest)
        except FileExistsError:
            raise _unsafe("archive entry would overwrite another entry") from None
        except (tarfile.TarError, EOFError, zlib.error, ValueError) as exc:
            raise BundleRejected(
                f"archive {archive.name} is damaged or truncated ({type(exc).__name__})",
                code="damaged_archive",
            ) from None
        except OSError as exc:
            raise OtaError(
                f"cannot extract {archive.name}: {exc.strerror}", code="io_error"
            ) from None
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def _write(tf: tarfile.TarFile, plan: list[_Planned], dest: Path) -> ExtractReport:
    root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    files = dirs = links = 0
    total = 0
    try:
        for p in plan:
            parts = p.name.split("/")
            if p.kind == "dir":
                os.close(_open_dir(root_fd, parts, create=True))
                dirs += 1
            elif p.kind == "file":
                parent = _open_dir(root_fd, parts[:-1], create=True)
                try:
                    perm = 0o755 if p.member.mode & 0o111 else 0o644
                    fd = os.open(
                        parts[-1],
                        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                        perm,
                        dir_fd=parent,
                    )
                    try:
                        src = tf.extractfile(p.member)
                        if src is None:
                            raise _unsafe(f"archive entry {p.name[:80]!r} has no data")
                        total += _copy(src, fd, p.member.size)
                        os.fchmod(fd, perm)
                    finally:
                        os.close(fd)
                finally:
                    os.close(parent)
                files += 1
        # Links last: nothing is ever written through them.
        for p in plan:
            if p.kind not in ("symlink", "hardlink"):
                continue
            parts = p.name.split("/")
            parent = _open_dir(root_fd, parts[:-1], create=True)
            try:
                if p.kind == "symlink":
                    os.symlink(p.target, parts[-1], dir_fd=parent)
                else:
                    tparts = p.target.split("/")
                    tparent = _open_dir(root_fd, tparts[:-1], create=False)
                    try:
                        st = os.stat(tparts[-1], dir_fd=tparent, follow_symlinks=False)
                        if not stat.S_ISREG(st.st_mode):
                            raise _unsafe(f"hard link {p.name[:80]!r} target is not a file")
                        os.link(
                            tparts[-1],
                            parts[-1],
                            src_dir_fd=tparent,
                            dst_dir_fd=parent,
                            follow_symlinks=False,
                        )
                    finally:
                        os.close(tparent)
            finally:
                os.close(parent)
            links += 1
        return ExtractReport(files=files, dirs=dirs, links=links, bytes_written=total)
    finally:
        os.close(root_fd)
