"""A short generated clip for the technician diagnostics (``footfall eval
--json/--video-out``, ``footfall snapshot``) and the CLI run as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from face.footfall import synth

REPO = Path(__file__).resolve().parents[2]

# The doctored truth adds a crossing nobody made (it must be reported missed)
# and drops one that happened (its count must be reported extra).
FAKE_OUT_FRAME = 125


# (sprite, x, t0, t1, downwards): down the picture is an entry
WALKS = (
    ("fr_obama_obama2.jpg", 160, 0.3, 4.3, True),
    ("fr_kit_harington_john1.jpeg", 470, 2.5, 6.5, False),
    ("fr_rose_leslie_img2.jpg", 320, 4.0, 8.0, True),
)


def diag_scene() -> synth.Scene:
    actors = []
    for sprite, x, t0, t1, down in WALKS:
        a, b = (-40.0, 540.0) if down else (540.0, -40.0)
        actors.append(synth.Actor(sprite, synth._wp((t0, x, a), (t1, x, b))))
    return synth.Scene(name="diagnostics", duration=9.0, actors=tuple(actors))


def make_clip(out_dir: Path, sprites: dict[str, synth.Sprite]) -> tuple[Path, Path, Path]:
    """The clip, its true truth file and a doctored one (see above)."""
    video, truth = synth.write_clip(diag_scene(), sprites, out_dir)
    doc = json.loads(truth.read_text())
    events = [e for e in doc["events"] if e["actor"] != 2]  # drop the third person's entry
    events.append({"frame": FAKE_OUT_FRAME, "direction": "out", "identity": "nobody"})
    doc["events"] = events
    doc["entries"] = sum(1 for e in events if e["direction"] == "in")
    doc["exits"] = sum(1 for e in events if e["direction"] == "out")
    doctored = out_dir / "diagnostics.doctored.json"
    doctored.write_text(json.dumps(doc))
    return video, truth, doctored


def cli_env(home: Path, pack: Path | None, config: str = "") -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "config.toml"
    cfg.write_text(config, encoding="utf-8")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "CARE_CONFIG": str(cfg),
        "CARE_DATA_DIR": str(home / "data"),
        "XDG_CACHE_HOME": os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")),
        "CARE_DEVICE": "0",
        "PYTHONPATH": str(REPO),
    }
    if pack is not None:
        env["CARE_FACE__PACK_DIR"] = str(pack)
    return env


def run_cli(
    env: dict[str, str], *args: str, cwd: Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "terminal.app.cli", *args],
        env=env,
        cwd=str(cwd or REPO),
        text=True,
        capture_output=True,
        check=False,
        timeout=timeout,
    )


def assert_clean_error(r: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: "), lines
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def read_frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), path
    out = []
    try:
        while True:
            ok, f = cap.read()
            if not ok or f is None:
                break
            out.append(f)
    finally:
        cap.release()
    return out


def ring_and_inside(diff: np.ndarray, box: Any, pad: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of ``diff`` on a band around the box outline, and inside it."""
    h, w = diff.shape[:2]
    x1, y1, x2, y2 = (round(float(v)) for v in box)
    outer = np.zeros((h, w), bool)
    outer[max(0, y1 - pad) : min(h, y2 + pad), max(0, x1 - pad) : min(w, x2 + pad)] = True
    inner = np.zeros((h, w), bool)
    inner[max(0, y1 + pad) : max(0, y2 - pad), max(0, x1 + pad) : max(0, x2 - pad)] = True
    core = np.zeros((h, w), bool)
    bw, bh = x2 - x1, y2 - y1
    core[y1 + bh // 3 : y2 - bh // 3, x1 + bw // 3 : x2 - bw // 3] = True
    return diff[outer & ~inner], diff[core]
