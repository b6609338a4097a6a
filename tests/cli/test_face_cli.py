"""The face commands end to end, as staff and district IT run them: real model
pack, real SQLite file, real images; bad inputs give one clear line and a
non-zero exit, never a traceback."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import testfaces

REPO = Path(__file__).resolve().parents[2]
FACES = testfaces.faces_dir()


def run(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(data / "home"),
        "CARE_DATA_DIR": str(data),
        "XDG_CACHE_HOME": os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")),
        "CARE_DEVICE": "0",
    }
    return subprocess.run(
        [sys.executable, "-m", "terminal.app.cli", *args],
        env=env,
        text=True,
        capture_output=True,
        check=False,
    )


def face(name: str) -> str:
    return str(FACES / name)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cli")
    r = run(d, "models", "fetch")
    assert r.returncode == 0, r.stderr
    return d


def assert_clean_error(r: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ")
    for n in needles:
        assert n in line, line


def test_enrol_then_identify_round_trip(data: Path) -> None:
    r = run(
        data,
        "enroll",
        "--resident-id",
        "R-obama",
        "--name",
        "奥巴马",
        "--json",
        face("fr_obama_obama.jpg"),
        face("fr_obama_obama2.jpg"),
        face("fr_obama_obama3.jpg"),
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["templates"] == 3
    r = run(
        data, "enroll", "--resident-id", "R-biden", "--name", "拜登", face("fr_biden_biden2.jpg")
    )
    assert r.returncode == 0, r.stderr

    r = run(data, "identify", face("fr_obama_obama1.jpg"), "--json")
    doc = json.loads(r.stdout)
    assert r.returncode == 0 and doc["decision"] == "identified" and doc["resident_id"] == "R-obama"
    assert doc["name_masked"] == "奥*马"
    assert doc["liveness"]["method"] == "passive" and "passive" in doc["liveness"]["signals"]

    r = run(data, "identify", face("fr_biden_biden.jpg"), "--json")
    assert json.loads(r.stdout)["resident_id"] == "R-biden"

    r = run(data, "identify", face("fr_kit_harington_john1.jpeg"), "--json")  # never enrolled
    assert r.returncode == 1 and json.loads(r.stdout)["decision"] == "unknown"

    r = run(data, "residents", "list", "--json")
    listed = {d["resident_id"]: d for d in json.loads(r.stdout)}
    assert listed["R-obama"]["templates"] == 3 and listed["R-obama"]["name"] == "奥*马"
    assert "奥巴马" not in r.stdout  # only masked names leave the database

    r = run(data, "residents", "remove", "R-obama", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["templates_deleted"] == 3
    r = run(data, "identify", face("fr_obama_obama1.jpg"), "--json")
    assert json.loads(r.stdout)["resident_id"] != "R-obama"  # un-enrolment deletes everywhere


def test_the_same_face_cannot_be_enrolled_as_two_residents(data: Path) -> None:
    run(
        data, "enroll", "--resident-id", "R-rose", "--name", "萝丝", face("fr_rose_leslie_img1.jpg")
    )
    r = run(
        data,
        "enroll",
        "--resident-id",
        "R-rose2",
        "--name",
        "另一个人",
        face("fr_rose_leslie_img2.jpg"),
    )
    assert_clean_error(r, "already matches resident R-rose")


def test_compare_reports_similarity_decision_and_threshold(data: Path) -> None:
    same = json.loads(
        run(
            data,
            "face",
            "compare",
            face("fr_obama_obama.jpg"),
            face("fr_obama_obama2.jpg"),
            "--json",
        ).stdout
    )
    diff = json.loads(
        run(
            data,
            "face",
            "compare",
            face("fr_obama_obama.jpg"),
            face("fr_biden_biden.jpg"),
            "--json",
        ).stdout
    )
    assert same["decision"] == "same" and same["similarity"] >= same["threshold"]
    assert diff["decision"] == "different" and diff["similarity"] < diff["uncertain_threshold"]


def test_eval_on_the_labelled_faces(data: Path, tmp_path: Path) -> None:
    rows = list(csv.DictReader((FACES / "labels.csv").open()))
    pairs = tmp_path / "pairs.csv"
    with pairs.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["a", "b", "same"])
        for i, a in enumerate(rows):
            for b in rows[i + 1 :]:
                w.writerow([a["file"], b["file"], int(a["identity"] == b["identity"])])
    r = run(data, "face", "eval", "--images", str(FACES), "--pairs", str(pairs), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["pairs_scored"] == 105 and doc["genuine_pairs"] == 14
    assert doc["auc"] == 1.0
    assert doc["images_without_face"] == []


def test_several_faces_pick_the_largest_and_say_so(data: Path, tmp_path: Path) -> None:
    import cv2

    big = cv2.imread(face("fr_obama_obama.jpg"))
    small = cv2.resize(cv2.imread(face("fr_biden_biden.jpg")), None, fx=0.35, fy=0.35)
    canvas = np.full(
        (max(big.shape[0], small.shape[0]) + 20, big.shape[1] + small.shape[1] + 40, 3),
        128,
        np.uint8,
    )
    canvas[: big.shape[0], : big.shape[1]] = big
    canvas[: small.shape[0], big.shape[1] + 20 : big.shape[1] + 20 + small.shape[1]] = small
    path = tmp_path / "two.jpg"
    cv2.imwrite(str(path), canvas)
    r = run(data, "face", "compare", str(path), face("fr_obama_obama2.jpg"), "--json")
    doc = json.loads(r.stdout)
    assert r.returncode == 0 and doc["faces_found"]["a"] >= 2 and doc["decision"] == "same"


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda p: p.write_bytes(b"not an image at all"), "not a readable image"),
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: None, "not found"),
    ],
    ids=["garbage", "empty", "missing"],
)
def test_bad_image_files(data: Path, tmp_path: Path, make, needle: str) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "bad.jpg"
    make(p)
    assert_clean_error(run(data, "identify", str(p)), needle)


def test_image_without_a_face(data: Path, tmp_path: Path) -> None:
    import cv2

    p = tmp_path / "wall.png"
    cv2.imwrite(str(p), np.full((480, 640, 3), 200, np.uint8))
    r = run(data, "identify", str(p))
    assert_clean_error(r, "face")


def test_absurd_sizes_are_refused_clearly(data: Path, tmp_path: Path) -> None:
    import cv2

    tiny = tmp_path / "tiny.png"
    cv2.imwrite(str(tiny), np.zeros((1, 1, 3), np.uint8))
    assert_clean_error(run(data, "identify", str(tiny)))
    # A decompression bomb: the header claims 60000 x 60000 pixels.
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    huge = tmp_path / "huge.png"
    huge.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1000))
        + chunk(b"IEND", b"")
    )
    assert_clean_error(run(data, "identify", str(huge)))


def test_tampered_pack_stops_recognition(data: Path, tmp_path: Path) -> None:
    import shutil

    d = tmp_path / "d"
    shutil.copytree(data / "models", d / "models")
    model = d / "models" / "open" / "fr_feature.onnx"
    blob = bytearray(model.read_bytes())
    blob[5000] ^= 0xFF
    model.write_bytes(bytes(blob))
    assert_clean_error(run(d, "models", "verify"), "fr_feature.onnx")
    assert_clean_error(run(d, "identify", face("fr_obama_obama.jpg")), "fr_feature.onnx")


def test_every_identification_is_logged_without_personal_data(data: Path) -> None:
    run(data, "enroll", "--resident-id", "R-log", "--name", "拜登登", face("fr_biden_biden2.jpg"))
    env_run = subprocess.run(
        [sys.executable, "-m", "terminal.app.cli", "identify", face("fr_biden_biden.jpg")],
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(data / "home"),
            "CARE_DATA_DIR": str(data),
            "CARE_DEVICE": "0",
            "CARE_LOG_LEVEL": "INFO",
        },
        text=True,
        capture_output=True,
        check=False,
    )
    events = [json.loads(ln) for ln in env_run.stderr.splitlines() if ln.startswith("{")]
    ident = [e for e in events if e["event"] == "identification"]
    assert len(ident) == 1
    rec = ident[0]
    assert rec["decision"] == "identified" and rec["liveness_method"] == "passive"
    assert "passive" in rec["liveness_signals"] and rec["accept_threshold"] > 0
    assert "拜登登" not in env_run.stderr and "R-log" not in env_run.stderr


def test_a_photo_never_pays_from_the_command_line(data: Path) -> None:
    """`pay --method face --image PHOTO` charged photos before: a still image
    cannot answer the head-turn challenge, so it is refused and nothing is
    charged; the refusal names the card path."""
    r = run(
        data, "residents", "add", "--resident-id", "R-photo", "--name", "林小", "--card", "77001"
    )
    assert r.returncode == 0, r.stderr
    r = run(
        data,
        "enroll",
        "--resident-id",
        "R-photo",
        "--name",
        "林小",
        face("fr_alex_lacamoire_alex_lacamoire1.jpg"),
    )
    assert r.returncode == 0, r.stderr
    assert (
        run(data, "topup", "--resident", "R-photo", "--amount", "50", "--staff", "S1").returncode
        == 0
    )
    args = ("pay", "--resident", "R-photo", "--yes")
    r = run(data, *args, "--method", "face", "--image", face("fr_alex_lacamoire_img1.jpg"))
    assert_clean_error(r, "liveness challenge", "card")
    r = run(data, "ledger", "show", "--resident", "R-photo", "--json")
    assert r.returncode == 0, r.stderr
    assert not [t for t in json.loads(r.stdout) if t.get("kind") == "charge"]
