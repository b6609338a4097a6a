"""The deployment files: systemd units verified by systemd-analyze, udev
rules syntax, journald limits, the kiosk session and the install script
(run for real into a temporary root)."""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from unit_runner import make_app_release

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("care-terminal-*"))


def unit(name: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # type: ignore[assignment]
    cp.read(DEPLOY / "systemd" / name)
    return cp


def test_units_pass_systemd_analyze_verify(tmp_path) -> None:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze is not installed on this machine")
    for u in UNITS:
        text = re.sub(r"(?m)^ExecStart=.*$", "ExecStart=/bin/true", u.read_text())
        (tmp_path / u.name).write_text(text)
    proc = subprocess.run(
        [exe, "verify", "--man=no", *[str(tmp_path / u.name) for u in UNITS]],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
    )
    problems = [
        line
        for line in (proc.stdout + proc.stderr).splitlines()
        if re.search(r"Unknown|Invalid|Failed|error|Missing", line) and "ExecStart" not in line
    ]
    assert not problems, problems


def test_long_running_units_restart_have_watchdogs_and_hardening() -> None:
    for name in (
        "care-terminal-kiosk.service",
        "care-terminal-agent.service",
        "care-terminal-footfall.service",
    ):
        s = unit(name)["Service"]
        assert s["Type"] == "notify" and s["Restart"] == "always" and int(s["WatchdogSec"]) > 0
        for key, value in (
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("PrivateTmp", "yes"),
            ("ProtectKernelModules", "yes"),
            ("RestrictSUIDSGID", "yes"),
            ("CapabilityBoundingSet", ""),
        ):
            assert s[key] == value, (name, key)
        assert s["User"] == "care"
    kiosk = unit("care-terminal-kiosk.service")
    assert kiosk["Unit"]["OnFailure"] == "care-terminal-updater-onfailure.service"
    assert int(kiosk["Unit"]["StartLimitBurst"]) >= 3
    assert kiosk["Service"]["NotifyAccess"] == "all"  # the UI is cage's child
    assert "/run/care-terminal" in kiosk["Service"]["ReadWritePaths"]
    upd = unit("care-terminal-updater.service")["Service"]
    assert (
        upd["Type"] == "oneshot"
        and " -I " in upd["ExecStart"]
        and "run_updater.py activate" in upd["ExecStart"]
    )
    assert (
        unit("care-terminal-updater.path")["Path"]["PathExists"]
        == "/opt/care-terminal/spool/request.json"
    )
    boot = unit("care-terminal-updater-boot.service")["Unit"]
    assert "care-terminal-kiosk.service" in boot["Before"]
    # the footfall counter: only with an entrance camera, never the kiosk's, and
    # the camera is all the hardware it may open
    ff = unit("care-terminal-footfall.service")
    assert ff["Unit"]["ConditionPathExists"] == "/dev/care-camera-door"
    assert ff["Service"]["ExecStart"].endswith("footfall run --source /dev/care-camera-door")
    assert ff["Service"]["DevicePolicy"] == "closed"
    assert ff["Service"]["DeviceAllow"] == "char-video4linux rw"
    assert ff["Service"]["KeyringMode"] == "shared"  # the visitor vault's key in @u
    rules = (DEPLOY / "udev" / "99-care-terminal.rules").read_text()
    assert 'ENV{SYSTEMD_WANTS}+="care-terminal-footfall.service"' in rules


def test_udev_rules_are_well_formed_and_name_every_role() -> None:
    pair = re.compile(r'^(?P<key>[A-Z_]+(\{[^}]+\})?)(?P<op>==|!=|\+=|=|:=)"(?P<val>[^"]*)"$')
    names = set()
    for path in (DEPLOY / "udev").glob("*.rules*"):
        for line in path.read_text().splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            for part in (p.strip() for p in line.split(", ")):
                m = pair.match(part)
                assert m, f"{path.name}: bad rule part {part!r}"
                if m["key"] == "SYMLINK":
                    names.add(m["val"])
    assert {
        "care-printer",
        "care-idreader",
        "care-camera-pay",
        "care-camera-door",
        "input/care-touch",
        "input/care-icreader",
    } <= names


def test_journald_limits_for_sd_cards() -> None:
    cp = configparser.ConfigParser()
    cp.read(DEPLOY / "journald" / "care-terminal.conf")
    j = cp["Journal"]
    assert j["SystemMaxUse"] == "64M" and j["ForwardToSyslog"] == "no" and j["Compress"] == "yes"
    assert j["SyncIntervalSec"] == "5min"


def test_kiosk_session_uses_cage_without_blanking() -> None:
    text = (DEPLOY / "kiosk" / "kiosk-session.sh").read_text()
    assert (
        "exec cage -d -s --" in text and "--blank 0" in text and "QT_QPA_PLATFORM=wayland" in text
    )
    assert subprocess.run(["sh", "-n", str(DEPLOY / "kiosk" / "kiosk-session.sh")]).returncode == 0


def test_install_script_into_a_temporary_root(tmp_path) -> None:
    app = make_app_release(tmp_path / "app", "1.0.0")
    key = tmp_path / "district-2026.pub"
    key.write_text("MCowBQYDK2VwAyEA\n")
    token = tmp_path / "token.txt"
    token.write_text("ddi-token-1\n")
    root = tmp_path / "root"
    proc = subprocess.run(
        [
            "bash",
            str(DEPLOY / "install-rpi.sh"),
            "--root",
            str(root),
            "--no-system",
            "--app",
            str(app),
            "--release-key",
            str(key),
            "--centre",
            "C0012",
            "--device",
            "C0012-T01",
            "--platform",
            "http://127.0.0.1:9",
            "--ddi",
            "https://ota.example.test",
            "--ddi-token-file",
            str(token),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CARE_OS_RELEASE": str(os_release(tmp_path, "bookworm", "12"))},
    )
    assert proc.returncode == 0, proc.stderr
    # too old an OS: a warning here (--no-system), a refusal on a device
    assert "needs Raspberry Pi OS trixie" in proc.stderr and "glibc 2.36" in proc.stderr
    # the platform is not reachable from here: provisioning says so and the install goes on
    assert "provisioning reported problems" in proc.stderr
    opt = root / "opt" / "care-terminal"
    assert os.readlink(opt / "current") == "releases/1.0.0-c0"
    assert json.loads((opt / "current" / "manifest.json").read_text()) == {
        "version": "1.0.0",
        "counter": 0,
    }
    assert (opt / "updater" / "care_updater" / "core.py").is_file()
    assert (root / "etc" / "systemd" / "system" / "care-terminal-kiosk.service").is_file()
    assert (root / "etc" / "udev" / "rules.d" / "99-care-terminal.rules").is_file()
    assert (root / "etc" / "care-terminal" / "ota-keys" / "district-2026.pub").is_file()
    assert oct((root / "etc" / "care-terminal" / "ddi-token").stat().st_mode)[-3:] == "640"
    sys.path.insert(0, str(DEPLOY.parent))
    from sync.ota.config import ddi_config
    from terminal.config.settings import load_settings

    etc, var = root / "etc" / "care-terminal", root / "var" / "lib" / "care-terminal"
    assert not (etc / "ota.toml").exists()  # OTA settings are the [ota] section of config.toml
    cfg = load_settings(config_file=etc / "config.toml").ota
    assert cfg.enabled and cfg.ddi.controller_id == "C0012-T01" and cfg.updater.trigger == []
    assert cfg.ddi.base_url == "https://ota.example.test" and cfg.paths.root == opt
    assert cfg.paths.trust_dir == etc / "ota-keys" and cfg.paths.work_dir == var / "ota"
    assert ddi_config(cfg.ddi).target_token == "ddi-token-1"
    # provisioning ran: one key path, and config.toml names it and the platform
    key = var / "keys" / "device_ed25519.pem"
    assert oct(key.stat().st_mode)[-3:] == "600"
    conf = tomllib.loads((etc / "config.toml").read_text())
    assert conf["sync"] == {"device_key_file": str(key), "platform_url": "http://127.0.0.1:9"}
    assert conf["data_dir"] == str(var) and conf["centre"]["device_id"] == "C0012-T01"
    reg = json.loads((etc / "registration.json").read_text())
    assert reg["platform_register_arg"].startswith("C0012-T01:C0012:")
    # The installed updater runs from there, isolated, with the written config.
    (root / "etc" / "care-terminal" / "u.toml").write_text(f'root = "{opt}"\n')
    st = subprocess.run(
        [
            sys.executable,
            "-I",
            str(opt / "updater" / "run_updater.py"),
            "--config",
            str(root / "etc" / "care-terminal" / "u.toml"),
            "status",
        ],
        capture_output=True,
        text=True,
    )
    assert st.returncode == 0 and json.loads(st.stdout)["current"] == "1.0.0-c0"


def os_release(tmp_path: Path, codename: str, version: str) -> Path:
    path = tmp_path / f"os-release-{codename}"
    path.write_text(
        f'PRETTY_NAME="Debian GNU/Linux {version} ({codename})"\nID=debian\n'
        f"VERSION_ID={version}\nVERSION_CODENAME={codename}\n"
    )
    return path


def test_install_script_refuses_bad_input(tmp_path) -> None:
    proc = subprocess.run(
        [
            "bash",
            str(DEPLOY / "install-rpi.sh"),
            "--root",
            str(tmp_path),
            "--no-system",
            "--app",
            "x",
            "--release-key",
            "/nonexistent",
            "--centre",
            "C",
            "--device",
            "D",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "release public key" in proc.stderr


def test_install_script_needs_the_platform_url(tmp_path) -> None:
    key = tmp_path / "district-2026.pub"
    key.write_text("MCowBQYDK2VwAyEA\n")
    args = ["--app", "x", "--release-key", str(key), "--centre", "C", "--device", "D"]
    proc = subprocess.run(
        ["bash", str(DEPLOY / "install-rpi.sh"), "--root", str(tmp_path), "--no-system", *args],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "--platform must give the district platform URL" in proc.stderr
    assert not (tmp_path / "etc").exists()  # refused before anything was written
