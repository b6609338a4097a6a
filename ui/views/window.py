"""The kiosk window: routes flow states to screens, staff mode, out of service.

The window holds no business logic: it turns ``FlowView`` updates into screens
through ``ui.presenters.kiosk.present`` and turns touches into flow events
(``KioskPort.post``) or staff back-end calls (``TaskRunner``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from PyQt6.QtCore import QEvent, QObject, QPoint, Qt, QTimer
from PyQt6.QtGui import QKeyEvent, QMouseEvent
from PyQt6.QtWidgets import QApplication, QStackedWidget, QVBoxLayout, QWidget

from payment.flow import (
    AnotherPortion,
    DigitsEntered,
    Idle,
    SecondFactorEntry,
    StaffApprove,
    StaffLookup,
    Touch,
    VisitorLookup,
)
from terminal.core.clock import CHINA_TZ
from terminal.core.log import get_logger
from ui import theme
from ui.i18n import Translator
from ui.model import (
    ChallengeView,
    DeviceHealth,
    EnrolProgress,
    Fault,
    FlowView,
    IdleInfo,
    PinResult,
    PreviewFrame,
)
from ui.ports import KioskPort, StaffPort
from ui.presenters.footfall import LineSnapshotPort
from ui.presenters.kiosk import Presented, present, present_out_of_service
from ui.views.bridge import KioskBridge, TaskRunner
from ui.views.manager import ManagerPage
from ui.views.senior import (
    ConfirmScreen,
    IdleScreen,
    KeypadScreen,
    OutOfServiceScreen,
    ResultScreen,
    ScanScreen,
)
from ui.views.sound import PromptPlayer
from ui.views.staff.common import Page, StaffContext, error_text
from ui.views.staff.enrol import EnrolPage
from ui.views.staff.footfall import FootfallLinePage
from ui.views.staff.home import StaffHome
from ui.views.staff.lookup import LookupPage
from ui.views.staff.menu import MenuPage
from ui.views.staff.pin import PinPage
from ui.views.staff.status import StatusPage
from ui.views.staff.topup import TopupPage
from ui.views.staff.transactions import TransactionsPage
from ui.views.widgets import Banner, PreviewView

log = get_logger(__name__)

STAFF_IDLE_MS = 5 * 60 * 1000  # staff mode ends by itself after 5 minutes untouched
PIN_IDLE_MS = 60 * 1000
CORNER_PX = 140


class KioskWindow(QWidget):
    def __init__(
        self,
        kiosk: KioskPort,
        backend: StaffPort,
        tr: Translator,
        *,
        player: PromptPlayer | None = None,
        clock: Callable[[], datetime] | None = None,
        wedge_key: Callable[[str], bool] | None = None,
        long_press_ms: int = 3000,
        staff_idle_ms: int = STAFF_IDLE_MS,
        footfall: LineSnapshotPort | None = None,
    ) -> None:
        super().__init__()
        self.setObjectName("kioskRoot")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.setWindowTitle(tr("app.title"))
        self.kiosk = kiosk
        self.backend = backend
        self.i18n = tr
        self.clock = clock or (lambda: datetime.now(CHINA_TZ))
        self.wedge_key = wedge_key
        self.player = player
        self.long_press_ms = long_press_ms
        self.tasks = TaskRunner(self)
        self.bridge = KioskBridge(self)

        # state
        self.flow_view: FlowView | None = None
        self.idle_info = IdleInfo("", self.clock().date(), None)
        self.guidance: str | None = None
        self.challenge: ChallengeView | None = None
        self.health = DeviceHealth()
        self.fault: Fault | None = None
        self.staff_mode = False
        self.pin_purpose: str | None = None  # "menu" | "approve"
        self.current: Presented | None = None
        self.latencies: list[float] = []
        self.screen_log: list[tuple[float, str]] = []
        self._last_screen = ""

        # widgets
        self.banner = Banner()
        self.stack = QStackedWidget()
        self.preview = PreviewView()
        self.idle = IdleScreen(self.preview)
        self.scan = ScanScreen(self.preview)
        self.confirm = ConfirmScreen()
        self.keypad = KeypadScreen()
        self.result = ResultScreen()
        self.oos = OutOfServiceScreen()
        self.ctx = StaffContext(
            tr,
            self.tasks,
            backend,
            on_pay_for=self.staff_pay_for,
            on_pay_visitor=self.staff_pay_visitor,
            preview=self.preview,
            footfall=footfall,
        )
        self.pin = PinPage(tr)
        self.home = StaffHome(self.ctx)
        self.pages: dict[str, Page] = {
            "enrol": EnrolPage(self.ctx),
            "transactions": TransactionsPage(self.ctx),
            "topup": TopupPage(self.ctx),
            "lookup": LookupPage(self.ctx),
            "menu": MenuPage(self.ctx),
            "status": StatusPage(self.ctx),
            "footfall": FootfallLinePage(self.ctx),
            "manager": ManagerPage(self.ctx),
        }
        for w in (
            self.idle,
            self.scan,
            self.confirm,
            self.keypad,
            self.result,
            self.oos,
            self.pin,
            self.home,
        ):
            self.stack.addWidget(w)
        for page in self.pages.values():
            self.stack.addWidget(page)
            page.back.connect(self.show_home)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.banner)
        lay.addWidget(self.stack, 1)

        # intents
        self.idle.staff_help.connect(lambda: self.open_pin("menu"))
        self.idle.language.connect(self.toggle_language)
        self.scan.cancel.connect(lambda: self.kiosk.post(Touch("cancel")))
        self.confirm.pay.connect(lambda: self.kiosk.post(Touch("confirm")))
        self.confirm.cancel.connect(lambda: self.kiosk.post(Touch("cancel")))
        self.keypad.digits.connect(lambda d: self.kiosk.post(DigitsEntered(d)))
        self.keypad.cancel.connect(lambda: self.kiosk.post(Touch("cancel")))
        self.result.finish.connect(lambda: self.kiosk.post(Touch("confirm")))
        self.result.staff.connect(lambda: self.open_pin("approve"))
        self.confirm.staff.connect(lambda: self.open_pin("approve"))
        self.result.portion.connect(lambda: self.kiosk.post(AnotherPortion()))
        self.pin.submitted.connect(self.check_pin)
        self.pin.cancel.connect(self.close_pin)
        self.home.open_page.connect(self.show_page)
        self.home.exit.connect(self.exit_staff)

        # runner -> GUI
        self.bridge.flow.connect(self.on_flow)
        self.bridge.idle.connect(self.on_idle)
        self.bridge.preview.connect(self.on_preview)
        self.bridge.challenge.connect(self.on_challenge)
        self.bridge.enrol.connect(self.on_enrol)
        self.bridge.health.connect(self.on_health)
        self.bridge.fault.connect(self.on_fault)
        if player is not None:
            self.bridge.speak.connect(player.play)
        self.preview.painted.connect(self._painted)
        self._unsubscribe = kiosk.subscribe(self.bridge.on_update)

        # timers
        self.tick = QTimer(self)
        self.tick.setInterval(1000)
        self.tick.timeout.connect(self.on_tick)
        self.tick.start()
        self.press_timer = QTimer(self)
        self.press_timer.setSingleShot(True)
        self.press_timer.timeout.connect(lambda: self.open_pin("menu"))
        self.staff_idle = QTimer(self)
        self.staff_idle.setSingleShot(True)
        self.staff_idle.setInterval(staff_idle_ms)
        self.staff_idle.timeout.connect(self._staff_timeout)
        self.pin_idle = QTimer(self)
        self.pin_idle.setSingleShot(True)
        self.pin_idle.setInterval(PIN_IDLE_MS)
        self.pin_idle.timeout.connect(self.close_pin)
        app = QApplication.instance()
        if app is not None:
            app.installEventFilter(self)
        tr.on_change(lambda _l: QTimer.singleShot(0, self.retranslate))
        self.show_state()

    # ----------------------------------------------------------------- lifecycle
    def shutdown(self) -> None:
        """Stop timers, detach from the runner, finish background tasks."""
        app = QApplication.instance()
        if app is not None:
            app.removeEventFilter(self)
        for t in (self.tick, self.press_timer, self.staff_idle, self.pin_idle):
            t.stop()
        self._unsubscribe()
        if self.player is not None:
            self.player.stop()
        self.tasks.shutdown(wait=True)

    def closeEvent(self, ev: Any) -> None:
        self.shutdown()
        super().closeEvent(ev)

    # ----------------------------------------------------------------- runner updates
    def on_flow(self, view: FlowView) -> None:
        self.flow_view = view
        if isinstance(view.state, Idle):
            self.challenge = None
        if not self.staff_mode and self.pin_purpose is None:
            self.show_state()

    def on_idle(self, info: IdleInfo) -> None:
        self.idle_info = info
        if self.current is not None and self.current.screen == "idle" and not self.staff_mode:
            self.show_state()
        self._banner()

    def on_preview(self, frame: PreviewFrame) -> None:
        if not self.preview.isVisible():
            return
        self.preview.show_frame(frame)
        if frame.guidance != self.guidance:
            self.guidance = frame.guidance
            if self.current is not None and self.current.screen == "scan" and not self.staff_mode:
                self.show_state()

    def on_challenge(self, view: ChallengeView) -> None:
        self.challenge = view
        if not self.staff_mode:
            self.show_state()

    def on_enrol(self, p: EnrolProgress) -> None:
        page = self.pages["enrol"]
        assert isinstance(page, EnrolPage)
        page.on_progress(p)

    def on_health(self, h: DeviceHealth) -> None:
        self.health = h
        if self.current is not None and self.current.screen == "idle" and not self.staff_mode:
            self.show_state()

    def on_fault(self, fault: Fault) -> None:
        if fault.fatal:
            self.show_out_of_service(fault.code)

    def show_out_of_service(self, code: str) -> None:
        self.fault = Fault(code, "")
        if not self.staff_mode:
            self.show_state()

    def _painted(self, _seq: int, captured: float) -> None:
        if len(self.latencies) < 10_000:
            self.latencies.append(time.monotonic() - captured)

    # ----------------------------------------------------------------- rendering
    def _banner(self) -> None:
        now = self.clock()
        date = self.i18n.date_text(now.year, now.month, now.day, now.weekday())
        if self.staff_mode:  # the staff member's name instead of the date
            date = self.i18n("staff.home.title", staff=self.ctx.staff.staff_name)
        self.banner.set(self.idle_info.centre_name, date, now.strftime("%H:%M"))

    def show_state(self) -> None:
        """Show the screen for the current flow state (senior side)."""
        self._banner()
        if self.fault is not None:
            p = present_out_of_service(self.i18n, self.fault.code)
            self.oos.show_vm(p.vm)  # type: ignore[arg-type]
            self._show(self.oos, p)
            return
        state = self.flow_view.state if self.flow_view is not None else Idle()
        p = present(
            state,
            idle=self.idle_info,
            tr=self.i18n,
            now=self.clock(),
            guidance=self.guidance,
            challenge=self.challenge,
            camera_ok=self.health.camera not in ("offline",),
        )
        fresh = self.current is None or self.current.screen != p.screen
        if p.screen == "idle":
            self.idle.show_vm(p.vm)  # type: ignore[arg-type]
            if fresh:
                self.idle.attach_preview()
            self._show(self.idle, p)
        elif p.screen == "scan":
            self.scan.show_vm(p.vm)  # type: ignore[arg-type]
            if fresh:
                self.scan.attach_preview()
            self._show(self.scan, p)
        elif p.screen == "confirm":
            self.confirm.show_vm(p.vm)  # type: ignore[arg-type]
            self._show(self.confirm, p)
        elif p.screen == "keypad":
            fresh_pad = fresh or not isinstance(state, SecondFactorEntry)
            self.keypad.show_vm(p.vm, fresh_pad)  # type: ignore[arg-type]
            self._show(self.keypad, p)
        else:
            self.result.show_vm(p.vm)  # type: ignore[arg-type]
            self._show(self.result, p)

    def _show(self, widget: QWidget, p: Presented) -> None:
        self.current = p
        if self.stack.currentWidget() is not widget:
            self.stack.setCurrentWidget(widget)
        if p.state_name != self._last_screen:
            self._last_screen = p.state_name
            self.screen_log.append((time.monotonic(), p.state_name))
            if len(self.screen_log) > 1000:  # the kiosk runs for weeks: keep the recent part
                del self.screen_log[:500]

    def on_tick(self) -> None:
        self._banner()
        if self.staff_mode or self.pin_purpose is not None:
            return
        if self.current is not None and self.current.screen != "oos":
            self.show_state()

    def retranslate(self) -> None:
        self.setWindowTitle(self.i18n("app.title"))
        w = self.stack.currentWidget()
        if isinstance(w, Page):
            w.retranslate()
        elif w is self.home:
            self.home.on_show()
        elif w is self.pin:
            self.pin.open()
        if not self.staff_mode and self.pin_purpose is None:
            self.show_state()
        else:
            self._banner()

    def toggle_language(self) -> None:
        self.i18n.toggle()

    # ----------------------------------------------------------------- staff mode
    def open_pin(self, purpose: str) -> None:
        if self.pin_purpose is not None or self.staff_mode:
            return
        self.pin_purpose = purpose
        self.pin.open()
        self.stack.setCurrentWidget(self.pin)
        self.pin_idle.start()

    def close_pin(self) -> None:
        self.pin_idle.stop()
        self.pin_purpose = None
        if self.staff_mode:
            self.show_home()
        else:
            self.show_state()

    def check_pin(self, pin: str) -> None:
        self.pin_idle.start()

        def done(res: PinResult) -> None:
            if not res.ok:
                self.pin.result(res)
                return
            purpose = self.pin_purpose
            self.pin_idle.stop()
            self.pin_purpose = None
            self.ctx.staff = res
            if purpose == "approve":
                self.kiosk.post(StaffApprove(res.staff_id))
                self.tasks.run(self.backend.end_session, res.staff_id)
                self.show_state()
            else:
                self.enter_staff()

        def failed(exc: BaseException) -> None:
            self.pin.busy = False
            self.pin.show_message(error_text(self.i18n, exc))

        self.tasks.run(self.backend.check_pin, pin, on_done=done, on_error=failed)

    def enter_staff(self) -> None:
        self.staff_mode = True
        self.kiosk.set_mode("staff")
        self.staff_idle.start()
        self.show_home()

    def show_home(self) -> None:
        if not self.staff_mode:
            self.show_state()
            return
        self.home.on_show()
        self.stack.setCurrentWidget(self.home)
        self._banner()

    def show_page(self, name: str) -> None:
        page = self.pages[name]
        if name == "manager" and self.ctx.staff.role != "manager":
            return
        page.on_show()
        self.stack.setCurrentWidget(page)

    def exit_staff(self) -> None:
        if not self.staff_mode:
            return
        enrol = self.pages["enrol"]
        if isinstance(enrol, EnrolPage) and enrol.capturing:
            self.tasks.run(self.backend.cancel_enrol)
        staff_id = self.ctx.staff.staff_id
        self.staff_mode = False
        self.staff_idle.stop()
        self.ctx.staff = PinResult(False)
        self.kiosk.set_mode("pay")
        self.tasks.run(self.backend.end_session, staff_id)
        self.current = None
        self.show_state()

    def _staff_timeout(self) -> None:
        enrol = self.pages["enrol"]
        if isinstance(enrol, EnrolPage) and enrol.capturing:
            self.staff_idle.start()
            return
        self.exit_staff()

    def staff_pay_for(self, resident_id: str) -> None:
        """Staff lookup payment: the senior confirms on the normal screens."""
        staff_id = self.ctx.staff.staff_id
        self.exit_staff()
        self.kiosk.post(StaffLookup(resident_id, staff_id))

    def staff_pay_visitor(self, name: str, phone_last4: str) -> None:
        """A senior of another centre: the kiosk asks the district by name and
        phone last 4; the senior confirms on the normal screens."""
        staff_id = self.ctx.staff.staff_id
        self.exit_staff()
        self.kiosk.post(VisitorLookup(name, phone_last4, staff_id))

    # ----------------------------------------------------------------- input
    def _in_corner(self, pos: QPoint) -> bool:
        return pos.x() < CORNER_PX and pos.y() < CORNER_PX

    def eventFilter(self, obj: QObject | None, ev: QEvent | None) -> bool:
        if ev is None or not self.isVisible():
            return False
        t = ev.type()
        if t == QEvent.Type.MouseButtonPress and isinstance(ev, QMouseEvent):
            if self.staff_mode:
                self.staff_idle.start()
            elif self.pin_purpose is not None:
                self.pin_idle.start()
            else:
                local = self.mapFromGlobal(ev.globalPosition().toPoint())
                if self._in_corner(local):
                    self.press_timer.start(self.long_press_ms)
        elif t == QEvent.Type.MouseButtonRelease:
            self.press_timer.stop()
        elif (
            t == QEvent.Type.KeyPress
            and isinstance(ev, QKeyEvent)
            and isinstance(obj, QWidget)
            and not self.staff_mode
            and self.pin_purpose is None
        ):
            # Senior screens have no text fields: every key is a keyboard-wedge
            # card reader (or nothing). Consumed here, so it is seen only once.
            key = ev.text()
            if ev.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                key = "Enter"
            if key and self.wedge_key is not None:
                self.wedge_key(key)
            return True
        return False

    def minimumSizeHint(self) -> Any:
        from PyQt6.QtCore import QSize

        return QSize(theme.SCREEN_W // 2, theme.SCREEN_H // 2)
