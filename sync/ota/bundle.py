"""Build and verify update bundles.

A bundle is a ``.swu`` container (see :mod:`sync.ota.swu`) holding, in order:
``sw-description`` (for the DDI server only; never trusted), ``manifest.json``,
``manifest.sig`` and the payload archives the manifest lists:

* ``app``        - the application release tree as a tar (a virtual environment
                   built for the target with the care-terminal wheel installed,
                   plus ``release.json``; see deploy/README.md),
* ``model_pack`` - optional, a model pack folder,
* ``migrations`` - optional; its presence tells the updater to back up the
                   database and run the release's migrate command.

:func:`verify_bundle` checks, in this order, before anything is staged: the
container is well formed, the manifest signature verifies against a trusted
key, the manifest parses, it is for this product and hardware, its counter is
above the installed one (no replay), its version is not older (no downgrade
unless allowed), every entry is listed and every listed payload is present
with its exact length and SHA-256.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sync.ota import swu
from sync.ota.errors import BundleRejected
from sync.ota.manifest import (
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    MAX_SIGNATURE_BYTES,
    PRODUCT,
    SIGNATURE_NAME,
    Manifest,
    Payload,
    Role,
    TrustStore,
    parse_manifest,
    sign_manifest,
    verify_signature,
)
from sync.ota.versions import compare_versions, parse_version
from terminal.core.clock import rfc3339

RESERVED = frozenset({swu.SW_DESCRIPTION, MANIFEST_NAME, SIGNATURE_NAME})
PAYLOAD_FILE = {
    "app": "app.tar.gz",
    "model_pack": "model-pack.tar.gz",
    "migrations": "migrations.tar.gz",
}


@dataclass(frozen=True, slots=True)
class VerifyPolicy:
    """What this terminal accepts."""

    product: str = PRODUCT
    board: str | None = None  # hw_boardname; None skips the hardware check
    revision: str | None = None
    allow_downgrade: bool = False
    max_bundle_bytes: int = 2 << 30
    max_payload_bytes: int = 1 << 30
    max_unpacked_bytes: int = 4 << 30


@dataclass(frozen=True, slots=True)
class InstalledState:
    """What is installed now: version and the manifest counter it came with
    (0 for a factory install)."""

    version: str
    counter: int = 0


@dataclass(frozen=True, slots=True)
class VerifiedBundle:
    path: Path
    manifest: Manifest
    key_id: str
    entries: Mapping[str, swu.SwuEntry] = field(default_factory=dict)


def _sha256_entry(fh: io.BufferedReader, entry: swu.SwuEntry) -> str:
    h = hashlib.sha256()
    for chunk in swu.iter_entry(fh, entry):
        h.update(chunk)
    return h.hexdigest()


def verify_bundle(
    path: Path, trust: TrustStore, policy: VerifyPolicy, installed: InstalledState
) -> VerifiedBundle:
    """Verify everything that can be verified without extracting. Raises
    BundleRejected with a reason code; returns the verified manifest."""
    try:
        size = path.stat().st_size
    except OSError:
        raise BundleRejected("the bundle file is missing", code="bad_container") from None
    if size > policy.max_bundle_bytes:
        raise BundleRejected("the bundle is larger than allowed", code="oversize")
    with path.open("rb") as fh:
        entries = {e.name: e for e in swu.read_swu(fh, size)}
        if MANIFEST_NAME not in entries or SIGNATURE_NAME not in entries:
            raise BundleRejected(
                "the bundle has no manifest.json / manifest.sig", code="missing_manifest"
            )
        raw = swu.read_entry(fh, entries[MANIFEST_NAME], MAX_MANIFEST_BYTES)
        sig = swu.read_entry(fh, entries[SIGNATURE_NAME], MAX_SIGNATURE_BYTES)
        key_id = verify_signature(raw, sig, trust)
        manifest = parse_manifest(raw)
        check_manifest(manifest, policy, installed)
        listed = {p.name: p for p in manifest.payloads}
        for name in entries:
            if name not in RESERVED and name not in listed:
                raise BundleRejected(
                    f"bundle entry {name} is not in the manifest", code="unlisted_file"
                )
        for p in manifest.payloads:
            if p.name in RESERVED:
                raise BundleRejected(f"payload name {p.name} is reserved", code="bad_manifest")
            entry = entries.get(p.name)
            if entry is None:
                raise BundleRejected(
                    f"payload {p.name} is missing from the bundle", code="missing_file"
                )
            if p.size > policy.max_payload_bytes or p.unpacked_size > policy.max_unpacked_bytes:
                raise BundleRejected(f"payload {p.name} is larger than allowed", code="oversize")
            if entry.size != p.size:
                raise BundleRejected(
                    f"payload {p.name} is {entry.size} bytes, the manifest says {p.size}",
                    code="length_mismatch",
                )
            if _sha256_entry(fh, entry) != p.sha256:
                raise BundleRejected(
                    f"payload {p.name} does not match its SHA-256", code="hash_mismatch"
                )
    return VerifiedBundle(path=path, manifest=manifest, key_id=key_id, entries=entries)


def check_manifest(manifest: Manifest, policy: VerifyPolicy, installed: InstalledState) -> None:
    """Product, hardware, replay and downgrade rules (pure)."""
    if manifest.product != policy.product:
        raise BundleRejected(f"the bundle is for {manifest.product[:40]!r}", code="wrong_product")
    if manifest.boards and policy.board is not None:
        revs = manifest.boards.get(policy.board)
        if revs is None or (policy.revision is not None and policy.revision not in revs):
            raise BundleRejected("the bundle is not for this hardware", code="wrong_product")
    if manifest.counter <= installed.counter:
        raise BundleRejected(
            f"manifest counter {manifest.counter} is not above the installed {installed.counter}",
            code="replayed",
        )
    parse_version(installed.version)
    if compare_versions(manifest.version, installed.version) < 0 and not (
        policy.allow_downgrade or manifest.downgrade
    ):
        raise BundleRejected(
            f"version {manifest.version} is older than the installed {installed.version}",
            code="downgrade",
        )


def copy_entry(bundle: VerifiedBundle, name: str, dest: Path) -> None:
    """Copy a payload out of the container, re-checking length and hash on the
    bytes actually copied (the file could have changed since verification)."""
    listed = {p.name: p for p in bundle.manifest.payloads}
    p = listed[name]
    entry = bundle.entries[name]
    h = hashlib.sha256()
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with bundle.path.open("rb") as fh:
            for chunk in swu.iter_entry(fh, entry):
                h.update(chunk)
                os.write(fd, chunk)
        os.fsync(fd)
    finally:
        os.close(fd)
    if entry.size != p.size or h.hexdigest() != p.sha256:
        dest.unlink(missing_ok=True)
        raise BundleRejected(f"payload {name} changed after verification", code="hash_mismatch")


# -- building (release tooling and tests) ----------------------------------------------------


def tar_directory(src: Path, dest: Path) -> int:
    """Deterministic ``.tar.gz`` of the tree under ``src`` (names relative to it,
    owners 0, mtime 0). Symbolic links are kept only when they stay inside.
    Returns the unpacked size (sum of regular file sizes)."""
    total = 0

    def norm(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        info.mode = 0o755 if (info.isdir() or info.mode & 0o111) else 0o644
        return info

    with (
        dest.open("wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tf,
    ):
        for path in sorted(src.rglob("*")):
            rel = path.relative_to(src).as_posix()
            info = norm(tf.gettarinfo(str(path), arcname=rel))
            if info.isreg():
                total += info.size
                with path.open("rb") as fh:
                    tf.addfile(info, fh)
            elif info.isdir() or info.issym():
                tf.addfile(info)
            else:
                raise ValueError(f"{path} is not a regular file, directory or symbolic link")
    return total


def build_bundle(
    dest: Path,
    *,
    version: str,
    counter: int,
    key: Ed25519PrivateKey,
    key_id: str,
    app: Path,
    model_pack: Path | None = None,
    migrations: Path | None = None,
    boards: Mapping[str, Sequence[str]] | None = None,
    created: datetime,
    downgrade: bool = False,
    health_timeout_s: int | None = None,
    notes: str = "",
    workdir: Path | None = None,
) -> Manifest:
    """Build a signed bundle at ``dest`` from release folders (or ready ``.tar.gz``
    files). ``boards`` (hw_boardname -> revisions) goes both into the signed
    manifest and into ``sw-description`` for the DDI server."""
    parse_version(version)
    work = workdir or dest.parent
    parts: list[tuple[Role, Path]] = [("app", app)]
    if model_pack is not None:
        parts.append(("model_pack", model_pack))
    if migrations is not None:
        parts.append(("migrations", migrations))
    payloads: list[Payload] = []
    files: list[tuple[str, bytes | Path]] = []
    for role, src in parts:
        name = PAYLOAD_FILE[role]
        if src.is_file() and src.name.endswith(".tar"):
            name = name.removesuffix(".gz")
        if src.is_dir():
            tar_path = work / f".{dest.name}.{name}"
            unpacked = tar_directory(src, tar_path)
        else:
            tar_path, unpacked = src, _unpacked_size(src)
        digest = hashlib.sha256()
        with tar_path.open("rb") as fh:
            while chunk := fh.read(1 << 16):
                digest.update(chunk)
        payloads.append(Payload(name, role, digest.hexdigest(), tar_path.stat().st_size, unpacked))
        files.append((name, tar_path))
    manifest = Manifest(
        version=version,
        counter=counter,
        created=rfc3339(created),
        payloads=tuple(payloads),
        boards={b: tuple(r) for b, r in (boards or {}).items()},
        downgrade=downgrade,
        health_timeout_s=health_timeout_s,
        notes=notes,
    )
    raw = manifest.encode()
    swdesc = swu.sw_description(version, boards or {}, f"{PRODUCT} {version}")
    entries: list[tuple[str, bytes | Path]] = [
        (swu.SW_DESCRIPTION, swdesc),
        (MANIFEST_NAME, raw),
        (SIGNATURE_NAME, sign_manifest(raw, key, key_id)),
    ]
    try:
        swu.write_swu(dest, entries + files)
    finally:
        for (_, src), (_, made) in zip(parts, files, strict=True):
            if src.is_dir() and isinstance(made, Path):
                made.unlink(missing_ok=True)
    return manifest


def _unpacked_size(tar_path: Path) -> int:
    gz = tar_path.name.endswith((".tar.gz", ".tgz"))
    with tarfile.open(tar_path, "r:gz") if gz else tarfile.open(tar_path, "r:") as tf:
        return sum(m.size for m in tf if m.isreg())
