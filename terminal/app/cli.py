"""The ``care-terminal`` command line.

Every command exits 0 on success, 2 on an expected error (bad input, missing
pack, unknown face ...) with a one-line message on stderr, and 70 on an
unexpected internal error (logged; no traceback on the console unless
``CARE_DEBUG=1``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from terminal import __version__
from terminal.core.errors import TerminalError
from terminal.core.log import get_logger, setup_logging

log = get_logger(__name__)

EXIT_OK = 0
EXIT_ERROR = 2
EXIT_INTERNAL = 70

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    from terminal.app.commands import (
        bench,
        db,
        faces,
        footfall,
        kiosk,
        models,
        ota,
        payment,
        residents,
        sync,
    )

    parser = argparse.ArgumentParser(
        prog="care-terminal",
        description="Smart service terminal for elderly day-care centres.",
    )
    parser.add_argument("--version", action="version", version=f"care-terminal {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (kiosk, models, faces, residents, payment, footfall, sync, ota, db, bench):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging(os.environ.get("CARE_LOG_LEVEL", "WARNING"))
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except TerminalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into head & co.
        sys.stderr.close()
        return EXIT_OK
    except Exception as exc:
        log.exception("internal_error", command=args.command, exc_type=type(exc).__name__)
        if os.environ.get("CARE_DEBUG"):
            raise
        print(
            f"internal error ({type(exc).__name__}); details are in the log. "
            "Set CARE_DEBUG=1 to see the traceback.",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
