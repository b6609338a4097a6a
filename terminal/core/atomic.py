"""Crash-safe file replacement, stdlib only: the one implementation in the terminal.

:func:`atomic_write_bytes` / :func:`atomic_write_text` write the new content to a temporary
file in the same directory, fsync it, rename it over the target and fsync the
directory. A reader sees the old file or the new one, never half of one; after
a power cut the file is the old or the new version, and once the call returned
it is the new one. When anything fails the temporary file is removed and the
old file is left as it was.

With ``overwrite=False`` the file is only created: an existing file is never
replaced (``FileExistsError``), for files that must be made once (keys).

The parent directory must exist (creating it is the caller's decision). The
updater (``deploy/updater``) is installed apart from this package and keeps its
own copy of these few lines.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

StrPath = str | os.PathLike[str]


def fsync_dir(path: StrPath) -> None:
    """Make a rename or creation in directory ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_replace(src: StrPath, dst: StrPath) -> None:
    """Rename ``src`` over ``dst`` (same directory) and fsync the directory.
    ``src`` must already be complete and fsynced (e.g. a finished download)."""
    os.replace(src, dst)
    fsync_dir(Path(dst).parent)


def atomic_write_bytes(
    path: StrPath, data: bytes, *, mode: int = 0o644, overwrite: bool = True
) -> None:
    """Atomically and durably make ``path`` hold exactly ``data``.

    The file gets permission bits ``mode`` exactly (not filtered by the umask),
    set before the content is written, so a secret is never readable by others
    even for a moment."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, target)
        else:
            os.link(tmp, target)  # FileExistsError when it is already there
            with contextlib.suppress(OSError):  # the file is in place either way
                os.unlink(tmp)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(target.parent)


def atomic_write_text(
    path: StrPath,
    text: str,
    *,
    encoding: str = "utf-8",
    mode: int = 0o644,
    overwrite: bool = True,
) -> None:
    """:func:`atomic_write_bytes` of ``text`` encoded (no newline translation)."""
    atomic_write_bytes(path, text.encode(encoding), mode=mode, overwrite=overwrite)
