"""A small centre for service tests: a database with a roster, an enrolled
gallery, and a short clip of known people."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from face.footfall import synth
from face.gallery import Gallery
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
EXPECT = {"visits_in": 4, "visits_out": 1, "unique_visitors": 3, "attendance": ["S-OBAMA"],
          "staff_crossings": 2}


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
    return Centre(db, Outbox("test-device"), clock, gallery, data_dir)


def clip(path_dir: Path, sprites: dict[str, synth.Sprite]) -> Path:
    video = path_dir / "centre_day.avi"
    if not video.is_file():
        synth.write_clip(service_scene(), sprites, path_dir)
    return video
