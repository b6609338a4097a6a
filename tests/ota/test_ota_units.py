"""Pure parts of OTA: versions, the cpio container, manifest parsing and
signatures, the extraction allow-list's positive cases, maintenance windows,
the payment flag, health reports and the [ota] section of config.toml."""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
from datetime import datetime
from pathlib import Path

import pytest
from bundle_cases import ti
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sync.ota import swu
from sync.ota.archive import ArchiveLimits, safe_extract
from sync.ota.bundle import (
    InstalledState,
    VerifyPolicy,
    build_bundle,
    check_manifest,
    verify_bundle,
)
from sync.ota.config import ddi_config, window_policy
from sync.ota.errors import BundleRejected, OtaConfigError
from sync.ota.health import HealthReport, run_checks, write_health
from sync.ota.manifest import (
    Manifest,
    Payload,
    TrustStore,
    parse_manifest,
    sign_manifest,
    verify_signature,
)
from sync.ota.versions import compare_versions, parse_version
from sync.ota.window import PaymentActivityFlag, Slot, WindowPolicy, decide
from terminal.config.ota import OtaSettings
from terminal.config.settings import load_settings
from terminal.core.clock import CHINA_TZ
from terminal.core.errors import ConfigError


@pytest.mark.parametrize(
    ("a", "b", "cmp"),
    [
        ("1.0.0", "1.0", 0),
        ("1.10.0", "1.9.9", 1),
        ("0.9", "1.0.0", -1),
        ("2", "1.99.99.99", 1),
        ("1.0.0.1", "1.0.0", 1),
    ],
)
def test_version_order(a, b, cmp) -> None:
    assert compare_versions(a, b) == cmp


@pytest.mark.parametrize(
    "bad", ["", "1.0.0-rc1", "v1.0", "01.0", "1..0", "1.0.0.0.0", "1.0 ", "1e3"]
)
def test_bad_versions(bad) -> None:
    with pytest.raises(BundleRejected):
        parse_version(bad)


def test_swu_round_trip_and_goosebit_header_layout(tmp_path) -> None:
    desc = swu.sw_description("1.4.0", {"care-pi": ["1", "2"]}, "care-terminal 1.4.0")
    assert b'version = "1.4.0"' in desc and b'hardware-compatibility = [ "1", "2" ]' in desc
    payload = tmp_path / "p.bin"
    payload.write_bytes(os.urandom(1001))
    out = tmp_path / "b.swu"
    swu.write_swu(out, [("sw-description", desc), ("app.tar", payload)])
    data = out.read_bytes()
    # goosebit reads the size at [54:62] of the first header and the name right after it
    assert int(data[54:62], 16) == len(desc) and data[110:124] == b"sw-description"
    with out.open("rb") as fh:
        entries = swu.read_swu(fh, len(data))
        assert [e.name for e in entries] == ["sw-description", "app.tar"]
        assert b"".join(swu.iter_entry(fh, entries[1])) == payload.read_bytes()
    with pytest.raises(ValueError):
        swu.sw_description('1.0"; evil = "x', {})


def test_swu_refuses_non_regular_entries(tmp_path) -> None:
    out = tmp_path / "b.swu"
    swu.write_swu(out, [("sw-description", b"x")])
    data = bytearray(out.read_bytes())
    data[14:22] = b"%08X" % (stat.S_IFLNK | 0o777)
    with pytest.raises(BundleRejected, match="not a regular file"):
        swu.read_swu(io.BytesIO(bytes(data)), len(data))  # type: ignore[arg-type]


def _manifest(**kw) -> Manifest:
    return Manifest(
        version=kw.get("version", "1.1.0"),
        counter=kw.get("counter", 10),
        created="2026-05-01T10:00:00+08:00",
        payloads=(Payload("app.tar.gz", "app", "a" * 64, 10, 10),),
        boards={"care-pi": ("1",)},
        downgrade=kw.get("downgrade", False),
    )


def test_manifest_round_trip_and_signature() -> None:
    m = _manifest()
    raw = m.encode()
    assert parse_manifest(raw) == m
    key = Ed25519PrivateKey.generate()
    trust = TrustStore({"rel-2026": key.public_key()})
    assert verify_signature(raw, sign_manifest(raw, key, "rel-2026"), trust) == "rel-2026"
    with pytest.raises(BundleRejected) as err:
        verify_signature(raw + b" ", sign_manifest(raw, key, "rel-2026"), trust)
    assert err.value.code == "bad_signature"


@pytest.mark.parametrize(
    ("installed", "kw", "policy", "code"),
    [
        (InstalledState("1.2.0", 9), {"version": "1.1.0", "counter": 10}, {}, "downgrade"),
        (
            InstalledState("1.2.0", 9),
            {"version": "1.1.0", "counter": 10},
            {"allow_downgrade": True},
            None,
        ),
        (
            InstalledState("1.2.0", 9),
            {"version": "1.1.0", "counter": 10, "downgrade": True},
            {},
            None,
        ),
        (InstalledState("1.0.0", 10), {"version": "1.1.0", "counter": 10}, {}, "replayed"),
        (
            InstalledState("1.0.0", 12),
            {"version": "1.1.0", "counter": 10, "downgrade": True},
            {},
            "replayed",
        ),
        (
            InstalledState("1.1.0", 9),
            {"version": "1.1.0", "counter": 10},
            {},
            None,
        ),  # re-install, newer build
    ],
)
def test_replay_and_downgrade_rules(installed, kw, policy, code) -> None:
    p = VerifyPolicy(board="care-pi", revision="1", **policy)
    if code is None:
        check_manifest(_manifest(**kw), p, installed)
    else:
        with pytest.raises(BundleRejected) as err:
            check_manifest(_manifest(**kw), p, installed)
        assert err.value.code == code


def test_trust_store_from_dir(tmp_path) -> None:
    key = Ed25519PrivateKey.generate()
    from sync.ota.manifest import public_key_text

    (tmp_path / "rel-2026.pub").write_text(public_key_text(key) + "\n")
    assert set(TrustStore.from_dir(tmp_path).keys) == {"rel-2026"}
    (tmp_path / "bad.pub").write_text("not a key")
    with pytest.raises(OtaConfigError):
        TrustStore.from_dir(tmp_path)
    with pytest.raises(OtaConfigError):
        TrustStore.from_dir(tmp_path / "missing")


def _tar(path: Path, members) -> Path:
    with tarfile.open(path, "w") as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                tf.addfile(info)
    return path


def test_allow_list_accepts_internal_links_and_strips_modes(tmp_path) -> None:
    arc = _tar(
        tmp_path / "ok.tar",
        [
            (ti("bin", tarfile.DIRTYPE, mode=0o777), None),
            (ti("bin/python3", mode=0o4777), b"ELF"),
            (ti("bin/python", tarfile.SYMTYPE, "python3"), None),
            (ti("lib/site.py", mode=0o666), b"print()"),
            (ti("lib/site-copy.py", tarfile.LNKTYPE, "lib/site.py"), None),
            (ti("share/link-up", tarfile.SYMTYPE, "../lib/site.py"), None),
        ],
    )
    report = safe_extract(arc, tmp_path / "out")
    out = tmp_path / "out"
    assert report.files == 2 and report.links == 3
    assert os.readlink(out / "bin" / "python") == "python3"
    assert (
        stat.S_IMODE((out / "bin" / "python3").stat().st_mode) == 0o755
    )  # no setuid, not world-writable
    assert stat.S_IMODE((out / "lib" / "site.py").stat().st_mode) == 0o644
    assert (out / "lib" / "site-copy.py").read_bytes() == b"print()"


def test_allow_list_refuses_symlinks_when_switched_off_and_cleans_up(tmp_path) -> None:
    arc = _tar(tmp_path / "l.tar", [(ti("a"), b"1"), (ti("b", tarfile.SYMTYPE, "a"), None)])
    with pytest.raises(BundleRejected) as err:
        safe_extract(arc, tmp_path / "out", ArchiveLimits(allow_symlinks=False))
    assert err.value.code == "unsafe_archive" and not (tmp_path / "out").exists()
    arc2 = _tar(tmp_path / "many.tar", [(ti(f"f{i}"), b"") for i in range(20)])
    with pytest.raises(BundleRejected) as err:
        safe_extract(arc2, tmp_path / "out2", ArchiveLimits(max_members=10))
    assert err.value.code == "oversize"


def test_build_verify_with_model_pack_and_migrations(tmp_path) -> None:
    key = Ed25519PrivateKey.generate()
    app = tmp_path / "app"
    app.mkdir()
    (app / "release.json").write_text(json.dumps({"version": "2.0.0"}))
    pack = tmp_path / "pack"
    pack.mkdir()
    (pack / "m.onnx").write_bytes(b"onnx")
    mig = tmp_path / "mig"
    mig.mkdir()
    (mig / "0002.py").write_text("")
    out = tmp_path / "b.swu"
    m = build_bundle(
        out,
        version="2.0.0",
        counter=3,
        key=key,
        key_id="k",
        app=app,
        model_pack=pack,
        migrations=mig,
        boards={"care-pi": ["1"]},
        created=datetime.now(CHINA_TZ),
    )
    vb = verify_bundle(
        out,
        TrustStore({"k": key.public_key()}),
        VerifyPolicy(board="care-pi", revision="1"),
        InstalledState("1.0.0", 1),
    )
    assert vb.manifest == m and m.has_migrations and m.payload("model_pack") is not None


LUNCH = WindowPolicy.from_strings(
    allowed=["14:00-16:30", "21:00-06:00"], meal_slots=["10:30-13:30", "16:30-18:30"]
)


@pytest.mark.parametrize(
    ("hhmm", "allowed", "reason"),
    [
        ("12:00", False, "meal_service"),
        ("14:30", True, "ok"),
        ("16:45", False, "meal_service"),
        ("19:00", False, "outside_window"),
        ("23:30", True, "ok"),
        ("03:00", True, "ok"),
        ("06:00", False, "outside_window"),
    ],
)
def test_maintenance_windows(hhmm, allowed, reason) -> None:
    h, m = map(int, hhmm.split(":"))
    d = decide(datetime(2026, 5, 6, h, m, tzinfo=CHINA_TZ), LUNCH, payment_active=False)
    assert (d.allowed, d.reason) == (allowed, reason)
    if not allowed:
        opens = datetime(2026, 5, 6, h, m, tzinfo=CHINA_TZ).timestamp() + d.retry_in_s
        assert decide(datetime.fromtimestamp(opens, CHINA_TZ), LUNCH, payment_active=False).allowed


def test_payment_and_server_window_block_activation() -> None:
    t = datetime(2026, 5, 6, 15, 0, tzinfo=CHINA_TZ)
    assert decide(t, LUNCH, payment_active=True).reason == "payment_active"
    assert (
        decide(t, LUNCH, payment_active=False, server_window_available=False).reason
        == "server_window"
    )
    with pytest.raises(ValueError):
        decide(datetime(2026, 5, 6, 15, 0), LUNCH, payment_active=False)


@pytest.mark.parametrize("bad", ["25:00-26:00", "12:00", "12:00-12:00", "1200-1300"])
def test_bad_slots(bad) -> None:
    with pytest.raises(OtaConfigError):
        Slot.parse(bad)


def test_payment_flag_lifecycle(tmp_path) -> None:
    flag = PaymentActivityFlag(tmp_path / "payment-active", stale_after_s=60)
    now = datetime.now(CHINA_TZ)
    assert not flag.is_active(now)
    with flag.active(now):
        assert flag.is_active(now)
        assert not flag.is_active(now.replace(year=now.year + 1))  # stale
    assert not flag.path.exists()
    flag.path.write_text("{half")
    assert flag.is_active(now)  # damaged but fresh: be careful


def test_health_report(tmp_path) -> None:
    def boom() -> str:
        raise RuntimeError("camera busy")

    checks, detail = run_checks(
        {"kiosk": lambda: "ok", "db": lambda: "ok", "model_pack": lambda: "ok", "camera": boom}
    )
    r = HealthReport("1.1.0", checks, 1.0, detail=detail)
    assert not r.healthy and "camera: RuntimeError: camera busy" in detail
    ok = HealthReport(
        "1.1.0", {"kiosk": "ok", "db": "ok", "model_pack": "ok", "camera": "absent"}, 2.0
    )
    assert ok.healthy
    write_health(tmp_path / "h.json", ok)
    assert json.loads((tmp_path / "h.json").read_text())["healthy"] is True
    # The updater's own reader agrees with this writer.
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "deploy" / "updater"))
    from care_updater.health import report_problem

    assert report_problem(tmp_path / "h.json", "1.1.0", 1.5) is None
    assert "older than the switch" in report_problem(tmp_path / "h.json", "1.1.0", 3.0)
    write_health(tmp_path / "h.json", r)
    assert "camera=failed" in report_problem(tmp_path / "h.json", "1.1.0", 0.5)


def test_ota_section_of_config_toml(tmp_path) -> None:
    """[ota] in config.toml -> the DDI client's config and the window policy;
    bad values are ConfigErrors of the one settings load, all at once."""
    (tmp_path / "token").write_text("abc123\n")
    cfg_file = tmp_path / "config.toml"
    cfg_file.write_text(f'''
[ota]
enabled = true
[ota.ddi]
base_url = "http://127.0.0.1:60053/"
controller_id = "centre-0012-t01"
target_token_file = "{tmp_path / "token"}"
[ota.window]
allowed = ["14:00-16:30"]
''')
    ota = load_settings(config_file=cfg_file).ota
    ddi = ddi_config(ota.ddi)
    assert ddi.target_token == "abc123" and ddi.controller_url.endswith(
        "/DEFAULT/controller/v1/centre-0012-t01"
    )
    assert window_policy(ota.window).meal_slots[0] == Slot.parse("10:30-13:30")
    cfg_file.write_text(
        '[ota.window]\nmeal_slots = ["lunch"]\n[ota.policy]\nhealth_timeout_s = 1\nbogus = 1\n'
    )
    with pytest.raises(ConfigError) as err:
        load_settings(config_file=cfg_file)
    text = str(err.value)
    assert "ota.window.meal_slots" in text and "ota.policy.health_timeout_s" in text
    assert "ota.policy.bogus" in text


def test_unreadable_token_is_a_run_time_ota_error(tmp_path) -> None:
    ota = OtaSettings.model_validate(
        {"ddi": {"controller_id": "t1", "target_token_file": str(tmp_path / "missing")}}
    )
    with pytest.raises(OtaConfigError, match="cannot read"):
        ddi_config(ota.ddi)
    (tmp_path / "two").write_text("two words\n")
    with pytest.raises(OtaConfigError, match="single token"):
        ddi_config(ota.ddi.model_copy(update={"target_token_file": tmp_path / "two"}))
