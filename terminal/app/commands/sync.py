"""Sync commands: ``sync now|status``, ``agent``, ``platform serve|settlement``."""

from __future__ import annotations

import argparse
import functools
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from terminal.app.output import emit
from terminal.config.settings import Settings, load_settings
from terminal.core.errors import TerminalError
from terminal.core.log import setup_logging
from terminal.core.sdnotify import Notifier

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from sync.platform.core import SettlementRules
    from sync.platform.store import VisitMealFacts


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
        help="serve [--host H] [--port P] [--db URL] [--seed FILE] [fault switches] | "
        "settlement --from D --to D [--csv] | wallets [--db URL]; "
        "see 'platform serve --help'",
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

    return main(
        list(args.platform_args),
        settlement=platform_settlement_rules(),
        worker_factory="terminal.app.commands.sync:platform_worker_app",
    )


def platform_settlement_rules() -> SettlementRules:
    """The platform's settlement between centres is the payment package's
    (``payment.visiting.settle`` and ``settlement_csv``), wired here."""
    from datetime import date

    from payment.domain import MealSlot
    from payment.visiting import SettlementLine, VisitMeal, settle, settlement_csv
    from sync.platform.core import SettlementRules

    def lines(meals: Sequence[VisitMealFacts], start: date, end: date) -> list[dict[str, Any]]:
        found = settle(
            (
                VisitMeal(
                    m.record_id,
                    m.day,
                    MealSlot(m.slot),
                    m.visited_centre_id,
                    m.home_centre_id,
                    m.subsidy_fen,
                    m.voided,
                    m.wallet_fen,
                )
                for m in meals
            ),
            start,
            end,
        )
        return [
            {
                "claimant_centre_id": x.claimant_centre_id,
                "debtor_centre_id": x.debtor_centre_id,
                "period_from": x.period_from.isoformat(),
                "period_to": x.period_to.isoformat(),
                "meals": x.meals,
                "subsidy_fen": x.subsidy_fen,
                "record_ids": list(x.record_ids),
                "wallet_meals": x.wallet_meals,
                "wallet_fen": x.wallet_fen,
            }
            for x in found
        ]

    def to_csv(docs: Sequence[dict[str, Any]], wallet: bool) -> str:
        return settlement_csv(
            [
                SettlementLine(
                    d["claimant_centre_id"],
                    d["debtor_centre_id"],
                    date.fromisoformat(d["period_from"]),
                    date.fromisoformat(d["period_to"]),
                    d["meals"],
                    d["subsidy_fen"],
                    tuple(d["record_ids"]),
                    wallet_meals=d.get("wallet_meals", 0),
                    wallet_fen=d.get("wallet_fen", 0),
                )
                for d in docs
            ],
            wallet=wallet,
        )

    return SettlementRules(settle=lines, to_csv=to_csv)


def platform_worker_app() -> Starlette:
    """A platform worker process's application, with the settlement rules."""
    from sync.platform.asgi import app_from_env

    return app_from_env(settlement=platform_settlement_rules())
