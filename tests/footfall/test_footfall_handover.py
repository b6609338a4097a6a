"""Table-driven tests of the hand-over on a depth line: a back of a head that
comes out of the blob of a person on the inside takes over that track's side,
so a walk out from under the camera is counted once, by the head
(face/footfall/counting.py: came_out_of, LineCounter.hand_over)."""

from __future__ import annotations

import math

import pytest

from face.footfall.counting import CountingLine, LineCounter, Zone, came_out_of

FPS = 15.0
# a horizontal depth line at y = 240, inside below, band +-30 px, out at 90 px
DEPTH = CountingLine(
    ax=40, ay=240, bx=600, by=240, inside="below", hysteresis=30, commit_in=math.inf, commit_out=90
)

# (head box, box below, span, sideways distance or None)
CAME_OUT = {
    "straight above": ((300, 200, 340, 240), (270, 380, 370, 480), 1.0, 0.0),
    "above, half a width aside": ((350, 200, 390, 240), (270, 380, 370, 480), 1.0, 50.0),
    "above, a width aside": ((400, 200, 440, 240), (270, 380, 370, 480), 1.0, 100.0),
    "above, beyond a width aside": ((410, 200, 450, 240), (270, 380, 370, 480), 1.0, None),
    "beyond a narrower span": ((350, 200, 390, 240), (270, 380, 370, 480), 0.4, None),
    "level with its centre": ((300, 410, 340, 450), (270, 380, 370, 480), 1.0, None),
    "below it": ((300, 460, 340, 500), (270, 380, 370, 480), 1.0, None),
    "off (span 0)": ((300, 200, 340, 240), (270, 380, 370, 480), 0.0, None),
}


@pytest.mark.parametrize("name", list(CAME_OUT))
def test_came_out_of(name: str) -> None:
    head, below, span, want = CAME_OUT[name]
    assert came_out_of(head, below, span) == want


# One frame: observations as (track id, y, touches the bottom border) and an
# optional hand-over (new id, old id) made before them.
Frame = tuple[list[tuple[int, float, bool]], tuple[int, int] | None]


def step(
    counter: LineCounter, obs: list[tuple[int, float, bool]], t: float, i: int
) -> list[tuple[str, int, int]]:
    """One frame's observations, then settling: (direction, track id, i) of the counts."""
    out: list[tuple[str, int, int]] = []
    for tid, y, bottom in obs:
        ev = counter.observe(
            tid, 320.0, y, t, born_inside=bottom, border=Zone.IN if bottom else None
        )
        if ev is not None:
            out.append((ev.direction, ev.track_id, i))
    return out + [(c.direction, c.track_id, i) for c in counter.settle(t, {o[0] for o in obs})]


def play(frames: list[Frame]) -> tuple[list[tuple[str, int, int]], list[bool]]:
    """Feed the frames through a counter; returns (direction, track id,
    frame) of every count and the result of every hand-over asked for."""
    counter = LineCounter(DEPTH, confirm_frames=2, end_after=0.4)
    out: list[tuple[str, int, int]] = []
    handed: list[bool] = []
    t = 0.0
    for i, (obs, hand) in enumerate(frames):
        t = i / FPS
        if hand is not None:
            handed.append(counter.hand_over(*hand))
        out += step(counter, obs, t, i)
    out += [(c.direction, c.track_id, len(frames)) for c in counter.settle(t, final=True)]
    return out, handed


def blob_then_head(hand: bool, blob_after: list[float]) -> list[Frame]:
    """Track 1, a blob at the bottom (inside); track 2, a head first seen
    above it (already outside) walking away; optionally handed over."""
    frames: list[Frame] = [([(1, 420.0, True)], None), ([(1, 410.0, True)], None)]
    head = [200.0, 180.0, 160.0, 140.0, 120.0, 100.0]
    for k, y in enumerate(head):
        obs = [(2, y, False)]
        if k < len(blob_after):
            obs.append((1, blob_after[k], blob_after[k] > 380))
        frames.append((obs, (2, 1) if hand and k == 0 else None))
    return frames


HAND_OVER = {
    # without the hand-over the head never changes side: the exit is missed
    "no hand-over: missed": (blob_then_head(False, []), [], []),
    "hand-over: one exit, by the head": (blob_then_head(True, []), [("out", 2, 5)], [True]),
    # the blob seen again at the bottom and walking out itself does not count again
    "the blob walks out too: still one exit": (
        blob_then_head(True, [400.0, 390.0, 300.0, 200.0, 140.0, 100.0]),
        [("out", 2, 5)],
        [True],
    ),
    # a track not established on the inside has no side to give
    "the old track is outside: nothing to hand over": (
        [([(1, 120.0, False)], None), ([(1, 110.0, False)], None)]
        + [([(2, y, False)], (2, 1) if y == 200.0 else None) for y in (200.0, 150.0, 100.0)],
        [],
        [False],
    ),
}


@pytest.mark.parametrize("name", list(HAND_OVER))
def test_hand_over(name: str) -> None:
    frames, want, handed = HAND_OVER[name]
    got, did = play(frames)
    assert got == want
    assert did == handed


def two_heads(share: bool) -> list[tuple[str, int, int]]:
    """Track 1, a blob two heads wide at the bottom; heads 2 and then 3 come
    out of it (each handed over, ``share`` for a blob two heads wide) and walk
    out; the blob is seen at the bottom until head 3 comes out."""
    counter = LineCounter(DEPTH, confirm_frames=2, end_after=0.4)
    out: list[tuple[str, int, int]] = []
    t = 0.0
    for i in range(14):
        t = i / FPS
        obs: list[tuple[int, float, bool]] = []
        if i < 7:
            obs.append((1, 420.0, True))
        if i == 2:
            counter.hand_over(2, 1, share=share)
        if i == 6:
            counter.hand_over(3, 1, share=share)
        if 2 <= i < 8:
            obs.append((2, 200.0 - 20 * (i - 2), False))
        if i >= 6:
            obs.append((3, 200.0 - 20 * (i - 6), False))
        out += step(counter, obs, t, i)
    out += [(c.direction, c.track_id, 14) for c in counter.settle(t, final=True)]
    return out


@pytest.mark.parametrize(
    ("share", "want"),
    [
        (False, [("out", 2, 5)]),  # one head takes the side, the other has none
        (True, [("out", 2, 5), ("out", 3, 9)]),  # two people in the blob: both counted
    ],
)
def test_a_blob_two_heads_wide_shares_its_side_once(
    share: bool, want: list[tuple[str, int, int]]
) -> None:
    assert two_heads(share) == want


def test_hand_over_refused_for_a_track_already_known() -> None:
    counter = LineCounter(DEPTH, confirm_frames=2, end_after=0.4)
    for i in range(2):
        counter.observe(1, 320.0, 420.0, i / FPS, born_inside=True, border=Zone.IN)
        counter.observe(2, 320.0, 200.0, i / FPS)
    assert counter.established(1) is Zone.IN
    assert not counter.hand_over(2, 1)
    assert not counter.hand_over(3, 99)
    assert counter.established(1) is Zone.IN
