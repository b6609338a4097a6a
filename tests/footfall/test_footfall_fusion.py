"""Table-driven tests of the pure fusion, fused tracking and depth-line logic
(face/footfall/fusion.py, counting.depth_anchor)."""

from __future__ import annotations

import math

import pytest

from face.footfall.counting import CountingLine, LineCounter, depth_anchor
from face.footfall.fusion import (
    Box,
    Candidate,
    FusedTracker,
    FusionParams,
    TrackerParams,
    claimed,
    explains,
    fuse,
    head_from_body,
    head_of_blob,
    split_columns,
)

P = FusionParams(head_w=0.4, head_cy=1.0, attach_gate=1.2, attach_size=2.2, body_score=0.35)


def face_at(cx: float, cy: float, w: float) -> Box:
    return (cx - w / 2, cy - w / 2, cx + w / 2, cy + w / 2)


def test_head_from_body_geometry() -> None:
    # body 100 px wide: head 40 px wide, centred, its centre 40 px below the top
    assert head_from_body((100, 50, 200, 350), P) == (130.0, 70.0, 170.0, 110.0)


FUSE_CASES: list[tuple[str, list[Box], list[Box], list[float], list[tuple[int, int]]]] = [
    # name, faces, bodies, body scores, expected (face, body) of each candidate
    ("face alone", [face_at(150, 90, 40)], [], [], [(0, -1)]),
    ("body alone (back of a head)", [], [(100, 50, 200, 350)], [0.8], [(-1, 0)]),
    (
        "face on its body: one person",
        [face_at(150, 90, 40)],
        [(100, 50, 200, 350)],
        [0.8],
        [(0, 0)],
    ),
    (
        "face standing on a torso blob (head still, torso moving)",
        [face_at(150, 60, 40)],
        [(110, 100, 190, 300)],
        [0.8],
        [(0, 0)],
    ),
    (
        "two side by side: each face to its own body",
        [face_at(150, 90, 40), face_at(260, 92, 40)],
        [(100, 50, 200, 350), (210, 52, 310, 350)],
        [0.8, 0.8],
        [(0, 0), (1, 1)],
    ),
    (
        "two side by side, one turned away: face + lone body",
        [face_at(150, 90, 40)],
        [(100, 50, 200, 350), (210, 52, 310, 350)],
        [0.8, 0.8],
        [(0, 0), (-1, 1)],
    ),
    ("weak body box is ignored", [], [(100, 50, 200, 350)], [0.2], []),
    (
        "a face far from the body is another person",
        [face_at(450, 90, 40)],
        [(100, 50, 200, 350)],
        [0.8],
        [(0, -1), (-1, 0)],
    ),
    (
        "a face much larger than the body's head is not its face",
        [face_at(150, 250, 150)],
        [(120, 20, 180, 170)],
        [0.8],
        [(0, -1), (-1, 0)],
    ),
    (
        "pieces of one moving blob beside a face are that person, not others",
        [face_at(150, 90, 40)],
        [(102, 60, 135, 200), (165, 60, 198, 190)],
        [0.9, 0.9],
        [(0, -1)],
    ),
    (
        "a blob beside that person's body columns is someone else",
        [face_at(150, 90, 40)],
        [(260, 70, 330, 300)],
        [0.9],
        [(0, -1), (-1, 0)],
    ),
]


@pytest.mark.parametrize(
    ("faces", "bodies", "scores", "expected"),
    [c[1:] for c in FUSE_CASES],
    ids=[c[0] for c in FUSE_CASES],
)
def test_fuse(
    faces: list[Box], bodies: list[Box], scores: list[float], expected: list[tuple[int, int]]
) -> None:
    cands = fuse(faces, [0.9] * len(faces), bodies, scores, P)
    assert [(c.face, c.body) for c in cands] == expected
    for c in cands:
        if c.face >= 0:
            assert c.box == faces[c.face]  # the face is the more precise head box
        else:
            assert c.box == head_from_body(bodies[c.body], P)


@pytest.mark.parametrize(
    ("face", "body", "ok"),
    [
        (face_at(150, 60, 40), (110, 100, 190, 300), True),  # just above the blob's top
        (face_at(150, 30, 40), (110, 100, 190, 300), False),  # far above it
        (face_at(150, 250, 40), (110, 100, 190, 300), False),  # in its lower half
        (face_at(250, 120, 40), (110, 100, 190, 300), False),  # beside it
        (face_at(150, 120, 100), (110, 100, 190, 300), False),  # wider than the box
    ],
)
def test_explains(face: Box, body: Box, ok: bool) -> None:
    assert explains(face, body) is ok


@pytest.mark.parametrize(
    ("name", "face", "body", "ok"),
    [
        # face 40 px wide at x 150: its body spans 150 +- 50 columns (head_w 0.4)
        ("hair and shoulder beside the head", face_at(150, 90, 40), (110, 50, 140, 200), True),
        ("the torso under it", face_at(150, 90, 40), (110, 110, 190, 300), True),
        ("a piece half outside its columns", face_at(150, 90, 40), (180, 80, 240, 200), False),
        ("wider than its body: a nearer person", face_at(150, 90, 40), (90, 80, 230, 400), False),
        (
            "reaching well above the face: a taller person",
            face_at(150, 90, 40),
            (120, 0, 180, 200),
            False,
        ),
        ("just within a face width above it", face_at(150, 90, 40), (120, 31, 180, 200), True),
    ],
)
def test_claimed(name: str, face: Box, body: Box, ok: bool) -> None:
    assert claimed(face, body, P) is ok, name


# ------------------------------------------------------------------ tracking


def cand(cx: float, cy: float, w: float = 40.0, face: int = 0, score: float = 0.9) -> Candidate:
    return Candidate(face_at(cx, cy, w), score, face, -1 if face >= 0 else 0)


def walk(
    frames: list[list[Candidate]], params: TrackerParams | None = None, fps: float = 15.0
) -> list[list[int]]:
    """Track ids output on each frame."""
    tr = FusedTracker(params or TrackerParams())
    out = []
    for i, cs in enumerate(frames):
        out.append([m.track_id for m in tr.update(cs, i / fps)])
    return out


def test_a_track_is_confirmed_after_min_hits_and_keeps_its_id() -> None:
    ids = walk([[cand(100, 100 + 8 * i)] for i in range(8)])
    assert ids[:2] == [[], []] and all(x == [1] for x in ids[2:])


def test_a_body_only_track_needs_more_hits() -> None:
    ids = walk([[cand(100, 100 + 8 * i, face=-1)] for i in range(8)])
    assert ids[:4] == [[]] * 4 and all(x == [1] for x in ids[4:])


def test_cues_alternating_keep_one_track() -> None:
    # the face shows on some frames, the body alone sees the person on others
    frames = [[cand(100, 100 + 8 * i, face=0 if i % 3 else -1)] for i in range(15)]
    ids = walk(frames)
    assert {t for x in ids for t in x} == {1}


def test_hidden_for_a_second_keeps_the_id() -> None:
    # walks down 8 px a frame, hidden behind another person for 15 frames (1 s)
    frames = [[cand(100, 100 + 8 * i)] if not 10 <= i < 25 else [] for i in range(35)]
    ids = walk(frames)
    assert {t for x in ids for t in x} == {1}
    assert ids[25] == [1]


def test_lost_longer_than_lost_seconds_is_a_new_track() -> None:
    frames = [[cand(100, 100 + 8 * i)] if not 10 <= i < 40 else [] for i in range(50)]
    ids = walk(frames)
    assert {t for x in ids for t in x} == {1, 2}


def test_two_side_by_side_keep_apart() -> None:
    frames = [[cand(200, 100 + 8 * i), cand(260, 100 + 8 * i)] for i in range(20)]
    ids = walk(frames)
    assert all(sorted(x) == [1, 2] for x in ids[2:])


def test_tailgating_one_behind_the_other_keep_apart() -> None:
    # the second follows 60 px behind on the same column, smaller (further away)
    frames = [[cand(200, 160 + 8 * i, 44), cand(205, 100 + 8 * i, 36)] for i in range(20)]
    ids = walk(frames)
    assert all(sorted(x) == [1, 2] for x in ids[2:])
    tr = FusedTracker()
    for i in range(20):
        tr.update([cand(200, 160 + 8 * i, 44), cand(205, 100 + 8 * i, 36)], i / 15)
    assert tr.tracks[1].cy > tr.tracks[2].cy  # ids did not swap


def test_a_weak_candidate_never_starts_a_track() -> None:
    assert walk([[cand(100, 100, score=0.3)] for _ in range(6)]) == [[]] * 6


def test_face_seen_is_remembered() -> None:
    tr = FusedTracker()
    for i in range(6):
        tr.update([cand(100, 100 + 8 * i, face=-1 if i < 4 else 0)], i / 15)
    assert tr.tracks[1].face_seen


# ------------------------------------------------------------------ depth line

LINE = CountingLine(ax=20, ay=300, bx=620, by=300, inside="below", hysteresis=30, edge_margin=8)


@pytest.mark.parametrize(
    ("head_px", "expect_y"),
    [
        (80.0, 300.0),  # on the line
        (80.0 * math.exp(0.1), 330.0),  # 10 % larger: at the band's inside edge
        (80.0 * math.exp(-0.1), 270.0),  # 10 % smaller: at its outside edge
    ],
)
def test_depth_anchor(head_px: float, expect_y: float) -> None:
    x, y = depth_anchor(LINE, 320.0, head_px, 80.0)
    assert x == pytest.approx(320.0) and y == pytest.approx(expect_y)


DEPTH_CASES = [
    # name, head widths and rows per frame, expected events
    ("walks in: grows past the line", [(30 + 6 * i, 200 + 5 * i) for i in range(16)], ["in"]),
    ("walks out: shrinks past it", [(120 - 6 * i, 300 - 5 * i) for i in range(16)], ["out"]),
    (
        # a short person lingering on the threshold: the head is low in the
        # picture (below the line) but its width says they are on the line
        "lingers on the threshold, head low in the picture",
        [(60 + 3 * i, 320) for i in range(7)]
        + [(80 + (4 if i % 2 else -4), 340) for i in range(20)]
        + [(80 - 4 * i, 330) for i in range(10)],
        [],
    ),
]


@pytest.mark.parametrize(
    ("obs", "expected"), [c[1:] for c in DEPTH_CASES], ids=[c[0] for c in DEPTH_CASES]
)
def test_depth_line_counts(obs: list[tuple[float, float]], expected: list[str]) -> None:
    counter = LineCounter(LINE, confirm_frames=2)
    events = []
    for i, (w, _row) in enumerate(obs):
        x, y = depth_anchor(LINE, 320.0, w, 80.0)
        ev = counter.observe(1, x, y, i / 15)
        if ev is not None:
            events.append(ev.direction)
    assert events == expected


# ------------------------------------------------------------------ blob splitting


def heads(*peaks: tuple[int, int], width: int) -> list[float]:
    """A blob's top row per column: one cone per (centre column, top row)."""
    return [min(float(row + 2 * abs(i - c)) for c, row in peaks) for i in range(width)]


SPLIT_CASES = [
    ("one person", heads((15, 10), width=30), [(0, 30)]),
    ("two side by side", heads((10, 10), (30, 12), width=40), [(0, 22), (22, 40)]),
    ("flat top (a box)", [10.0] * 30, [(0, 30)]),
    ("a step is no dip", [5.0] * 10 + [20.0] * 10, [(0, 20)]),
    (
        "an arm held out beside one person",
        [30.0] * 4 + [60.0] * 2 + heads((15, 10), width=24),
        [(0, 30)],
    ),
    ("three in a row", heads((8, 10), (26, 10), (44, 10), width=52), [(0, 18), (18, 36), (36, 52)]),
]


@pytest.mark.parametrize(
    ("top", "expected"), [c[1:] for c in SPLIT_CASES], ids=[c[0] for c in SPLIT_CASES]
)
def test_split_columns(top: list[float], expected: list[tuple[int, int]]) -> None:
    assert split_columns(top) == expected


def _rows(*spans: tuple[int, int, int]) -> list[tuple[int, int]]:
    """Row extents from (rows, first column, last column + 1) runs."""
    return [(a, b) for n, a, b in spans for _ in range(n)]


@pytest.mark.parametrize(
    ("name", "extents", "expected"),
    [
        # a 20 px head (24 rows) on 50 px shoulders: the head alone
        ("head on shoulders", _rows((24, 40, 60), (40, 25, 75)), (40.0, 0.0, 60.0, 24.0)),
        # only a head in the picture (the rest below the frame): the whole blob
        ("a head cut by the frame bottom", _rows((15, 10, 90)), (10.0, 0.0, 90.0, 15.0)),
        (
            "a head and its shoulders cut by the frame bottom",
            _rows((20, 40, 60), (5, 25, 75)),
            (40.0, 0.0, 60.0, 20.0),
        ),
        # the top of a head is narrower: the head's full width is taken
        (
            "a rounded crown",
            _rows((3, 45, 55), (25, 40, 60), (30, 20, 80)),
            (40.0, 0.0, 60.0, 24.0),
        ),
        (
            "a crown one pixel wide",
            _rows((1, 49, 51), (1, 46, 54), (22, 40, 60)),
            (40.0, 0.0, 60.0, 24.0),
        ),
        ("empty rows are skipped", _rows((2, 0, 0), (30, 40, 60)), (40.0, 0.0, 60.0, 24.0)),
        ("no mask at all", _rows((5, 0, 0)), (0.0, 0.0, 0.0, 0.0)),
    ],
)
def test_head_of_blob(name: str, extents: list[tuple[int, int]], expected: Box) -> None:
    assert head_of_blob(extents) == expected, name


def test_fuse_uses_a_measured_head_where_there_is_one() -> None:
    body = (100.0, 300.0, 200.0, 480.0)  # cut by the frame bottom: only head and shoulders
    measured = (110.0, 300.0, 190.0, 396.0)
    cands = fuse([], [], [body], [0.8], P, [measured])
    assert [c.box for c in cands] == [measured]
    cands = fuse([], [], [body], [0.8], P, [None])
    assert [c.box for c in cands] == [head_from_body(body, P)]


def test_a_track_remembers_the_box_it_was_born_with() -> None:
    tr = FusedTracker(TrackerParams())
    first = cand(300, 460)
    out = []
    for i in range(5):
        out = tr.update([cand(300, 460 - 10 * i)], i / 15)
    assert out and out[0].first == first.box


def test_a_face_track_keeps_its_person_when_only_a_wide_blob_head_is_left() -> None:
    # the face leaves the picture at the bottom; the blob cut there measures a
    # head four times too wide, centred where the face was going
    frames = [[cand(300, 380 + 8 * i, w=90)] for i in range(5)]
    frames += [[cand(300, 420 + 4 * i, w=360, face=-1)] for i in range(3)]
    assert walk(frames)[-3:] == [[1], [1], [1]]


def test_a_face_less_track_still_needs_a_plausible_size() -> None:
    frames = [[cand(300, 200 + 8 * i, w=40, face=-1)] for i in range(6)]
    frames += [[cand(300, 250, w=160, face=-1)]]
    assert 1 not in walk(frames)[-1]


def test_a_face_track_follows_its_body_size_once_the_face_is_gone_for_a_while() -> None:
    tr = FusedTracker(TrackerParams(face_hold=1.0))
    t = 0.0
    for i in range(5):  # comes in showing a 90 px face
        t = i / 15
        tr.update([cand(300, 380 + 4 * i, w=90)], t)
    sizes = []
    for i in range(1, 31):  # turns away and walks off: a 40 px head from the body
        out = tr.update([cand(300, 390 - 4 * i, w=40, face=-1)], t + i / 15)
        sizes.append(out[0].box[2] - out[0].box[0])
    assert sizes[5] == pytest.approx(90.0)  # within face_hold the face's size holds
    assert sizes[-1] == pytest.approx(40.0, abs=1.0)  # then the body's is followed


# ------------------------------------------------- pieces of a tracked person


def face_track_then(extra: list[Candidate], gap: int = 0) -> list[list[int]]:
    """A face walks down for 6 frames; then (after ``gap`` empty frames) its
    face shows again together with the ``extra`` face-less candidates, for 8
    frames."""
    frames = [[cand(300, 200 + 8 * i, w=40)] for i in range(6)]
    frames += [[] for _ in range(gap)]
    frames += [[cand(300, 248 + 8 * i, w=40), *extra] for i in range(8)]
    return walk(frames, TrackerParams(claim_recent=0.2, claim_span=2.0))


@pytest.mark.parametrize(
    ("name", "extra", "gap", "new_track"),
    [
        # under the head, beside it within claim_span head widths: a piece of the blob
        ("a shoulder beside the head", [cand(340, 300, w=30, face=-1)], 0, False),
        ("the torso below the head", [cand(300, 330, w=50, face=-1)], 0, False),
        # beyond claim_span head widths a blob is someone else
        ("someone beside", [cand(390, 300, w=40, face=-1)], 0, True),
        # a head more than 1.5 head widths above the track's is someone behind
        ("someone taller behind", [cand(310, 180, w=36, face=-1)], 0, True),
        # a face is a person of its own, never a piece
        ("a second face", [cand(345, 300, w=36)], 0, True),
    ],
)
def test_a_face_less_candidate_under_a_face_track_starts_no_track(
    name: str, extra: list[Candidate], gap: int, new_track: bool
) -> None:
    ids = face_track_then(extra, gap)
    assert (max(t for x in ids for t in x) > 1) is new_track, name


def test_a_face_track_claims_pieces_only_while_recently_seen() -> None:
    # the face (8 px a frame down) is lost; a piece shows 50 px beside and 70 px
    # below where it should be, too far to be taken for the head itself
    tr = FusedTracker(TrackerParams(claim_recent=0.2, claim_span=2.0))
    for i in range(6):
        tr.update([cand(300, 200 + 8 * i, w=40)], i / 15)
    births = []
    for k in range(1, 6):
        tr.update([cand(350, 200 + 8 * (5 + k) + 70, w=30, face=-1)], (5 + k) / 15)
        births.append(len(tr.tracks) - 1)
    # claimed while the track was seen within 0.2 s (3 frames), then a track
    assert births[:3] == [0, 0, 0] and births[3] == 1


def test_pieces_start_tracks_when_the_rule_is_off() -> None:
    frames = [[cand(300, 200 + 8 * i, w=40)] for i in range(6)]
    frames += [[cand(300, 248 + 8 * i, w=40), cand(340, 300, w=30, face=-1)] for i in range(8)]
    ids = walk(frames, TrackerParams(claim_recent=0.0))
    assert {t for x in ids for t in x} == {1, 2}


@pytest.mark.parametrize(("dx", "new_track"), [(24, False), (40, True)])
def test_a_body_only_track_claims_only_pieces_close_beside_it(dx: float, new_track: bool) -> None:
    # the back of a head (never a face), 40 px, walking up the picture: a blob
    # piece within 0.8 head widths sideways is a piece of it (a shoulder); one
    # a head width away may be someone walking out beside it
    frames = [[cand(300, 400 - 8 * i, w=40, face=-1)] for i in range(8)]
    frames += [
        [cand(300, 336 - 8 * i, w=40, face=-1), cand(300 + dx, 370 - 8 * i, w=30, face=-1)]
        for i in range(8)
    ]
    ids = walk(frames, TrackerParams(claim_recent=0.2, claim_span_body=0.8))
    assert ({t for x in ids for t in x} == {1, 2}) is new_track


def test_body_only_tracks_claim_nothing_when_their_span_is_zero() -> None:
    frames = [[cand(300, 400 - 8 * i, w=40, face=-1)] for i in range(8)]
    frames += [
        [cand(300, 336 - 8 * i, w=40, face=-1), cand(324, 370 - 8 * i, w=30, face=-1)]
        for i in range(8)
    ]
    ids = walk(frames, TrackerParams(claim_recent=0.2, claim_span_body=0.0))
    assert {t for x in ids for t in x} == {1, 2}


# --------------------------------------------- no step back along the way


def leader_then(vy: float, back: float, params: TrackerParams) -> bool:
    """A leader's face (100 px) walks down ``vy`` px a frame with a follower's
    face (60 px) behind it; the leader is lost for three frames (near the
    bottom of the picture), then a face-less blob head shows ``back`` leader
    head widths behind the leader's last position. Returns whether the
    leader's track took it."""
    tr = FusedTracker(params)
    for i in range(8):
        tr.update([cand(260, 200 + vy * i, w=100), cand(310, 180 + 6 * i, w=60)], i / 15)
    last = 200 + vy * 7
    for i in range(8, 11):
        tr.update([cand(310, 180 + 6 * i, w=60)], i / 15)
    blob = cand(265, last - 100 * back, w=50, face=-1)
    seen = tr.update([cand(310, 180 + 6 * 11, w=60), blob], 11 / 15)
    return any(m.track_id == 1 and m.candidate == 1 for m in seen)


@pytest.mark.parametrize(
    ("name", "vy", "back", "params", "taken"),
    [
        # 300 px/s = 3 head widths a second: a head width behind is the follower's blob
        ("fast, a head width behind", 20, 1.0, TrackerParams(back_gate=0.5), False),
        ("the rule off", 20, 1.0, TrackerParams(back_gate=0.0), True),
        # within back_gate: the head's own jitter
        ("fast, a third of a head behind", 20, 0.3, TrackerParams(back_gate=0.5), True),
        # 75 px/s, under back_speed: a slow track's velocity says little of its way
        ("slow, a head width behind", 5, 1.0, TrackerParams(back_gate=0.5), True),
    ],
)
def test_a_fast_face_track_takes_no_candidate_behind_it(
    name: str, vy: float, back: float, params: TrackerParams, taken: bool
) -> None:
    assert leader_then(vy, back, params) is taken, name
