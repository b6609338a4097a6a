"""One configuration: every section of config.toml is validated in one load,
and a bad value anywhere is reported (with its dotted name) together with
every other problem, as the kiosk's out-of-service log and every
``care-terminal`` command show it."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from terminal.config import settings as settings_mod
from terminal.config.settings import Settings, load_settings
from terminal.core.errors import ConfigError

LINE = "[footfall.line]\nx1 = {x1}\ny1 = {y1}\nx2 = {x2}\ny2 = {y2}\ninside = {inside!r}\n"


def line(x1=0.1, y1=0.5, x2=0.9, y2=0.5, inside="below") -> str:
    return LINE.format(x1=x1, y1=y1, x2=x2, y2=y2, inside=inside).replace("'", '"')


# (section, config.toml text, what the message must name)
BAD = [
    ("root", "unknown_key = 1\n", "unknown_key"),
    ("root", 'log_level = "LOUD"\n', "log_level"),
    ("face", '[face]\naccept_threshold = "high"\n', "face.accept_threshold"),
    ("face", "[face]\nacept_threshold = 0.5\n", "face.acept_threshold"),  # a typo is refused
    ("face", "[face]\nuncertain_threshold = 0.9\naccept_threshold = 0.5\n", "uncertain_threshold"),
    ("camera", "[camera]\nfps = 0\n", "camera.fps"),
    ("centre", "[centre]\nbogus = 1\n", "centre.bogus"),
    ("payment", "[payment]\nmax_per_transaction_fen = -1\n", "payment.max_per_transaction_fen"),
    ("payment", '[payment.slot_windows]\nlunch = "13:30-10:30"\n', "start before it ends"),
    ("payment", '[payment.slot_windows]\nlunch = "noon"\n', "HH:MM-HH:MM"),
    ("payment", '[payment.slot_windows]\nbrunch = "10:00-11:00"\n', "unknown meal slot"),
    (
        "payment",
        '[payment.slot_windows]\nbreakfast = "06:30-11:00"\nlunch = "10:30-13:30"\n',
        "overlap",
    ),
    ("sync", "[sync]\nbatch_size = 0\n", "sync.batch_size"),
    ("sync", '[sync]\ntls_client_cert = "/c.pem"\n', "go together"),
    ("footfall", "[footfall]\ndetect_every = 0\n", "footfall.detect_every"),
    ("footfall", '[footfall]\ndetector = "car"\n', "footfall.detector"),
    ("footfall", "[footfall]\nnonsense = 1\n", "footfall.nonsense"),
    ("footfall", "[footfall]\nsame_person = 3\n", "footfall.same_person"),
    ("footfall", "[footfall]\nlost_seconds = 0\n", "footfall.lost_seconds"),
    ("footfall", "[footfall]\ndet_score = 1.5\n", "footfall.det_score"),
    ("footfall", "[footfall]\nstaff_ids = [true]\n", "footfall.staff_ids"),
    ("footfall", '[footfall]\nline = "middle"\n', "footfall.line"),
    ("footfall", "[footfall.line]\nx1 = 0.1\n", "footfall.line.y1"),
    ("footfall", line(y1=1.4), "footfall.line.y1"),
    ("footfall", line(inside="outside"), "footfall.line.inside"),
    ("footfall", line(x1=0.5, x2=0.5), "no length"),
    ("footfall", line(x1=0.5, y1=0.1, x2=0.5, y2=0.9), "vertical"),
    ("footfall", line(inside="left"), "horizontal"),
    ("footfall", line(y1=0.02, y2=0.02), "frame edge"),
    ("footfall", line(x1=0.45, x2=0.55), "too short"),
    ("footfall", line() + "hysteresis = 0.005\n", "4 px"),
    ("ota", "[ota]\nenabled = true\n", "ota.ddi.controller_id"),
    ("ota", "[ota]\nbogus = 1\n", "ota.bogus"),
    ("ota", '[ota.ddi]\nbase_url = "ftp://ota.example"\n', "ota.ddi.base_url"),
    ("ota", '[ota.ddi]\ncert_file = "/c.pem"\n', "go together"),
    ("ota", "[ota.ddi]\ntimeout_s = 0\n", "ota.ddi.timeout_s"),
    ("ota", '[ota.device]\nboard = "care pi"\n', "ota.device.board"),
    ("ota", "[ota.policy]\nhealth_timeout_s = 1\n", "ota.policy.health_timeout_s"),
    ("ota", '[ota.policy]\nconfirmation = "maybe"\n', "ota.policy.confirmation"),
    ("ota", '[ota.window]\nallowed = ["lunch"]\n', "ota.window.allowed"),
    ("ota", '[ota.window]\nmeal_slots = ["12:00-12:00"]\n', "is empty"),
    ("ota", '[ota.window]\nallowed = ["22:00-24:30"]\n', "24 only as 24:00"),
    ("ota", '[ota.window]\ntimezone = "Mars/Olympus"\n', "unknown time zone"),
    ("ota", "[ota.updater]\ntrigger = 1\n", "ota.updater.trigger"),
]


def write(tmp_path: Path, text: str) -> Path:
    cfg = tmp_path / "config.toml"
    cfg.write_text(text)
    return cfg


@pytest.mark.parametrize(("section", "text", "named"), BAD, ids=[f"{s}-{n}" for s, _, n in BAD])
def test_each_sections_bad_value_is_reported(tmp_path, section, text, named) -> None:
    cfg = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_settings(config_file=cfg)
    assert err.value.code == "config_invalid"
    assert named in str(err.value) and str(cfg) in str(err.value)
    if section != "root":
        assert f"{section}" in str(err.value)


GOOD = [
    "",
    '[face]\naccept_threshold = 0.55\n[camera]\nsource = "/dev/video2"\n',
    '[payment.slot_windows]\n"午餐" = "11:00-13:00"\nDinner = "17:00-19:00"\n',
    line(0.05, 0.55, 0.95, 0.55) + "hysteresis = 0.05\nedge_margin = 0.01\n",
    line(0.5, 0.1, 0.45, 0.9, inside="right"),
    '[footfall]\nsource = ""\nstaff_ids = ["R1", 1002]\ndetector = "person"\ndetect_every = 2\n',
    "[ota]\nenabled = false\n",
    '[ota]\nenabled = true\n[ota.ddi]\ncontroller_id = "t1"\n[ota.window]\n'
    'allowed = ["20:00-06:00", "00:00-24:00"]\ntimezone = "Asia/Urumqi"\n',
]


@pytest.mark.parametrize("text", GOOD)
def test_good_configs_load(tmp_path, text) -> None:
    s = load_settings(config_file=write(tmp_path, text))
    assert isinstance(s, Settings)


def test_bad_values_in_every_section_are_reported_at_once(tmp_path) -> None:
    cfg = write(
        tmp_path,
        'log_level = "LOUD"\n'
        '[face]\naccept_threshold = "high"\n'
        "[camera]\nfps = 0\n"
        "[centre]\nbogus = 1\n"
        '[payment.slot_windows]\nlunch = "noon"\n'
        "[sync]\nbatch_size = 0\n"
        "[footfall]\ndetect_every = 0\nsame_person = 3\n"
        "[footfall.line]\nx1 = 0.1\ny1 = 1.4\nx2 = 0.9\ny2 = 0.5\n"
        '[ota.window]\nallowed = ["lunch"]\ntimezone = "Mars/Olympus"\n'
        '[ota.ddi]\nbase_url = "ftp://x"\n',
    )
    with pytest.raises(ConfigError) as err:
        load_settings(config_file=cfg)
    text = str(err.value)
    for name in (
        "log_level",
        "face.accept_threshold",
        "camera.fps",
        "centre.bogus",
        "payment.slot_windows",
        "sync.batch_size",
        "footfall.detect_every",
        "footfall.same_person",
        "footfall.line.y1",
        "ota.window.allowed",
        "ota.window.timezone",
        "ota.ddi.base_url",
    ):
        assert name in text, name
    assert text.count(";") >= 11  # one message, every problem


def test_cross_section_checks_are_reported_with_other_sections(tmp_path) -> None:
    """Checks that need a whole section (footfall line vs [camera] size, OTA
    on without a controller) run beside the other sections' checks."""
    cfg = write(
        tmp_path,
        '[face]\naccept_threshold = "high"\n' + line(y1=0.02, y2=0.02) + "[ota]\nenabled = true\n",
    )
    with pytest.raises(ConfigError) as err:
        load_settings(config_file=cfg)
    text = str(err.value)
    assert "face.accept_threshold" in text and "frame edge" in text
    assert "ota.ddi.controller_id" in text


def test_footfall_line_is_checked_against_the_camera_size(tmp_path) -> None:
    """A band of 0.01 of the frame height is 4.8 px at 480 lines, 2.4 px at 240."""
    text = line() + "hysteresis = 0.01\n"
    load_settings(config_file=write(tmp_path, text))
    with pytest.raises(ConfigError, match="at 320x240"):
        load_settings(config_file=write(tmp_path, text + "[camera]\nwidth = 320\nheight = 240\n"))


def test_environment_values_are_validated_too(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CARE_FOOTFALL__DETECT_EVERY", "0")
    monkeypatch.setenv("CARE_OTA__WINDOW__TIMEZONE", "Nowhere/Town")
    with pytest.raises(ConfigError) as err:
        load_settings(config_file=write(tmp_path, ""))
    assert "footfall.detect_every" in str(err.value) and "Nowhere/Town" in str(err.value)


def test_environment_beats_the_file_in_new_sections(tmp_path, monkeypatch) -> None:
    cfg = write(tmp_path, '[ota.ddi]\ncontroller_id = "t1"\n[footfall]\ndetector = "person"\n')
    monkeypatch.setenv("CARE_OTA__ENABLED", "true")
    monkeypatch.setenv("CARE_FOOTFALL__DETECTOR", "face")
    s = load_settings(config_file=cfg)
    assert s.ota.enabled and s.ota.ddi.controller_id == "t1" and s.footfall.detector == "face"


def test_the_file_is_parsed_once(tmp_path, monkeypatch) -> None:
    cfg = write(tmp_path, "[face]\nmin_face_px = 120\n[ota]\nenabled = false\n")
    monkeypatch.setenv("CARE_CONFIG", str(cfg))
    calls: list[object] = []
    real = tomllib.load

    def counting(fh, **kw):
        calls.append(fh)
        return real(fh, **kw)

    monkeypatch.setattr(settings_mod.tomllib, "load", counting)
    assert load_settings().face.min_face_px == 120
    assert len(calls) == 1


def test_invalid_toml_is_one_clear_error(tmp_path) -> None:
    cfg = write(tmp_path, "[face\n")
    with pytest.raises(ConfigError) as err:
        load_settings(config_file=cfg)
    assert "not valid TOML" in str(err.value) and str(cfg) in str(err.value)


def test_invalid_leftover_ota_toml_is_named(tmp_path) -> None:
    cfg = write(tmp_path, "")
    (tmp_path / "ota.toml").write_text("[ddi\n")
    with pytest.raises(ConfigError) as err:
        load_settings(config_file=cfg)
    assert "not valid TOML" in str(err.value) and str(tmp_path / "ota.toml") in str(err.value)


# --------------------------------------------------------------------------- ota.toml


def test_leftover_ota_toml_is_read_as_the_ota_section(tmp_path) -> None:
    """A terminal updated over the air from a release with a separate ota.toml
    (the services cannot rewrite /etc): the file is the [ota] table, validated by
    the same model, and OTA stays on."""
    cfg = write(tmp_path, "[camera]\nfps = 10\n")
    (tmp_path / "ota.toml").write_text(
        '[ddi]\nbase_url = "https://ota.example"\ncontroller_id = "C1-T01"\n'
        '[window]\ntimezone = "Asia/Urumqi"\n'
    )
    ota = load_settings(config_file=cfg).ota
    assert ota.enabled and ota.ddi.base_url == "https://ota.example"
    assert ota.ddi.controller_id == "C1-T01" and ota.window.timezone == "Asia/Urumqi"


def test_leftover_ota_toml_bad_values_are_reported_with_the_others(tmp_path) -> None:
    cfg = write(tmp_path, "[camera]\nfps = 0\n")
    (tmp_path / "ota.toml").write_text('[window]\ntimezone = "Mars/Olympus"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(config_file=cfg)
    text = str(err.value)
    assert "camera.fps" in text and "ota.window.timezone" in text


def test_ota_toml_beside_an_ota_section_is_refused_with_the_fix(tmp_path) -> None:
    cfg = write(tmp_path, "[ota]\nenabled = false\n")
    (tmp_path / "ota.toml").write_text('[ddi]\nbase_url = "https://ota.example"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(config_file=cfg)
    text = str(err.value)
    assert str(tmp_path / "ota.toml") in text and "[ota]" in text
    assert "care-terminal provision" in text


def test_care_ota_config_is_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CARE_OTA_CONFIG", str(tmp_path / "elsewhere.toml"))
    with pytest.raises(ConfigError, match="CARE_OTA_CONFIG is no longer read"):
        load_settings(config_file=write(tmp_path, ""))


def test_ota_is_off_until_provisioned(tmp_path) -> None:
    s = load_settings(config_file=write(tmp_path, ""))
    assert s.ota.enabled is False and s.ota.ddi.controller_id == ""


# --------------------------------------------------------------------------- the CLI


@pytest.mark.parametrize(
    "argv",
    [["ota", "status", "--json"], ["ota", "poll"], ["footfall", "summary"], ["sync", "status"]],
)
def test_commands_print_every_problem_and_exit_2(tmp_path, monkeypatch, capsys, argv) -> None:
    from terminal.app.cli import main

    cfg = write(
        tmp_path,
        "[footfall]\ndetect_every = 0\n" + '[ota.window]\ntimezone = "Mars/Olympus"\n',
    )
    monkeypatch.setenv("CARE_CONFIG", str(cfg))
    monkeypatch.setenv("CARE_DATA_DIR", str(tmp_path / "data"))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: invalid configuration")
    assert "footfall.detect_every" in err and "ota.window.timezone" in err


def test_ota_poll_says_when_ota_is_off(tmp_path, monkeypatch, capsys) -> None:
    from terminal.app.cli import main

    monkeypatch.setenv("CARE_CONFIG", str(write(tmp_path, "")))
    assert main(["ota", "poll"]) == 2
    assert "OTA is off" in capsys.readouterr().err


def test_ota_status_reads_the_ota_section(tmp_path, monkeypatch, capsys) -> None:
    import json

    from terminal.app.cli import main

    cfg = write(
        tmp_path,
        '[ota]\nenabled = true\n[ota.ddi]\nbase_url = "https://ota.example"\n'
        f'controller_id = "t1"\n[ota.paths]\nroot = "{tmp_path / "opt"}"\n',
    )
    monkeypatch.setenv("CARE_CONFIG", str(cfg))
    assert main(["ota", "status", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["config"] == str(cfg) and doc["enabled"] is True
    assert doc["ddi"] == "https://ota.example" and doc["controller_id"] == "t1"


def test_agent_starts_ota_from_the_same_settings(tmp_path) -> None:
    """`care-terminal agent` runs OTA beside sync exactly when [ota] enabled,
    built from the Settings it already loaded (no second file, no second load)."""
    import threading

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from sync.ota.manifest import public_key_text
    from terminal.app.commands.ota import start_ota_thread

    keys = tmp_path / "ota-keys"
    keys.mkdir()
    (keys / "district.pub").write_text(public_key_text(Ed25519PrivateKey.generate()))
    (tmp_path / "token").write_text("tok\n")
    stop = threading.Event()
    stop.set()  # the thread starts and ends at once: no server is asked
    off = Settings(ota={"paths": {"trust_dir": str(keys)}})
    assert start_ota_thread(stop, off) is None
    on = Settings(
        ota={
            "enabled": True,
            "ddi": {"controller_id": "t1", "target_token_file": str(tmp_path / "token")},
            "paths": {"trust_dir": str(keys), "work_dir": str(tmp_path / "w")},
        }
    )
    t = start_ota_thread(stop, on)
    assert t is not None
    t.join(5)
    assert not t.is_alive()
