"""``care-terminal footfall run|eval|summary|snapshot`` (passive visitor counting)."""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path
from typing import Any

from terminal.app.output import emit
from terminal.app.services import Services
from terminal.config.footfall import FootfallSettings
from terminal.config.settings import load_settings
from terminal.core.errors import TerminalError
from terminal.core.sdnotify import Notifier


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    f = sub.add_parser("footfall", help="passive visitor counting (无感测流量)")
    fsub = f.add_subparsers(dest="action", required=True)
    r = fsub.add_parser("run", help="count visitors on the footfall camera (Ctrl-C to stop)")
    r.add_argument(
        "--source", help="camera or video (default: [footfall] source, else the kiosk camera)"
    )
    r.add_argument("--seconds", type=float, help="stop after this many seconds")
    r.add_argument("--json", action="store_true")
    r.set_defaults(handler=cmd_run)
    e = fsub.add_parser(
        "eval", help="counted vs true entries and exits on a video with ground truth"
    )
    e.add_argument("video", type=Path)
    e.add_argument("--truth", type=Path, required=True)
    e.add_argument(
        "--video-out",
        type=Path,
        metavar="FILE",
        help="also write the run as an annotated clip (.avi MJPEG or .mp4): boxes, track ids, "
        "the line and its inside side, running counts, a marker on every missed or extra count",
    )
    e.add_argument("--json", action="store_true")
    e.set_defaults(handler=cmd_eval)
    s = fsub.add_parser("summary", help="a day's visits per hour, unique visitors and attendance")
    s.add_argument("--day", help="YYYY-MM-DD (default: today)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(handler=cmd_summary)
    p = fsub.add_parser(
        "snapshot",
        help="one frame from the footfall camera with the counting line drawn on it (PNG)",
        description="Grab one frame from the footfall camera and draw the configured counting "
        "line, its inside side and the frame size on it, to set the line on site. "
        "PRIVACY: the picture shows whoever is in front of the camera; it is written only to "
        "the --out file (default: footfall-snapshot-<time>.png in the current directory) and "
        "nowhere else. Delete it when the line is set.",
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="FILE.png",
        help="where to write the PNG (default: footfall-snapshot-<time>.png in the current "
        "directory; the picture is written nowhere else)",
    )
    p.add_argument(
        "--source", help="camera or video (default: [footfall] source, else [camera] source)"
    )
    p.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for a frame (default 5)"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_snapshot)


def footfall_config(section: FootfallSettings) -> Any:
    """The counter's runtime config from the validated ``[footfall]`` section."""
    from face.footfall.config import FootfallConfig

    return FootfallConfig.from_settings(section)


def _interrupt_on_sigterm(notifier: Notifier) -> None:
    """systemd stops the unit with SIGTERM: end like Ctrl-C, so the partial hour
    is written and the embeddings are forgotten before the process exits."""
    import signal

    def interrupt(_sig: int, _frame: object) -> None:
        notifier.stopping("footfall: stopping, writing the partial hour")
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def cmd_run(args: argparse.Namespace) -> int:
    from face.footfall.service import build_service, run_blocking
    from face.sources import open_source

    notifier = Notifier()
    _interrupt_on_sigterm(notifier)

    svc = Services()
    try:
        s = svc.settings
        cfg = footfall_config(s.footfall)
        spec = args.source or cfg.source or s.camera.source
        source = open_source(spec, width=s.camera.width, height=s.camera.height, fps=s.camera.fps)
        rec = svc.recogniser
        service = build_service(
            source=source,
            config=cfg,
            pack_dir=s.face_pack_dir,
            face_settings=s.face,
            sessions=svc.db.sessions,
            outbox=svc.outbox,
            clock=svc.clock,
            gallery=rec.gallery,
            engine=rec.engine,
            vault_dir=s.data_dir,
            centre_id=s.centre.centre_id,
        )
        emit(args, run_blocking(service, args.seconds, notifier=notifier))
        return 0
    finally:
        svc.close()


def cmd_eval(args: argparse.Namespace) -> int:
    from face.footfall.evaluate import run_cli_eval

    s = load_settings()
    doc = run_cli_eval(
        args.video,
        args.truth,
        pack_dir=s.face_pack_dir,
        face_settings=s.face,
        config=footfall_config(s.footfall),
        video_out=args.video_out,
    )
    emit(args, doc)
    return 0


def cmd_snapshot(args: argparse.Namespace) -> int:
    from face.footfall.annotate import write_png
    from terminal.app.footfall_snapshot import line_picture

    s = load_settings()
    cfg = footfall_config(s.footfall)
    spec = args.source or cfg.source or s.camera.source
    if not args.timeout > 0:
        raise TerminalError("--timeout must be a positive number of seconds")
    out: Path = args.out or Path.cwd() / (
        "footfall-snapshot-" + datetime.now().strftime("%Y%m%d-%H%M%S") + ".png"
    )
    got = line_picture(spec, cfg.line, s.camera, timeout=args.timeout)
    name, problem = got.source, got.problem
    write_png(out, got.picture)
    w, h = got.size
    doc = {
        "path": str(out),
        "source": name,
        "size": [w, h],
        "line": cfg.line.as_dict(),
        "line_problem": problem,
    }
    text = f"wrote {out} ({w}x{h} from {name})"
    if problem:
        text += f"; the line cannot count here: {problem}"
    emit(args, doc, text)
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from face.footfall.store import footfall_summary

    svc = Services()
    try:
        day = args.day or svc.clock.now().date().isoformat()
        with svc.db.sessions() as session:
            doc = footfall_summary(session, day)
        t = doc["totals"]
        text = (
            f"{day}: {t['visits_in']} visits in, {t['visits_out']} out, {t['unique_visitors']} unique visitors, "
            f"{t['attendees']} seniors attended"
        )
        emit(args, doc, text)
        return 0
    finally:
        svc.close()
