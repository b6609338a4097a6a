"""``python3 -I run_updater.py [--config FILE] COMMAND``.

Commands: ``activate`` (from spool/request.json, or resume a trial), ``boot``
(early at boot), ``on-failure`` (systemd OnFailure= of the kiosk),
``rollback`` (to the previous release), ``status`` (JSON).
Exit codes: 0 ok/healthy, 1 rolled back, 2 refused (nothing changed),
3 (boot) a trial is pending and ``activate`` should resume it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from care_updater.config import UpdaterConfigError, load_config
from care_updater.core import Updater, UpdaterError, log


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="care-updater", description="care-terminal release activation")
    p.add_argument("--config", type=Path, default=None)
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("activate")
    a.add_argument("--request", type=Path, default=None)
    b = sub.add_parser("boot")
    b.add_argument(
        "--resume-command",
        nargs="*",
        default=None,
        help="command that starts 'activate' in the background when a trial is pending",
    )
    sub.add_parser("on-failure")
    r = sub.add_parser("rollback")
    r.add_argument("--reason", default="manual rollback")
    sub.add_parser("status")
    args = p.parse_args(argv)
    try:
        up = Updater(load_config(args.config))
        if args.cmd == "activate":
            return up.activate(args.request)
        if args.cmd == "boot":
            rc = up.boot()
            if rc == 3:
                cmd = args.resume_command or [
                    "systemctl",
                    "start",
                    "--no-block",
                    "care-terminal-updater.service",
                ]
                subprocess.run(cmd, check=False, timeout=60)
                return 0
            return rc
        if args.cmd == "on-failure":
            return up.on_failure()
        if args.cmd == "rollback":
            return up.rollback_manual(args.reason)
        print(json.dumps(up.status(), indent=1, default=str))
        return 0
    except (UpdaterError, UpdaterConfigError) as exc:
        log("refused", error=str(exc))
        print(f"error: {exc}", file=sys.stderr)
        return 2
