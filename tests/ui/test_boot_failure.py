"""A terminal that cannot boot (invalid configuration, a model pack that does not
verify) shows the out-of-service screen and says why in the log; no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


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


def test_invalid_config_shows_out_of_service(tmp_path: Path) -> None:
    r = run_kiosk(tmp_path, '[face]\naccept_threshold = "high"\n')
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert '"event": "boot_failed"' in r.stderr and '"code": "config_invalid"' in r.stderr
    assert "face.accept_threshold" in r.stderr


def test_missing_model_pack_shows_out_of_service(tmp_path: Path) -> None:
    r = run_kiosk(tmp_path, f'[face]\npack_dir = "{tmp_path}/no-such-pack"\n')
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert '"code": "model_pack_invalid"' in r.stderr
