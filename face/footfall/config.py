"""The footfall counter's runtime settings: one frozen dataclass built from the
validated ``[footfall]`` section (:class:`terminal.config.footfall.FootfallSettings`).

The section owns the rules, the defaults and the documentation of every value;
they are checked at boot with the rest of the configuration, so nothing here
validates them again. Code that builds a ``FootfallConfig`` directly (tests,
benches) starts from the same defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from face.footfall.counting import LineSpec
from terminal.config.footfall import FootfallLine, FootfallSettings

DetectorKind = Literal["face", "person", "fusion"]

DEFAULTS = FootfallSettings()


def line_spec(line: FootfallLine) -> LineSpec:
    """The counting line of a validated ``[footfall.line]`` table."""
    return LineSpec(
        line.x1,
        line.y1,
        line.x2,
        line.y2,
        inside=line.inside,
        hysteresis=line.hysteresis,
        edge_margin=line.edge_margin,
        extent_margin=line.extent_margin,
        face_px=line.face_px,
        commit_in=line.commit_in,
        commit_out=line.commit_out,
        leave_margin=line.leave_margin,
    )


@dataclass(frozen=True)
class FootfallConfig:
    # Each value is documented in terminal/config/footfall.py.
    line: LineSpec = field(default_factory=lambda: line_spec(DEFAULTS.line))
    source: str | None = DEFAULTS.source
    detector: DetectorKind = DEFAULTS.detector
    person_pack_dir: str | None = None
    detect_every: int | None = DEFAULTS.detect_every
    track_min_frames: int = DEFAULTS.track_min_frames
    lost_seconds: float = DEFAULTS.lost_seconds
    stitch_seconds: float = DEFAULTS.stitch_seconds
    confirm_frames: int = DEFAULTS.confirm_frames
    det_score: float | None = DEFAULTS.det_score
    min_face_px: float = DEFAULTS.min_face_px
    embed_min_face_px: float = DEFAULTS.embed_min_face_px
    max_embeds_per_track: int = DEFAULTS.max_embeds_per_track
    same_person: float = DEFAULTS.same_person
    attendance_margin: float = DEFAULTS.attendance_margin
    session_gap_minutes: float = DEFAULTS.session_gap_minutes
    staff_ids: tuple[str, ...] = DEFAULTS.staff_ids
    max_fps: float = DEFAULTS.max_fps
    fps: float = DEFAULTS.fps
    track_ttl: float = DEFAULTS.track_ttl
    body_every: int = DEFAULTS.body_every
    body_score: float = DEFAULTS.body_score
    head_w: float = DEFAULTS.head_w
    head_cy: float = DEFAULTS.head_cy
    motion: bool = DEFAULTS.motion

    @classmethod
    def from_settings(cls, section: FootfallSettings) -> FootfallConfig:
        """From the validated ``[footfall]`` section (``Settings.footfall``)."""
        return cls(
            line=line_spec(section.line),
            source=section.source,
            detector=section.detector,
            person_pack_dir=str(section.person_pack_dir) if section.person_pack_dir else None,
            detect_every=section.detect_every,
            track_min_frames=section.track_min_frames,
            lost_seconds=section.lost_seconds,
            stitch_seconds=section.stitch_seconds,
            confirm_frames=section.confirm_frames,
            det_score=section.det_score,
            min_face_px=section.min_face_px,
            embed_min_face_px=section.embed_min_face_px,
            max_embeds_per_track=section.max_embeds_per_track,
            same_person=section.same_person,
            attendance_margin=section.attendance_margin,
            session_gap_minutes=section.session_gap_minutes,
            staff_ids=tuple(section.staff_ids),
            max_fps=section.max_fps,
            fps=section.fps,
            track_ttl=section.track_ttl,
            body_every=section.body_every,
            body_score=section.body_score,
            head_w=section.head_w,
            head_cy=section.head_cy,
            motion=section.motion,
        )

    @property
    def detect_stride(self) -> int:
        """``detect_every`` with its per-detector default resolved."""
        if self.detect_every is not None:
            return self.detect_every
        return 3 if self.detector == "person" else 1

    @property
    def identities(self) -> bool:
        """Unique visitors and attendance need faces."""
        return self.detector in ("face", "fusion")

    def with_line(self, line: LineSpec) -> FootfallConfig:
        return replace(self, line=line)
