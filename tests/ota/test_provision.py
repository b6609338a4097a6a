"""Provisioning: key pair, registration record, configs, the signed
registration check against the reference platform, the hardware check."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tomllib
from datetime import datetime
from pathlib import Path

import pytest

from sync.ota.config import ddi_config
from sync.ota.errors import OtaConfigError
from sync.ota.provision import (
    HardwareEnv,
    ProvisionRequest,
    check_hardware,
    install_district_pepper,
    provision,
    summarize,
)
from terminal.config.settings import load_settings
from terminal.core.clock import CHINA_TZ

NOW = datetime(2026, 5, 6, 9, 0, tzinfo=CHINA_TZ)


def fake_hw(tmp_path: Path, *, all_present: bool) -> HardwareEnv:
    dev = tmp_path / "dev"
    (dev / "input").mkdir(parents=True)
    (dev / "ttyUSB0").write_text("")
    if all_present:
        for name in ("care-printer", "care-idreader", "care-camera-pay", "input/care-touch"):
            os.symlink(dev / "ttyUSB0", dev / name)
    sysv = tmp_path / "sys"
    sysv.mkdir()
    if all_present:
        (sysv / "video0").mkdir()
    cards = tmp_path / "cards"
    cards.write_text(
        " 0 [Headphones     ]: bcm2835_headpho\n" if all_present else "--- no soundcards ---\n"
    )
    clock = [sys.executable, "-c", f"print('NTPSynchronized={'yes' if all_present else 'no'}')"]
    return HardwareEnv(
        dev=dev,
        sys_video=sysv,
        asound_cards=cards,
        data_dir=tmp_path / "data",
        min_free_bytes=1,
        timedatectl=clock,
    )


def test_provision_writes_key_configs_and_record(tmp_path) -> None:
    req = ProvisionRequest(
        centre_id="C0012",
        device_id="C0012-T01",
        ddi_url="https://ota.example.test",
        ddi_token="tok-123",
        config_file=tmp_path / "etc" / "config.toml",
        data_dir=tmp_path / "data",
        centre_name="东风村居家养老服务照料中心",
    )
    report = provision(
        req, sw_version="1.0.0", now=NOW, hardware=fake_hw(tmp_path, all_present=True)
    )
    assert report.ok and report.registered is None
    key = tmp_path / "data" / "keys" / "device_ed25519.pem"  # the one key path convention
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    # the agent (group care) reads the token; nobody else does
    assert stat.S_IMODE((tmp_path / "etc" / "ddi-token").stat().st_mode) == 0o640
    rec = json.loads((tmp_path / "etc" / "registration.json").read_text())
    assert rec["public_key"] == report.public_key and rec["ddi_controller_id"] == "C0012-T01"
    assert rec["platform_register_arg"] == f"C0012-T01:C0012:{report.public_key}"
    assert not (tmp_path / "etc" / "ota.toml").exists()  # OTA lives in config.toml now
    cfg = load_settings(config_file=tmp_path / "etc" / "config.toml").ota
    assert cfg.enabled and cfg.ddi.controller_id == "C0012-T01"
    assert ddi_config(cfg.ddi).target_token == "tok-123" and cfg.device.board == "care-pi4"
    assert cfg.ddi.target_token_file == tmp_path / "etc" / "ddi-token"
    assert cfg.paths.work_dir == tmp_path / "data" / "ota"
    assert cfg.paths.trust_dir == tmp_path / "etc" / "ota-keys"
    assert cfg.window.allowed == ["14:00-16:30", "20:00-06:00"] and cfg.updater.trigger == []
    assert "东风村" in (tmp_path / "etc" / "config.toml").read_text()
    # the technician edits a setting provisioning does not own; a second run keeps it
    cfg_file = tmp_path / "etc" / "config.toml"
    cfg_file.write_text(cfg_file.read_text() + '\n[camera]\nsource = "/dev/video2"\n')
    again = provision(
        req, sw_version="1.0.0", now=NOW, hardware=fake_hw(tmp_path / "b", all_present=True)
    )
    assert again.public_key == report.public_key  # the key is created once
    doc = tomllib.loads(cfg_file.read_text())
    assert doc["camera"]["source"] == "/dev/video2" and doc["centre"]["device_id"] == "C0012-T01"


def test_config_toml_is_accepted_by_the_terminal_settings(tmp_path, monkeypatch) -> None:
    req = ProvisionRequest(
        centre_id="C0012",
        device_id="C0012-T01",
        platform_url="https://platform.example.test/",
        config_file=tmp_path / "etc" / "config.toml",
        data_dir=tmp_path / "data",
    )
    report = provision(req, sw_version="1.0.0", now=NOW, check_hw=False)
    assert report.config_problem == ""
    doc = tomllib.loads((tmp_path / "etc" / "config.toml").read_text())
    assert "ota" not in doc  # no DDI server: OTA stays off
    monkeypatch.setenv("CARE_CONFIG", str(tmp_path / "etc" / "config.toml"))
    monkeypatch.setenv("CARE_DEVICE", "1")  # as the units run it: the file decides the paths
    from terminal.config.settings import load_settings

    s = load_settings()
    assert s.centre.device_id == "C0012-T01" and s.centre.centre_id == "C0012"
    assert s.sync.platform_url == "https://platform.example.test"
    assert s.data_dir == tmp_path / "data"
    assert s.device_key_file == tmp_path / "data" / "keys" / "device_ed25519.pem"
    assert summarize(report)["device_key_file"] == str(s.device_key_file)
    assert s.ota.enabled is False


def test_provision_command_follows_care_config_and_care_data_dir(tmp_path) -> None:
    """`care-terminal provision` as a technician types it: no path options,
    the environment decides where config and key go."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path / "home"),
        "CARE_DEVICE": "1",
        "CARE_CONFIG": str(tmp_path / "etc" / "config.toml"),
        "CARE_DATA_DIR": str(tmp_path / "var"),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "terminal.app.cli",
            "provision",
            "--centre",
            "C1",
            "--device",
            "D1",
            "--platform",
            "http://127.0.0.1:9",
            "--no-hw-check",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr  # the platform is not reachable: said, not hidden
    out = json.loads(proc.stdout)
    assert out["registered"] is False and "not reachable" in out["detail"]
    assert out["device_key_file"] == str(tmp_path / "var" / "keys" / "device_ed25519.pem")
    assert (tmp_path / "var" / "keys" / "device_ed25519.pem").is_file()
    doc = tomllib.loads((tmp_path / "etc" / "config.toml").read_text())
    assert doc["sync"]["platform_url"] == "http://127.0.0.1:9"
    assert out["platform_register_arg"] == f"D1:C1:{out['public_key']}"


@pytest.mark.parametrize(
    "kw",
    [{"device_id": "bad id"}, {"centre_id": ""}, {"platform_url": "ftp://x"}, {"board": "a/b"}],
)
def test_bad_provision_requests(kw, tmp_path) -> None:
    args = {"centre_id": "C1", "device_id": "D1", **kw}
    with pytest.raises(OtaConfigError):
        ProvisionRequest(**args)


def test_hardware_check_names_every_problem(tmp_path) -> None:
    checks = {c.name: c for c in check_hardware(fake_hw(tmp_path, all_present=False))}
    for name in (
        "printer",
        "id card reader",
        "payer camera",
        "touch screen",
        "audio",
        "clock synchronised",
        "video devices",
    ):
        assert not checks[name].ok and checks[name].hint, name
    assert checks["entrance camera"].ok  # optional
    assert checks["free disk"].ok


def test_registration_is_checked_with_a_signed_request(tmp_path) -> None:
    server_mod = pytest.importorskip(
        "sync.platform.server", reason="the reference platform server is not present"
    )
    handle = server_mod.serve(db_url=f"sqlite:///{tmp_path / 'platform.db'}")
    try:
        req = ProvisionRequest(
            centre_id="C0012",
            device_id="C0012-T01",
            platform_url=handle.url,
            config_file=tmp_path / "etc" / "config.toml",
            data_dir=tmp_path / "data",
        )
        first = provision(req, sw_version="1.0.0", now=datetime.now(CHINA_TZ), check_hw=False)
        assert first.registered is False and "not registered" in first.registration_detail
        assert not summarize(first)["ok"]
        handle.store.register_device("C0012-T01", "C0012", first.public_key, datetime.now(CHINA_TZ))
        second = provision(req, sw_version="1.0.0", now=datetime.now(CHINA_TZ), check_hw=False)
        assert second.registered is True, second.registration_detail
    finally:
        handle.stop()


# --------------------------------------------------------------------------- the written config


@pytest.mark.parametrize(
    ("kw", "ota_on"),
    [
        ({}, False),
        ({"platform_url": "https://platform.example.test"}, False),
        ({"ddi_url": "https://ota.example.test"}, True),
        ({"ddi_url": "http://127.0.0.1:60053/", "ddi_token": "tok", "ddi_tenant": "T9"}, True),
        (
            {"ddi_url": "https://ota.example.test", "controller_id": "ctl-7", "board": "care-pi5"},
            True,
        ),
        ({"centre_name": "东风村居家养老服务照料中心", "windows": ()}, False),
        (
            {"ddi_url": "https://ota.example.test", "windows": (), "meal_slots": ("11:00-13:00",)},
            True,
        ),
    ],
)
def test_provisioning_writes_a_config_that_loads(tmp_path, kw, ota_on) -> None:
    """Whatever provisioning writes, the services load as it is, with [ota] on
    exactly when a DDI server was given."""
    req = ProvisionRequest(
        centre_id="C0012",
        device_id="C0012-T01",
        config_file=tmp_path / "etc" / "config.toml",
        data_dir=tmp_path / "data",
        **kw,
    )
    report = provision(req, sw_version="1.0.0", now=NOW, check_hw=False)
    assert report.config_problem == ""
    s = load_settings(config_file=req.config_file)
    assert s.centre.device_id == "C0012-T01" and s.data_dir == tmp_path / "data"
    assert s.ota.enabled is ota_on
    if ota_on:
        assert s.ota.ddi.base_url == kw["ddi_url"].rstrip("/")
        assert s.ota.ddi.controller_id == kw.get("controller_id", "C0012-T01")
        assert s.ota.window.allowed == list(req.windows)
        assert s.ota.paths.work_dir == tmp_path / "data" / "ota"
        assert ddi_config(s.ota.ddi).target_token == kw.get("ddi_token")


def test_provisioning_says_when_the_written_config_would_not_load(tmp_path) -> None:
    """A setting the technician left in config.toml that the services refuse:
    provisioning keeps it (it is not provisioning's) but does not say "ok"."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "config.toml").write_text('[face]\naccept_threshold = "high"\n')
    req = ProvisionRequest(
        centre_id="C1", device_id="D1", config_file=etc / "config.toml", data_dir=tmp_path / "d"
    )
    report = provision(req, sw_version="1.0.0", now=NOW, check_hw=False)
    assert not report.ok and "face.accept_threshold" in report.config_problem
    assert any("face.accept_threshold" in p for p in summarize(report)["problems"])


LEGACY_OTA_TOML = """
[ddi]
base_url = "https://ota.old.example"
controller_id = "C0012-T01"
target_token_file = "/etc/care-terminal/ddi-token"
[policy]
confirmation = "staff"
[window]
allowed = ["21:00-05:00"]
timezone = "Asia/Urumqi"
"""


def test_leftover_ota_toml_is_read_until_provisioning_moves_it(tmp_path) -> None:
    """A terminal provisioned before [ota] existed: its ota.toml is read as the
    [ota] table (OTA stays on across the update), and provisioning again moves
    it into config.toml."""
    etc = tmp_path / "etc"
    req = ProvisionRequest(
        centre_id="C0012",
        device_id="C0012-T01",
        config_file=etc / "config.toml",
        data_dir=tmp_path / "data",
    )
    provision(req, sw_version="1.0.0", now=NOW, check_hw=False)
    (etc / "ota.toml").write_text(LEGACY_OTA_TOML)
    before = load_settings(config_file=etc / "config.toml").ota
    assert before.enabled and before.ddi.base_url == "https://ota.old.example"

    # provisioning without --ddi: the old file's settings (OTA on) move into [ota]
    report = provision(req, sw_version="1.0.0", now=NOW, check_hw=False)
    assert report.config_problem == ""
    assert not (etc / "ota.toml").exists() and (etc / "ota.toml.migrated").is_file()
    assert str(etc / "ota.toml.migrated") in report.files
    ota = load_settings(config_file=etc / "config.toml").ota
    assert ota.enabled and ota.ddi.base_url == "https://ota.old.example"
    assert ota.policy.confirmation == "staff" and ota.window.timezone == "Asia/Urumqi"
    assert ota.window.allowed == ["21:00-05:00"]


def test_moving_ota_toml_keeps_config_toml_and_provisioning_first(tmp_path) -> None:
    """What config.toml already says in [ota] beats the old file; what
    provisioning owns (--ddi) beats both; enabled = false in the old file stays."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "config.toml").write_text('[ota.policy]\nconfirmation = "auto"\n')
    (etc / "ota.toml").write_text("enabled = false\n" + LEGACY_OTA_TOML)
    req = ProvisionRequest(
        centre_id="C0012",
        device_id="C0012-T01",
        config_file=etc / "config.toml",
        data_dir=tmp_path / "data",
    )
    provision(req, sw_version="1.0.0", now=NOW, check_hw=False)
    ota = load_settings(config_file=etc / "config.toml").ota
    assert ota.enabled is False and ota.policy.confirmation == "auto"
    assert ota.window.timezone == "Asia/Urumqi"
    # now with a DDI server: provisioning's values win and OTA is on
    (etc / "ota.toml").write_text(LEGACY_OTA_TOML)  # as if restored from a backup
    req2 = ProvisionRequest(
        centre_id="C0012",
        device_id="C0012-T01",
        ddi_url="https://ota.new.example",
        config_file=etc / "config.toml",
        data_dir=tmp_path / "data",
    )
    provision(req2, sw_version="1.0.0", now=NOW, check_hw=False)
    ota = load_settings(config_file=etc / "config.toml").ota
    assert ota.enabled and ota.ddi.base_url == "https://ota.new.example"
    assert ota.window.allowed == ["14:00-16:30", "20:00-06:00"]  # provisioning owns these
    assert ota.window.timezone == "Asia/Urumqi" and ota.policy.confirmation == "auto"


def test_district_pepper_is_installed_once_and_a_device_made_one_replaced(tmp_path) -> None:
    data = tmp_path / "data"
    district = tmp_path / "district-pepper"
    district.write_bytes(bytes(range(32)))
    dest, what = install_district_pepper(district, data)
    assert (dest, what) == (data / "keys" / "district-pepper", "installed")
    assert dest.read_bytes() == district.read_bytes()
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    assert install_district_pepper(district, data)[1] == "unchanged"
    dest.write_bytes(b"\x07" * 32)  # made on the device by an older release
    assert install_district_pepper(district, data)[1] == "replaced"
    assert dest.read_bytes() == district.read_bytes()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x01" * 31, "has 31 bytes, not 32"),
        (b"\x01" * 64, "has 64 bytes, not 32"),
        (None, "cannot read"),
    ],
)
def test_a_wrong_district_pepper_is_refused_before_anything_is_written(
    tmp_path, content, message
) -> None:
    src = tmp_path / "pepper"
    if content is not None:
        src.write_bytes(content)
    with pytest.raises(OtaConfigError, match=message):
        install_district_pepper(src, tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_provision_command_installs_the_district_pepper(tmp_path) -> None:
    pepper = tmp_path / "district-pepper"
    pepper.write_bytes(bytes(range(32)))
    report = provision(
        ProvisionRequest(
            centre_id="C1",
            device_id="D1",
            config_file=tmp_path / "etc" / "config.toml",
            data_dir=tmp_path / "var",
            district_pepper_file=pepper,
        ),
        sw_version="1.0.0",
        now=datetime(2026, 3, 2, 9, 0, tzinfo=CHINA_TZ),
        check_hw=False,
    )
    installed = tmp_path / "var" / "keys" / "district-pepper"
    assert installed.read_bytes() == pepper.read_bytes()
    assert summarize(report)["district_pepper"] == f"district pepper installed at {installed}"
