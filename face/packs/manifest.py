"""The pack manifest: ``manifest.json`` as a pydantic document.

Every pack folder holds one. It names each model file with its sha256, size,
role, decoder format and preprocessing, plus the pack's licences and notes.
Parsing is strict (``extra="forbid"``, no type coercion): an unknown key, a
wrong type, an unknown role or kind, a file name with a path in it, a file
listed twice or a role given to two files is refused with one
:class:`ModelPackError` naming the manifest and the first problem.

A role says what a model is for; which roles a pack may hold depends on its
kind (:data:`KIND_ROLES`), and :data:`REQUIRED_ROLES` are the ones
:func:`face.packs.verify.verify_pack` insists on:

* face packs (``open``, ``insightface``): ``detector``, ``landmarks68``
  (68-point landmarks), ``embedding`` (recognition), ``liveness`` (passive
  anti-spoofing) and ``detector_alt`` (CenterFace, selectable in settings);
* the footfall body-detector pack (``person``): ``person_detector``;
* any pack: ``unused`` (hashed and verified, never loaded).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from terminal.core.atomic import atomic_write_text
from terminal.core.errors import ModelPackError, field_path

MANIFEST_NAME: Final = "manifest.json"
MANIFEST_SCHEMA: Final = 1

PackKind = Literal["open", "insightface", "person"]
Role = Literal[
    "detector",
    "landmarks68",
    "embedding",
    "liveness",
    "detector_alt",
    "person_detector",
    "unused",
]
# The order files are listed in when a pack is sealed.
ROLES: Final[tuple[Role, ...]] = (
    "detector",
    "landmarks68",
    "embedding",
    "liveness",
    "detector_alt",
    "person_detector",
    "unused",
)
FACE_ROLES: Final[frozenset[Role]] = frozenset(
    {"detector", "landmarks68", "embedding", "liveness", "detector_alt"}
)
KIND_ROLES: Final[Mapping[PackKind, frozenset[Role]]] = {
    "open": FACE_ROLES,
    "insightface": FACE_ROLES,
    "person": frozenset({"person_detector"}),
}
REQUIRED_ROLES: Final[Mapping[PackKind, tuple[Role, ...]]] = {
    "open": ("detector", "landmarks68", "embedding"),
    "insightface": ("detector", "embedding"),
    "person": ("person_detector",),
}


def _plain_file_name(name: str) -> str:
    if not name or name != Path(name).name or name in (".", ".."):
        raise ValueError(f"{name!r} is not a plain file name inside the pack folder")
    return name


def _sha256_hex(value: str) -> str:
    if len(value) != 64 or any(c not in "0123456789abcdefABCDEF" for c in value):
        raise ValueError("must be 64 hex digits")
    return value.lower()


FileName = Annotated[str, AfterValidator(_plain_file_name)]
Sha256 = Annotated[str, AfterValidator(_sha256_hex)]


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)


class PackFile(_Document):
    """One model file of a pack."""

    name: FileName
    sha256: Sha256
    size: int = Field(ge=0)
    role: Role
    format: str = ""  # the decoder the loader uses
    preprocessing: dict[str, Any] = Field(default_factory=dict)
    source: str = ""
    licence: str = ""

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class PackManifest(_Document):
    """A pack's ``manifest.json``, bound to the folder it describes (:attr:`root`)."""

    schema_version: Literal[1] = Field(default=MANIFEST_SCHEMA, alias="schema")
    kind: PackKind
    name: str = ""
    files: tuple[PackFile, ...] = Field(min_length=1)
    licences: dict[str, dict[str, str]] = Field(default_factory=dict)
    notes: tuple[str, ...] = ()

    _root: Path = PrivateAttr(default_factory=Path)

    @model_validator(mode="after")
    def _consistent(self) -> PackManifest:
        names: set[str] = set()
        roles: set[str] = set()
        allowed = KIND_ROLES[self.kind]
        for f in self.files:
            if f.name in names:
                raise ValueError(f"lists {f.name} twice")
            names.add(f.name)
            if f.role == "unused":
                continue
            if f.role not in allowed:
                raise ValueError(
                    f"role {f.role} ({f.name}) does not belong in a pack of kind {self.kind!r}"
                )
            if f.role in roles:
                raise ValueError(f"assigns role {f.role} to several files")
            roles.add(f.role)
        return self

    def at(self, root: Path) -> PackManifest:
        """This manifest as the one of pack folder ``root`` (named after it
        when the manifest names no pack)."""
        bound = self.model_copy(update={"name": self.name or root.name})
        bound._root = root
        return bound

    @property
    def root(self) -> Path:
        return self._root

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
        parts = [f"{key}: {lic.get('spdx') or 'not stated'}" for key, lic in self.licences.items()]
        return "; ".join(parts) if parts else "not stated"

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def save(self) -> None:
        """Write ``manifest.json`` into :attr:`root` (atomically)."""
        text = json.dumps(self.to_json(), ensure_ascii=False, indent=2) + "\n"
        try:
            atomic_write_text(self.root / MANIFEST_NAME, text)
        except OSError as exc:
            raise ModelPackError(
                f"cannot write {self.root / MANIFEST_NAME}: {exc.strerror}"
            ) from exc


def describe(err: ValidationError) -> str:
    """The first problem of a validation error as one readable phrase."""
    problems = err.errors(include_url=False)
    e = problems[0]
    loc = field_path(e["loc"])
    if e["type"] == "json_invalid":
        text = f"is not valid JSON ({e['ctx'].get('error', e['msg'])})" if "ctx" in e else e["msg"]
    elif e["type"] == "extra_forbidden":
        text = f"has an unknown key {loc}"
    elif e["type"] == "missing":
        text = f"has no {loc}"
    elif e["type"] in ("value_error", "assertion_error") and "ctx" in e:
        text = f"{loc}: {e['ctx']['error']}" if loc else str(e["ctx"]["error"])
    else:
        text = f"{loc}: {e['msg']}" if loc else f"is not valid: {e['msg']}"
    more = len(problems) - 1
    return text + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")


def parse_manifest(raw: bytes, root: Path) -> PackManifest:
    """The manifest of pack folder ``root`` from its bytes; ModelPackError otherwise."""
    try:
        manifest = PackManifest.model_validate_json(raw)
    except ValidationError as exc:
        raise ModelPackError(f"{root / MANIFEST_NAME} {describe(exc)}") from None
    return manifest.at(root)


def read_manifest(root: Path) -> PackManifest:
    """Read and parse ``<root>/manifest.json`` (no file is hashed here)."""
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
    return parse_manifest(raw, root)
