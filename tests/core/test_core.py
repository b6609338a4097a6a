from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from terminal.config.settings import load_settings
from terminal.core.errors import ConfigError
from terminal.core.ids import UlidGenerator, is_ulid, ulid_timestamp_ms
from terminal.core.log import get_logger, setup_logging
from terminal.core.money import Money


def test_ulids_are_valid_unique_and_monotonic_within_a_millisecond() -> None:
    gen = UlidGenerator(now_ms=lambda: 1_700_000_000_000)
    ids = [gen.new() for _ in range(1000)]
    assert all(is_ulid(i) for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == 1000
    assert ulid_timestamp_ms(ids[0]) == 1_700_000_000_000


@pytest.mark.parametrize(
    ("text", "fen"),
    [("12", 1200), ("12.5", 1250), ("12.50", 1250), ("0.05", 5), ("-3", -300), (" 7.1 ", 710)],
)
def test_money_parses_yuan_exactly(text: str, fen: int) -> None:
    assert Money.parse_yuan(text) == Money(fen)


@pytest.mark.parametrize("bad", ["", "1.234", "abc", "1,5", "1e3"])
def test_money_rejects_bad_text(bad: str) -> None:
    with pytest.raises(ValueError):
        Money.parse_yuan(bad)


def test_money_refuses_floats() -> None:
    with pytest.raises(TypeError):
        Money(12.5)  # type: ignore[arg-type]
    assert Money(1250).yuan_str() == "12.50" and Money(-5).yuan_str() == "-0.05"


def test_settings_precedence_defaults_toml_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings().face.accept_threshold > 0
    cfg = tmp_path / "c.toml"
    cfg.write_text('log_level = "DEBUG"\n[face]\nmin_face_px = 120\n[centre]\ncentre_id = "c-9"\n')
    monkeypatch.setenv("CARE_CONFIG", str(cfg))
    s = load_settings()
    assert (s.log_level, s.face.min_face_px, s.centre.centre_id) == ("DEBUG", 120, "c-9")
    monkeypatch.setenv("CARE_FACE__MIN_FACE_PX", "90")
    assert load_settings().face.min_face_px == 90  # environment beats the file


def test_data_dir_follows_xdg_or_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "x"))
    assert load_settings().data_dir == tmp_path / "x" / "care-terminal"
    monkeypatch.setenv("CARE_DEVICE", "1")
    assert str(load_settings().data_dir) == "/var/lib/care-terminal"


@pytest.mark.parametrize(
    "content",
    [
        '[face]\naccept_threshold = "high"\n',
        "[face\n",
        "unknown_key = 1\n",
        "[face]\nuncertain_threshold = 0.9\naccept_threshold = 0.5\n",
    ],
)
def test_invalid_config_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str
) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(content)
    monkeypatch.setenv("CARE_CONFIG", str(cfg))
    with pytest.raises(ConfigError, match=str(cfg)):
        load_settings()


def test_logs_never_carry_names_ids_or_embeddings() -> None:
    buf = io.StringIO()
    setup_logging("DEBUG", stream=buf)
    try:
        log = get_logger("t")
        log.info(
            "enrolled 110101195001011234 phone 13812345678",
            name="张三华",
            id_number="110101195001011234",
            embedding=[0.1] * 512,
            note="card 11010119500101123X",
            resident="R001",
        )
    finally:
        logging.getLogger().handlers.clear()
    out = buf.getvalue()
    doc = json.loads(out)
    assert "张三华" not in out and "110101195001011234" not in out and "13812345678" not in out
    assert "11010119500101123X" not in out and "0.1, 0.1" not in out
    assert doc["resident"] == "R001" and doc["name"] == "[redacted]"
