"""The ``[footfall]`` section of config.toml: passive visitor counting.

Example::

    [footfall]
    source = "v4l2:1"            # the entrance camera; empty = share the kiosk camera
    detector = "face"
    staff_ids = ["R0012", "R0031"]

    [footfall.line]              # normalised coordinates (0..1) of the counting line
    x1 = 0.05
    y1 = 0.55
    x2 = 0.95
    y2 = 0.55
    inside = "below"

Every value, the line's geometry included, is checked at boot with the rest of
the configuration. The geometry needs a frame size: it is checked against
``[camera] width x height``, the size the footfall camera is opened with
(:func:`line_problems`, the same rules as ``face.footfall.counting``:
``LineSpec``/``CountingLine.normal`` and ``validate_line``). The pipeline checks
the line again against the frames it really gets. ``face.footfall.config``
builds the counter's runtime ``FootfallConfig`` from this validated section.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from terminal.config.section import Section

InsideSide = Literal["below", "above", "left", "right"]


class FootfallLine(Section):
    """``[footfall.line]``: the counting line in normalised frame coordinates."""

    x1: float = Field(ge=0.0, le=1.0)
    y1: float = Field(ge=0.0, le=1.0)
    x2: float = Field(ge=0.0, le=1.0)
    y2: float = Field(ge=0.0, le=1.0)
    # The side of the line that is inside the centre.
    inside: InsideSide = "below"
    # Half-width of the dead band around the line, as a fraction of the frame height.
    hysteresis: float = Field(0.06, gt=0.0, lt=0.5)
    # Boxes this close to the frame border are ignored (fraction of the frame height).
    edge_margin: float = Field(0.02, ge=0.0, lt=0.5)
    # Allowed overshoot beyond the segment ends, as a fraction of its length.
    extent_margin: float = Field(0.0, ge=0.0)
    # A camera facing the door: the face width (px) of a person standing on the
    # threshold; a head then counts as across when it is wider than that, whatever
    # its row (a depth line; 0 = the line in the picture). Measure it with
    # `footfall snapshot` and a person on the threshold.
    face_px: float = Field(0.0, ge=0.0, le=1000.0)
    # How far beyond the line, in band half-widths, a change of side must get
    # before it is counted, towards the inside and towards the outside (<= 1:
    # at once; inf: only when the person leaves the picture on that side).
    # Empty: 3 both ways on a line in the picture; on a depth line inf inwards
    # (head width reads depth to about +-25 %) and 3 outwards.
    commit_in: float | None = Field(None, ge=0.0)
    commit_out: float | None = Field(None, ge=0.0)
    # A box this close to the frame border (fraction of the frame height) is
    # leaving the picture on that side.
    leave_margin: float = Field(0.08, ge=0.0, lt=0.5)

    @model_validator(mode="after")
    def _direction(self) -> FootfallLine:
        # Frame-size independent part (the rest: line_problems with the frame size).
        if math.hypot(self.x2 - self.x1, self.y2 - self.y1) < 1e-9:
            raise ValueError("footfall.line has no length (both ends are the same point)")
        return self


def _default_line() -> FootfallLine:
    return FootfallLine(x1=0.03, y1=0.5, x2=0.97, y2=0.5, inside="below")


class FootfallSettings(Section):
    """``[footfall]``."""

    line: FootfallLine = Field(default_factory=_default_line)
    # Camera of the footfall counter ("v4l2:1", "/dev/video2", a video file or a folder,
    # as camera.source); empty = share the kiosk camera.
    source: str | None = None
    # "face": the face pack's detector (entrance camera facing people coming in);
    # "person": SSDLite body detector (overhead camera; no unique visitors/attendance);
    # "fusion": both, one track per person whichever sees them (counts people leaving
    # with their back to the camera; unique visitors from the faces that show).
    detector: Literal["face", "person", "fusion"] = "face"
    # Directory of the person-detector pack; empty = next to the face pack.
    person_pack_dir: Path | None = None
    # Run the detector on every n-th frame; empty: 1 for the face detector and
    # fusion, 3 for the person detector.
    detect_every: int | None = Field(None, ge=1)
    # Consecutive matched frames before a track is a person (ByteTrack).
    track_min_frames: int = Field(3, ge=1)
    # Seconds a lost track is kept for re-association (occlusion).
    lost_seconds: float = Field(1.5, gt=0.0, le=10.0)
    # A track lost mid-picture may come back as a new id within this many
    # seconds and is then stitched to the old one (0 = never).
    stitch_seconds: float = Field(2.0, ge=0.0, le=10.0)
    # Observations in a row needed to establish a side of the line.
    confirm_frames: int = Field(2, ge=1)
    # Detector score threshold; empty = the pack's own.
    det_score: float | None = Field(None, gt=0.0, lt=1.0)
    # Faces narrower than this are ignored (px at the camera resolution).
    min_face_px: float = Field(24.0, ge=0.0)
    # Faces at least this wide are embedded for unique visitors (px).
    embed_min_face_px: float = Field(48.0, ge=0.0)
    # At most this many embeddings per track.
    max_embeds_per_track: int = Field(3, ge=1)
    # Cosine at or above which two crossings are the same anonymous visitor.
    same_person: float = Field(0.5, ge=-1.0, le=1.0)
    # Attendance needs the accept threshold plus this margin.
    attendance_margin: float = Field(0.05, ge=0.0, le=1.0)
    # A consenting senior entering again after this long starts a new session.
    session_gap_minutes: float = Field(60.0, gt=0.0)
    # Resident ids whose gallery match excludes them from all counts (staff).
    staff_ids: tuple[str, ...] = ()
    # Upper bound on processed frames per second (leave CPU to the kiosk).
    max_fps: float = Field(15.0, gt=0.0)
    # Nominal camera frame rate (the tracker's time base when timestamps are missing).
    fps: float = Field(15.0, gt=0.0)
    # Seconds without observations before a track's state is forgotten.
    track_ttl: float = Field(5.0, gt=0.0)
    # detector = "fusion": run the body detector on every n-th frame (the face
    # detector runs on every frame).
    body_every: int = Field(3, ge=1, le=10)
    # detector = "fusion": body boxes below this score are ignored.
    body_score: float = Field(0.35, gt=0.0, lt=1.0)
    # detector = "fusion": a head inside a body box, measured on the tuning clips:
    # head (face box) width as a fraction of the body box width, and the head's
    # centre below the body box top in head widths.
    head_w: float = Field(0.39, gt=0.05, lt=1.0)
    head_cy: float = Field(1.0, ge=0.0, le=3.0)
    # detector = "fusion": also use moving foreground blobs as body boxes (a fixed
    # camera only; see docs/footfall.md for when to turn it off).
    motion: bool = True

    @field_validator("staff_ids", mode="before")
    @classmethod
    def _ids_as_text(cls, v: object) -> object:
        # Resident ids written as TOML numbers are ids all the same.
        if isinstance(v, list | tuple):
            return tuple(str(s) if isinstance(s, int) and not isinstance(s, bool) else s for s in v)
        return v

    @field_validator("source", mode="after")
    @classmethod
    def _empty_is_none(cls, v: str | None) -> str | None:
        return v or None


def line_problems(line: FootfallLine, width: int, height: int) -> list[str]:
    """Why ``line`` cannot be counted reliably in a ``width x height`` frame
    (empty when it can). The rules of ``face.footfall.counting``
    (``CountingLine.normal`` and ``validate_line``) in normalised terms, so the
    line is refused at boot rather than when the counter starts."""
    ax, ay, bx, by = line.x1 * width, line.y1 * height, line.x2 * width, line.y2 * height
    hysteresis, edge = line.hysteresis * height, line.edge_margin * height
    length = math.hypot(bx - ax, by - ay)
    if length < 1e-9:
        return ["footfall.line has no length (both ends are the same point)"]
    nx, ny = -(by - ay) / length, (bx - ax) / length
    if line.inside in ("below", "above"):
        if abs(ny) < 0.2:
            return ["footfall.line is (nearly) vertical: choose inside = left or right"]
    elif abs(nx) < 0.2:
        return ["footfall.line is (nearly) horizontal: choose inside = below or above"]
    problems = []
    size = f"{width}x{height}"
    if hysteresis < 4.0:
        problems.append(
            f"footfall.line.hysteresis gives a {hysteresis:.1f} px band at {size} (at least 4 px)"
        )
    if length < min(width, height) / 5:
        problems.append(f"footfall.line is too short at {size} (at least 1/5 of the frame)")
    mx, my = (ax + bx) / 2, (ay + by) / 2
    reach = hysteresis + edge + 1.0
    for sign in (1.0, -1.0):
        px, py = mx + sign * nx * reach, my + sign * ny * reach
        if not (0.0 <= px < width and 0.0 <= py < height):
            problems.append(
                f"footfall.line is too close to the frame edge at {size}: its band "
                "(hysteresis plus edge_margin) must lie inside the picture on both sides; "
                "move the line towards the middle"
            )
            break
    return problems
