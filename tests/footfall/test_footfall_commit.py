"""Table-driven tests of deferred counting in the pure line counter: a change
of side counts only once the track is clearly across (the commit band) or has
left the picture through the border of that side; lingering, a pause or a
turn on the line and jitter never count (face/footfall/counting.py)."""

from __future__ import annotations

import math

import pytest

from face.footfall.counting import (
    LEAVE_MARGIN,
    CountingLine,
    LineCounter,
    LineSpec,
    Zone,
    border_side,
    cut_by_border,
)

FPS = 15.0
# A horizontal line at y = 240, inside below, band +-30 px.
BASE = {"ax": 40, "ay": 240, "bx": 600, "by": 240, "inside": "below", "hysteresis": 30}
# an image line: a change of side counts 90 px (three band half-widths) beyond the line
IMAGE = CountingLine(**BASE, commit_in=90, commit_out=90)  # type: ignore[arg-type]
# a depth line's defaults: inside only by leaving the picture there, outside at 90 px
DEPTH = CountingLine(**BASE, commit_in=math.inf, commit_out=90)  # type: ignore[arg-type]

# One observation a frame: a y position, "B<y>" for a box touching the
# bottom (inside) border, "G<y>" for one cut by it with most of the head out
# of the picture (gone under the camera), "T<y>" the top (outside) border, or
# None when the track is not seen on that frame.
Obs = float | str | None


def run(line: CountingLine, frames: list[Obs]) -> list[tuple[str, int]]:
    """Feed one track (id 7) through the counter, settling every frame and
    once more at the end; returns (direction, dated frame) of every count."""
    counter = LineCounter(line, confirm_frames=2, end_after=0.4)
    out: list[tuple[str, int]] = []
    t = 0.0
    for i, ob in enumerate(frames):
        t = i / FPS
        alive: set[int] = set()
        if ob is not None:
            border = None
            if isinstance(ob, str):
                border = Zone.IN if ob[0] in "BG" else Zone.OUT
                y = float(ob[1:])
            else:
                y = float(ob)
            gone = Zone.IN if isinstance(ob, str) and ob[0] == "G" else None
            ev = counter.observe(7, 320.0, y, t, border=border, gone=gone)
            alive.add(7)
            if ev is not None:
                out.append((ev.direction, round(ev.t * FPS)))
        out += [(c.direction, round(c.t * FPS)) for c in counter.settle(t, alive)]
    out += [(c.direction, round(c.t * FPS)) for c in counter.settle(t, final=True)]
    return out


def ramp(a: float, b: float, n: int) -> list[Obs]:
    return [a + (b - a) * k / (n - 1) for k in range(n)]


GONE: list[Obs] = [None] * 10  # two thirds of a second unseen: the track left

WALK_IN = ramp(100, 300, 6)  # from outside to 60 px past the line
WALK_OUT = ramp(300, 100, 6)
U_TURN = [*ramp(100, 300, 6), *ramp(300, 100, 6)]
PAUSE = [100, 150, 200, *([250, 275, 215, 280] * 5), 300, 340, 380]
LINGER = [100, 150, 200, 280, 300, 275, 310, 290, 305, 280, 200, 150, 100]
JITTER = [100, 150, 280, 200, 285, 195, 290, 205, 280, 150, 100]
RECROSS = [*ramp(100, 400, 7), *ramp(400, 100, 7), *ramp(100, 400, 7)]
LEAVES = [*WALK_IN, "B330", "B350", *GONE]
FAR_IN = [*ramp(100, 460, 10), "B470", *GONE]
U_TURN_AT_BORDER = [*WALK_IN, "B330", "B330", "B320", *WALK_OUT]
LOST_MID = [*WALK_IN, 310, 290, 320, 300, *GONE]
FACE_LOST = [*ramp(100, 230, 6), "B235", *GONE]
PIECE = [100, 90, 80, "B40", *GONE]
BACK_AND_OUT = [*WALK_IN, "B330", *GONE, "B330", *WALK_OUT]
OUT_FROM_BORDER = ["B330", "B320", *ramp(300, 100, 8)]
UNDER_AND_BACK = [*WALK_IN, "B330", "G340", "G345", "G340", "B330", *WALK_OUT]
SLIVER_OUT = ["G340", "G335", "B330", *ramp(300, 100, 8)]

# name: line, one observation a frame, expected (direction, dated frame)
CASES: dict[str, tuple[CountingLine, list[Obs], list[tuple[str, int]]]] = {
    # image line: counts at the commit band, dated to the first frame beyond
    # the dead band in the run that got there
    "walk in": (IMAGE, ramp(100, 400, 11), [("in", 6)]),
    "walk out": (IMAGE, ramp(400, 100, 11), [("out", 7)]),
    "linger past the line, short of the commit band, back out": (IMAGE, LINGER, []),
    "u-turn a step past the line": (IMAGE, U_TURN, []),
    "jitter across the line on both sides": (IMAGE, JITTER, []),
    "pause on the line, then in (dated when it last went over)": (IMAGE, PAUSE, [("in", 22)]),
    "in, out, in again: three crossings": (IMAGE, RECROSS, [("in", 4), ("out", 11), ("in", 18)]),
    # depth line: the inside counts only when the person leaves the picture there
    "walk in and out of the picture at the bottom": (DEPTH, LEAVES, [("in", 5)]),
    "walk in far past the line: counted once gone": (DEPTH, FAR_IN, [("in", 5)]),
    "u-turn touching the bottom border, then back out": (DEPTH, U_TURN_AT_BORDER, []),
    "linger past the line, track lost mid-picture": (DEPTH, LOST_MID, []),
    "face lost at the bottom while on the line: in": (DEPTH, FACE_LOST, [("in", 6)]),
    "a small box leaving at the bottom far outside": (DEPTH, PIECE, []),
    "in (leaves at the bottom), comes back, walks out": (
        DEPTH,
        BACK_AND_OUT,
        [("in", 5), ("out", 21)],
    ),
    "walk out past the commit band": (DEPTH, OUT_FROM_BORDER, [("out", 6)]),
    # the head goes under the camera (mostly out of the picture) and comes
    # back: in and out, not a U-turn, although the track never left
    "goes under the camera and comes back out": (
        DEPTH,
        UNDER_AND_BACK,
        [("in", 5), ("out", 14)],
    ),
    "a sliver of a head at the bottom that walks out: one exit": (DEPTH, SLIVER_OUT, [("out", 7)]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_deferred_counting(name: str) -> None:
    line, frames, expected = CASES[name]
    assert run(line, frames) == expected


def test_immediate_when_commit_within_the_band() -> None:
    """A commit band no wider than the dead band counts at once (the old rule)."""
    line = CountingLine(**BASE, commit_in=30, commit_out=0)  # type: ignore[arg-type]
    counter = LineCounter(line, confirm_frames=2)
    assert not counter.deferred
    events = [counter.observe(1, 320.0, y, i / FPS) for i, y in enumerate([100, 150, 280, 290])]
    assert [e.direction for e in events if e is not None] == ["in"]


def test_settle_waits_for_end_after() -> None:
    counter = LineCounter(DEPTH, confirm_frames=1, end_after=0.4)
    counter.observe(3, 320.0, 100.0, 0.0)
    counter.observe(3, 320.0, 300.0, 0.1, border=Zone.IN)
    assert counter.settle(0.3, ()) == []  # not gone long enough
    assert counter.settle(0.3, (3,)) == []  # seen on this frame
    [c] = counter.settle(0.6, ())
    assert (c.direction, c.t, c.track_id) == ("in", 0.1, 3)
    assert counter.count_in == 1
    assert counter.settle(5.0, ()) == []  # counted once


def test_line_spec_defaults_by_kind_of_line() -> None:
    image = LineSpec(0.03, 0.5, 0.97, 0.5).to_pixels(640, 480)
    assert image.commit_in == image.commit_out == pytest.approx(3 * image.hysteresis)
    depth = LineSpec(0.03, 0.7, 0.97, 0.7, hysteresis=0.03, face_px=80.0).to_pixels(640, 480)
    assert math.isinf(depth.commit_in)
    assert depth.commit_out == pytest.approx(3 * depth.hysteresis)
    assert depth.leave_margin == pytest.approx(0.08 * 480)
    explicit = LineSpec(0.03, 0.5, 0.97, 0.5, commit_in=1.0, commit_out=1.0)
    assert not LineCounter(explicit.to_pixels(640, 480)).deferred
    assert LineSpec(**explicit.as_dict()) == explicit  # round-trips through a truth file


@pytest.mark.parametrize(
    ("box", "cut", "side"),
    [
        ((300, 440, 380, 479), 0.55, Zone.IN),  # 80 wide, 39 in view at the bottom
        ((300, 400, 380, 479), 0.55, None),  # 79 of 80 in view: a whole head
        ((300, 420, 380, 520), 0.55, None),  # a face box past the border: 59 in view
        ((300, 440, 380, 479), 0.0, None),  # the rule off
        ((300, 200, 380, 240), 0.55, None),  # mid-picture
        ((300, 0, 380, 30), 0.55, Zone.OUT),  # the top border: the outside
    ],
)
def test_cut_by_border(box: tuple[int, int, int, int], cut: float, side: Zone | None) -> None:
    line = CountingLine(**BASE)  # type: ignore[arg-type]
    assert cut_by_border(box, line, 640, 480, 2.0, cut) is side


@pytest.mark.parametrize(
    ("box", "side"),
    [
        ((300, 400, 360, 479), Zone.IN),  # cut by the bottom: inside for inside = below
        ((300, 440, 360, 470), Zone.IN),  # within the leaving margin
        ((300, 0, 360, 60), Zone.OUT),
        ((300, 200, 360, 260), None),
    ],
)
def test_border_side(box: tuple[int, int, int, int], side: Zone | None) -> None:
    line = CountingLine(**BASE)  # type: ignore[arg-type]
    assert border_side(box, line, 640, 480, 38.4) is side


def test_a_track_found_again_at_the_bottom_continues_the_lost_one() -> None:
    """A person lingering on the threshold at the bottom of the picture, lost
    and found again there as a new track, then walking back out: nothing."""
    counter = LineCounter(DEPTH, confirm_frames=2, end_after=0.4)
    t = 0.0
    for y in [100, 150, 200, 250, 280, 290]:  # walks to the line (a depth line reads widths)
        assert counter.observe(1, 320.0, y, t, size=60) is None
        t += 1 / FPS
    assert counter.observe(1, 320.0, 285.0, t, size=60, border=Zone.IN) is None
    lost_at = t
    t += 0.2  # lost for 0.2 s at the bottom border, found again beside it
    assert counter.settle(t, ()) == []
    assert counter.observe(2, 330.0, 280.0, t, size=60, born_inside=True, border=Zone.IN) is None
    assert [(s.new_id, s.old_id) for s in counter.pop_stitches()] == [(2, 1)]
    for y in [250, 200, 150, 100]:  # and walks back out
        t += 1 / FPS
        assert counter.observe(2, 330.0, y, t, size=60) is None
    assert counter.settle(t + 1.0, (), final=True) == []
    assert (counter.count_in, counter.count_out) == (0, 0)
    assert lost_at < t


def test_born_at_the_bottom_far_outside_is_not_from_inside() -> None:
    """A small box first seen at the bottom border far outside the line (a
    piece of a body) does not start inside, so walking "out" is no exit; a
    head on the line there does."""
    counter = LineCounter(DEPTH, confirm_frames=2)
    far = 240.0 - 9 * 30  # nine band half-widths outside
    counter.observe(1, 320.0, far, 0.0, born_inside=True, border=Zone.IN)
    for k, y in enumerate([far - 10, far - 20, far - 30]):
        assert counter.observe(1, 320.0, y, (k + 1) / FPS) is None
    counter.observe(2, 320.0, 250.0, 0.0, born_inside=True, border=Zone.IN)
    got = [counter.observe(2, 320.0, y, (k + 1) / FPS) for k, y in enumerate([150, 120, 100, 90])]
    assert [c.direction for c in got if c is not None] == ["out"]


def test_commit_distances_come_from_the_config_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """[footfall.line] commit_in / commit_out / leave_margin, as a technician
    writes them in config.toml (TOML's inf included), reach the counter."""
    from face.footfall.config import FootfallConfig
    from terminal.config.settings import load_settings
    from terminal.core.errors import ConfigError

    def config(line: str) -> FootfallConfig:
        path = tmp_path / "config.toml"
        path.write_text(
            "[footfall.line]\nx1 = 0.03\ny1 = 0.7\nx2 = 0.97\ny2 = 0.7\n" + line, encoding="utf-8"
        )
        return FootfallConfig.from_settings(load_settings(config_file=path).footfall)

    default = config("")
    assert (default.line.commit_in, default.line.commit_out) == (None, None)
    assert default.line.leave_margin == LEAVE_MARGIN  # the section's default is the counter's
    cfg = config("commit_in = inf\ncommit_out = 1.5\nleave_margin = 0.05\n")
    px = cfg.line.to_pixels(640, 480)
    assert math.isinf(px.commit_in)
    assert px.commit_out == pytest.approx(1.5 * px.hysteresis)
    assert px.leave_margin == pytest.approx(0.05 * 480)
    for bad in ("commit_in = -1\n", "leave_margin = 0.6\n"):
        with pytest.raises(ConfigError):
            config(bad)
