"""Crash-safe file replacement (terminal.core.atomic)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from terminal.core import atomic
from terminal.core.atomic import (
    atomic_write_bytes,
    atomic_write_text,
    durable_replace,
    fsync_dir,
)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("existing", [None, b"old content, longer than the new one"])
@pytest.mark.parametrize("data", [b"", b"new", bytes(range(256)) * 4096])
def test_write_bytes_replaces_the_file_with_exactly_the_data(
    tmp_path: Path, existing: bytes | None, data: bytes
) -> None:
    path = tmp_path / "state.json"
    if existing is not None:
        path.write_bytes(existing)
    atomic_write_bytes(path, data)
    assert path.read_bytes() == data
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("text", "encoding"),
    [("价格 12.50\n", "utf-8"), ("日期,金额\r\n", "utf-8-sig"), ("a\nb\n", "utf-8")],
)
def test_write_text_encodes_without_translating_newlines(
    tmp_path: Path, text: str, encoding: str
) -> None:
    path = tmp_path / "report.csv"
    atomic_write_text(path, text, encoding=encoding)
    assert path.read_bytes() == text.encode(encoding)


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o644])
def test_the_file_gets_exactly_the_mode_whatever_the_umask(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "pins.json"
    path.write_text("old")
    path.chmod(0o666)
    old_umask = os.umask(0o077)
    try:
        atomic_write_bytes(path, b"x", mode=mode)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == mode


def test_overwrite_false_creates_once_and_never_replaces(tmp_path: Path) -> None:
    path = tmp_path / "data.key"
    atomic_write_bytes(path, b"k1", mode=0o600, overwrite=False)
    with pytest.raises(FileExistsError):
        atomic_write_bytes(path, b"k2", mode=0o600, overwrite=False)
    assert path.read_bytes() == b"k1"
    assert leftovers(tmp_path) == []


def _fail(*_a: Any, **_k: Any) -> Any:
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("step", ["write", "fsync", "replace", "fchmod"])
def test_a_failure_leaves_the_old_file_intact_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    path = tmp_path / "health.json"
    path.write_bytes(b"old")
    monkeypatch.setattr(atomic.os, step, _fail)
    with pytest.raises(OSError):
        atomic_write_bytes(path, b"new")
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


def test_an_unencodable_text_leaves_the_old_file_intact(tmp_path: Path) -> None:
    path = tmp_path / "report.csv"
    path.write_text("old")
    with pytest.raises(UnicodeEncodeError):
        atomic_write_text(path, "价格", encoding="ascii")
    assert path.read_text() == "old"
    assert leftovers(tmp_path) == []


def test_short_writes_are_continued(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write

    def dribble(fd: int, data: Any) -> int:
        return real_write(fd, bytes(data[:7]))

    monkeypatch.setattr(atomic.os, "write", dribble)
    path = tmp_path / "f"
    atomic_write_bytes(path, b"0123456789" * 10)
    assert path.read_bytes() == b"0123456789" * 10


def test_file_and_directory_are_fsynced_before_the_call_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync-file")
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        events.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "replace", replace)
    atomic_write_bytes(tmp_path / "f", b"x")
    assert events == ["fsync-file", "replace", "fsync-dir"]


def test_the_parent_directory_must_exist(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        atomic_write_bytes(tmp_path / "missing" / "f", b"x")


def test_durable_replace_and_fsync_dir(tmp_path: Path) -> None:
    part = tmp_path / "bundle.swu.part"
    part.write_bytes(b"payload")
    durable_replace(part, tmp_path / "bundle.swu")
    assert (tmp_path / "bundle.swu").read_bytes() == b"payload"
    assert not part.exists()
    fsync_dir(tmp_path)
