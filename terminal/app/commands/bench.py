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
    p = bsub.add_parser(
        "payment", help="commit latency with synchronous=FULL, payments/s, kill-test counts"
    )
    p.add_argument("--payments", type=int, default=300)
    p.add_argument(
        "--kills", type=int, default=20, help="SIGKILLs in the crash harness (0 to skip)"
    )
    p.add_argument("--json", action="store_true", help="(output is always JSON)")
    p.set_defaults(handler=cmd_payment)


def cmd_face(args: argparse.Namespace) -> int:
    from face.bench import run_cli_bench
    from terminal.config.settings import load_settings

    s = load_settings()
    doc = run_cli_bench(s.face_pack_dir, s.face, peer=args.peer, repeat=args.repeat)
    print(json.dumps(doc, ensure_ascii=False, indent=2, default=str))
    return 0


def cmd_payment(args: argparse.Namespace) -> int:
    from payment.bench import bench_payment
    from terminal.config.settings import load_settings

    data_dir = load_settings().data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    doc = bench_payment(args.payments, args.kills, workdir=data_dir)
    print(json.dumps(doc, ensure_ascii=False, indent=2))
    return 0
