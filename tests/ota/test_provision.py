"""Provisioning: key pair, registration record, configs, the signed
registration check against the reference platform, the hardware check."""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
from datetime import datetime
from pathlib import Path

import pytest

from sync.ota.config import load_ota_config
from sync.ota.errors import OtaConfigError
from sync.ota.provision import HardwareEnv, ProvisionRequest, check_hardware, provision, summarize
from sync.ota.sdnotify import WatchdogPinger, notify, watchdog_interval
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
        config_dir=tmp_path / "etc",
        key_path=tmp_path / "keys" / "device.key",
        centre_name="东风村居家养老服务照料中心",
    )
    report = provision(
        req, sw_version="1.0.0", now=NOW, hardware=fake_hw(tmp_path, all_present=True)
    )
    assert report.ok and report.registered is None
    assert stat.S_IMODE((tmp_path / "keys" / "device.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "etc" / "ddi-token").stat().st_mode) == 0o600
    rec = json.loads((tmp_path / "etc" / "registration.json").read_text())
    assert rec["public_key"] == report.public_key and rec["ddi_controller_id"] == "C0012-T01"
    assert rec["platform_register_arg"] == f"C0012-T01:C0012:{report.public_key}"
    cfg = load_ota_config(tmp_path / "etc" / "ota.toml")
    assert cfg.ddi_config().target_token == "tok-123" and cfg.device.board == "care-pi4"
    assert "东风村" in (tmp_path / "etc" / "config.toml").read_text()
    again = provision(
        req, sw_version="1.0.0", now=NOW, hardware=fake_hw(tmp_path / "b", all_present=True)
    )
    assert again.public_key == report.public_key  # the key is created once
    assert (tmp_path / "etc" / "config.toml.bak").exists()


def test_config_toml_is_accepted_by_the_terminal_settings(tmp_path, monkeypatch) -> None:
    req = ProvisionRequest(
        centre_id="C0012",
        device_id="C0012-T01",
        config_dir=tmp_path / "etc",
        key_path=tmp_path / "k" / "device.key",
    )
    provision(req, sw_version="1.0.0", now=NOW, check_hw=False)
    monkeypatch.setenv("CARE_CONFIG", str(tmp_path / "etc" / "config.toml"))
    from terminal.config.settings import load_settings

    s = load_settings()
    assert s.centre.device_id == "C0012-T01" and s.centre.centre_id == "C0012"


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
            config_dir=tmp_path / "etc",
            key_path=tmp_path / "k" / "device.key",
        )
        first = provision(req, sw_version="1.0.0", now=datetime.now(CHINA_TZ), check_hw=False)
        assert first.registered is False and "not registered" in first.registration_detail
        assert not summarize(first)["ok"]
        handle.store.register_device("C0012-T01", "C0012", first.public_key, datetime.now(CHINA_TZ))
        second = provision(req, sw_version="1.0.0", now=datetime.now(CHINA_TZ), check_hw=False)
        assert second.registered is True, second.registration_detail
    finally:
        handle.stop()


def test_sd_notify_and_watchdog(tmp_path) -> None:
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as srv:
        srv.bind(path)
        env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())}
        assert notify("READY=1", env=env)
        assert srv.recv(100) == b"READY=1"
        assert watchdog_interval(env) == 2.0
        t = [100.0]
        w = WatchdogPinger(env, monotonic=lambda: t[0])
        assert w.ping_if_alive() and srv.recv(100) == b"WATCHDOG=1"
        t[0] += 1.0
        assert not w.ping_if_alive()
        t[0] += 1.5
        assert w.ping_if_alive()
    assert not notify("READY=1", env={})
    assert watchdog_interval({"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}) is None
