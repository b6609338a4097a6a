"""Sealing a pack folder: hash its model files and write ``manifest.json``.

District IT copies a licensed pack in insightface's layout (an SCRFD
``det_*.onnx`` and an ArcFace recogniser such as ``w600k_r50.onnx``, usually
with ``MODEL.LICENSE``) onto the device and seals it with :func:`seal_pack`
(``care-terminal models seal DIR``); from then on it is verified like any
other pack. A folder holding the files of a catalogue pack (``open``,
``person``) can be sealed too: every file must then be the catalogue's.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from face.packs.catalogue import OPEN_PACK, RECIPES, PackRecipe
from face.packs.manifest import ROLES, PackFile, PackKind, PackManifest, Role, describe
from face.packs.verify import sha256_file, verify_pack
from terminal.core.errors import ModelPackError

MAX_LICENCE_BYTES = 256 * 1024


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


def seal_pack(
    pack_dir: Path | str, kind: PackKind = "insightface", *, name: str | None = None
) -> PackManifest:
    """Seal a pack folder: hash its model files and write ``manifest.json``.

    For ``kind="insightface"``: ``det_*.onnx`` routed as detection becomes the
    SCRFD ``detector``; the recogniser is ``w600k*.onnx`` or the one ONNX file
    routed as recognition; files recognised by hash as open-pack models keep
    their open roles (so a pack may borrow the open detector + landmarks);
    anything else is recorded as ``unused`` (still hashed). ``MODEL.LICENSE``,
    if present, goes into the manifest. For a catalogue kind the folder must
    hold only that pack's files. Returns the verified manifest.
    """
    root = Path(pack_dir)
    if not root.is_dir():
        raise ModelPackError(f"model pack folder {root} does not exist")
    recipe = RECIPES.get(kind)
    suffixes = sorted({Path(f.name).suffix for f in recipe.files} if recipe else {".onnx"})
    model_files = sorted(p for p in root.iterdir() if p.suffix in suffixes and p.is_file())
    if not model_files:
        raise ModelPackError(f"{root} holds no {' / '.join(suffixes)} files")
    hashed = {p: sha256_file(p) for p in model_files}
    try:
        if recipe is not None:
            manifest = _catalogue_manifest(root, recipe, hashed, name or recipe.name)
        elif kind == "insightface":
            manifest = _insightface_manifest(root, hashed, name or root.name)
        else:
            raise ModelPackError(f"unknown pack kind {kind!r}")
    except ValidationError as exc:  # e.g. two copies of one borrowed open-pack model
        raise ModelPackError(f"cannot seal {root}: the manifest {describe(exc)}") from None
    manifest.save()
    return verify_pack(root, kind=kind)


def _catalogue_manifest(
    root: Path, recipe: PackRecipe, hashed: Mapping[Path, tuple[str, int]], name: str
) -> PackManifest:
    files: dict[int, PackFile] = {}  # in the recipe's order, like a fetched pack
    for p, (sha, size) in hashed.items():
        known = recipe.by_sha.get(sha)
        if known is None or known.name != p.name:
            raise ModelPackError(f"{p.name} is not one of the {recipe.kind}-pack files")
        files[recipe.files.index(known)] = recipe.pack_file(known, size)
    return PackManifest(
        kind=recipe.kind,
        name=name,
        files=tuple(files[i] for i in sorted(files)),
        licences={src.spec: src.licence_entry() for src in recipe.sources.values()},
        notes=(
            "Sealed from files already in the folder; hashes are the catalogue's.",
            *recipe.notes,
        ),
    ).at(root)


def _insightface_manifest(
    root: Path, hashed: Mapping[Path, tuple[str, int]], name: str
) -> PackManifest:
    files: dict[Path, PackFile] = {}
    used_open_sources: set[str] = set()
    for p, (sha, size) in hashed.items():
        known = OPEN_PACK.by_sha.get(sha)
        if known is not None:
            files[p] = OPEN_PACK.pack_file(known, size, name=p.name)
            used_open_sources.add(known.source)

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

    def add(p: Path, role: Role, fmt: str, pre: Mapping[str, Any]) -> None:
        sha, size = hashed[p]
        files[p] = PackFile(
            name=p.name,
            sha256=sha,
            size=size,
            role=role,
            format=fmt,
            preprocessing=dict(pre),
            source=f"insightface layout: {p.name}",
            licence="see MODEL.LICENSE" if (root / "MODEL.LICENSE").is_file() else "not stated",
        )

    def unuse(role: Role) -> None:
        for p, f in list(files.items()):
            if f.role == role:
                files[p] = f.model_copy(update={"role": "unused"})

    if scrfd:
        # An SCRFD detector takes over the detector role from a borrowed open one.
        unuse("detector")
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
        unuse("embedding")
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
        src = OPEN_PACK.sources[key]
        licences[src.spec] = src.licence_entry()
    ordered = tuple(sorted(files.values(), key=lambda f: (ROLES.index(f.role), f.name)))
    return PackManifest(
        kind="insightface",
        name=name,
        files=ordered,
        licences=licences,
        notes=("Sealed with `care-terminal models seal`; hashes recorded at sealing time.",),
    ).at(root)
