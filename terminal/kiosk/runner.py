"""The kiosk runner: executes the pure payment flow's effects and feeds it events.

Qt-free. The GUI only subscribes to updates and posts events; everything that
blocks runs here, on the runner's own threads:

* ``kiosk-flow``: the only caller of ``payment.flow.step``. Takes events from
  a queue, runs ``step`` against a fresh ``FlowContext``, publishes the new
  state and executes the effects: ``Charge`` goes to the charge thread,
  ``Print`` to the print thread, ``Speak`` to the speaker port (which must not
  block), ``StartTimer``/``CancelTimer`` to its own timer table (expired
  timers come back as ``Timeout`` events).
* ``kiosk-charge``: ``PaymentStore.charge`` (disk fsync) -> ``ChargeCommitted``
  or ``ChargeFailed`` back into the flow. A crash in the store becomes
  ``ChargeFailed(charge_failed)``; the store's own transaction decides whether
  anything was written, and the flow acknowledges only a commit.
* ``kiosk-visit``: the district port for visiting seniors
  (:mod:`terminal.kiosk.visitors`): ``AskVisitor`` -> ``VisitorAnswered``,
  ``ClaimSlot`` -> ``SlotClaimAnswered`` (the platform may take its 2 s; the
  flow thread never waits for it).
* ``kiosk-print``: the receipt printer. Printing never blocks a payment: the
  flow is already in ``Done`` when it starts; a failure is recorded
  (``on_print_failure``) and shown to the senior (staff can reprint).
* ``kiosk-face``: reads the newest camera frame at a capped rate and has the
  face port (:mod:`terminal.kiosk.face_port`) analyse it once: the detector +
  quality gate for on-screen guidance, in the same pass the identification
  when the flow is in ``Checking`` (and the gate passed), or the frame of the
  active liveness challenge in ``Challenge``; it also collects frames for
  staff enrolment.
* ``kiosk-preview``: hands the newest frame (downscaled, RGB) with the last
  face overlay to subscribers at a capped rate; it never waits for inference.

Workers that raise are restarted under a budget (``RestartBudget``); when the
budget is spent the runner publishes a fatal :class:`ui.model.Fault` and the
GUI shows the out-of-service screen. ``healthy()`` gates the systemd watchdog:
the GUI loop pings (``terminal.core.sdnotify``) only while the flow loop beats.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from payment.domain import MealSlot, service_date, slot_at
from payment.flow import (
    AskVisitor,
    CancelTimer,
    Challenge,
    Charge,
    ChargeCommitted,
    ChargeFailed,
    ChargeRequest,
    Checking,
    ClaimSlot,
    Done,
    Effect,
    Event,
    FaceResult,
    FaceSeen,
    FlowContext,
    Idle,
    Print,
    PrintResult,
    ResolveCharge,
    SlotClaimAnswered,
    Speak,
    StartTimer,
    State,
    Timeout,
    VisitorAnswered,
    step,
)
from payment.receipt import Receipt
from payment.visiting import ClaimOutcome
from terminal.core.clock import Clock
from terminal.core.errors import TerminalError
from terminal.core.log import get_logger
from terminal.kiosk.face_port import (
    ChallengeSession,
    ChallengeStep,
    FacePort,
    Image,
    Observation,
)
from terminal.kiosk.visitors import VisitorPort, answer
from ui.model import (
    ChallengeView,
    DeviceHealth,
    EnrolProgress,
    Fault,
    FlowView,
    Health,
    IdleInfo,
    KioskUpdate,
    MenuLine,
    PreviewFrame,
    SpeakRequest,
)

if TYPE_CHECKING:
    from face.sources import Frame, FrameSource

log = get_logger(__name__)

Subscriber = Callable[[KioskUpdate], None]
ChargePort = Callable[[ChargeRequest], Event]
# what became of a request (by its id): ChargeCommitted / ChargeFailed, None = cannot tell yet
ResolvePort = Callable[[ChargeRequest], Event | None]
PrinterPort = Callable[[Receipt], tuple[bool, str]]
SpeakerPort = Callable[[str], None]
ContextFactory = Callable[[], FlowContext]


# --------------------------------------------------------------------------- camera


@runtime_checkable
class _WaitingSource(Protocol):
    """A source that can block until a newer frame arrives (``ThreadedSource``)."""

    def wait_frame(self, after_seq: int = 0, timeout: float | None = 1.0) -> Frame | None: ...


# --------------------------------------------------------------------------- idle info


def idle_info_from_context(ctx: FlowContext, now: datetime) -> IdleInfo:
    """The idle screen's menu block: the slot being served (or the next one)."""
    cfg = ctx.config
    windows = cfg.slot_windows
    day = service_date(now, windows)
    slot = slot_at(now, windows)
    next_slot: MealSlot | None = None
    next_window = ""
    if slot is None:
        t = windows.local(now).time()
        upcoming = sorted(
            ((s, w) for s, w in windows.windows.items() if w.start > t), key=lambda sw: sw[1].start
        )
        if upcoming:
            next_slot, w = upcoming[0]
            next_window = w.text()
    menu = ctx.menu(day)
    show = slot or next_slot
    lines: tuple[MenuLine, ...] = ()
    if menu is not None and show is not None:
        lines = tuple(
            MenuLine(
                i.item_id, i.name, i.price, tuple(sorted(i.slots)), i.kind.value, i.subsidisable
            )
            for i in menu.items_for(show)
        )
    return IdleInfo(
        centre_name=cfg.centre_name,
        day=day,
        slot=slot,
        next_slot=next_slot,
        next_window=next_window,
        menu=lines,
        menu_set=menu is not None and bool(menu.items),
    )


# --------------------------------------------------------------------------- supervision


class RestartBudget:
    """At most ``limit`` restarts within ``window_s`` seconds."""

    def __init__(
        self, limit: int = 5, window_s: float = 600.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def spend(self) -> bool:
        """Record a restart; False when the budget is exhausted."""
        now = self._clock()
        with self._lock:
            while self._times and now - self._times[0] > self.window_s:
                self._times.popleft()
            if len(self._times) >= self.limit:
                return False
            self._times.append(now)
            return True

    @property
    def used(self) -> int:
        with self._lock:
            return len(self._times)


@dataclass
class _Worker:
    name: str
    target: Callable[[], None]
    thread: threading.Thread | None = None
    restarts: int = 0
    failed: bool = False


# --------------------------------------------------------------------------- runner


@dataclass(frozen=True)
class RunnerConfig:
    analysis_fps: float = 8.0  # detector + quality per second (cap)
    preview_fps: float = 15.0  # frames to the screen per second (cap)
    preview_max_width: int = 800
    identify_interval_s: float = 0.35  # between identify calls while Checking
    quality_hint_interval_s: float = 2.5  # between spoken quality hints while Checking
    presence_frames: int = 2  # consecutive frames with a face before FaceSeen
    presence_min_px: float = 48.0  # a face smaller than this is "someone far away"
    rearm_absent_s: float = 1.0  # after a session: the face must leave this long first
    idle_refresh_s: float = 30.0
    restart_limit: int = 5
    restart_window_s: float = 600.0
    stall_s: float = 10.0  # flow loop silent this long = unhealthy


@dataclass
class _Capture:
    target: int
    min_gap_s: float
    deadline: float
    frames: list[Image] = field(default_factory=list)
    last_at: float = 0.0
    done: threading.Event = field(default_factory=threading.Event)
    cancelled: bool = False


class KioskRunner:
    def __init__(
        self,
        *,
        context: ContextFactory,
        charge: ChargePort,
        clock: Clock,
        printer: PrinterPort | None = None,
        speaker: SpeakerPort | None = None,
        source: FrameSource | None = None,
        face: FacePort | None = None,
        config: RunnerConfig | None = None,
        on_print_failure: Callable[[str, str], None] | None = None,
        idle_info: Callable[[FlowContext, datetime], IdleInfo] = idle_info_from_context,
        last_payment: Callable[[], tuple[str, str, str] | None] | None = None,
        last_payment_s: float = 600.0,
        resolve: ResolvePort | None = None,
        shown: Callable[[str], object] | None = None,
        visitors: VisitorPort | None = None,
    ) -> None:
        self._context = context
        self._charge = charge
        self._resolve = resolve  # asked after a timeout or a crashing charge
        self._shown = shown  # told the request id once the senior saw "paid"
        self._printer = printer
        self._visitors = visitors
        self._speaker = speaker
        self._source = source
        self._face = face
        self._clock = clock
        self.config = config or RunnerConfig()
        self._on_print_failure = on_print_failure
        self._idle_info_fn = idle_info
        self._last_payment_fn = last_payment
        self._last_payment_s = last_payment_s
        self._last_payment: tuple[str, str, str] | None = None
        self._boot = time.monotonic()

        self._events: queue.Queue[Event | _RefreshIdle | None] = queue.Queue()
        self._charges: queue.Queue[ChargeRequest | ResolveCharge | None] = queue.Queue()
        self._prints: queue.Queue[Receipt | None] = queue.Queue()
        self._visits: queue.Queue[AskVisitor | ClaimSlot | None] = queue.Queue()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._subs: list[Subscriber] = []
        self._state: State = Idle()
        self._state_seq = 0
        self._state_at = clock.now()
        self._mode: Literal["pay", "staff"] = "pay"
        self._timers: dict[str, float] = {}
        self._overlay: tuple[Observation | None, str | None] = (None, None)
        self._challenge_view: ChallengeView | None = None
        self._capture: _Capture | None = None
        self._idle: IdleInfo | None = None
        self._health = DeviceHealth()
        self._fault: Fault | None = None
        self._budget = RestartBudget(self.config.restart_limit, self.config.restart_window_s)
        self._workers: list[_Worker] = []
        self._flow_beat = time.monotonic()
        self._face_beat: float | None = None  # set by the face loop while it runs
        self._started = False
        self._idle_loaded = 0.0
        # the most recent failed prints (record id, reason), for staff and tests;
        # bounded, so a kiosk without paper for weeks does not grow
        self.print_failures: deque[tuple[str, str]] = deque(maxlen=100)
        self.step_errors = 0

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._stop.clear()
        # fresh queues: a previous stop() left its wake-up markers behind
        self._events = queue.Queue()
        self._charges = queue.Queue()
        self._prints = queue.Queue()
        self._visits = queue.Queue()
        self._timers.clear()
        targets: list[tuple[str, Callable[[], None]]] = [
            ("kiosk-flow", self._flow_loop),
            ("kiosk-charge", self._charge_loop),
            ("kiosk-print", self._print_loop),
        ]
        if self._visitors is not None:
            targets.append(("kiosk-visit", self._visit_loop))
        if self._source is not None:
            self._source.start()
            targets.append(("kiosk-preview", self._preview_loop))
            if self._face is not None:
                targets.append(("kiosk-face", self._face_loop))
        for name, fn in targets:
            w = _Worker(name, fn)
            self._workers.append(w)
            self._spawn(w)
        self.refresh_idle()

    def set_source(self, source: FrameSource | None) -> None:
        """Swap the camera (only while stopped)."""
        if self._started:
            raise TerminalError("stop the kiosk before changing its camera", code="busy")
        self._source = source

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every thread (bounded). A charge in flight finishes first: its
        transaction either commits or does not happen."""
        if not self._started:
            return
        self._stop.set()
        self._events.put(None)
        self._charges.put(None)
        self._prints.put(None)
        self._visits.put(None)
        cap = self._capture
        if cap is not None:
            cap.cancelled = True
            cap.done.set()
        deadline = time.monotonic() + timeout
        for w in self._workers:
            t = w.thread
            if t is not None:
                t.join(max(0.05, deadline - time.monotonic()))
                if t.is_alive():
                    log.warning("kiosk_worker_stop_timeout", worker=w.name)
        if self._source is not None:
            try:
                self._source.stop()
            except Exception:
                log.exception("kiosk_source_stop_failed")
        self._workers.clear()
        self._started = False

    def _spawn(self, w: _Worker) -> None:
        w.thread = threading.Thread(target=self._supervise, args=(w,), name=w.name, daemon=True)
        w.thread.start()

    def _supervise(self, w: _Worker) -> None:
        """Run the worker; restart it after a crash while the budget lasts."""
        while not self._stop.is_set():
            try:
                w.target()
                return
            except Exception as exc:
                log.exception("kiosk_worker_crashed", worker=w.name, exc_type=type(exc).__name__)
                if self._stop.is_set():
                    return
                if not self._budget.spend():
                    w.failed = True
                    self._set_fault(
                        Fault("worker_failed", f"{w.name} kept failing ({type(exc).__name__})")
                    )
                    return
                w.restarts += 1
                self._stop.wait(min(5.0, 0.2 * 2**w.restarts))

    def healthy(self) -> bool:
        """For the watchdog: no fatal fault, every worker alive, the flow loop and
        (with a camera) the face loop ticking."""
        if self._fault is not None and self._fault.fatal:
            return False
        if not self._started:
            return False
        for w in self._workers:
            if w.failed or w.thread is None or not w.thread.is_alive():
                return False
        now = time.monotonic()
        if self._face_beat is not None and now - self._face_beat >= self.config.stall_s:
            return False  # the face loop is stuck (a model call that never returns ...)
        return now - self._flow_beat < self.config.stall_s

    @property
    def health(self) -> DeviceHealth:
        return self._health

    @property
    def fault(self) -> Fault | None:
        return self._fault

    def worker_restarts(self) -> dict[str, int]:
        return {w.name: w.restarts for w in self._workers}

    # ----------------------------------------------------------------- ports for the GUI

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        with self._lock:
            self._subs.append(fn)
            current: list[KioskUpdate] = [FlowView(self._state, self._state_at, self._state_seq)]
            if self._idle is not None:
                current.append(self._idle)
            current.append(self._health)
            if self._fault is not None:
                current.append(self._fault)
        for u in current:
            self._deliver(fn, u)

        def unsubscribe() -> None:
            with self._lock:
                if fn in self._subs:
                    self._subs.remove(fn)

        return unsubscribe

    def post(self, event: Event) -> None:
        self._events.put(event)

    def set_mode(self, mode: Literal["pay", "staff"]) -> None:
        with self._lock:
            self._mode = mode
        log.info("kiosk_mode", mode=mode)

    @property
    def mode(self) -> str:
        return self._mode

    def current(self) -> FlowView:
        with self._lock:
            return FlowView(self._state, self._state_at, self._state_seq)

    def refresh_idle(self) -> None:
        """Re-read the idle info (menu) on the flow thread."""
        self._events.put(_RefreshIdle())

    # ----------------------------------------------------------------- enrolment capture

    def capture_faces(
        self, target: int = 5, timeout_s: float = 30.0, min_gap_s: float = 0.3
    ) -> list[Image]:
        """Collect ``target`` frames that pass the quality gate with exactly one
        face (blocking; call from a worker thread). Progress is published as
        :class:`EnrolProgress`. Returns what was collected by the deadline (may
        be fewer); raises :class:`TerminalError` when cancelled or without a camera."""
        if self._source is None or self._face is None:
            raise TerminalError("no camera is available for enrolment", code="no_camera")
        cap = _Capture(target, min_gap_s, time.monotonic() + timeout_s)
        with self._lock:
            if self._capture is not None:
                raise TerminalError("an enrolment capture is already running", code="busy")
            self._capture = cap
        self._publish(EnrolProgress(0, target))
        try:
            cap.done.wait(timeout_s + 1.0)
        finally:
            with self._lock:
                self._capture = None
        if cap.cancelled:
            raise TerminalError("enrolment cancelled", code="cancelled")
        return list(cap.frames)

    def cancel_capture(self) -> None:
        cap = self._capture
        if cap is not None:
            cap.cancelled = True
            cap.done.set()

    # ----------------------------------------------------------------- publishing

    def _deliver(self, fn: Subscriber, update: KioskUpdate) -> None:
        try:
            fn(update)
        except Exception:
            log.exception("kiosk_subscriber_failed")

    def _publish(self, update: KioskUpdate) -> None:
        with self._lock:
            subs = list(self._subs)
        for fn in subs:
            self._deliver(fn, update)

    def _set_fault(self, fault: Fault) -> None:
        self._fault = fault
        log.error("kiosk_fault", code=fault.code, detail=fault.message)
        self._publish(fault)

    def _set_health(self, **changes: Health) -> None:
        new = replace(self._health, **changes)
        if new != self._health:
            self._health = new
            self._publish(new)

    # ----------------------------------------------------------------- flow thread

    def _flow_loop(self) -> None:
        while not self._stop.is_set():
            self._flow_beat = time.monotonic()
            timeout = 1.0
            if self._timers:
                timeout = max(0.0, min(min(self._timers.values()) - time.monotonic(), 1.0))
            try:
                ev = self._events.get(timeout=timeout)
            except queue.Empty:
                ev = None
            if self._stop.is_set():
                return
            now_m = time.monotonic()
            for name, due in list(self._timers.items()):
                if due <= now_m:
                    self._timers.pop(name, None)
                    self._handle(Timeout(name))
            if isinstance(ev, _RefreshIdle):
                self._load_idle()
            elif ev is not None:
                self._handle(ev)
            if self._idle is None or now_m - self._idle_loaded > self.config.idle_refresh_s:
                self._load_idle()

    def _load_idle(self) -> None:
        self._idle_loaded = time.monotonic()
        try:
            info = self._idle_info_fn(self._context(), self._clock.now())
            if self._last_payment_fn is not None and self._idle is None:
                self._last_payment = self._last_payment_fn()  # once, at start
        except Exception:
            log.exception("kiosk_idle_info_failed")
            return
        if self._last_payment and time.monotonic() - self._boot < self._last_payment_s:
            info = replace(info, last_payment=self._last_payment)
        if info != self._idle:
            self._idle = info
            self._publish(info)

    def _handle(self, event: Event) -> None:
        now = self._clock.now()
        old = self._state
        try:
            new, effects = step(old, event, now, self._context())
        except Exception as exc:
            # A broken context (storage error) must not leave the senior stuck:
            # go back to Idle (nothing was charged: charges only happen through effects).
            self.step_errors += 1
            log.exception("kiosk_step_failed", on=type(event).__name__, exc_type=type(exc).__name__)
            if not self._budget.spend():
                self._set_fault(
                    Fault("flow_failed", f"the payment flow keeps failing ({type(exc).__name__})")
                )
                return
            new, effects = Idle(old.session), []
            self._timers.clear()
        if new != old:
            with self._lock:
                self._state = new
                self._state_seq += 1
                self._state_at = now
                view = FlowView(new, now, self._state_seq)
            log.info(
                "kiosk_state",
                state=type(new).__name__,
                on=type(event).__name__,
                session=new.session,
            )
            self._publish(view)
        for eff in effects:
            self._execute(eff)

    def _execute(self, eff: Effect) -> None:
        if isinstance(eff, Charge):
            self._charges.put(eff.request)
        elif isinstance(eff, ResolveCharge):
            self._charges.put(eff)  # behind the charge itself, on the same thread
        elif isinstance(eff, Print):
            self._prints.put(eff.receipt)
        elif isinstance(eff, Speak):
            # the speaker port (if any) and every subscriber (the GUI plays it)
            if self._speaker is not None:
                try:
                    self._speaker(eff.key)
                except Exception:
                    log.exception("kiosk_speak_failed", key=eff.key)
            self._publish(SpeakRequest(eff.key))
        elif isinstance(eff, StartTimer):
            self._timers[eff.name] = time.monotonic() + eff.seconds
        elif isinstance(eff, CancelTimer):
            self._timers.pop(eff.name, None)
        elif isinstance(eff, AskVisitor | ClaimSlot):
            if self._visitors is None:  # nobody to ask: not known / decide as offline
                self.post(_no_port_answer(eff))
            else:
                self._visits.put(eff)

    # ----------------------------------------------------------------- charge / print

    def _charge_loop(self) -> None:
        """Charges, and resolutions of charges that outlived the flow's timeout.

        A crashing charge is not reported as failed on a guess: the store says
        by request id whether it landed (then it is paid) or can no longer land
        (then it failed); when the store cannot tell yet, nothing is posted and
        the flow keeps showing "still checking" and asks again."""
        while not self._stop.is_set():
            item = self._charges.get()
            if item is None:
                return
            if isinstance(item, ResolveCharge):
                req = item.request
                result = self._resolve_charge(req)
                log.info("kiosk_charge_resolved", result=type(result).__name__)
            else:
                req = item
                t0 = time.perf_counter()
                try:
                    result = self._charge(req)
                except Exception as exc:
                    log.exception("kiosk_charge_crashed", exc_type=type(exc).__name__)
                    if self._resolve is None:
                        result = ChargeFailed(req.session, "charge_failed")
                    else:
                        result = self._resolve_charge(req)
                log.info(
                    "kiosk_charge_done",
                    result=type(result).__name__,
                    ms=round((time.perf_counter() - t0) * 1000, 1),
                )
            if result is not None:
                self.post(result)
                if isinstance(result, ChargeCommitted):
                    self._mark_shown(req)

    def _resolve_charge(self, req: ChargeRequest) -> Event | None:
        if self._resolve is None:
            return None  # the charge's own result is the only answer
        try:
            return self._resolve(req)
        except Exception as exc:
            log.exception("kiosk_charge_resolve_failed", exc_type=type(exc).__name__)
            return None

    def _mark_shown(self, req: ChargeRequest, timeout: float = 2.0) -> None:
        """Once the flow shows Done for this charge, tell the store the senior
        saw "paid" (a charge committed but never shown is reported at the next
        start-up instead)."""
        if self._shown is None or not req.request_id:
            return
        deadline = time.monotonic() + timeout
        while not self._stop.is_set() and time.monotonic() < deadline:
            with self._lock:
                st = self._state
            if isinstance(st, Done) and st.session == req.session:
                try:
                    self._shown(req.request_id)
                except Exception as exc:
                    log.exception("kiosk_mark_shown_failed", exc_type=type(exc).__name__)
                return
            self._stop.wait(0.01)

    def _visit_loop(self) -> None:
        """Visiting seniors: the district port's answers back into the flow. A
        port that raises answers "unknown" / "no answer" (the flow decides as
        offline or says the card is not known), never nothing."""
        port = self._visitors
        assert port is not None
        while not self._stop.is_set():
            item = self._visits.get()
            if item is None:
                return
            t0 = time.perf_counter()
            try:
                result = answer(port, item)
            except Exception as exc:
                log.exception("kiosk_visit_failed", exc_type=type(exc).__name__)
                result = _no_port_answer(item)
            log.info(
                "kiosk_visit_done",
                effect=type(item).__name__,
                ms=round((time.perf_counter() - t0) * 1000, 1),
            )
            if result is not None:
                self.post(result)

    def _print_loop(self) -> None:
        while not self._stop.is_set():
            receipt = self._prints.get()
            if receipt is None:
                return
            if self._printer is None:
                ok, reason = False, "no_printer"
            else:
                try:
                    ok, reason = self._printer(receipt)
                except Exception as exc:
                    log.exception("kiosk_print_crashed")
                    ok, reason = False, type(exc).__name__
            if not ok:
                self.print_failures.append((receipt.record_id, reason))
                if self._on_print_failure is not None:
                    try:
                        self._on_print_failure(receipt.record_id, reason)
                    except Exception:
                        log.exception("kiosk_print_failure_record_failed")
            self._set_health(
                printer="ok" if ok else ("absent" if reason == "no_printer" else "offline")
            )
            self.post(PrintResult(ok, reason))

    # ----------------------------------------------------------------- camera

    def _wait_frame(self, after: int, timeout: float) -> Frame | None:
        src = self._source
        assert src is not None
        if isinstance(src, _WaitingSource):
            return src.wait_frame(after, timeout)
        frame = src.latest()
        if frame is None or frame.seq <= after:
            self._stop.wait(min(timeout, 0.02))
            return None
        return frame

    def _camera_health(self) -> None:
        try:
            st = self._source.status() if self._source is not None else None
            ok = st is not None and bool(st.ok)
            state = "" if st is None else str(st.state)
        except Exception:
            ok, state = False, "error"
        self._set_health(camera="ok" if ok else ("offline" if state != "ended" else "degraded"))

    def _preview_loop(self) -> None:
        period = 1.0 / self.config.preview_fps
        last_seq = 0
        next_at = 0.0
        while not self._stop.is_set():
            frame = self._wait_frame(last_seq, 0.5)
            if frame is None:
                self._camera_health()
                continue
            last_seq = frame.seq
            now = time.monotonic()
            if now < next_at:
                continue  # latest-frame-wins: skip, the next one is newer
            next_at = now + period
            with self._lock:
                has_subs = bool(self._subs)
            if has_subs:
                self._publish(self._preview(frame))

    def _preview(self, frame: Frame) -> PreviewFrame:
        from face.pipeline import display_frame

        rgb, k = display_frame(frame.image, self.config.preview_max_width)
        obs, guidance = self._overlay
        box = None
        if obs is not None:
            box = (obs.box[0] / k, obs.box[1] / k, obs.box[2] / k, obs.box[3] / k)
        return PreviewFrame(
            seq=frame.seq,
            captured=frame.ts,
            image=rgb,
            box=box,
            box_ok=bool(obs is not None and obs.ok),
            guidance=guidance,
            faces=obs.faces if obs is not None else 0,
        )

    def _face_loop(self) -> None:
        face = self._face
        assert face is not None
        cfg = self.config
        period = 1.0 / cfg.analysis_fps
        last_seq = 0
        present_run = 0
        armed = True
        absent_since: float | None = None
        last_state: State = Idle()
        last_identify = 0.0
        last_hint = 0.0
        identified_key: tuple[int, int] | None = None
        checking_session = -1
        challenge: ChallengeSession | None = None
        challenge_key: tuple[int, int, str] | None = None
        challenge_done: tuple[int, int, str] | None = None
        while not self._stop.is_set():
            self._face_beat = time.monotonic()  # alive, with or without a camera frame
            frame = self._wait_frame(last_seq, 0.5)
            if frame is None:
                self._camera_health()
                continue
            last_seq = frame.seq
            t0 = time.monotonic()
            image = frame.image
            with self._lock:
                state = self._state
                mode = self._mode
                cap = self._capture
            # What this frame is analysed for, decided before the one pass over it:
            # guidance always; in Checking also who it is (when it is time to ask
            # again); in Challenge the frame of the liveness challenge.
            identify = False
            judge: ChallengeSession | None = None
            if cap is None and mode == "pay":
                if isinstance(state, Checking):
                    identify = (
                        identified_key != (state.session, state.retries)
                        and t0 - last_identify >= cfg.identify_interval_s
                    )
                elif isinstance(state, Challenge):
                    ckey = (state.session, state.attempt, state.kind)
                    if challenge_done != ckey:  # else: result posted, the flow moves on
                        if challenge is None or challenge_key != ckey:
                            rid = state.face.resident_id or ""
                            challenge = face.challenge(state.kind, t0, rid)
                            challenge_key = ckey
                        self._show_challenge(state.kind, challenge, t0)
                        judge = challenge
            step: ChallengeStep | None = None
            try:
                if judge is not None:
                    # every frame of the attempt is judged, a frame without a face too
                    step = judge.feed(t0, image)
                    obs = step.observation
                else:
                    obs = face.observe(image, identify=identify)
            except TerminalError as exc:
                log.warning("kiosk_observe_failed", code=exc.code)
                obs = None
            self._set_health(camera="ok")
            # overlay for the preview: the guidance key of the current face
            guidance = obs.guidance if obs is not None else None
            self._overlay = (obs, guidance)

            if cap is not None:
                self._feed_capture(cap, obs, image, t0)
            elif mode == "pay":
                # session bookkeeping: re-arm only after the face has left the frame
                # (no time-based re-arm: a senior who stays in view after Done is
                # not asked to pay again)
                if not isinstance(state, Idle) and isinstance(last_state, Idle):
                    armed = False
                if isinstance(state, Idle) and not isinstance(last_state, Idle):
                    armed = False
                    absent_since = None
                last_state = state
                if obs is None or obs.width < cfg.presence_min_px:
                    absent_since = absent_since if absent_since is not None else t0
                    present_run = 0
                else:
                    absent_since = None
                    present_run += 1
                if (
                    not armed
                    and absent_since is not None
                    and t0 - absent_since >= cfg.rearm_absent_s
                ):
                    armed = True
                if isinstance(state, Idle):
                    challenge = None
                    if armed and present_run >= cfg.presence_frames:
                        armed = False  # one FaceSeen per approach
                        self.post(FaceSeen())
                elif isinstance(state, Checking):
                    challenge = None
                    if state.session != checking_session:
                        checking_session = state.session
                        last_hint = t0  # the first spoken hint only after a while
                    key = (state.session, state.retries)
                    if obs is not None and identified_key != key:
                        if obs.ok and identify:
                            last_identify = t0
                            if obs.identified is not None:
                                identified_key = key
                                self.post(obs.identified)
                        elif (
                            not obs.ok
                            and obs.width >= cfg.presence_min_px
                            and t0 - last_hint >= cfg.quality_hint_interval_s
                        ):
                            # a spoken hint now and then; the screen shows it every frame
                            last_hint = t0
                            identified_key = key
                            self.post(FaceResult("unknown", None, 0.0, 0.0, obs.reason))
                elif isinstance(state, Challenge):
                    if step is not None and step.result is not None:
                        self.post(step.result)
                        challenge = None
                        challenge_done = challenge_key
                else:
                    challenge = None
            # cap the analysis rate
            spent = time.monotonic() - t0
            if spent < period:
                self._stop.wait(period - spent)

    def _show_challenge(self, kind: str, challenge: ChallengeSession, now: float) -> None:
        """Publish (and say) what the challenge asks now, when it changed."""
        prompt = challenge.prompt(now)
        view = self._challenge_view
        if view is not None and (view.prompt, view.deadline_s) == (prompt, challenge.deadline):
            return
        view = ChallengeView(kind, prompt, challenge.deadline)
        self._challenge_view = view
        self._publish(view)
        # what the screen asks (no id): a technician can follow a senior's attempt
        log.info("kiosk_challenge_prompt", prompt=prompt)
        if prompt != "face.liveness.hold":
            # say which side (or to blink), when asked; the pay.* keys have voice files
            what = prompt.rsplit(".", 1)[1]
            self._execute(Speak(f"pay.challenge.{what}"))

    def _feed_capture(
        self, cap: _Capture, obs: Observation | None, image: Image, now: float
    ) -> None:
        guidance = obs.guidance if obs is not None else None
        if obs is not None and obs.ok and obs.faces == 1 and now - cap.last_at >= cap.min_gap_s:
            cap.frames.append(image.copy())
            cap.last_at = now
        finished = len(cap.frames) >= cap.target or now >= cap.deadline or cap.cancelled
        self._publish(EnrolProgress(len(cap.frames), cap.target, guidance, finished))
        if finished:
            cap.done.set()


def _no_port_answer(eff: AskVisitor | ClaimSlot) -> Event:
    if isinstance(eff, AskVisitor):
        return VisitorAnswered(eff.session, None)
    return SlotClaimAnswered(eff.session, ClaimOutcome.UNAVAILABLE, "")


class _RefreshIdle:
    """Internal queue marker: reload the idle info."""


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until true or ``timeout`` (tests and the bench)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def collect_states(updates: Iterable[KioskUpdate]) -> list[str]:
    """Names of the flow states in a list of updates (tests and the bench)."""
    return [type(u.state).__name__ for u in updates if isinstance(u, FlowView)]


__all__ = [
    "KioskRunner",
    "RestartBudget",
    "RunnerConfig",
    "collect_states",
    "idle_info_from_context",
    "wait_for",
]
