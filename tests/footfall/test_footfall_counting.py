"""Table-driven tests of the pure line counter (face/footfall/counting.py)."""

from __future__ import annotations

import pytest

from face.footfall.counting import (
    CountingConfigError,
    CountingLine,
    LineCounter,
    LineSpec,
    Zone,
    box_touches_edge,
    heading_border,
    touches_inside_border,
    validate_line,
)

W, H = 640, 480
# Horizontal line across the middle, inside = below, band +-30 px.
LINE = CountingLine(ax=40, ay=240, bx=600, by=240, inside="below", hysteresis=30, edge_margin=8)


def run(
    ys: list[float],
    *,
    confirm: int = 2,
    xs: list[float] | None = None,
    edges: set[int] | None = None,
    line: CountingLine = LINE,
) -> list[str]:
    counter = LineCounter(line, confirm_frames=confirm)
    out: list[str] = []
    for i, y in enumerate(ys):
        x = xs[i] if xs else 320.0
        ev = counter.observe(7, x, y, t=i / 15, at_edge=bool(edges and i in edges))
        if ev is not None:
            assert ev.track_id == 7
            out.append(ev.direction)
    return out


CASES = [
    # name, y positions (one per frame), expected events
    ("walk in", [100, 130, 160, 190, 220, 250, 280, 310, 340], ["in"]),
    ("walk out", [340, 310, 280, 250, 220, 190, 160, 130], ["out"]),
    ("born inside, walks deeper", [300, 330, 360, 400], []),
    ("born on the line, walks in", [240, 250, 280, 300, 330], []),
    ("u-turn inside the band", [150, 180, 210, 235, 260, 265, 240, 200, 170, 140], []),
    (
        "linger on the line with jitter",
        [150, 160, 200, 215, 262, 218, 266, 214, 265, 219, 262, 216, 180, 150],
        [],
    ),
    ("linger then go through", [150, 170, 215, 262, 218, 266, 214, 265, 300, 320, 340], ["in"]),
    ("one-frame glitch across is not a crossing", [150, 160, 300, 160, 150, 140], []),
    ("in, then really out again", [150, 180, 300, 320, 340, 300, 200, 150, 120], ["in", "out"]),
    (
        "in, out, in (three real crossings)",
        [150, 160, 300, 310, 150, 140, 300, 310],
        ["in", "out", "in"],
    ),
    ("pause in the band then continue", [150, 170] + [240] * 20 + [300, 320], ["in"]),
    ("band frames do not break confirmation", [150, 160, 300, 250, 310], ["in"]),
]


@pytest.mark.parametrize(("name", "ys", "expected"), CASES, ids=[c[0] for c in CASES])
def test_crossing_rules(name: str, ys: list[float], expected: list[str]) -> None:
    assert run(ys) == expected


@pytest.mark.parametrize(
    ("confirm", "ys", "expected"),
    [
        (1, [150, 300], ["in"]),
        (2, [150, 160, 300], []),  # only one frame inside: not confirmed
        (3, [150, 160, 170, 300, 310], []),
        (3, [150, 160, 170, 300, 310, 320], ["in"]),
    ],
)
def test_confirm_frames(confirm: int, ys: list[float], expected: list[str]) -> None:
    assert run(ys, confirm=confirm) == expected


def test_edge_observations_are_ignored() -> None:
    # Frames 2..5 are flagged as touching the frame edge: the jump across happens
    # there and must not count; the track later is simply established inside.
    ys = [150, 160, 300, 310, 320, 330, 340, 350]
    assert run(ys, edges={0, 1}) == []  # never established outside -> no entry
    assert run(ys, edges={2, 3, 4, 5}) == ["in"]  # outside established, inside confirmed later


def test_beside_the_segment_is_ignored() -> None:
    short = CountingLine(ax=200, ay=240, bx=440, by=240, inside="below", hysteresis=30)
    xs = [100.0] * 8  # walking past left of the door
    assert run([150, 170, 200, 260, 290, 310, 330, 350], xs=xs, line=short) == []
    xs = [300.0] * 8
    assert run([150, 170, 200, 260, 290, 310, 330, 350], xs=xs, line=short) == ["in"]


@pytest.mark.parametrize(
    ("inside", "line", "path", "expected"),
    [
        ("above", (40, 240, 600, 240), [(320, 350), (320, 340), (320, 150), (320, 140)], ["in"]),
        ("right", (320, 40, 320, 440), [(100, 240), (110, 240), (500, 240), (510, 240)], ["in"]),
        ("left", (320, 40, 320, 440), [(100, 240), (110, 240), (500, 240), (510, 240)], ["out"]),
        # endpoints given the other way round: same meaning
        ("below", (600, 240, 40, 240), [(320, 150), (320, 160), (320, 300), (320, 310)], ["in"]),
        # oblique line
        ("below", (40, 180, 600, 300), [(320, 120), (320, 130), (320, 330), (320, 340)], ["in"]),
    ],
)
def test_direction_configuration(
    inside: str, line: tuple[float, ...], path: list[tuple[float, float]], expected: list[str]
) -> None:
    cl = CountingLine(*line, inside=inside, hysteresis=30)  # type: ignore[arg-type]
    counter = LineCounter(cl, confirm_frames=2)
    events = [counter.observe(1, x, y, t=i) for i, (x, y) in enumerate(path)]
    assert [e.direction for e in events if e] == expected


def test_tracks_are_independent_and_counts_add_up() -> None:
    counter = LineCounter(LINE, confirm_frames=2)
    for i, y in enumerate([150, 160, 300, 310]):
        counter.observe(1, 320, y, t=i)
        counter.observe(2, 200, 500 - y, t=i)  # the other way
    assert (counter.count_in, counter.count_out) == (1, 1)


def test_prune_forgets_old_tracks_only() -> None:
    counter = LineCounter(LINE, confirm_frames=1, track_ttl=2.0)
    counter.observe(1, 320, 150, t=0.0)
    counter.observe(2, 320, 150, t=3.0)
    assert counter.prune(now=4.0) == [1]
    assert set(counter.tracks) == {2}
    assert counter.prune(now=10.0, alive=[2]) == []


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (CountingLine(40, 5, 600, 5, hysteresis=30), "frame edge"),
        (CountingLine(40, 470, 600, 470, hysteresis=30), "frame edge"),
        (CountingLine(40, 240, 600, 240, hysteresis=2), "too narrow"),
        (CountingLine(300, 240, 320, 240, hysteresis=30), "too short"),
        (CountingLine(320, 40, 320, 440, inside="below", hysteresis=30), "vertical"),
        (CountingLine(40, 240, 600, 240, inside="left", hysteresis=30), "horizontal"),
        (CountingLine(100, 100, 100, 100, hysteresis=30), "no length"),
    ],
)
def test_bad_lines_are_refused(line: CountingLine, message: str) -> None:
    with pytest.raises(CountingConfigError, match=message):
        validate_line(line, W, H)


def test_good_line_and_spec_scaling() -> None:
    spec = LineSpec(0.05, 0.5, 0.95, 0.5, inside="below", hysteresis=0.06, edge_margin=0.02)
    line = spec.to_pixels(W, H)
    validate_line(line, W, H)
    assert line.ay == 240 and line.hysteresis == pytest.approx(28.8)
    assert spec.as_dict()["inside"] == "below"


@pytest.mark.parametrize(
    ("box", "touches"),
    [
        ((100, 100, 200, 200), False),
        ((0, 100, 50, 200), True),
        ((600, 400, 639, 479), True),
        ((10, 10, 630, 470), False),
    ],
)
def test_box_touches_edge(box: tuple[float, ...], touches: bool) -> None:
    assert box_touches_edge(box, W, H, margin=8) is touches


# --------------------------------------------------------------------------- occlusion stitching


def _walk(
    counter: LineCounter,
    tid: int,
    pts: list[tuple[float, float, float]],
    *,
    edge: bool = False,
    size: float = 60.0,
) -> list[str]:
    out = []
    for t, x, y in pts:
        ev = counter.observe(tid, x, y, t, at_edge=edge, size=size)
        if ev is not None:
            out.append(ev.direction)
    return out


STITCH_CASES = [
    # name, lost track path, new track first points, expected events of the new track, stitched?
    (
        "hidden behind a pillar while crossing",
        [(0.0, 320, 100), (0.2, 320, 130), (0.4, 320, 160), (0.6, 320, 190)],
        [(1.4, 320, 300), (1.5, 322, 315), (1.6, 322, 330)],
        ["in"],
        True,
    ),
    (
        "new person far away from the prediction",
        [(0.0, 320, 100), (0.2, 320, 130), (0.4, 320, 160), (0.6, 320, 190)],
        [(1.4, 60, 400), (1.5, 60, 410), (1.6, 60, 420)],
        [],
        False,
    ),
    (
        "too late to be the same walk",
        [(0.0, 320, 100), (0.2, 320, 130), (0.4, 320, 160), (0.6, 320, 190)],
        [(3.4, 320, 300), (3.5, 322, 315), (3.6, 322, 330)],
        [],
        False,
    ),
    (
        "appears behind where the lost one was going",
        [(0.0, 320, 100), (0.2, 320, 130), (0.4, 320, 160), (0.6, 320, 190)],
        [(1.0, 320, 90), (1.1, 320, 85), (1.2, 320, 80)],
        [],
        False,
    ),
]


@pytest.mark.parametrize(
    ("name", "lost", "new", "expected", "stitched"), STITCH_CASES, ids=[c[0] for c in STITCH_CASES]
)
def test_occlusion_stitching(
    name: str,
    lost: list[tuple[float, float, float]],
    new: list[tuple[float, float, float]],
    expected: list[str],
    stitched: bool,
) -> None:
    counter = LineCounter(LINE, confirm_frames=2, stitch_window=2.0)
    assert _walk(counter, 1, lost) == []
    assert _walk(counter, 2, new) == expected
    st = counter.pop_stitches()
    assert bool(st) is stitched
    if stitched:
        assert (st[0].new_id, st[0].old_id) == (2, 1) and 1 not in counter.tracks


def test_tracks_leaving_or_entering_at_the_edge_are_never_stitched() -> None:
    counter = LineCounter(LINE, confirm_frames=2, stitch_window=2.0)
    _walk(counter, 1, [(0.0, 320, 100), (0.2, 320, 130), (0.4, 320, 160)])
    _walk(counter, 1, [(0.5, 320, 175)], edge=True)  # last seen touching the border
    assert _walk(counter, 2, [(1.2, 320, 300), (1.3, 320, 310), (1.4, 320, 320)]) == []
    counter = LineCounter(LINE, confirm_frames=2, stitch_window=2.0)
    _walk(counter, 1, [(0.0, 320, 100), (0.2, 320, 130), (0.4, 320, 160), (0.6, 320, 190)])
    assert _walk(counter, 2, [(1.4, 320, 300)], edge=True) == []  # born at the border
    assert counter.pop_stitches() == []


def test_stitching_disabled() -> None:
    counter = LineCounter(LINE, confirm_frames=2, stitch_window=0.0)
    _walk(counter, 1, [(0.0, 320, 100), (0.2, 320, 130), (0.4, 320, 160), (0.6, 320, 190)])
    assert _walk(counter, 2, [(1.4, 320, 300), (1.5, 322, 315), (1.6, 322, 330)]) == []


@pytest.mark.parametrize(
    ("box", "sideways", "touches"),
    [
        ((300, 400, 380, 479), False, True),  # cut by the bottom
        ((300, 400, 380, 479), True, False),  # ... its width is whole: a depth line keeps it
        ((300, 0, 380, 60), True, False),  # cut by the top, the same
        ((0, 300, 60, 380), True, True),  # cut by the left: its width is not whole
        ((600, 300, 639, 380), True, True),  # cut by the right
    ],
)
def test_box_touches_edge_sideways(box: tuple[float, ...], sideways: bool, touches: bool) -> None:
    assert box_touches_edge(box, W, H, 8, sideways=sideways) is touches


@pytest.mark.parametrize(
    ("inside", "box", "touches"),
    [
        ("below", (300, 420, 380, 479), True),
        ("below", (300, 0, 380, 60), False),
        ("above", (300, 0, 380, 60), True),
        ("left", (0, 200, 60, 280), True),
        ("right", (0, 200, 60, 280), False),
        ("right", (600, 200, 639, 280), True),
    ],
)
def test_touches_inside_border(inside: str, box: tuple[float, ...], touches: bool) -> None:
    vertical = inside in ("left", "right")
    line = CountingLine(
        ax=320 if vertical else 40,
        ay=40 if vertical else 240,
        bx=320 if vertical else 600,
        by=440 if vertical else 240,
        inside=inside,  # type: ignore[arg-type]
        hysteresis=30,
        edge_margin=8,
    )
    assert touches_inside_border(box, line, W, H, 8) is touches


BORN_CASES = [
    # name, born at the inside border, y positions, expected events
    (
        "came from under the camera, confirmed on the line, walks out",
        True,
        [250, 240, 200, 150, 120],
        ["out"],
    ),
    ("the same without the birth rule: not counted", False, [250, 240, 200, 150, 120], []),
    ("came from inside, turned back on the line", True, [300, 250, 235, 260, 300, 340], []),
    ("came from inside, stayed inside", True, [330, 360, 400], []),
]


@pytest.mark.parametrize(
    ("born", "ys", "expected"), [c[1:] for c in BORN_CASES], ids=[c[0] for c in BORN_CASES]
)
def test_born_inside(born: bool, ys: list[float], expected: list[str]) -> None:
    counter = LineCounter(LINE, confirm_frames=2)
    out = []
    for i, y in enumerate(ys):
        ev = counter.observe(3, 320.0, y, t=i / 15, born_inside=born)
        if ev is not None:
            out.append(ev.direction)
    assert out == expected


@pytest.mark.parametrize(
    ("name", "box", "velocity", "ahead", "expected"),
    [
        ("at the bottom border", (300, 420, 360, 475), (0, 0), 0.0, Zone.IN),
        ("at the top border", (300, 2, 360, 60), (0, 0), 0.2, Zone.OUT),
        ("nowhere near", (300, 200, 360, 260), (0, 300), 0.2, None),
        # 30 px above the bottom margin, going down 225 px/s: there in 0.13 s
        ("on its way down, 0.2 s ahead", (300, 350, 360, 410), (0, 225), 0.2, Zone.IN),
        ("on its way down, looking 0.1 s ahead", (300, 350, 360, 410), (0, 225), 0.1, None),
        ("going up, away from the bottom", (300, 350, 360, 410), (0, -225), 0.2, None),
        ("the rule off", (300, 350, 360, 410), (0, 225), 0.0, None),
    ],
)
def test_heading_border(
    name: str,
    box: tuple[float, float, float, float],
    velocity: tuple[float, float],
    ahead: float,
    expected: Zone | None,
) -> None:
    # leave margin 38 px (8 % of 480): the bottom border starts at y2 >= 441
    assert heading_border(box, velocity, ahead, LINE, W, H, 38.0) is expected, name
