"""Sync commands: ``sync now|status``, ``agent``, ``platform serve``."""

from __future__ import annotations

import argparse
import functools
import threading

from terminal.app.output import emit
from terminal.config.settings import Settings, load_settings
from terminal.core.errors import TerminalError
from terminal.core.log import setup_logging
from terminal.core.sdnotify import Notifier


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser("sync", help="upload the outbox and pull platform data")
    ssub = s.add_subparsers(dest="action", required=True)
    now = ssub.add_parser("now", help="one upload + pull cycle now (or wake the running agent)")
    now.add_argument("--json", action="store_true")
    now.set_defaults(handler=cmd_sync_now)
    st = ssub.add_parser(
        "status", help="queue depth, oldest unsynced record, dead letters, last contact"
    )
    st.add_argument("--json", action="store_true")
    st.set_defaults(handler=cmd_sync_status)

    a = sub.add_parser("agent", help="run the sync (and OTA) service beside the kiosk")
    a.set_defaults(handler=cmd_agent)

    p = sub.add_parser("platform", help="the reference district platform server")
    p.add_argument(
        "platform_args",
        nargs=argparse.REMAINDER,
        help="serve [--host H] [--port P] [--db URL] [--seed FILE] [fault switches]; see 'platform serve --help'",
    )
    p.set_defaults(handler=cmd_platform)


def cmd_sync_now(args: argparse.Namespace) -> int:
    from sync.agent import sync_now

    doc = sync_now(load_settings())
    emit(args, doc)
    return 0


def cmd_sync_status(args: argparse.Namespace) -> int:
    from sync.agent import status

    emit(args, status(load_settings()))
    return 0


def cmd_agent(args: argparse.Namespace) -> int:
    from sync.agent import SyncAgent, run_agent
    from terminal.app.commands.ota import start_ota_thread

    def beside(settings: Settings, stop: threading.Event, agent: SyncAgent) -> None:
        # OTA runs in the same service when provisioned ([ota] enabled = true),
        # from the same settings; its status records go into the agent's own stream.
        start_ota_thread(stop, settings, on_status=agent.append_ota_status)

    try:
        settings = load_settings()  # one load for sync and OTA
        setup_logging(settings.log_level)  # a service logs at the configured level
        return run_agent(settings, on_start=functools.partial(beside, settings))
    except TerminalError as exc:
        # e.g. invalid config or no device key yet: `systemctl status` says why
        # before the restart
        Notifier().status(f"sync: not running ({exc.code})")
        raise


def cmd_platform(args: argparse.Namespace) -> int:
    from sync.platform.server import main

    return main(list(args.platform_args))
