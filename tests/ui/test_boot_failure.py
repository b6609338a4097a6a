"""A terminal that cannot boot (invalid configuration, a model pack that does not
verify) shows the out-of-service screen and says why in the log; no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def run_kiosk(tmp_path: Path, config: str) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "config.toml"
    cfg.write_text(config)
    env = dict(
        os.environ,
        QT_QPA_PLATFORM="offscreen",
        CARE_CONFIG=str(cfg),
        CARE_DATA_DIR=str(tmp_path / "data"),
        CARE_DEVICE="0",
    )
    return subprocess.run(
        [sys.executable, "-m", "terminal.app.cli", "kiosk", "--windowed", "--seconds", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ('[face]\naccept_threshold = "high"\n', ["face.accept_threshold"]),
        # the footfall counter's settings are checked at boot too, geometry included
        ("[footfall]\ndetect_every = 0\n", ["footfall.detect_every"]),
        (
            "[footfall.line]\nx1 = 0.1\ny1 = 0.02\nx2 = 0.9\ny2 = 0.02\n",
            ["footfall.line is too close to the frame edge"],
        ),
        ('[ota.window]\ntimezone = "Mars/Olympus"\n', ["ota.window.timezone"]),
        # several sections at once: all of them in one boot failure
        (
            '[camera]\nfps = 0\n[footfall]\ndetector = "car"\n[ota]\nenabled = true\n',
            ["camera.fps", "footfall.detector", "ota.ddi.controller_id"],
        ),
    ],
    ids=["face", "footfall", "footfall-line", "ota", "several"],
)
def test_invalid_config_shows_out_of_service(tmp_path: Path, config: str, named: list[str]) -> None:
    r = run_kiosk(tmp_path, config)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert '"event": "boot_failed"' in r.stderr and '"code": "config_invalid"' in r.stderr
    for name in named:
        assert name in r.stderr, name


def test_ota_toml_beside_an_ota_section_shows_out_of_service(tmp_path: Path) -> None:
    (tmp_path / "ota.toml").write_text('[ddi]\nbase_url = "https://ota.example"\n')
    r = run_kiosk(tmp_path, "[ota]\nenabled = false\n")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert '"code": "config_invalid"' in r.stderr
    assert str(tmp_path / "ota.toml") in r.stderr and "care-terminal provision" in r.stderr


def test_missing_model_pack_shows_out_of_service(tmp_path: Path) -> None:
    r = run_kiosk(tmp_path, f'[face]\npack_dir = "{tmp_path}/no-such-pack"\n')
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert '"code": "model_pack_invalid"' in r.stderr
