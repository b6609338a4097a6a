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
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import stat
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sync.ota.errors import BundleRejected, OtaError

_CHUNK = 1 << 16


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    max_members: int = 100_000
    max_file_bytes: int = 1 << 30  # 1 GiB
    max_total_bytes: int = 4 << 30  # 4 GiB
    max_path_len: int = 1024
    max_depth: int = 40
    allow_symlinks: bool = True
    allow_hardlinks: bool = True


@dataclass(frozen=True, slots=True)
class ExtractReport:
    files: int
    dirs: int
    links: int
    bytes_written: int


def _unsafe(msg: str) -> BundleRejected:
    return BundleRejected(msg, code="unsafe_archive")


def _norm_name(raw: str, limits: ArchiveLimits) -> str:
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
            if not target or "\x00" in target or target.startswith("/"):
                raise _unsafe(f"symbolic link {name[:80]!r} points to an absolute path")
            if not _inside(posixpath.join(posixpath.dirname(name), target)):
                raise _unsafe(f"symbolic link {name[:80]!r} points outside the archive")
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
    return plan


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
    if dest.exists() or dest.is_symlink():
        raise _unsafe(f"extraction target {dest} already exists")
    dest.mkdir(mode=0o755, parents=False)
    try:
        try:
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
