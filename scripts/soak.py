"""Unattended-operation soak: kiosk + agent + platform as real processes.

    .venv/bin/python scripts/soak.py --minutes 10 --json

Prints the figures as JSON (RSS/fd/thread slopes per process, payments made and
acknowledged by the platform, outages). See terminal/app/soak.py for what runs.
Exits 1 when a bound in terminal.app.soak.BOUNDS is exceeded or a record is
missing or duplicated at the platform.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from terminal.app.soak import SoakConfig, check, run_soak


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--pay-every", type=float, default=4.0, help="seconds between payments")
    p.add_argument("--outages", type=int, default=2, help="times the platform goes away")
    p.add_argument("--outage-seconds", type=float, default=45.0)
    p.add_argument("--warmup", type=float, default=60.0, help="seconds left out of the slopes")
    p.add_argument("--dir", type=Path, help="keep the run's files here (default: a temp dir)")
    p.add_argument("--json", action="store_true", help="(output is always JSON)")
    args = p.parse_args(argv)
    cfg = SoakConfig(
        minutes=args.minutes,
        pay_every_s=args.pay_every,
        outages=args.outages,
        outage_s=args.outage_seconds,
        warmup_s=args.warmup,
    )
    base = args.dir or Path(tempfile.mkdtemp(prefix="care-soak-"))
    base.mkdir(parents=True, exist_ok=True)
    try:
        doc = run_soak(cfg, base, progress=lambda m: print(m, file=sys.stderr, flush=True))
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    problems = check(doc)
    doc["problems"] = problems
    print(json.dumps(doc, ensure_ascii=False, indent=2))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
