"""terminal.config sits below the features and may not import them, so the
checks that need feature rules (footfall line geometry, OTA time slots, meal
windows) are restated there with the standard library. These tests hold each
restatement to the feature's own rule, so the two cannot drift apart."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from face.footfall.config import FootfallConfig
from face.footfall.counting import CountingConfigError, LineSpec, validate_line
from payment.domain import SlotWindows
from sync.ota.errors import OtaConfigError
from sync.ota.window import DEFAULT_PAYMENT_FLAG, Slot
from terminal.config.footfall import FootfallLine, FootfallSettings, line_problems
from terminal.config.ota import DEFAULT_PAYMENT_FLAG as CONFIG_PAYMENT_FLAG
from terminal.config.ota import OtaSettings, slot_problem
from terminal.config.settings import PaymentSettings
from terminal.core.errors import TerminalError


def counting_refuses(line: FootfallLine, width: int, height: int) -> bool:
    spec = LineSpec(
        line.x1,
        line.y1,
        line.x2,
        line.y2,
        inside=line.inside,
        hysteresis=line.hysteresis,
        edge_margin=line.edge_margin,
        extent_margin=line.extent_margin,
    )
    try:
        validate_line(spec.to_pixels(width, height), width, height)
    except CountingConfigError:
        return True
    return False


def raw_line(x1, y1, x2, y2, inside="below", hysteresis=0.06, edge_margin=0.02) -> FootfallLine:
    # model_construct: the geometry check alone, without the section's range checks
    return FootfallLine.model_construct(
        x1=x1,
        y1=y1,
        x2=x2,
        y2=y2,
        inside=inside,
        hysteresis=hysteresis,
        edge_margin=edge_margin,
        extent_margin=0.0,
    )


LINES = [
    (raw_line(0.03, 0.5, 0.97, 0.5), 640, 480),
    (raw_line(0.05, 0.01, 0.95, 0.01), 640, 480),
    (raw_line(0.05, 0.98, 0.95, 0.98), 640, 480),
    (raw_line(0.05, 0.5, 0.95, 0.5, hysteresis=0.004), 640, 480),
    (raw_line(0.45, 0.5, 0.55, 0.5), 640, 480),
    (raw_line(0.5, 0.1, 0.5, 0.9), 640, 480),
    (raw_line(0.5, 0.1, 0.5, 0.9, inside="left"), 640, 480),
    (raw_line(0.1, 0.5, 0.9, 0.5, inside="right"), 640, 480),
    (raw_line(0.3, 0.3, 0.3, 0.3), 640, 480),
    (raw_line(0.1, 0.2, 0.9, 0.8, inside="above"), 1280, 720),
    (raw_line(0.1, 0.5, 0.9, 0.5, hysteresis=0.01), 320, 240),
]


@pytest.mark.parametrize(("line", "w", "h"), LINES)
def test_line_geometry_table_matches_the_counter(line, w, h) -> None:
    assert bool(line_problems(line, w, h)) == counting_refuses(line, w, h)


unit = st.floats(0.0, 1.0, allow_nan=False)


@settings(max_examples=400, deadline=None)
@given(
    x1=unit,
    y1=unit,
    x2=unit,
    y2=unit,
    inside=st.sampled_from(["below", "above", "left", "right"]),
    hysteresis=st.floats(0.001, 0.49),
    edge=st.floats(0.0, 0.2),
    w=st.integers(160, 4096),
    h=st.integers(120, 4096),
)
def test_line_geometry_matches_the_counter(x1, y1, x2, y2, inside, hysteresis, edge, w, h) -> None:
    line = raw_line(x1, y1, x2, y2, inside, hysteresis, edge)
    assert bool(line_problems(line, w, h)) == counting_refuses(line, w, h)


def test_default_footfall_line_fits_the_default_camera() -> None:
    s = FootfallSettings()
    assert line_problems(s.line, 640, 480) == []
    assert not counting_refuses(s.line, 640, 480)
    assert FootfallConfig() == FootfallConfig.from_settings(s)


SLOTS = [
    "14:00-16:30",
    "20:00-06:00",
    "00:00-24:00",
    " 10:30-13:30 ",
    "23:59-00:00",
    "25:00-26:00",
    "12:00",
    "12:00-12:00",
    "1200-1300",
    "12:00-24:30",
    "9:00-10:00",
    "lunch",
    "",
]


def window_refuses(text: str) -> bool:
    try:
        Slot.parse(text)
    except OtaConfigError:
        return True
    return False


@pytest.mark.parametrize("text", SLOTS)
def test_ota_slot_table_matches_the_window_policy(text) -> None:
    assert (slot_problem(text) is not None) == window_refuses(text)


@settings(max_examples=300, deadline=None)
@given(st.from_regex(r"\A[0-2]?[0-9]:[0-6][0-9]-[0-2]?[0-9]:[0-6][0-9]\Z"))
def test_ota_slots_match_the_window_policy(text) -> None:
    assert (slot_problem(text) is not None) == window_refuses(text)


def test_payment_flag_default_is_the_kiosks() -> None:
    assert OtaSettings().window.payment_flag == CONFIG_PAYMENT_FLAG == DEFAULT_PAYMENT_FLAG


WINDOWS = [
    {"breakfast": "06:30-09:00", "lunch": "10:30-13:30", "dinner": "16:30-19:00"},
    {"午餐": "11:00-13:00"},
    {"Lunch": " 11:00 - 13:00 "},
    {"lunch": "13:30-10:30"},
    {"lunch": "10:30-10:30"},
    {"lunch": "noon"},
    {"lunch": "10:30-13:30-15:00"},
    {"lunch": "24:00-25:00"},
    {"brunch": "10:00-11:00"},
    {"breakfast": "06:30-11:00", "lunch": "10:30-13:30"},
    {"breakfast": "06:30-10:30", "lunch": "10:30-13:30"},
    {},
]


@pytest.mark.parametrize("windows", WINDOWS)
def test_meal_windows_match_the_payment_domain(windows) -> None:
    try:
        SlotWindows.from_dict(windows)
        domain_refuses = False
    except TerminalError:
        domain_refuses = True
    try:
        PaymentSettings(slot_windows=windows)
        config_refuses = False
    except ValueError:
        config_refuses = True
    assert config_refuses == domain_refuses
