"""The labelled test faces every test uses, resolved in one place.

The repository carries its own set (``tests/data/faces``: 15 photos of 6
people, downscaled, with ``labels.csv`` and their source and licence in
``README.md``), so a lone clone runs every test. More cases are added, never
required, from a ``faces`` folder with its own ``labels.csv``:

* ``$CARE_TESTDATA`` (a folder holding ``faces/labels.csv``, or a faces folder
  itself); when it is set it must hold labelled faces, or the tests fail;
* else ``../shared/testdata/faces`` beside the checkout, when present.

An extra row is added only when its file exists and neither its ``origin`` nor
its file name is already in the repository's set (the shared folder holds the
full-size originals of the repository's photos; they are not counted twice).
With extras, the tests get a merged folder (symlinks plus a merged
``labels.csv``) made once per process; without, the repository's folder itself.
"""

from __future__ import annotations

import atexit
import csv
import os
import shutil
import tempfile
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REPO_FACES = REPO / "tests" / "data" / "faces"
COLUMNS = ("file", "identity", "origin")


def _rows(labels: Path) -> list[dict[str, str]]:
    with labels.open(encoding="utf-8-sig", newline="") as fh:
        return [
            {c: (r.get(c) or "").strip() for c in COLUMNS}
            for r in csv.DictReader(fh)
            if (r.get("file") or "").strip()
        ]


def extra_faces_dir() -> Path | None:
    """The folder that adds cases (``$CARE_TESTDATA`` or ``../shared``), if any."""
    env = os.environ.get("CARE_TESTDATA")
    if env:
        root = Path(env)
        for d in (root / "faces", root):
            if (d / "labels.csv").is_file():
                return d
        raise AssertionError(f"CARE_TESTDATA={env} holds no faces/labels.csv")
    shared = REPO.parent / "shared" / "testdata" / "faces"
    return shared if (shared / "labels.csv").is_file() else None


def extra_rows() -> list[dict[str, str]]:
    """Rows of the extra folder that are new to the repository's set."""
    extra = extra_faces_dir()
    if extra is None or extra.resolve() == REPO_FACES.resolve():
        return []
    own = _rows(REPO_FACES / "labels.csv")
    origins = {r["origin"] for r in own if r["origin"]}
    names = {r["file"] for r in own}
    out = []
    for r in _rows(extra / "labels.csv"):
        if r["file"] in names or (r["origin"] and r["origin"] in origins):
            continue
        if (extra / r["file"]).is_file():
            out.append(r)
            names.add(r["file"])
    return out


@cache
def faces_dir() -> Path:
    """A folder of face photos with ``labels.csv`` (file, identity, origin)."""
    assert (REPO_FACES / "labels.csv").is_file(), f"repository test faces missing at {REPO_FACES}"
    extras = extra_rows()
    if not extras:
        return REPO_FACES
    extra = extra_faces_dir()
    assert extra is not None
    tmp = Path(tempfile.mkdtemp(prefix="care-testfaces-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    merged = tmp / "faces"  # named "faces" so its parent works as a testdata root
    merged.mkdir()
    rows = _rows(REPO_FACES / "labels.csv")
    for r in rows:
        (merged / r["file"]).symlink_to(REPO_FACES / r["file"])
    for r in extras:
        (merged / r["file"]).symlink_to(extra.resolve() / r["file"])
    with (merged / "labels.csv").open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows + extras)
    return merged


def testdata_dir() -> Path:
    """The folder holding ``faces/`` (what ``face.footfall.synth`` expects)."""
    return faces_dir().parent


def labels() -> list[tuple[str, str]]:
    """(file, identity) of every labelled face, in ``labels.csv`` order."""
    return [(r["file"], r["identity"]) for r in _rows(faces_dir() / "labels.csv")]
