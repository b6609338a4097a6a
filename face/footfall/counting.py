"""Line crossing with hysteresis: the pure core of footfall counting.

No IO, no clock, no OpenCV: positions and times come in as arguments, events
come out. Table-driven tests in ``tests/footfall/test_counting.py`` pin down
every rule below.

Geometry
    A counting line is a segment ``a -> b`` in pixels. The signed distance of a
    point from the line is positive on the *inside* side (chosen by
    configuration: ``below``/``above``/``left``/``right``). Around the line is
    a dead band of half-width ``hysteresis`` pixels.

Per-track state machine (one :class:`TrackState` per tracker id)
    * An observation beyond ``+hysteresis`` is in zone IN, beyond
      ``-hysteresis`` in zone OUT, anything closer is in the BAND and changes
      nothing (a person lingering on the line, swaying or half-stepping, never
      produces an event).
    * A zone must be seen on ``confirm_frames`` observations in a row (BAND
      observations neither extend nor break the run; only the opposite zone
      breaks it) before it becomes the track's *established* side. One-frame
      glitches of the box therefore never count.
    * The first established side is where the track starts: no event (a
      person who is first seen already inside was not seen entering).
    * A change of established side is one crossing: OUT -> IN is ``in``,
      IN -> OUT is ``out``. A U-turn inside the band never establishes the far
      side, so it is not counted; a person who really steps through and back
      is one entry and one exit, which is what happened.
    * Observations whose box touches the frame border (within
      ``edge_margin`` px) are ignored: a box cut off by the image edge has a
      biased centre, and tracks are born and die there.
    * Occlusion: a person hidden behind a pillar often comes back as a *new*
      tracker id. A track born away from the frame border is stitched to a
      track that was lost (also away from the border) within
      ``stitch_window`` seconds, when it appears where that track's motion
      predicts and further along its direction of travel; it then inherits
      the lost track's side, so the crossing made behind the pillar counts
      once. Births and deaths at the frame border are never stitched: those
      are people entering or leaving the picture.
    * Observations outside the segment's extent (projected beyond its ends by
      more than ``extent_margin`` of its length) are ignored: people walking
      past beside the door do not count.

Line placement (:func:`validate_line`)
    A line whose band does not fit inside the frame (with the edge margin) is
    refused: with the line at the frame edge, people appear already across it
    and crossings would be counted from tracks being born and dying.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Literal

InsideSide = Literal["below", "above", "left", "right"]
Direction = Literal["in", "out"]


class CountingConfigError(ValueError):
    """A counting line or counter parameter that cannot work (message fit to show)."""


class Zone(IntEnum):
    OUT = -1
    BAND = 0
    IN = 1


# How far beyond the line (in band half-widths) a change of side must get
# before it counts; chosen on the tuning clips (docs/footfall.md). On a depth
# line the inside is trusted only when the person leaves the picture there: a
# head's width tells depth only to about +-25 % (people's heights differ), and
# people who linger, pause or turn on the threshold reach 30 % wider heads.
COMMIT_IMAGE = 3.0
COMMIT_DEPTH_IN = math.inf
COMMIT_DEPTH_OUT = 3.0
LEAVE_MARGIN = 0.08  # a box this close to the frame border (fraction of the height) is leaving
LEAVE_GUARD = 6.0  # band half-widths (see LineCounter._near_line)
# band half-widths: on a depth line, a box at the bottom border 30 % narrower
# than a head on the line is a piece of a body, not a person coming from under
# the camera (see LineCounter.observe)
BORN_GUARD = 8.0
# seconds: a track that showed a face, lost where its box would touch a
# frame border this much later at its speed, left the picture there
# (heading_border); chosen on the tuning clips (docs/footfall.md)
LEAVE_AHEAD = 0.2
# a head box cut by the frame border so that less than this share of its
# width shows across the border is going out of the picture there
# (:func:`cut_by_border`); chosen on the tuning clips (docs/footfall.md)
GONE_CUT = 0.55
# a back of a head first seen above a track standing on the inside, within
# this many of that track's head widths sideways and this many seconds of its
# last observation, came out of that track's blob (see LineCounter.hand_over);
# 0 = off. Off since round 6: with the colour mask a back of a head no longer
# breaks out of the blob of the person in front, and the rule only took
# entries away on the tuning clips (docs/footfall.md, round 6)
HANDOVER_SPAN = 0.0
HANDOVER_RECENT = 0.1
# a track whose head box is at least this many times the line's face width is
# two people in one blob: it gives a copy of its side to the first head that
# comes out of it and the side itself to the next (LineCounter.hand_over)
HANDOVER_PAIR = 2.0


@dataclass(frozen=True, slots=True)
class LineSpec:
    """A counting line in *normalised* frame coordinates (0..1), independent of
    the camera resolution, as it is configured."""

    x1: float
    y1: float
    x2: float
    y2: float
    inside: InsideSide = "below"
    hysteresis: float = 0.06  # half-width of the dead band, as a fraction of the frame height
    edge_margin: float = 0.02  # fraction of the frame height
    extent_margin: float = 0.0  # allowed overshoot beyond the segment ends, fraction of its length
    # > 0: a *depth line* for a camera facing the door: a head crosses when its
    # width passes this many pixels (see :func:`depth_anchor`), whatever its row
    face_px: float = 0.0
    # how far beyond the line (in band half-widths) a change of side must get
    # before it counts, towards the inside and towards the outside; at most 1
    # counts it at once, inf only when the track leaves the picture on that
    # side; None: the default for the kind of line (COMMIT_*)
    commit_in: float | None = None
    commit_out: float | None = None
    leave_margin: float = LEAVE_MARGIN  # fraction of the frame height

    def commits(self) -> tuple[float, float]:
        """``commit_in`` and ``commit_out`` with their defaults resolved."""
        depth = self.face_px > 0
        cin = self.commit_in
        cout = self.commit_out
        if cin is None:
            cin = COMMIT_DEPTH_IN if depth else COMMIT_IMAGE
        if cout is None:
            cout = COMMIT_DEPTH_OUT if depth else COMMIT_IMAGE
        return cin, cout

    def to_pixels(self, width: int, height: int) -> CountingLine:
        cin, cout = self.commits()
        return CountingLine(
            ax=self.x1 * width,
            ay=self.y1 * height,
            bx=self.x2 * width,
            by=self.y2 * height,
            inside=self.inside,
            hysteresis=self.hysteresis * height,
            edge_margin=self.edge_margin * height,
            extent_margin=self.extent_margin,
            commit_in=cin * self.hysteresis * height,
            commit_out=cout * self.hysteresis * height,
            leave_margin=self.leave_margin * height,
        )

    def as_dict(self) -> dict[str, float | str | None]:
        return {
            "x1": self.x1,
            "y1": self.y1,
            "x2": self.x2,
            "y2": self.y2,
            "inside": self.inside,
            "hysteresis": self.hysteresis,
            "edge_margin": self.edge_margin,
            "extent_margin": self.extent_margin,
            "face_px": self.face_px,
            "commit_in": self.commit_in,  # None: the default for the kind of line
            "commit_out": self.commit_out,
            "leave_margin": self.leave_margin,
        }


@dataclass(frozen=True, slots=True)
class CountingLine:
    """A counting line in pixels with its inside side."""

    ax: float
    ay: float
    bx: float
    by: float
    inside: InsideSide = "below"
    hysteresis: float = 30.0
    edge_margin: float = 8.0
    extent_margin: float = 0.0
    # px beyond the line a change of side must reach to count (see LineSpec);
    # no more than hysteresis: at once
    commit_in: float = 0.0
    commit_out: float = 0.0
    leave_margin: float = 8.0  # px from the frame border: a box there is leaving (border_side)

    @property
    def length(self) -> float:
        return math.hypot(self.bx - self.ax, self.by - self.ay)

    def normal(self) -> tuple[float, float]:
        """Unit normal pointing to the inside side."""
        dx, dy = self.bx - self.ax, self.by - self.ay
        n = math.hypot(dx, dy)
        if n < 1e-9:
            raise CountingConfigError(
                "the counting line has no length (both ends are the same point)"
            )
        nx, ny = -dy / n, dx / n  # one of the two normals
        if self.inside in ("below", "above"):
            if abs(ny) < 0.2:
                raise CountingConfigError(
                    "the counting line is (nearly) vertical: choose inside = left or right"
                )
            want_down = self.inside == "below"
            if (ny > 0) != want_down:
                nx, ny = -nx, -ny
        else:
            if abs(nx) < 0.2:
                raise CountingConfigError(
                    "the counting line is (nearly) horizontal: choose inside = below or above"
                )
            want_right = self.inside == "right"
            if (nx > 0) != want_right:
                nx, ny = -nx, -ny
        return nx, ny

    def signed_distance(self, x: float, y: float) -> float:
        nx, ny = self.normal()
        return (x - self.ax) * nx + (y - self.ay) * ny

    def along(self, x: float, y: float) -> float:
        """Position of the point's projection along the segment (0 at a, 1 at b)."""
        dx, dy = self.bx - self.ax, self.by - self.ay
        n2 = dx * dx + dy * dy
        return ((x - self.ax) * dx + (y - self.ay) * dy) / n2 if n2 > 0 else 0.0


def validate_line(line: CountingLine, width: int, height: int) -> None:
    """Refuse a line that cannot be counted reliably in a ``width x height`` frame.

    The band (line +- hysteresis) plus the edge margin must fit inside the frame
    on both sides of the segment's midpoint, the band must be at least 4 px
    wide, and the segment must reach at least 1/5 of the frame.
    """
    if width <= 0 or height <= 0:
        raise CountingConfigError("frame size must be positive")
    if line.hysteresis < 4.0:
        raise CountingConfigError(
            f"the counting band is too narrow ({line.hysteresis:.1f} px; at least 4 px): "
            "raise footfall hysteresis"
        )
    if line.edge_margin < 0:
        raise CountingConfigError("the edge margin must not be negative")
    nx, ny = line.normal()
    if line.length < min(width, height) / 5:
        raise CountingConfigError("the counting line is too short (at least 1/5 of the frame)")
    mx, my = (line.ax + line.bx) / 2, (line.ay + line.by) / 2
    reach = line.hysteresis + line.edge_margin + 1.0
    for sign in (1.0, -1.0):
        px, py = mx + sign * nx * reach, my + sign * ny * reach
        if not (0.0 <= px < width and 0.0 <= py < height):
            raise CountingConfigError(
                "the counting line is too close to the frame edge: its band "
                f"(+-{line.hysteresis:.0f} px plus a {line.edge_margin:.0f} px margin) "
                "must lie inside the picture on both sides; move the line towards the middle"
            )


END_AFTER = 0.4  # seconds unseen after touching the border: the track left the picture
DEPTH_SCALE = 300.0  # px of anchor shift per unit of log head width


def depth_anchor(
    line: CountingLine, x: float, head_px: float, face_px: float
) -> tuple[float, float]:
    """The anchor of a head of width ``head_px`` for a depth line: the point at
    ``x`` shifted from the line along its inside normal by ``DEPTH_SCALE`` times
    the log of ``head_px / face_px``. Through a camera facing the door a head
    grows as the person comes closer, whatever their height, while the row of
    a near head depends on the person's height; so the head's width, not its
    row, tells which side of a floor line they stand on. The band is then
    +-hysteresis/DEPTH_SCALE in log width (+-10 % for a 30 px band)."""
    nx, ny = line.normal()
    t = line.along(x, line.ay)
    px = line.ax + t * (line.bx - line.ax)
    py = line.ay + t * (line.by - line.ay)
    shift = DEPTH_SCALE * math.log(max(head_px, 1e-3) / face_px)
    return px + nx * shift, py + ny * shift


def box_touches_edge(
    box: Iterable[float], width: int, height: int, margin: float, *, sideways: bool = False
) -> bool:
    """Whether the box is cut by the frame border (within ``margin`` px).

    ``sideways``: only the left and right borders count. A depth line reads a
    head's *width*, which a box cut by the bottom (or top) of the frame still
    shows; a person close under a camera facing the door is at the bottom of
    the picture exactly when they stand on the threshold, so ignoring those
    observations would lose the crossing."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if x1 <= margin or x2 >= width - 1 - margin:
        return True
    return not sideways and (y1 <= margin or y2 >= height - 1 - margin)


def touches_inside_border(
    box: Iterable[float], line: CountingLine, width: int, height: int, margin: float
) -> bool:
    """Whether the box touches the frame border on the line's inside side
    (the bottom for ``inside = "below"``, the left for ``"left"``...). The
    picture's border beyond the inside of the line is inside: a person who
    first shows there came from inside (from under a camera facing the door,
    or from the building's side of an overhead view)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return {
        "below": y2 >= height - 1 - margin,
        "above": y1 <= margin,
        "left": x1 <= margin,
        "right": x2 >= width - 1 - margin,
    }[line.inside]


def border_side(
    box: Iterable[float], line: CountingLine, width: int, height: int, margin: float
) -> Zone | None:
    """The side of the line whose frame border the box touches: IN for the
    border beyond the inside of the line (:func:`touches_inside_border`), OUT
    for the opposite one, None for neither."""
    b = [float(v) for v in box]
    if touches_inside_border(b, line, width, height, margin):
        return Zone.IN
    x1, y1, x2, y2 = b
    outside = {
        "below": y1 <= margin,
        "above": y2 >= height - 1 - margin,
        "left": x2 >= width - 1 - margin,
        "right": x1 <= margin,
    }[line.inside]
    return Zone.OUT if outside else None


def heading_border(
    box: Iterable[float],
    velocity: tuple[float, float],
    ahead: float,
    line: CountingLine,
    width: int,
    height: int,
    margin: float,
) -> Zone | None:
    """The side whose frame border the box touches (:func:`border_side`),
    or else the one it would touch ``ahead`` seconds on at ``velocity``
    (px/s): a track lost that close to the border on its way there left the
    picture by it (a face blurred by its own motion near the camera is lost
    a few frames before its box reaches the bottom)."""
    b = tuple(float(v) for v in box)
    side = border_side(b, line, width, height, margin)
    if side is not None or ahead <= 0:
        return side
    dx, dy = velocity[0] * ahead, velocity[1] * ahead
    return border_side((b[0] + dx, b[1] + dy, b[2] + dx, b[3] + dy), line, width, height, margin)


def cut_by_border(
    box: Iterable[float], line: CountingLine, width: int, height: int, margin: float, cut: float
) -> Zone | None:
    """The side whose frame border cuts the head box so that less than
    ``cut`` of the head's width shows across it (:func:`border_side`), or
    None. A person who walks on under a camera facing the door shows only
    the top of their head at the bottom of the picture before it goes: they
    are leaving there even while that sliver stays in view (someone who
    goes under the camera and comes back out is counted in and out, not
    taken for a U-turn on the line)."""
    b = [float(v) for v in box]
    side = border_side(b, line, width, height, margin)
    if side is None or cut <= 0:
        return None
    x1, y1 = max(0.0, b[0]), max(0.0, b[1])
    x2, y2 = min(float(width), b[2]), min(float(height), b[3])
    across, along = (x2 - x1, y2 - y1) if line.inside in ("left", "right") else (y2 - y1, x2 - x1)
    return side if across < cut * along else None


def came_out_of(
    head: tuple[float, float, float, float],
    below: tuple[float, float, float, float],
    span: float,
) -> float | None:
    """Whether a new head box came out of the blob of the head box ``below``
    (see :meth:`LineCounter.hand_over`): its centre higher in the picture
    than that box's centre, and within ``span`` of that box's widths of it
    sideways. Returns the sideways distance, or None."""
    bw = max(1.0, below[2] - below[0])
    dx = abs((head[0] + head[2]) / 2 - (below[0] + below[2]) / 2)
    if span <= 0 or dx > span * bw or (head[1] + head[3]) / 2 >= (below[1] + below[3]) / 2:
        return None
    return dx


@dataclass(frozen=True, slots=True)
class Crossing:
    """A counted crossing of one track."""

    track_id: int
    direction: Direction
    t: float  # the observation time that confirmed it (seconds, caller's time base)


@dataclass(slots=True)
class TrackState:
    established: Zone | None = None
    pending: Zone | None = None
    pending_count: int = 0
    last_t: float = 0.0
    crossings: int = 0
    # a change of established side not yet counted (commit band > 0): the side
    # the track went to; counted once the track is clearly across, or when it
    # leaves the picture through that side's border; a return cancels it
    unsettled: Zone | None = None
    # the side whose frame border the track's last observation touched
    border: Zone | None = None
    # the zone of the last observation (BAND included) and since when the
    # track has been in it: a crossing is dated when the track last went over
    run_zone: Zone | None = None
    run_t: float = 0.0
    d: float = math.nan  # signed distance of the last observation from the line
    # motion, for stitching across occlusions (pixels, pixels per second)
    x: float = math.nan
    y: float = math.nan
    vx: float = 0.0
    vy: float = 0.0
    size: float = 0.0
    last_at_edge: bool = True
    # its side went to a head that came out of its blob (LineCounter.hand_over):
    # it never takes a side again, nor do tracks that continue it
    spent: bool = False
    shared: bool = False  # it gave a copy of its side to one head already


@dataclass(frozen=True, slots=True)
class Stitch:
    """A new tracker id recognised as the continuation of a lost one."""

    new_id: int
    old_id: int
    t: float


@dataclass
class LineCounter:
    """Counts crossings of one line by many tracks.

    Call :meth:`observe` for every confirmed track observation (its anchor
    point and whether its box touches the frame border), and :meth:`prune`
    now and then to forget tracks that ended.
    """

    line: CountingLine
    confirm_frames: int = 2
    # seconds without observations after which a track whose last observation
    # touched the frame border has left the picture there (see settle)
    end_after: float = END_AFTER
    # a track born at the inside border where another left through it within
    # end_after seconds continues that one (see _rejoin)
    rejoin: bool = True
    # band half-widths: a track born at the inside border whose first
    # observation lies further than this outside did not come from inside
    born_guard: float = BORN_GUARD
    track_ttl: float = 5.0  # seconds without observations before a track's state is dropped
    stitch_window: float = 2.0  # seconds a lost track may come back as a new id (0 = never)
    stitch_radius: float = 1.5  # gate around the predicted position, in box sizes
    tracks: dict[int, TrackState] = field(default_factory=dict)
    count_in: int = 0
    count_out: int = 0
    stitches: list[Stitch] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.confirm_frames < 1:
            raise CountingConfigError("confirm_frames must be at least 1")
        self.line.normal()  # validates the inside side against the line's orientation

    def zone_of(self, x: float, y: float) -> Zone | None:
        """The zone of a point, or None when it is beside the segment."""
        along = self.line.along(x, y)
        m = self.line.extent_margin
        if along < -m or along > 1.0 + m:
            return None
        d = self.line.signed_distance(x, y)
        if d >= self.line.hysteresis:
            return Zone.IN
        if d <= -self.line.hysteresis:
            return Zone.OUT
        return Zone.BAND

    def observe(
        self,
        track_id: int,
        x: float,
        y: float,
        t: float,
        *,
        at_edge: bool = False,
        size: float = 0.0,
        born_inside: bool = False,
        border: Zone | None = None,
        gone: Zone | None = None,
    ) -> Crossing | None:
        """One observation of a confirmed track: its anchor point, the time,
        whether its box touches the frame border and its size (box height, px;
        used only to gate occlusion stitching). ``born_inside``: the track was
        born at the frame border on the inside side (:func:`touches_inside_border`);
        on its first observation it then starts on the inside, so a person who
        comes out from under the camera and is confirmed only once already on
        the line or beyond it is still counted leaving (unless that first
        observation is more than ``born_guard`` band half-widths outside, or
        it continues a track that just left there: :meth:`_rejoin`). ``border``: the side
        whose frame border the box touches (IN for the inside border), used
        when the track ends with a change of side not yet counted. ``gone``:
        the side whose border cuts the head so that most of it is out of the
        picture (:func:`cut_by_border`): a change of side to it not yet
        counted is counted now, as if the track had left."""
        state = self.tracks.get(track_id)
        if state is None:
            # a track born at the inside border came from there, not from behind a pillar
            if born_inside:
                state = self._rejoin(track_id, x, t, size) if self.rejoin else None
            else:
                state = self._stitch(track_id, x, y, t, at_edge, size)
            if state is None:
                if born_inside and self.born_guard > 0 and not at_edge:
                    # far outside on its first observation: not someone from inside
                    d0 = self.line.signed_distance(x, y)
                    born_inside = d0 > -self.born_guard * self.line.hysteresis
                state = TrackState(last_t=t, established=Zone.IN if born_inside else None)
            self.tracks[track_id] = state
        self._move(state, x, y, t, at_edge, size)
        state.last_t = t
        state.border = border
        if gone is not None and state.unsettled is gone and not state.spent:
            return self._count(state, track_id, gone, t)
        if at_edge or state.spent:
            return None
        zone = self.zone_of(x, y)
        if zone is None:
            return None
        state.d = self.line.signed_distance(x, y)
        if zone is not state.run_zone:
            state.run_zone, state.run_t = zone, t
        if zone is not Zone.BAND:
            if state.pending is zone:
                state.pending_count += 1
            else:
                state.pending, state.pending_count = zone, 1
            if state.pending_count >= self.confirm_frames and state.established is not zone:
                previous = state.established
                state.established = zone
                if previous is not None:
                    if not self.deferred:
                        return self._count(state, track_id, zone, t)
                    # a return to the side it came from cancels the change
                    state.unsettled = None if state.unsettled is not None else zone
        if state.unsettled is not None and self._clearly(state.unsettled, x, y):
            return self._count(state, track_id, state.unsettled, t)
        return None

    def _near_line(self, s: TrackState) -> bool:
        """Whether the track's last observation was within ``LEAVE_GUARD``
        band half-widths of the line on its established side: a box that
        leaves the picture far on that side is not a person walking over
        the line (on a depth line: a small box at the bottom is a piece of
        a body, not a near head)."""
        d = s.d if s.established is Zone.IN else -s.d
        return d < LEAVE_GUARD * self.line.hysteresis

    @property
    def deferred(self) -> bool:
        """Whether changes of side wait for the commit band (or the track's exit)."""
        return max(self.line.commit_in, self.line.commit_out) > self.line.hysteresis

    def _clearly(self, zone: Zone, x: float, y: float, *, d: float | None = None) -> bool:
        if d is None:
            d = self.line.signed_distance(x, y)
        if zone is Zone.IN:
            return d >= max(self.line.commit_in, self.line.hysteresis)
        return d <= -max(self.line.commit_out, self.line.hysteresis)

    def _count(self, state: TrackState, track_id: int, zone: Zone, t: float) -> Crossing:
        if self.deferred and state.run_zone is zone:
            t = state.run_t  # counted now, dated when it went over the line
        state.unsettled = None
        state.crossings += 1
        if zone is Zone.IN:
            self.count_in += 1
            return Crossing(track_id, "in", t)
        self.count_out += 1
        return Crossing(track_id, "out", t)

    def settle(
        self, now: float, alive: Iterable[int] = (), *, final: bool = False
    ) -> list[Crossing]:
        """Count the changes of side of tracks that left the picture through
        the frame border of the side they went to: not observed for
        ``end_after`` seconds (or at once, with ``final``, when the counter
        stops) with their last observation touching that border. The
        crossing's time is that observation's. Call once a frame with the
        ids observed on it. With ``final`` every other change not yet counted
        is dropped (the person stopped short of the commit band: lingering,
        a turn on the line)."""
        keep = set(alive)
        out: list[Crossing] = []
        for tid, s in self.tracks.items():
            if not final and (tid in keep or now - s.last_t <= self.end_after):
                continue
            gone_to = s.border
            if s.unsettled is not None and s.unsettled is gone_to:
                out.append(self._count(s, tid, s.unsettled, s.last_t))
            elif (
                s.unsettled is None
                and gone_to is not None
                and s.established is not None
                and s.established is not gone_to
                and self._near_line(s)
            ):
                # left the picture beyond the line (a near head whose width
                # was misread, a face lost at the bottom): that side it is
                s.established = gone_to
                out.append(self._count(s, tid, gone_to, s.last_t))
            elif final:
                s.unsettled = None
            s.border = None  # settled once
        return out

    @staticmethod
    def _move(state: TrackState, x: float, y: float, t: float, at_edge: bool, size: float) -> None:
        dt = t - state.last_t
        if not math.isnan(state.x) and dt > 1e-6 and not at_edge and not state.last_at_edge:
            a = 0.4  # smoothing of the velocity estimate
            state.vx = (1 - a) * state.vx + a * (x - state.x) / dt
            state.vy = (1 - a) * state.vy + a * (y - state.y) / dt
        state.x, state.y = x, y
        state.last_at_edge = at_edge
        if size > 0:
            state.size = size

    def _stitch(
        self, new_id: int, x: float, y: float, t: float, at_edge: bool, size: float
    ) -> TrackState | None:
        if self.stitch_window <= 0 or at_edge:
            return None
        best: tuple[float, int] | None = None
        for tid, s in self.tracks.items():
            gap = t - s.last_t
            if s.last_at_edge or math.isnan(s.x) or not (0.0 < gap <= self.stitch_window):
                continue
            if s.established is None and s.pending is None:
                continue
            px, py = s.x + s.vx * gap, s.y + s.vy * gap
            speed = math.hypot(s.vx, s.vy)
            gate = self.stitch_radius * max(s.size, size, 1.0) + 0.25 * speed * gap
            dist = math.hypot(x - px, y - py)
            if dist > gate:
                continue
            if speed > 1e-6 and (x - s.x) * s.vx + (y - s.y) * s.vy < 0:
                continue  # behind where it was going: not the same walk
            score = dist / gate
            if best is None or score < best[0]:
                best = (score, tid)
        if best is None:
            return None
        old_id = best[1]
        old = self.tracks.pop(old_id)
        self.stitches.append(Stitch(new_id, old_id, t))
        return TrackState(
            established=old.established,
            pending=old.pending,
            pending_count=old.pending_count,
            last_t=old.last_t,
            crossings=old.crossings,
            unsettled=old.unsettled,
            border=old.border,
            run_zone=old.run_zone,
            run_t=old.run_t,
            d=old.d,
            x=old.x,
            y=old.y,
            vx=old.vx,
            vy=old.vy,
            size=old.size,
            last_at_edge=old.last_at_edge,
            spent=old.spent,
        )

    def _rejoin(self, new_id: int, x: float, t: float, size: float) -> TrackState | None:
        """A track born at the inside border where another left through it
        moments ago (within ``end_after``, so not yet settled; within 1.5
        box sizes sideways) is that person found again: it continues that
        track's state. Under a camera facing the door a person on the
        threshold is at the bottom of the picture, where the tracker loses
        and finds them again; as two tracks, one "left inside" and the
        other "came from inside", a lingering person was counted in and
        out."""
        best: tuple[float, int] | None = None
        for tid, s in self.tracks.items():
            gap = t - s.last_t
            if s.border is not Zone.IN or math.isnan(s.x) or not 0.0 < gap <= self.end_after:
                continue
            dx = abs(x - s.x)
            if dx <= 1.5 * max(s.size, size, 1.0) and (best is None or dx < best[0]):
                best = (dx, tid)
        if best is None:
            return None
        old = self.tracks.pop(best[1])
        self.stitches.append(Stitch(new_id, best[1], t))
        return old

    def hand_over(self, new_id: int, old_id: int, share: bool = False) -> bool:
        """A new track takes over the state of a track established on the
        inside (the caller found it came out of that track's blob: a back of
        a head first seen just above a person at the bottom of the picture).
        Under a camera facing the door a person walking out from under it
        is first a blob cut by the bottom border (on the inside); their head
        comes out of it as a track of its own, already narrower than a face
        on the line, so on its own it would never change side. The old
        track's state goes to the new one (the old one, if seen again,
        starts afresh), so one walk out is counted once. With ``share`` (the
        old track's head is two heads wide: two people leaving in one blob)
        the first head to come out gets a copy of the state and the old
        track keeps its side for the next one. Returns whether it was taken
        over."""
        old = self.tracks.get(old_id)
        if new_id in self.tracks or old is None or old.established is not Zone.IN:
            return False
        # the new track takes the old one's side, but none of its motion
        taken = replace(old, x=math.nan, y=math.nan, vx=0.0, vy=0.0, border=None, last_at_edge=True)
        if share and not old.shared:
            old.shared = taken.shared = True
        else:
            # the old track keeps a state of its own with no side: were it
            # dropped, its next observation would make it born inside again
            self.tracks[old_id] = TrackState(
                last_t=old.last_t, x=old.x, y=old.y, size=old.size, spent=True
            )
        self.tracks[new_id] = taken
        return True

    def established(self, track_id: int) -> Zone | None:
        """The side a track is established on (None: not yet, or unknown)."""
        s = self.tracks.get(track_id)
        return s.established if s is not None else None

    def pop_stitches(self) -> list[Stitch]:
        out, self.stitches = self.stitches, []
        return out

    def prune(self, now: float, alive: Iterable[int] = ()) -> list[int]:
        """Drop tracks not observed for ``track_ttl`` seconds (unless in ``alive``)."""
        keep = set(alive)
        gone = [
            tid
            for tid, s in self.tracks.items()
            if tid not in keep and now - s.last_t > self.track_ttl
        ]
        for tid in gone:
            del self.tracks[tid]
        return gone

    def reset(self) -> None:
        self.tracks.clear()
        self.stitches.clear()
        self.count_in = 0
        self.count_out = 0
