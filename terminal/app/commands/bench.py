"""``care-terminal bench face|...``: measurements printed as JSON."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("bench", help="benchmarks (JSON on stdout)")
    bsub = p.add_subparsers(dest="action", required=True)
    f = bsub.add_parser(
        "face", help="per-stage latency, identify per frame, 1:N search, load time, RSS"
    )
    f.add_argument("--peer", action="store_true", help="also run the face_recognition (dlib) peer")
    f.add_argument("--json", action="store_true", help="(output is always JSON)")
    f.add_argument("--repeat", type=int, default=30, help="frames per measurement")
    f.set_defaults(handler=cmd_face)


def cmd_face(args: argparse.Namespace) -> int:
    from face.bench import run_cli_bench

    from terminal.config.settings import load_settings

    s = load_settings()
    doc = run_cli_bench(s.face_pack_dir, s.face, peer=args.peer, repeat=args.repeat)
    print(json.dumps(doc, ensure_ascii=False, indent=2, default=str))
    return 0
