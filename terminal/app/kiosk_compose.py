"""Composition of the kiosk: runner, back end, camera, printer, card reader.

Qt-free: ``build_kiosk`` wires the real stores and devices into a
:class:`KioskApp`; ``ui.views.app.run_kiosk`` puts a window on it. Tests,
the demo, the screenshot script and the bench use the same function.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from importlib import metadata
from typing import Any

from payment.flow import CardTapped, FlowConfig, FlowTimeouts, IdCardRead
from payment.receipt import Receipt, render_receipt
from terminal.app.services import Services
from terminal.core.log import get_logger
from terminal.kiosk.backend import BackendDeps, KioskBackend
from terminal.kiosk.face_port import RecogniserFace
from terminal.kiosk.pins import StaffPins
from terminal.kiosk.runner import KioskRunner, PrinterPort, RunnerConfig
from terminal.kiosk.visitors import PlatformVisitors, VisitorPort, platform_visitors, with_visitors
from ui.model import DeviceHealth, KioskUpdate

log = get_logger(__name__)

# The senior may need a member of staff (PIN entry) on these screens; the
# defaults of the pure flow are a little short for that.
KIOSK_TIMEOUTS = FlowTimeouts(already_paid=45.0, staff_required=120.0)


def software_version() -> str:
    try:
        return metadata.version("care-terminal")
    except metadata.PackageNotFoundError:
        return "dev"


def receipt_printer(printer: Any, language: str = "zh_CN") -> PrinterPort:
    """A ``PrinterPort`` over ``terminal.hw.ports.Printer`` (never raises)."""

    def port(receipt: Receipt) -> tuple[bool, str]:
        result = printer.print_lines(render_receipt(receipt, lang=language))
        return bool(result.ok), str(result.outcome)

    return port


def card_sink(runner: KioskRunner) -> Callable[[Any], None]:
    """Card reader events (``terminal.hw.cardreader``) -> flow events."""
    from terminal.hw.cardreader import IcCardRead
    from terminal.hw.cardreader import IdCardRead as HwIdCardRead

    def sink(ev: Any) -> None:
        if isinstance(ev, IcCardRead):
            runner.post(CardTapped(ev.number))
        elif isinstance(ev, HwIdCardRead):
            runner.post(IdCardRead(ev.info.id_number))
        # CardReadFailed: logged by the reader; the senior simply tries again

    return sink


@dataclass
class KioskApp:
    services: Services
    runner: KioskRunner
    backend: KioskBackend
    language: str = "zh_CN"
    wedge_key: Callable[[str], bool] | None = None  # keyboard-wedge IC reader keys
    closers: list[Callable[[], None]] = field(default_factory=list)
    demo_note: str = ""
    _started: bool = False

    def start(self) -> None:
        if not self._started:
            self.runner.start()
            self._started = True

    def close(self) -> None:
        if self._started:
            self.runner.stop()
            self._started = False
        for fn in reversed(self.closers):
            try:
                fn()
            except Exception:
                log.exception("kiosk_close_failed")
        self.closers.clear()


def _health_writer(services: Services) -> Callable[[KioskUpdate], None]:
    """Write camera/printer health for the sync agent's heartbeat (on change)."""
    from sync.agent import write_kiosk_health

    path = services.settings.kiosk_health_file
    lock = threading.Lock()

    def on_update(update: KioskUpdate) -> None:
        if not isinstance(update, DeviceHealth):
            return
        cam = {"ok": "ok", "degraded": "degraded"}.get(update.camera, "offline")
        prn = {"ok": "ok", "paper_out": "paper_out"}.get(update.printer, "offline")
        with lock:
            try:
                write_kiosk_health(path, cam, prn, services.clock.now())
            except OSError as exc:
                log.warning("kiosk_health_write_failed", error=type(exc).__name__)

    return on_update


def build_kiosk(
    services: Services,
    *,
    source: Any | None = None,
    camera: bool = True,
    printer: Any | None = None,
    printer_port: PrinterPort | None = None,
    card_reader_url: str | None = None,
    runner_config: RunnerConfig | None = None,
    challenge_seconds: float | None = None,
    flow_config: FlowConfig | None = None,
    sync: bool = True,
    sync_now: Callable[[], dict[str, Any]] | None = None,
    speaker: Callable[[str], None] | None = None,
    visitors: VisitorPort | None = None,
) -> KioskApp:
    """Wire the kiosk from ``services``. ``source`` overrides the camera from
    settings; ``camera=False`` runs without one (card and staff paths only).
    ``printer`` is a started ``terminal.hw.ports.Printer``; ``printer_port``
    any other receipt port (tests, a network printer)."""
    s = services.settings
    cfg = flow_config or replace(services.flow_config, timeouts=KIOSK_TIMEOUTS)
    # city-wide meals: seniors of other centres, when the district pepper is installed
    visitor_port = visitors if visitors is not None else (platform_visitors(s) if sync else None)
    cfg = with_visitors(cfg, s if visitor_port is not None else None)
    services.__dict__["flow_config"] = cfg  # the store and the runner share it
    store = services.payment
    store.config = cfg
    closers: list[Callable[[], None]] = []
    if isinstance(visitor_port, PlatformVisitors) and visitors is None:
        closers.append(visitor_port.close)

    face_port = None
    # without a camera, a recogniser that is already loaded still gets gallery updates
    recogniser = services.__dict__.get("recogniser")
    if camera:
        recogniser = services.recogniser  # verifies the pack; refuses a tampered one
        face_port = RecogniserFace(recogniser, challenge_seconds=challenge_seconds)
        if source is None:
            from face.sources import open_source

            c = s.camera
            source = open_source(c.source, width=c.width, height=c.height, fps=c.fps, loop=True)

    print_port: PrinterPort | None = printer_port
    printer_status: Callable[[], str] | None = None
    if printer is not None and print_port is None:
        print_port = receipt_printer(printer, s.language)
        printer_status = lambda: "ok" if printer.status().connected else "offline"  # noqa: E731
        closers.append(printer.stop)

    backend_box: list[KioskBackend] = []

    def on_print_failure(record_id: str, reason: str) -> None:
        if backend_box:
            backend_box[0].record_print_failure(record_id, reason)

    def last_payment() -> tuple[str, str, str] | None:
        """At start-up: settle charge intents left by the previous run (open ones
        are abandoned; a charge that committed but was never shown is reported
        here and in the audit trail), then show the last charge if it happened
        in the last 10 minutes, or the unshown one whenever it happened."""
        recovered = store.recover_intents().paid
        tx = recovered[-1] if recovered else store.last_transaction()
        if tx is None or tx.kind != "charge" or tx.voided:
            return None
        now = services.clock.now()
        if not recovered and not timedelta(0) <= now - tx.at <= timedelta(minutes=10):
            return None
        return (tx.name_masked, tx.due.yuan_str(), tx.at.astimezone(now.tzinfo).strftime("%H:%M"))

    runner = KioskRunner(
        last_payment=last_payment,
        context=store.context,
        charge=store.charge,
        resolve=store.resolve_charge,
        shown=store.mark_shown,
        clock=services.clock,
        printer=print_port,
        speaker=speaker,
        source=source if camera else None,
        face=face_port,
        config=runner_config,
        on_print_failure=on_print_failure,
        visitors=visitor_port,
    )
    runner.subscribe(_health_writer(services))

    card_status: Callable[[], str] | None = None
    wedge = None
    if card_reader_url:
        from terminal.hw.ports import IdCardReader, SerialConfig

        reader = IdCardReader(SerialConfig(card_reader_url, baudrate=115200), card_sink(runner))
        reader.start()
        closers.append(reader.stop)
        card_status = lambda: "ok" if reader.status().connected else "offline"  # noqa: E731
    try:
        from terminal.hw.ports import KeyboardWedgeReader

        wedge = KeyboardWedgeReader(card_sink(runner))
    except ImportError:  # pragma: no cover - terminal.hw always ships
        wedge = None

    status_fn = None
    now_fn = sync_now
    if sync:
        from sync.store.status import sync_status

        def status_fn() -> Any:
            return sync_status(s.database_url, s.sync_db_url, services.clock.now())

        if now_fn is None:
            from sync.agent import sync_now as agent_sync_now

            def now_fn() -> dict[str, Any]:
                return agent_sync_now(s, services.clock)

    pack = ""
    if recogniser is not None:
        pack = recogniser.pack_id
    deps = BackendDeps(
        sessions=services.db.sessions,
        roster=services.roster,
        payment=store,
        outbox=services.outbox,
        clock=services.clock,
        pins=StaffPins(s.data_dir / "staff" / "pins.json"),
        export_dir=s.data_dir / "exports",
        templates=services.templates,
        recogniser=recogniser,
        runner=runner,
        printer=print_port,
        printer_status=printer_status,
        card_reader_status=card_status,
        sync_status=status_fn,
        sync_now=now_fn,
        district_wallet=(
            visitor_port.district_wallet if isinstance(visitor_port, PlatformVisitors) else None
        ),
        model_pack=pack,
        version=software_version(),
        centre_name=s.centre.centre_name,
        enrol_frames=min(5, s.face.enrol_max_templates),
    )
    backend = KioskBackend(deps)
    backend_box.append(backend)
    return KioskApp(
        services=services,
        runner=runner,
        backend=backend,
        language=s.language,
        wedge_key=wedge.key if wedge is not None else None,
        closers=closers,
    )


def open_printer(url: str) -> Any:
    """Start a serial ESC/POS printer on ``url`` (``/dev/ttyUSB0`` ...)."""
    from terminal.hw.ports import Printer, SerialConfig

    printer = Printer(SerialConfig(url))
    printer.start()
    return printer


__all__ = [
    "KIOSK_TIMEOUTS",
    "KioskApp",
    "build_kiosk",
    "card_sink",
    "open_printer",
    "receipt_printer",
]
