"""A small centre for service tests: a database with a roster, an enrolled
gallery, and a short clip of known people."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from face.footfall import synth
from face.gallery import Gallery
from face.sources import Frame, SourceState, SourceStatus
from terminal.core.clock import CHINA_TZ, FakeClock
from terminal.db.crypto import FieldCipher
from terminal.db.database import Database, open_database
from terminal.db.engine import write_session
from terminal.db.outbox import Outbox
from terminal.db.roster import RosterStore

START = datetime(2026, 1, 5, 9, 59, 50, tzinfo=CHINA_TZ)  # the clip runs across 10:00

# resident id -> (enrolment photos, consent_attendance); the clip uses *other* photos
RESIDENTS = {
    "S-OBAMA": (["fr_obama_obama.jpg", "fr_obama_obama1.jpg"], True),
    "S-ROSE": (["fr_rose_leslie_img1.jpg"], False),  # enrolled, did not consent
    "STAFF-BIDEN": (["fr_biden_biden.jpg"], False),  # staff, excluded by enrolment
}
STAFF = ("STAFF-BIDEN",)


def service_scene() -> synth.Scene:
    top, bot = -40.0, 540.0
    w = synth._wp
    return synth.Scene(
        name="centre_day",
        duration=22.0,
        actors=(
            synth.Actor("fr_obama_obama2.jpg", w((0.0, 150, top), (4.0, 160, bot))),
            synth.Actor("fr_kit_harington_john1.jpeg", w((2.0, 470, top), (6.0, 460, bot))),
            synth.Actor("fr_biden_biden2.jpg", w((5.0, 300, top), (9.0, 300, bot))),
            synth.Actor("fr_rose_leslie_img2.jpg", w((8.0, 150, top), (12.0, 160, bot))),
            synth.Actor("fr_biden_biden2.jpg", w((12.0, 480, bot), (16.0, 470, top))),
            synth.Actor("fr_obama_obama2.jpg", w((13.0, 200, bot), (17.0, 200, top))),
            synth.Actor("fr_obama_obama3.jpg", w((17.5, 330, top), (21.5, 330, bot))),
        ),
        notes=("attendance", "staff", "not-consented", "unknown", "repeat"),
    )


# What the clip must produce (staff crossings excluded)
EXPECT = {
    "visits_in": 4,
    "visits_out": 1,
    "unique_visitors": 3,
    "attendance": ["S-OBAMA"],
    "staff_crossings": 2,
}


@dataclass
class Centre:
    db: Database
    outbox: Outbox
    clock: FakeClock
    gallery: Gallery
    data_dir: Path

    def close(self) -> None:
        self.db.close()


def make_centre(data_dir: Path, engine: Any, faces: Path) -> Centre:
    data_dir.mkdir(parents=True, exist_ok=True)
    db = open_database(f"sqlite:///{data_dir / 'terminal.db'}")
    cipher = FieldCipher(b"k" * 32)
    roster = RosterStore(cipher)
    clock = FakeClock(START)
    gallery = Gallery()
    with write_session(db.sessions) as s:
        for rid, (photos, consent) in RESIDENTS.items():
            roster.upsert(s, rid, "测试" + rid[-3:], clock.now(), consent_attendance=consent)
            gallery.add(rid, [engine.embed_file(faces / p) for p in photos])
    return Centre(db, Outbox("test-device", "test-centre"), clock, gallery, data_dir)


def clip(path_dir: Path, sprites: dict[str, synth.Sprite]) -> Path:
    video = path_dir / "centre_day.avi"
    if not video.is_file():
        synth.write_clip(service_scene(), sprites, path_dir)
    return video


class LockstepSource:
    """A frame source that replays a video file one frame at a time and
    publishes the next frame only when the consumer has taken the previous one
    (so a test sees every frame, deterministically). It moves a FakeClock by
    one frame period per frame, so wall time follows the video."""

    def __init__(self, path: Path, clock: Any = None, fps: float = 15.0) -> None:
        self.name = f"lockstep:{path.name}"
        self.path = path
        self.clock = clock
        self.period = 1.0 / fps
        self._frames: list[np.ndarray] | None = None
        self._i = 0
        self._taken = 0
        self._cond = threading.Condition()
        self._ended = False
        self._started = False

    def _load(self) -> list[np.ndarray]:
        cap = cv2.VideoCapture(str(self.path))
        out = []
        while True:
            ok, f = cap.read()
            if not ok:
                break
            out.append(f)
        cap.release()
        return out

    def start(self) -> None:
        if self._frames is None:
            self._frames = self._load()
        self._started = True

    def stop(self) -> None:
        self._started = False

    def latest(self) -> Frame | None:
        return self.wait_frame(self._taken, 0.0)

    def wait_frame(self, after_seq: int = 0, timeout: float | None = 1.0) -> Frame | None:
        assert self._frames is not None
        if self._i >= len(self._frames):
            self._ended = True
            time.sleep(0.001)
            return None
        img = self._frames[self._i]
        self._i += 1
        if self.clock is not None and self._i > 1:
            self.clock.advance(self.period)
        self._taken = self._i
        return Frame(image=img, ts=self._i * self.period, seq=self._i)

    def status(self) -> SourceStatus:
        state = SourceState.ENDED if self._ended else SourceState.CONNECTED
        return SourceStatus(state=state, frames=self._i)

    @property
    def done(self) -> bool:
        return self._ended
