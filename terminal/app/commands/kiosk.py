"""``care-terminal kiosk [--demo]``, ``care-terminal staff ...`` and the
``bench kiosk`` sub-command (added to ``bench`` by :func:`add_bench_parser`).

The kiosk runs full-screen on the device (the kiosk session starts it under
systemd with ``Type=notify`` and a watchdog). It sends ``READY=1`` when the
screen is up, ``WATCHDOG=1`` from the GUI loop only while the runner's flow
loop beats (see ``KioskRunner.healthy``), a ``STATUS=`` line (flow state and
devices, never personal data) and ``STOPPING=1`` on SIGTERM. ``--demo`` sets
up a complete world on this machine first (see ``terminal.app.demo``).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from terminal.core.errors import TerminalError
from terminal.core.log import get_logger, setup_logging
from terminal.core.sdnotify import Notifier

log = get_logger(__name__)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    k = sub.add_parser("kiosk", help="run the touch-screen kiosk (seniors, staff, manager)")
    k.add_argument(
        "--demo",
        action="store_true",
        help="demo residents, simulated camera, local platform server",
    )
    k.add_argument(
        "--demo-dir", type=Path, help="where the demo keeps its data (default: XDG data dir)"
    )
    k.add_argument("--at", help="demo only: pretend the clock shows HH:MM today (e.g. 11:30)")
    k.add_argument(
        "--windowed", action="store_true", help="a 1280x800 window instead of full screen"
    )
    k.add_argument("--language", choices=["zh_CN", "en"], help="start language (default: settings)")
    k.add_argument("--no-voice", action="store_true", help="no voice prompts")
    k.add_argument("--printer", help="receipt printer serial device, e.g. /dev/ttyUSB0")
    k.add_argument("--card-reader", help="ID card reader serial device")
    k.add_argument("--no-camera", action="store_true", help="card and staff payments only")
    k.add_argument("--seconds", type=float, help="quit after this many seconds (smoke tests)")
    k.set_defaults(handler=cmd_kiosk)

    st = sub.add_parser("staff", help="staff PINs for the kiosk's staff mode")
    ssub = st.add_subparsers(dest="action", required=True)
    a = ssub.add_parser(
        "add", help="add or change a staff member's PIN (asked twice, never echoed)"
    )
    a.add_argument("--id", required=True, dest="staff_id")
    a.add_argument("--name", required=True)
    a.add_argument("--role", choices=["staff", "manager"], default="staff")
    a.add_argument(
        "--pin-stdin", action="store_true", help="read the PIN from standard input (provisioning)"
    )
    a.set_defaults(handler=cmd_staff_add)
    ls = ssub.add_parser("list", help="staff ids, names and roles")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=cmd_staff_list)
    rm = ssub.add_parser("remove", help="remove a staff member's PIN")
    rm.add_argument("--id", required=True, dest="staff_id")
    rm.set_defaults(handler=cmd_staff_remove)


def add_bench_parser(bsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``bench kiosk`` to the ``bench`` sub-commands."""
    b = bsub.add_parser(
        "kiosk",
        help="frame-to-screen latency, face-to-confirm time, idle CPU, RSS (offscreen)",
    )
    b.add_argument("--json", action="store_true", help="(output is always JSON)")
    b.add_argument("--walkups", type=int, default=2)
    b.add_argument("--pack", type=Path, help="model pack (default: the installed one)")
    b.set_defaults(handler=cmd_bench_kiosk)


# --------------------------------------------------------------------------- staff PINs


def _pins() -> Any:
    from terminal.config.settings import load_settings
    from terminal.kiosk.pins import StaffPins

    return StaffPins(load_settings().data_dir / "staff" / "pins.json")


def cmd_staff_add(args: argparse.Namespace) -> int:
    if args.pin_stdin:
        pin = sys.stdin.readline().strip()
    else:
        pin = getpass.getpass("PIN (4-8 digits): ")
        if getpass.getpass("PIN again: ") != pin:
            raise TerminalError("the two PINs differ")
    _pins().set_pin(args.staff_id, args.name, pin, args.role)
    print(f"PIN set for {args.staff_id} ({args.role})")
    return 0


def cmd_staff_list(args: argparse.Namespace) -> int:
    rows = _pins().list()
    if args.json:
        print(
            json.dumps(
                [{"id": s, "name": n, "role": r} for s, n, r in rows], ensure_ascii=False, indent=2
            )
        )
    else:
        for s, n, r in rows:
            print(f"{s}\t{n}\t{r}")
    return 0


def cmd_staff_remove(args: argparse.Namespace) -> int:
    if not _pins().remove(args.staff_id):
        raise TerminalError(f"no staff member {args.staff_id}")
    print(f"removed {args.staff_id}")
    return 0


# --------------------------------------------------------------------------- kiosk


def _check_display() -> None:
    if os.environ.get("QT_QPA_PLATFORM") or sys.platform != "linux":
        return
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise TerminalError(
            "no display: run this on the kiosk screen (or set QT_QPA_PLATFORM, "
            "e.g. eglfs on the device, offscreen for a headless check)"
        )


def _demo_time(text: str | None) -> datetime | None:
    if not text:
        return None
    from terminal.core.clock import CHINA_TZ

    try:
        hh, mm = (int(v) for v in text.split(":"))
        return datetime.now(CHINA_TZ).replace(hour=hh, minute=mm, second=0, microsecond=0)
    except ValueError:
        raise TerminalError("--at takes a time of day like 11:30") from None


def cmd_kiosk(args: argparse.Namespace) -> int:
    _check_display()
    from terminal.app.kiosk_compose import build_kiosk, open_printer
    from terminal.app.services import Services

    demo = None
    demo_printer: Any = None
    services: Any = None
    app = None
    try:
        if args.demo:
            from terminal.app.demo import DEMO_RESIDENTS, DEMO_STAFF, prepare_demo

            print("care-terminal demo: setting up (a few seconds) ...", file=sys.stderr)
            demo = prepare_demo(
                args.demo_dir,
                at=_demo_time(args.at),
                progress=lambda m: print(f"  {m}", file=sys.stderr),
            )
            services = demo.services
            from terminal.app.demo import answer_prompts
            from terminal.app.demo_printer import DemoPrinter

            source = demo.camera()

            demo_printer = DemoPrinter(demo.base / "receipts.txt")
            app = build_kiosk(
                services,
                source=source,
                sync_now=demo.sync_once,
                printer=open_printer(demo_printer.path),
            )
            app.runner.subscribe(answer_prompts(source, app.runner))
            demo.start_sync_loop()
            cards = ", ".join(f"{r.name} {r.card}" for r in DEMO_RESIDENTS[:3])
            print(
                "\n".join(
                    [
                        f"demo data: {demo.base}",
                        f"platform server: {demo.platform.url if demo.platform else '-'}",
                        "staff mode: long-press the top-left corner 3 s, or tap 找工作人员; PINs: "
                        + ", ".join(
                            f"{pin} ({name}, {role})" for _i, name, pin, role in DEMO_STAFF
                        ),
                        f"card reader: type a card number and Enter, e.g. {cards}",
                        f"receipts (a simulated printer on a pty): {demo.base / 'receipts.txt'}",
                        "the simulated camera: enrolled residents walk up and turn their head "
                        "when asked, then an unenrolled visitor",
                    ]
                ),
                file=sys.stderr,
            )
        else:
            try:
                services = Services()
                # a service logs at the configured level (INFO unless log_level says
                # otherwise); one-shot commands stay at WARNING
                setup_logging(services.settings.log_level)
                services.db  # noqa: B018 - open (quick_check, migrate) before the screen
                printer = open_printer(args.printer) if args.printer else None
                app = build_kiosk(
                    services,
                    camera=not args.no_camera,
                    printer=printer,
                    card_reader_url=args.card_reader,
                )
            except TerminalError as exc:
                # Invalid config, a pack that does not verify, an unusable database:
                # the terminal shows "out of service" with the code, never a traceback.
                log.error("boot_failed", code=exc.code, error=str(exc))
                print(f"error: {exc}", file=sys.stderr)
                Notifier().status(f"kiosk: out of service ({exc.code})")
                from ui.views.app import run_out_of_service

                run_out_of_service(
                    exc.code,
                    language=args.language or "zh_CN",
                    fullscreen=not args.windowed,
                    quit_after_s=args.seconds,
                )
                return 2
        app.start()
        return _run_qt(app, args, services, Notifier())
    finally:
        if app is not None:
            app.close()
        if demo_printer is not None:
            demo_printer.close()
        if demo is not None:
            demo.close()
        elif services is not None:
            services.close()


def kiosk_status(runner: Any) -> str:
    """The ``STATUS=`` line: flow state and devices (no names, no ids)."""
    h = runner.health
    state = type(runner.current().state).__name__.lower()
    text = f"kiosk: {state}, camera {h.camera}, printer {h.printer}, card reader {h.card_reader}"
    fault = runner.fault
    if fault is not None:
        text += f", fault {fault.code}"
    return text


def systemd_notify(runner: Any, notifier: Notifier) -> Any:
    """What the GUI loop calls with ``READY=1`` / ``WATCHDOG=1`` / ``STOPPING=1``;
    each message carries the current status line."""

    def notify(message: str) -> bool:
        if message == "READY=1":
            return notifier.ready(kiosk_status(runner))
        if message == "WATCHDOG=1":
            return notifier.alive(kiosk_status(runner))
        if message == "STOPPING=1":
            return notifier.stopping("kiosk: stopping")
        return notifier.send(message)

    return notify


def install_test_wedge(runner: Any) -> None:
    """Test hook, honoured only with ``CARE_TEST_HOOKS=1``: after
    ``CARE_TEST_WEDGE_AFTER_S`` seconds the flow loop blocks for good inside
    a subscriber call, as a hung effect would. The service tests use it to
    prove that the watchdog pings stop when the flow loop stops."""
    if os.environ.get("CARE_TEST_HOOKS") != "1" or not os.environ.get("CARE_TEST_WEDGE_AFTER_S"):
        return
    from payment.flow import CardTapped

    after = float(os.environ["CARE_TEST_WEDGE_AFTER_S"])
    due = time.monotonic() + after
    forever = threading.Event()

    def block_flow(_update: Any) -> None:
        if threading.current_thread().name == "kiosk-flow" and time.monotonic() >= due:
            log.warning("test_hook_flow_loop_wedged")
            forever.wait()

    runner.subscribe(block_flow)
    # something for the flow loop to publish once the time has come
    t = threading.Timer(after + 0.2, runner.post, args=(CardTapped("test-wedge"),))
    t.daemon = True
    t.start()


def _run_qt(app: Any, args: argparse.Namespace, services: Any, notifier: Notifier) -> int:
    from terminal.app.footfall_snapshot import FootfallLineSnapshots
    from ui.views.app import run_kiosk

    install_test_wedge(app.runner)
    return run_kiosk(
        app.runner,
        app.backend,
        language=args.language or app.language,
        fullscreen=not args.windowed,
        healthy=app.runner.healthy,
        notify=systemd_notify(app.runner, notifier) if notifier.enabled else None,
        # the GUI loop calls WATCHDOG=1 each quarter of WatchdogSec (when healthy)
        watchdog_s=notifier.ping_every_s,
        clock=services.clock.now,
        wedge_key=app.wedge_key,
        voice=not args.no_voice,
        quit_after_s=args.seconds,
        footfall=FootfallLineSnapshots.from_settings(services.settings),
    )


def cmd_bench_kiosk(args: argparse.Namespace) -> int:
    from terminal.app.kiosk_bench import run_kiosk_bench

    doc = run_kiosk_bench(args.pack, walkups=args.walkups)
    print(json.dumps(doc, ensure_ascii=False, indent=2, default=str))
    return 0
