"""``care-terminal footfall snapshot``: one frame of the footfall camera with
the counting line on it, written only where the technician says; a camera
that is not there is one clear error line with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from diagnostics_helpers import assert_clean_error, cli_env, make_clip, read_frames, run_cli

from face.footfall import synth

LINE = '[footfall.line]\nx1 = 0.1\ny1 = 0.3\nx2 = 0.9\ny2 = 0.3\ninside = "above"\n'


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory, sprites: dict[str, synth.Sprite]) -> Path:
    return make_clip(tmp_path_factory.mktemp("snap-clip"), sprites)[0]


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_snapshot_draws_the_configured_line(video: Path, tmp_path: Path) -> None:
    env = cli_env(tmp_path / "home", None, LINE)
    before = files_under(tmp_path)
    out = tmp_path / "site.png"
    r = run_cli(env, "footfall", "snapshot", "--source", str(video), "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["path"] == str(out) and doc["size"] == [640, 480]
    assert doc["line"]["y1"] == 0.3 and doc["line"]["inside"] == "above"
    assert doc["line_problem"] is None
    # the picture is written there and nowhere else (no copy in the data dir, no log of it)
    assert files_under(tmp_path) == sorted([*before, out])
    img = cv2.imread(str(out))
    first = read_frames(video)[0]
    assert img.shape == first.shape
    diff = cv2.absdiff(img, first).max(axis=2)
    assert (diff[143:146, 80:560] > 80).mean() > 0.8  # the line at y = 0.3 * 480 = 144
    assert (diff[300:480, 0:640] > 40).mean() < 0.01  # the picture elsewhere is the camera's
    # the inside arrow points up from the line's middle
    # (the band edges are at y = 144 +- 29)
    assert (diff[120:140, 315:325] > 80).any() and not (diff[150:168, 300:340] > 80).any()
    assert (diff[0:30, 0:120] > 80).mean() > 0.1  # the frame size label


def test_default_file_is_in_the_current_directory(video: Path, tmp_path: Path) -> None:
    env = cli_env(tmp_path / "home", None)
    work = tmp_path / "work"
    work.mkdir()
    r = run_cli(env, "footfall", "snapshot", "--source", str(video), cwd=work)
    assert r.returncode == 0, r.stderr
    (png,) = work.iterdir()
    assert png.name.startswith("footfall-snapshot-") and png.suffix == ".png"
    assert str(png) in r.stdout and "640x480" in r.stdout
    assert not list((tmp_path / "home").rglob("*.png"))


@pytest.mark.parametrize(
    ("config", "ok"),
    [
        # [footfall] source wins over the kiosk camera
        ('[camera]\nsource = "v4l2:7"\n[footfall]\nsource = "{video}"\n', True),
        # no footfall source: the kiosk camera
        ('[camera]\nsource = "{video}"\n', True),
        ('[camera]\nsource = "{video}"\n[footfall]\nsource = "v4l2:7"\n', False),
    ],
)
def test_the_configured_source_is_used(video: Path, tmp_path: Path, config: str, ok: bool) -> None:
    env = cli_env(tmp_path / "home", None, config.format(video=video))
    out = tmp_path / "s.png"
    r = run_cli(env, "footfall", "snapshot", "--out", str(out), "--timeout", "1")
    if ok:
        assert r.returncode == 0, r.stderr
        assert out.is_file()
    else:
        assert_clean_error(r, "camera:7", "plugged in")
        assert not out.exists()


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--source", "v4l2:7", "--timeout", "1"], ["no picture from camera:7", "plugged in"]),
        (["--source", "/dev/video77", "--timeout", "1"], ["no picture", "/dev/video77"]),
        (["--source", "/nowhere/cam.avi"], ["does not exist"]),
        (["--source", "v4l2:cam"], ["expected v4l2:<index>"]),
    ],
)
def test_missing_camera_is_one_clear_error(
    tmp_path: Path, args: list[str], needles: list[str]
) -> None:
    env = cli_env(tmp_path / "home", None)
    before = files_under(tmp_path)
    r = run_cli(env, "footfall", "snapshot", "--out", str(tmp_path / "s.png"), *args)
    assert_clean_error(r, *needles)
    assert files_under(tmp_path) == before


@pytest.mark.parametrize(("name", "needle"), [("s.jpg", ".png"), ("no/s.png", "does not exist")])
def test_bad_out_path(video: Path, tmp_path: Path, name: str, needle: str) -> None:
    env = cli_env(tmp_path / "home", None)
    r = run_cli(env, "footfall", "snapshot", "--source", str(video), "--out", str(tmp_path / name))
    assert_clean_error(r, needle)


def test_help_says_where_the_picture_goes(tmp_path: Path) -> None:
    r = run_cli(cli_env(tmp_path / "home", None), "footfall", "snapshot", "--help")
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    assert "written only to the --out file" in text and "nowhere else" in text
    r = run_cli(cli_env(tmp_path / "home", None), "footfall", "--help")
    assert "snapshot" in r.stdout


def test_snapshot_names_a_line_that_cannot_count(tmp_path: Path) -> None:
    """A line that passes the configured camera size but not the picture the
    camera really gives (a smaller frame) is drawn and named."""
    from face.footfall.annotate import snapshot
    from face.footfall.counting import LineSpec

    img = np.full((60, 80, 3), 128, np.uint8)  # the band is 0.06 * 60 = 3.6 px: too narrow
    drawn, problem = snapshot(img, LineSpec(0.03, 0.5, 0.97, 0.5, inside="below"))
    assert problem is not None and "too narrow" in problem
    assert drawn.shape == img.shape and (drawn != img).any()
