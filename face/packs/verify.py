"""Verifying packs: every file's size and sha256 before anything is loaded.

:func:`verify_pack` is the one gate: the face engine, the footfall person
detector, ``care-terminal models verify|list`` and the fetch step (to leave a
good pack alone) all call it, and the terminal refuses a pack it cannot verify.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from face.packs.catalogue import RECIPES
from face.packs.manifest import MANIFEST_NAME, REQUIRED_ROLES, PackKind, PackManifest, read_manifest
from terminal.core.errors import ModelPackError


def sha256_file(path: Path, chunk: int = 1 << 20) -> tuple[str, int]:
    """The sha256 (hex) and size of a file, read in chunks."""
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


def verify_pack(pack_dir: Path | str, *, kind: PackKind | None = None) -> PackManifest:
    """Read the manifest and check every file's size and sha256.

    Raises :class:`ModelPackError` naming the first problem: a missing folder
    or manifest, an invalid manifest, a pack of another ``kind`` than asked
    for, a missing required role, or a missing, truncated or tampered file.
    For catalogue kinds (``open``, ``person``) every file must also be the
    catalogue's file with its pinned hash and role.
    """
    root = Path(pack_dir)
    if not root.is_dir():
        recipe = RECIPES.get(kind or "open")
        how = recipe.fetch_command if recipe else "care-terminal models seal"
        raise ModelPackError(f"model pack folder {root} does not exist (build it with `{how}`)")
    manifest = read_manifest(root)
    if kind is not None and manifest.kind != kind:
        raise ModelPackError(f"model pack {root} is of kind {manifest.kind!r}, not {kind!r}")
    recipe = RECIPES.get(manifest.kind)
    if recipe is not None:
        for f in manifest.files:
            known = recipe.by_sha.get(f.sha256)
            expected = (known.name, known.role, known.format) if known else None
            if expected != (f.name, f.role, f.format):
                raise ModelPackError(
                    f"model file {f.name} is not one of the known {recipe.kind}-pack files "
                    f"(manifest edited?); rebuild with `{recipe.fetch_command}`"
                )
    for role in REQUIRED_ROLES[manifest.kind]:
        manifest.require(role)
    det = manifest.by_role("detector")
    if det is not None and det.format == "ultraface" and manifest.by_role("landmarks68") is None:
        raise ModelPackError(
            f"model pack {root}: detector {det.name} needs a 68-point landmark model"
        )
    for f in manifest.files:
        path = root / f.name
        if not path.is_file():
            raise ModelPackError(f"model file {f.name} is missing from {root}")
        actual_size = path.stat().st_size
        if actual_size != f.size:
            raise ModelPackError(
                f"model file {f.name} is truncated or changed "
                f"(size {actual_size} bytes, expected {f.size})"
            )
        digest, _ = sha256_file(path)
        if digest != f.sha256:
            raise ModelPackError(
                f"model file {f.name} failed its sha256 check (tampered or corrupt); "
                "the pack is refused"
            )
    return manifest


@dataclass(frozen=True, slots=True)
class PackInfo:
    name: str
    path: Path
    kind: str
    status: Literal["ok", "invalid"]
    reason: str
    licence: str


def list_packs(
    models_dir: Path | str, *, verify: Callable[[Path], PackManifest] = verify_pack
) -> list[PackInfo]:
    """Every pack folder under ``models_dir`` (any kind) with its verification status."""
    root = Path(models_dir)
    if not root.is_dir():
        return []
    out: list[PackInfo] = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            m = verify(d)
        except ModelPackError as exc:
            kind = "unknown"
            with contextlib.suppress(Exception):
                kind = str(
                    json.loads((d / MANIFEST_NAME).read_text("utf-8")).get("kind", "unknown")
                )
            out.append(PackInfo(d.name, d, kind, "invalid", str(exc), ""))
        else:
            out.append(PackInfo(d.name, d, m.kind, "ok", "", m.licence_summary))
    return out
