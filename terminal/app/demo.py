"""``care-terminal kiosk --demo``: a complete kiosk on a simulated camera.

What the demo sets up, all on this machine:

* a fresh data directory (``$XDG_DATA_HOME/care-terminal/demo`` unless told
  otherwise; everything in it is recreated on every start);
* the open model pack (the one ``care-terminal models fetch`` built);
* demo residents with fictitious names, categories, phone last-4 and cards,
  wallets topped up with cash by a demo staff member, today's menu and a
  district subsidy policy, and six days of earlier meals (so the manager view
  has something to show);
* faces: the group photo ``t1.jpg`` that the insightface wheel installs
  (``insightface/data/images``; insightface is MIT-licensed, the photo is a
  publicity still of a TV cast shipped as the library's sample). The faces are
  found with our own detector and enrolled for the demo residents; nothing of
  these images is copied into the repository or the docs;
* a simulated camera (``face.liveness_synth.SimulatedKioskCamera``): those
  faces, lifted onto 3-D heads, walk up one after another, and when the kiosk
  asks them to turn their head to one side they do, like a senior would;
* the reference platform server (``sync.platform``) on a free loopback port,
  with this terminal registered, and a background sync every 20 s;
* staff PINs: ``2468`` (staff 王护理) and ``1357`` (manager 赵主任).

The liveness challenge is the device's: the simulated people pass it because
they really turn (3-D parallax, re-identified on every frame), and a photo
held to a real camera would not. Meal windows cover the whole day so the demo
works at any hour.
"""

from __future__ import annotations

import importlib.util
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from terminal.core.clock import CHINA_TZ
from terminal.core.errors import TerminalError
from terminal.core.log import get_logger
from terminal.core.money import Money

log = get_logger(__name__)

DEMO_CENTRE = "阳光社区居家养老服务照料中心"
DEMO_SLOT_WINDOWS = {"breakfast": "00:00-10:00", "lunch": "10:00-15:00", "dinner": "15:00-23:59"}
VISITOR = 2  # t1.jpg#2: not enrolled, looking down (guidance, then the card path)
DEMO_STAFF = (("S01", "王护理", "2468", "staff"), ("M01", "赵主任", "1357", "manager"))


class ShiftedClock:
    """Real time flowing from a chosen start (``at``), or plain system time.

    Lets the demo, the screenshots and the tests run "at lunch time" whenever
    they run; ``monotonic`` is the real one, so timers behave normally.
    """

    def __init__(self, at: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self.set(at)

    def set(self, at: datetime | None) -> None:
        if at is not None and at.tzinfo is None:
            raise TerminalError("the demo clock needs a time with a time zone")
        with self._lock:
            self._base = at
            self._mono = time.monotonic()

    def now(self) -> datetime:
        with self._lock:
            if self._base is None:
                return datetime.now(CHINA_TZ)
            return self._base + timedelta(seconds=time.monotonic() - self._mono)

    def monotonic(self) -> float:
        return time.monotonic()


@dataclass(frozen=True)
class DemoResident:
    resident_id: str
    name: str
    categories: tuple[str, ...]
    phone_last4: str
    card: str
    balance_yuan: int = 500
    face: int | None = None  # index of the face cut-out enrolled, None: card only
    attendance: bool = True


DEMO_RESIDENTS: tuple[DemoResident, ...] = (
    DemoResident("D001", "张桂华", ("age_80_89", "dibao"), "1234", "20260001", face=0),
    DemoResident("D002", "王秀英", ("age_90_plus",), "3456", "20260002", face=5),
    DemoResident("D003", "李建国", ("age_70_79",), "2345", "20260003"),
    DemoResident("D004", "刘德明", ("tekun", "age_60_69"), "4567", "20260004"),
    DemoResident("D005", "陈淑芬", ("age_60_69",), "5678", "20260005"),
    DemoResident("D006", "杨志强", ("disabled", "age_70_79"), "6789", "20260006"),
    DemoResident("D007", "赵玉兰", ("age_80_89",), "7890", "20260007"),
    DemoResident("D008", "孙福来", ("dibian", "age_70_79"), "8901", "20260008"),
    DemoResident("D009", "周凤英", ("age_70_79",), "9012", "20260009"),
    DemoResident("D010", "吴长顺", ("age_60_69",), "0123", "20260010", balance_yuan=30),
)

DEMO_POLICY: dict[str, Any] = {
    "policy_id": "demo-district-2026",
    "version": 1,
    "effective_from": "2020-01-01",
    "rules": [
        {"category": "tekun", "slot": "*", "type": "percent", "basis_points": 8000},
        {"category": "dibao", "slot": "*", "type": "percent", "basis_points": 5000, "cap_fen": 800},
        {"category": "dibian", "slot": "lunch", "type": "fixed", "amount_fen": 500},
        {"category": "disabled", "slot": "lunch", "type": "fixed", "amount_fen": 500},
        {"category": "age_90_plus", "slot": "*", "type": "percent", "basis_points": 6000},
        {
            "category": "age_80_89",
            "slot": "lunch",
            "type": "fixed",
            "amount_fen": 400,
            "floor_fen": 100,
        },
        {
            "category": "age_70_79",
            "slot": "lunch",
            "type": "fixed",
            "amount_fen": 300,
            "floor_fen": 100,
        },
        {
            "category": "age_60_69",
            "slot": "lunch",
            "type": "fixed",
            "amount_fen": 200,
            "floor_fen": 100,
        },
    ],
}


def demo_menu(day: date) -> Any:
    from payment.domain import Menu

    return Menu.from_dict(
        {
            "date": day.isoformat(),
            "items": [
                {"item_id": "B1", "name": "营养早餐", "price_fen": 500, "slots": ["breakfast"]},
                {
                    "item_id": "L1",
                    "name": "午餐套餐（两荤一素）",
                    "price_fen": 1500,
                    "slots": ["lunch"],
                },
                {"item_id": "L2", "name": "软烂老年餐", "price_fen": 1200, "slots": ["lunch"]},
                {"item_id": "D1", "name": "晚餐套餐", "price_fen": 1200, "slots": ["dinner"]},
                {
                    "item_id": "X1",
                    "name": "小米粥",
                    "price_fen": 200,
                    "slots": ["breakfast", "dinner"],
                    "kind": "item",
                    "subsidisable": False,
                },
                {
                    "item_id": "X2",
                    "name": "水果",
                    "price_fen": 300,
                    "slots": ["lunch", "dinner"],
                    "kind": "item",
                    "subsidisable": False,
                },
            ],
        }
    )


# --------------------------------------------------------------------------- faces


def insightface_sample() -> Path:
    """``t1.jpg`` from the installed insightface wheel (located without
    importing the package; ``face`` is the only layer that imports it)."""
    spec = importlib.util.find_spec("insightface")
    if spec is None or spec.origin is None:
        raise TerminalError("the demo needs the insightface package for its sample faces")
    path = Path(spec.origin).resolve().parent / "data" / "images" / "t1.jpg"
    if not path.is_file():
        raise TerminalError(f"insightface's sample photo is missing at {path}")
    return path


def demo_sprites(engine: Any, side_px: int = 360) -> list[Any]:
    """Face cut-outs of the sample group photo, left to right (t1.jpg#0..5).

    Only #0 and #5 face the camera well enough for the quality gate (the others
    look down at their cards: pitch 34-37 degrees, or aside), so only those two
    are enrolled; #2 walks up unenrolled and looking down, to show guidance and
    the card fallback.
    """
    from face.footfall.synth import cut_sprite
    from face.pipeline import load_image

    path = insightface_sample()
    image = load_image(path)
    faces = sorted(engine.detect(image), key=lambda f: f.box[0])
    if len(faces) < 6:
        raise TerminalError(f"expected 6 faces in {path.name}, found {len(faces)}")
    return [
        cut_sprite(image, f.box, f"{path.name}#{i}", f"demo#{i}", side_px=side_px)
        for i, f in enumerate(faces[:6])
    ]


def demo_people(engine: Any) -> list[tuple[Any, Any]]:
    """(photo, 68 landmarks) of the people who walk up to the demo camera: the
    enrolled residents, then the unenrolled visitor."""
    from face.pipeline import load_image

    image = load_image(insightface_sample())
    faces = sorted(engine.detect(image), key=lambda f: f.box[0])
    order = [r.face for r in DEMO_RESIDENTS if r.face is not None] + [VISITOR]
    return [(image, faces[i].landmarks68) for i in order if faces[i].landmarks68 is not None]


CONFIRM_TAP_AFTER_S = 2.0  # a senior reads the confirm screen, then taps 确认支付


def answer_prompts(camera: Any, runner: Any = None) -> Any:
    """A kiosk subscriber that makes the simulated person do what the kiosk asks:
    turn their head when the challenge says so and, with ``runner``, tap 确认支付
    on the confirm screen after :data:`CONFIRM_TAP_AFTER_S` (unless someone at
    the screen answered first)."""
    from payment.flow import Confirm, Touch
    from ui.model import ChallengeView, FlowView

    def tap_if_still(state: Any) -> None:
        if runner.current().state is state:
            runner.post(Touch("confirm"))

    def on_update(update: Any) -> None:
        if isinstance(update, ChallengeView) and update.prompt.startswith("face.liveness.turn_"):
            camera.respond(update.prompt.rsplit("_", 1)[1])
        elif (
            runner is not None
            and isinstance(update, FlowView)
            and isinstance(update.state, Confirm)
        ):
            timer = threading.Timer(CONFIRM_TAP_AFTER_S, tap_if_still, (update.state,))
            timer.daemon = True
            timer.start()

    return on_update


# --------------------------------------------------------------------------- set-up


@dataclass
class DemoSetup:
    services: Any
    base: Path
    people: list[tuple[Any, Any]] = field(default_factory=list)  # (photo, 68 landmarks)
    platform: Any | None = None
    sync_lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def camera(self) -> Any:
        """The simulated camera: the demo's people walk up and answer the challenge."""
        from face.liveness_synth import SimulatedKioskCamera

        return SimulatedKioskCamera(self.people)

    def sync_once(self) -> dict[str, Any]:
        """One sync cycle with the platform (serialised within this process)."""
        from sync.agent import sync_now

        with self.sync_lock:
            return sync_now(self.services.settings, self.services.clock)

    def start_sync_loop(self, period_s: float = 20.0) -> None:
        if self.platform is None or self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(period_s):
                try:
                    self.sync_once()
                except Exception as exc:
                    log.warning("demo_sync_failed", error=type(exc).__name__)

        self._thread = threading.Thread(target=loop, name="demo-sync", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        if self.platform is not None:
            self.platform.stop()
            self.platform = None
        self.services.close()


def default_demo_dir() -> Path:
    from terminal.config.settings import default_data_dir

    return default_data_dir() / "demo"


def find_pack_dir(explicit: Path | None = None) -> Path:
    """The open pack: explicit, else the one ``models fetch`` built."""
    from terminal.config.settings import load_settings

    pack = explicit or load_settings().face_pack_dir
    if not (pack / "manifest.json").is_file():
        raise TerminalError(
            f"no model pack at {pack}; run './run setup' or 'care-terminal models fetch' first"
        )
    return pack


def prepare_demo(
    base: Path | None = None,
    *,
    pack_dir: Path | None = None,
    at: datetime | None = None,
    platform: bool = True,
    history_days: int = 6,
    progress: Callable[[str], None] | None = None,
) -> DemoSetup:
    """Create the demo world (see the module docstring). Takes a few seconds."""
    from face.enrol import apply_to_gallery, enrol
    from terminal.app.services import Services
    from terminal.config.settings import Settings
    from terminal.db.engine import write_session
    from terminal.kiosk.pins import StaffPins

    say = progress or (lambda _m: None)
    base = base or default_demo_dir()
    pack = find_pack_dir(pack_dir)
    state = base / "state"
    if state.exists():
        shutil.rmtree(state)
    state.mkdir(parents=True)
    clock = ShiftedClock(at)

    handle = None
    platform_url = "http://127.0.0.1:9"  # nothing listens: sync shows offline
    device_id, centre_id = "demo-terminal-01", "demo-centre"
    key_file = state / "keys" / "device_ed25519.pem"
    if platform:
        from sync.auth import provision_device_key
        from sync.platform.server import serve

        say("starting the reference platform server")
        public = provision_device_key(key_file)
        handle = serve(
            "127.0.0.1",
            0,
            f"sqlite:///{state / 'platform.db'}",
            seed={
                "devices": [{"device_id": device_id, "centre_id": centre_id, "public_key": public}]
            },
        )
        platform_url = handle.url

    settings = Settings(
        data_dir=state,
        cache_dir=base / "cache",
        face={"pack_dir": pack, "liveness_challenge_seconds": 6.0},
        camera={"source": "simulated"},
        centre={"centre_id": centre_id, "centre_name": DEMO_CENTRE, "device_id": device_id},
        payment={
            "slot_windows": DEMO_SLOT_WINDOWS,
            "max_unsynced_per_resident_fen": 100_000,
        },
        sync={"platform_url": platform_url, "device_key_file": key_file, "idle_interval_s": 20.0},
    )
    services = Services(settings, clock=clock)
    setup = DemoSetup(services=services, base=base, platform=handle)
    try:
        say("loading the face models")
        rec = services.recogniser
        sprites = demo_sprites(rec.engine)
        today = clock.now().date()
        store = services.payment
        pins = StaffPins(state / "staff" / "pins.json")
        for sid, name, pin, role in DEMO_STAFF:
            pins.set_pin(sid, name, pin, role)  # type: ignore[arg-type]
        say("enrolling the demo residents")
        start = clock.now()
        history_start = datetime.combine(
            today - timedelta(days=history_days + 1), datetime.min.time(), CHINA_TZ
        )
        clock.set(history_start.replace(hour=8))
        with write_session(services.db.sessions) as s:
            for r in DEMO_RESIDENTS:
                services.roster.upsert(
                    s,
                    r.resident_id,
                    r.name,
                    clock.now(),
                    categories=list(r.categories),
                    card_ids=[r.card],
                    phone_last4=r.phone_last4,
                    consent_face_pay=r.face is not None,
                    consent_attendance=r.attendance,
                )
        for r in DEMO_RESIDENTS:
            if r.face is None:
                continue
            sp = sprites[r.face]
            plan = rec.plan_enrolment([(sp.key, sp.image, None)])
            with write_session(services.db.sessions) as s:
                enrol(
                    s,
                    services.roster,
                    services.templates,
                    services.outbox,
                    rec,
                    plan,
                    r.resident_id,
                    r.name,
                    clock.now(),
                    consent_face_pay=True,
                    consent_attendance=r.attendance,
                    allow_duplicate_face=True,
                )
            apply_to_gallery(rec, r.resident_id, plan)
        store.set_policy(DEMO_POLICY)
        for r in DEMO_RESIDENTS:
            store.topup(
                r.resident_id, Money(r.balance_yuan * 100), "S01", reason="demo opening balance"
            )
        say("writing a week of earlier meals")
        _history(services, clock, today, history_days, start)
        clock.set(at)
        store.set_menu(demo_menu(today), "S01")
        say("lifting the demo faces onto 3-D heads for the simulated camera")
        setup.people = demo_people(rec.engine)
    except BaseException:
        setup.close()
        raise
    return setup


def _history(services: Any, clock: ShiftedClock, today: date, days: int, until: datetime) -> None:
    """Earlier meals through the real flow and store (staff lookups)."""
    from payment.domain import MealSlot
    from payment.flow import Charge, Event, StaffLookup, Touch
    from payment.headless import drive

    store = services.payment
    card_only = [r for r in DEMO_RESIDENTS if r.face is None]
    everyone = list(DEMO_RESIDENTS)
    for back in range(days, -1, -1):
        day = today - timedelta(days=back)
        store_menu_day = demo_menu(day)
        clock.set(datetime.combine(day, datetime.min.time(), CHINA_TZ).replace(hour=6))
        store.set_menu(store_menu_day, "S01")
        # today: only the residents who do not walk past the demo camera
        people = card_only if back == 0 else everyone
        plan = [
            (7, 40, MealSlot.BREAKFAST, people[: 3 + back % 3]),
            (11, 20, MealSlot.LUNCH, people[: len(people) - back % 2]),
            (17, 10, MealSlot.DINNER, people[: 2 + back % 2]),
        ]
        for hour, minute, slot, group in plan:
            for i, r in enumerate(group):
                when = datetime.combine(day, datetime.min.time(), CHINA_TZ).replace(
                    hour=hour + (i * 7) // 60, minute=(minute + i * 7) % 60
                )
                if when >= until:
                    continue
                clock.set(when)
                events: list[Event] = [StaffLookup(r.resident_id, "S01", slot), Touch("confirm")]
                d = drive(store.context(), store.charge, events, clock.now)
                for eff in d.effects:  # an earlier meal, long since shown to its senior
                    if isinstance(eff, Charge):
                        store.mark_shown(eff.request.request_id, by="demo")
                # (a resident short of money simply gets no meal record; fine for a demo)


__all__ = [
    "DEMO_RESIDENTS",
    "DEMO_STAFF",
    "DemoResident",
    "DemoSetup",
    "ShiftedClock",
    "answer_prompts",
    "demo_menu",
    "demo_people",
    "demo_sprites",
    "prepare_demo",
]
