"""Stage a verified bundle as a new release folder and hand it to the updater.

Layout below the OTA root (``/opt/care-terminal`` on a device)::

    releases/<version>-c<counter>/
        app/            the application release tree (with release.json)
        models/         optional model pack
        migrations/     optional migration scripts
        manifest.json   the verified manifest
    current -> releases/<...>          (switched atomically by the updater)
    spool/request.json                 (activation request for the updater)

``release.json`` at the top of ``app/`` tells the updater how to run the
release's own steps (paths relative to ``app/``)::

    {"version": "1.4.0",
     "migrate": ["bin/care-terminal", "db", "upgrade"],
     "health":  ["bin/care-terminal", "health", "--json"]}
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sync.ota.archive import ArchiveLimits, safe_extract
from sync.ota.bundle import VerifiedBundle, copy_entry
from sync.ota.errors import BundleRejected, OtaError
from sync.ota.manifest import MANIFEST_NAME
from sync.ota.swu import read_entry
from terminal.core.atomic import atomic_write_bytes, fsync_dir

ROLE_DIRS = {"app": "app", "model_pack": "models", "migrations": "migrations"}
RELEASE_JSON = "release.json"
REQUEST_NAME = "request.json"
SPACE_MARGIN = 64 << 20


@dataclass(frozen=True, slots=True)
class StagedRelease:
    version: str
    counter: int
    path: Path
    has_migrations: bool
    has_model_pack: bool

    @property
    def name(self) -> str:
        return self.path.name


def release_name(version: str, counter: int) -> str:
    return f"{version}-c{counter}"


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            if p.is_symlink():
                continue
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(dirpath)


def write_release_json(
    app_dir: Path,
    version: str,
    *,
    migrate: list[str] | None = None,
    health: list[str] | None = None,
) -> Path:
    """Write ``release.json`` into an application tree (release tooling)."""
    doc: dict[str, Any] = {"version": version}
    if migrate:
        doc["migrate"] = list(migrate)
    if health:
        doc["health"] = list(health)
    path = app_dir / RELEASE_JSON
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    read_release_json(app_dir, version)
    return path


def read_release_json(app_dir: Path, expect_version: str) -> dict[str, Any]:
    """Check the release's ``release.json`` (the updater reads the same file)."""
    path = app_dir / RELEASE_JSON
    if path.is_symlink() or not path.is_file():
        raise BundleRejected("the app payload has no release.json", code="bad_manifest")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BundleRejected("release.json is not valid JSON", code="bad_manifest") from None
    if not isinstance(doc, dict) or doc.get("version") != expect_version:
        raise BundleRejected(
            "release.json does not name the manifest's version", code="bad_manifest"
        )
    for key in ("migrate", "health"):
        argv = doc.get(key)
        if argv is None:
            continue
        if (
            not isinstance(argv, list)
            or not argv
            or not all(isinstance(a, str) for a in argv)
            or argv[0].startswith("/")
            or ".." in argv[0].split("/")
        ):
            raise BundleRejected(
                f"release.json {key} must be a command inside the release", code="bad_manifest"
            )
    return doc


def stage_bundle(
    bundle: VerifiedBundle,
    releases_dir: Path,
    limits: ArchiveLimits | None = None,
    *,
    protected: frozenset[str] = frozenset(),
) -> StagedRelease:
    """Extract the verified bundle into ``releases_dir/<version>-c<counter>``.

    Everything happens in a hidden staging folder that is renamed into place
    only when complete; on any failure it is removed and nothing is left
    behind. ``protected`` names release folders that must not be replaced
    (the running and the previous release)."""
    m = bundle.manifest
    limits = limits or ArchiveLimits()
    releases_dir.mkdir(parents=True, exist_ok=True)
    name = release_name(m.version, m.counter)
    if name in protected:
        raise OtaError(
            f"release {name} is in use and cannot be staged again", code="release_in_use"
        )
    need = sum(p.size + p.unpacked_size for p in m.payloads) + SPACE_MARGIN
    free = shutil.disk_usage(releases_dir).free
    if free < need:
        raise OtaError(
            f"not enough disk space to stage {name}: {free >> 20} MiB free, {need >> 20} MiB needed",
            code="no_space",
        )
    tmp = releases_dir / f".staging-{name}-{secrets.token_hex(4)}"
    tmp.mkdir(mode=0o755)
    try:
        for p in m.payloads:
            blob = tmp / f".payload-{p.name}"
            copy_entry(bundle, p.name, blob)
            try:
                safe_extract(
                    blob, tmp / ROLE_DIRS[p.role], limits, declared_unpacked=p.unpacked_size
                )
            finally:
                blob.unlink(missing_ok=True)
        read_release_json(tmp / "app", m.version)
        with bundle.path.open("rb") as fh:
            raw = read_entry(fh, bundle.entries[MANIFEST_NAME], 1 << 16)
        (tmp / MANIFEST_NAME).write_bytes(raw)
        _fsync_tree(tmp)
        final = releases_dir / name
        if final.exists() or final.is_symlink():
            shutil.rmtree(final) if final.is_dir() and not final.is_symlink() else final.unlink()
        os.rename(tmp, final)
        fsync_dir(releases_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return StagedRelease(
        version=m.version,
        counter=m.counter,
        path=final,
        has_migrations=m.has_migrations,
        has_model_pack=m.payload("model_pack") is not None,
    )


def atomic_write_json(path: Path, doc: Mapping[str, Any], mode: int = 0o644) -> None:
    """Write JSON crash-safely (:func:`terminal.core.atomic.atomic_write_bytes`),
    creating the directory when missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(doc, ensure_ascii=False, indent=1, sort_keys=True).encode("utf-8")
    atomic_write_bytes(path, data, mode=mode)


@dataclass(frozen=True, slots=True)
class FeedbackTarget:
    """Where and how the updater reports the outcome (DDI feedback URL and the
    credentials to use; secrets are passed by file path, never inline)."""

    url: str
    token_file: str | None = None
    token_kind: str = "TargetToken"  # noqa: S105 - the DDI scheme name, not a secret
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "token_file": self.token_file,
            "token_kind": self.token_kind,
            "ca_file": self.ca_file,
            "cert_file": self.cert_file,
            "key_file": self.key_file,
        }


def write_activation_request(
    spool_dir: Path,
    staged: StagedRelease,
    *,
    action_id: str,
    from_version: str,
    health_timeout_s: int,
    feedback: FeedbackTarget | None,
    requested_at: str,
) -> Path:
    """Ask the updater to activate ``staged`` (see deploy/updater)."""
    doc = {
        "format": 1,
        "action_id": action_id,
        "release": staged.name,
        "version": staged.version,
        "counter": staged.counter,
        "from_version": from_version,
        "migrations": staged.has_migrations,
        "health_timeout_s": health_timeout_s,
        "feedback": feedback.to_json() if feedback else None,
        "requested_at": requested_at,
    }
    path = spool_dir / REQUEST_NAME
    atomic_write_json(path, doc, 0o600)
    return path
