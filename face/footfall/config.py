"""Footfall settings: one frozen dataclass, validated, built from a plain mapping
(the ``[footfall]`` table of the terminal's config file, when the composition
root wires one in)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from face.footfall.counting import CountingConfigError, LineSpec
from terminal.core.errors import ConfigError

DetectorKind = Literal["face", "person"]


@dataclass(frozen=True)
class FootfallConfig:
    # Counting line in normalised coordinates (0..1) and the side that is inside.
    line: LineSpec = field(default_factory=lambda: LineSpec(0.03, 0.5, 0.97, 0.5, inside="below"))
    # Camera of the footfall counter ("v4l2:1", "/dev/video2", a video file or a folder,
    # as camera.source); None = share the kiosk camera.
    source: str | None = None
    # "face": the face pack's detector (entrance camera facing people coming in);
    # "person": SSDLite body detector (overhead camera; no unique visitors/attendance).
    detector: DetectorKind = "face"
    # Directory of the person-detector pack (``face/footfall/person_model.py``).
    person_pack_dir: str | None = None
    # Run the detector on every n-th frame; the rest only keep time. None: 1 for the
    # face detector (about 5 ms), 3 for the person detector (about 45 ms on 1 thread).
    detect_every: int | None = None
    # Consecutive matched frames before a track is a person (ByteTrack).
    track_min_frames: int = 3
    # Seconds a lost track is kept for re-association (occlusion).
    lost_seconds: float = 1.5
    # A track lost mid-picture may come back as a new id within this many
    # seconds (occlusion) and is then stitched to the old one (0 = never).
    stitch_seconds: float = 2.0
    # Observations in a row needed to establish a side of the line.
    confirm_frames: int = 2
    # Detector score threshold; None = the pack's own.
    det_score: float | None = None
    # Faces narrower than this are ignored entirely (px at the camera resolution).
    min_face_px: float = 24.0
    # Faces at least this wide are embedded for unique visitors (px).
    embed_min_face_px: float = 48.0
    # At most this many embeddings per track (the largest faces win).
    max_embeds_per_track: int = 3
    # Cosine at or above which two crossings are the same anonymous visitor.
    same_person: float = 0.5
    # Attendance needs the accept threshold plus this margin ("clearly good").
    attendance_margin: float = 0.05
    # A consenting senior entering again after this long starts a new session.
    session_gap_minutes: float = 60.0
    # Resident ids whose gallery match excludes them from all counts (staff).
    staff_ids: tuple[str, ...] = ()
    # Upper bound on processed frames per second (leave CPU to the kiosk).
    max_fps: float = 15.0
    # Nominal camera frame rate (the tracker's time base when timestamps are missing).
    fps: float = 15.0
    # Seconds without observations before a track's state is forgotten.
    track_ttl: float = 5.0

    def __post_init__(self) -> None:
        problems = []
        if self.detector not in ("face", "person"):
            problems.append("footfall.detector must be 'face' or 'person'")
        if self.detect_every is not None and self.detect_every < 1:
            problems.append("footfall.detect_every must be at least 1")
        if self.track_min_frames < 1 or self.confirm_frames < 1:
            problems.append("footfall.track_min_frames and confirm_frames must be at least 1")
        if not 0.0 < self.lost_seconds <= 10.0:
            problems.append("footfall.lost_seconds must be in (0, 10]")
        if not 0.0 <= self.stitch_seconds <= 10.0:
            problems.append("footfall.stitch_seconds must be in [0, 10]")
        if not -1.0 <= self.same_person <= 1.0:
            problems.append("footfall.same_person must be a cosine in [-1, 1]")
        if not 0.0 <= self.attendance_margin <= 1.0:
            problems.append("footfall.attendance_margin must be in [0, 1]")
        if self.session_gap_minutes <= 0:
            problems.append("footfall.session_gap_minutes must be positive")
        if self.max_fps <= 0 or self.fps <= 0:
            problems.append("footfall.max_fps and fps must be positive")
        if self.max_embeds_per_track < 1:
            problems.append("footfall.max_embeds_per_track must be at least 1")
        if self.det_score is not None and not 0.0 < self.det_score < 1.0:
            problems.append("footfall.det_score must be in (0, 1)")
        for v in (self.line.x1, self.line.y1, self.line.x2, self.line.y2):
            if not 0.0 <= v <= 1.0:
                problems.append("footfall.line coordinates are fractions of the frame (0..1)")
                break
        if self.line.inside not in ("below", "above", "left", "right"):
            problems.append("footfall.line.inside must be below, above, left or right")
        if problems:
            raise ConfigError("; ".join(problems))

    @property
    def detect_stride(self) -> int:
        """``detect_every`` with its per-detector default resolved."""
        if self.detect_every is not None:
            return self.detect_every
        return 3 if self.detector == "person" else 1

    @property
    def identities(self) -> bool:
        """Unique visitors and attendance need faces."""
        return self.detector == "face"

    @classmethod
    def from_mapping(cls, doc: Mapping[str, Any]) -> FootfallConfig:
        """Build from a plain mapping (TOML table); unknown keys are refused."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise ConfigError(f"unknown footfall settings: {', '.join(unknown)}")
        kwargs = dict(doc)
        line = kwargs.pop("line", None)
        if line is not None:
            if not isinstance(line, Mapping):
                raise ConfigError("footfall.line must be a table with x1, y1, x2, y2, inside")
            try:
                kwargs["line"] = LineSpec(**dict(line))
            except TypeError as exc:
                raise ConfigError(f"footfall.line: {exc}") from exc
        if "staff_ids" in kwargs:
            kwargs["staff_ids"] = tuple(str(s) for s in kwargs["staff_ids"])
        try:
            return cls(**kwargs)
        except (TypeError, CountingConfigError) as exc:
            raise ConfigError(f"footfall settings: {exc}") from exc

    def with_line(self, line: LineSpec) -> FootfallConfig:
        return replace(self, line=line)
