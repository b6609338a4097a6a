"""``care-terminal bench face|...``: measurements printed as JSON."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

from terminal.core.errors import TerminalError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("bench", help="benchmarks (JSON on stdout)")
    bsub = p.add_subparsers(dest="action", required=True)
    f = bsub.add_parser(
        "face",
        help="identify + passive liveness per frame, per-stage latency, active-challenge "
        "compute per frame, 1:N search, load time, RSS",
    )
    f.add_argument(
        "--peer",
        action="store_true",
        help="also run the face_recognition (dlib) peer, interleaved with ours "
        "(install it once with scripts/install-peer.sh)",
    )
    f.add_argument("--json", action="store_true", help="(output is always JSON)")
    f.add_argument("--repeat", type=int, default=5, help="passes over the images per measurement")
    f.add_argument("--images", help="folder of face photos (default: the shared test faces)")
    f.add_argument("--quick", action="store_true", help="skip the session-tuning and int8 variants")
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
    ff = bsub.add_parser(
        "footfall", help="footfall fps, per-stage ms, CPU share, RSS, cost to identify"
    )
    ff.add_argument("--video", type=Path, help="clip to run on (default: a generated test clip)")
    ff.add_argument("--quick", action="store_true", help="skip the kiosk-interference measurement")
    ff.add_argument("--json", action="store_true", help="(output is always JSON)")
    ff.set_defaults(handler=cmd_footfall)
    from terminal.app.commands.kiosk import add_bench_parser

    add_bench_parser(bsub)
    from terminal.app.platform_bench import add_bench_parser as add_platform_bench

    add_platform_bench(bsub)
    sy = bsub.add_parser(
        "sync", help="records/s drained to the loopback platform, batch size, outbox disk use"
    )
    sy.add_argument("--records", type=int, default=100_000)
    sy.add_argument("--batch-size", type=int, default=500)
    sy.add_argument("--json", action="store_true", help="(output is always JSON)")
    sy.set_defaults(handler=cmd_sync)


def _bench_images(folder: str | None) -> list[Path]:
    """Faces to benchmark on: --images, else the shared test faces next to the
    checkout, else the repository's own test faces, else the sample photos that
    ship with the insightface package."""
    from face.bench import image_files

    candidates = [Path(folder)] if folder else []
    repo = Path(__file__).resolve().parents[3]
    candidates.append(repo.parent / "shared" / "testdata" / "faces")
    candidates.append(repo / "tests" / "data" / "faces")
    spec = importlib.util.find_spec("insightface")  # locate its sample photos without importing it
    if spec is not None and spec.origin:
        candidates.append(Path(spec.origin).parent / "data" / "images")
    for c in candidates:
        if c.is_dir() and image_files(c):
            return image_files(c)
    raise TerminalError("no face images to benchmark on; pass --images DIR")


def cmd_face(args: argparse.Namespace) -> int:
    from face.bench import bench_face
    from face.pipeline import FaceEngine
    from terminal.config.settings import load_settings

    s = load_settings()
    doc = bench_face(
        lambda: FaceEngine.from_pack(s.face_pack_dir, s.face),
        _bench_images(args.images),
        peer=args.peer,
        repeats=args.repeat,
        variants=not args.quick,
        int8=not args.quick,
        progress=lambda msg: print(msg, file=sys.stderr),
    )
    print(json.dumps(doc, ensure_ascii=False, indent=2, default=str))
    return 0


def cmd_footfall(args: argparse.Namespace) -> int:
    from face.footfall.bench import run_cli_bench
    from terminal.app.commands.footfall import footfall_config
    from terminal.config.settings import load_settings
    from terminal.kiosk.runner import RunnerConfig

    s = load_settings()
    doc = run_cli_bench(
        s.face_pack_dir,
        s.face,
        video=args.video,
        config=footfall_config(s.footfall),
        quick=args.quick,
        kiosk_rate=RunnerConfig().analysis_fps,  # as the kiosk identifies a face in view
    )
    print(json.dumps(doc, ensure_ascii=False, indent=2, default=str))
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    from sync.bench import bench_sync

    doc = bench_sync(records=args.records, batch_size=args.batch_size)
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
