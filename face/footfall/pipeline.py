"""The footfall pipeline: detect -> track -> count -> (who?) -> aggregate.

One :class:`FootfallPipeline` per camera. :meth:`FootfallPipeline.process`
takes one frame with its capture time (monotonic seconds, for tracking) and
the wall-clock time (centre-local, for hours and days) and returns what
happened. It does no IO: the service writes the closed hours and attendance
records it returns into the outbox.

Privacy by construction
    Frames are only read. Face embeddings live in per-track state (dropped,
    zero-filled, when the track ends) and in :class:`DailyVisitors` (cleared
    at the day's end and on stop). Nothing of them is in the returned
    reports: those carry directions, counts, and - only for consenting
    seniors recognised with a clearly good score - a resident id.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from face.footfall.aggregate import HourBucket, HourlyAggregator
from face.footfall.config import FootfallConfig
from face.footfall.counting import (
    GONE_CUT,
    HANDOVER_PAIR,
    HANDOVER_RECENT,
    HANDOVER_SPAN,
    LEAVE_AHEAD,
    Crossing,
    LineCounter,
    Zone,
    box_touches_edge,
    came_out_of,
    cut_by_border,
    depth_anchor,
    heading_border,
    touches_inside_border,
    validate_line,
)
from face.footfall.detectors import Detections, Detector, FaceBoxDetector
from face.footfall.identity import (
    AttendanceBook,
    AttendanceRecord,
    DailyVisitors,
    Decision,
    classify,
    unit,
)
from face.footfall.tracking import Tracker
from terminal.core.log import get_logger

if TYPE_CHECKING:
    from face.gallery import Gallery
    from face.pipeline import FaceEngine

log = get_logger(__name__)

STAGES = ("detect", "track", "count", "landmarks_embed", "identify")


@dataclass
class _TrackInfo:
    last_ts: float
    vectors: list[np.ndarray] = field(default_factory=list)
    embedded_px: float = 0.0
    decision: Decision | None = None
    decided_with: int = 0  # number of vectors the decision was made with
    visitor: int | None = None
    # the head box's last position and its smoothed velocity (px/s), to tell
    # which frame border a track lost on its way there was about to leave by
    box: tuple[float, float, float, float] | None = None
    vx: float = 0.0
    vy: float = 0.0
    face: bool = False  # a face was seen on it

    def follow(self, box: tuple[float, float, float, float], ts: float) -> None:
        """The box's new position; its velocity (the centre sideways, the
        bottom edge down) smoothed by half."""
        if self.box is not None and ts > self.last_ts:
            dt = ts - self.last_ts
            vx = ((box[0] + box[2]) - (self.box[0] + self.box[2])) / (2 * dt)
            self.vx = 0.5 * self.vx + 0.5 * vx
            self.vy = 0.5 * self.vy + 0.5 * (box[3] - self.box[3]) / dt
        self.box = box

    def descriptor(self) -> np.ndarray | None:
        if not self.vectors:
            return None
        return unit(np.mean(np.stack(self.vectors), axis=0))

    def wipe(self) -> None:
        for v in self.vectors:
            v.fill(0.0)
        self.vectors.clear()


@dataclass(frozen=True, slots=True)
class FootfallEvent:
    """One counted (or staff-excluded) crossing. No embedding, no image."""

    direction: str  # "in" | "out"
    track_id: int
    at: datetime  # when the track went over the line (counted at or after it)
    counted: bool  # False for staff
    new_visitor: bool = False
    attendance: AttendanceRecord | None = None


@dataclass
class FrameReport:
    detections: int = 0
    tracks: int = 0
    events: list[FootfallEvent] = field(default_factory=list)
    closed_hours: list[HourBucket] = field(default_factory=list)
    attendance: list[AttendanceRecord] = field(default_factory=list)
    detected: bool = True  # False when the frame was skipped by detect_every


@dataclass
class PipelineStats:
    frames: int = 0
    detected_frames: int = 0
    embeds: int = 0
    visits_in: int = 0
    visits_out: int = 0
    staff_crossings: int = 0
    attendance_records: int = 0
    stitches: int = 0
    stage_ms: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    def per_frame_ms(self) -> dict[str, float]:
        n = max(1, self.frames)
        return {k: round(v / n, 3) for k, v in self.stage_ms.items()}


class FootfallPipeline:
    def __init__(
        self,
        detector: Detector,
        tracker: Tracker,
        config: FootfallConfig,
        frame_size: tuple[int, int],
        *,
        gallery: Gallery | None = None,
        accept_threshold: float = 0.5,
        min_margin: float = 0.08,
        consented_ids: Collection[str] = (),
    ) -> None:
        width, height = frame_size
        self.config = config
        self.detector = detector
        self.tracker = tracker
        self.width, self.height = int(width), int(height)
        line = config.line.to_pixels(self.width, self.height)
        validate_line(line, self.width, self.height)
        self.line = line
        self.counter = LineCounter(
            line,
            confirm_frames=config.confirm_frames,
            track_ttl=config.track_ttl,
            stitch_window=config.stitch_seconds,
        )
        self.gallery = gallery
        self.accept_threshold = accept_threshold
        self.min_margin = min_margin
        self.consented_ids: frozenset[str] = frozenset(consented_ids)
        self.staff_ids: frozenset[str] = frozenset(config.staff_ids)
        self.identities = config.identities and isinstance(detector, FaceBoxDetector)
        self.visitors = DailyVisitors(same_person=config.same_person)
        self.book = AttendanceBook(session_gap=config.session_gap_minutes * 60.0)
        self.hours = HourlyAggregator()
        self.stats = PipelineStats()
        self._tracks: dict[int, _TrackInfo] = {}
        self._day: str | None = None
        self._frame_no = 0
        self._last_ts = 0.0
        # a face track lost where its box, moved on at its speed for this many
        # seconds, would touch a frame border left the picture there
        self.leave_ahead = LEAVE_AHEAD
        # a back of a head first seen above a track on the inside takes over
        # its side (LineCounter.hand_over): sideways span in that track's
        # head widths, and how recently it must have been seen
        self.handover_span = HANDOVER_SPAN
        self.handover_recent = HANDOVER_RECENT
        # ... and a track this many face widths wide (two people) shares it once
        self.handover_pair = HANDOVER_PAIR
        # a head cut by a border with less than this share of it in view is going out there
        self.gone_cut = GONE_CUT

    # ------------------------------------------------------------------ public
    def process(self, frame: np.ndarray, ts: float, now: datetime) -> FrameReport:
        report = FrameReport()
        self._last_ts = ts
        report.closed_hours += self._roll_day(now)
        report.closed_hours += [b for b in self.hours.tick(now) if not b.empty]
        self._frame_no += 1
        self.stats.frames += 1
        if (self._frame_no - 1) % self.config.detect_stride:
            report.detected = False
            return report
        self.stats.detected_frames += 1
        h, w = frame.shape[:2]
        if (w, h) != (self.width, self.height):
            frame = cv2.resize(frame, (self.width, self.height), interpolation=cv2.INTER_AREA)
        st = self.stats.stage_ms

        t0 = time.perf_counter()
        dets = self.detector.detect(frame)
        t1 = time.perf_counter()
        tracked = self.tracker.update(dets, ts)
        t2 = time.perf_counter()
        st["detect"] += (t1 - t0) * 1000
        st["track"] += (t2 - t1) * 1000
        report.detections = len(dets)
        report.tracks = len(tracked)

        gray: np.ndarray | None = None
        for tb in tracked:
            tc = time.perf_counter()
            box = tb.box
            cx, cy = float(box[0] + box[2]) / 2, float(box[1] + box[3]) / 2
            if self.config.line.face_px > 0:
                cx, cy = depth_anchor(
                    self.line, cx, float(box[2] - box[0]), self.config.line.face_px
                )
            edge = box_touches_edge(
                box,
                self.width,
                self.height,
                self.line.edge_margin,
                sideways=self.config.line.face_px > 0,
            )
            born_inside = tb.first_box is not None and touches_inside_border(
                tb.first_box, self.line, self.width, self.height, self.line.edge_margin
            )
            bx = (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
            prev = self._tracks.get(tb.track_id)
            face_track = prev is not None and prev.face
            border = heading_border(
                bx,
                (prev.vx, prev.vy) if prev is not None else (0.0, 0.0),
                self.leave_ahead if face_track else 0.0,
                self.line,
                self.width,
                self.height,
                self.line.leave_margin,
            )
            if prev is None and not born_inside and not dets.is_face(tb.det_index):
                donor = self._donor(bx, ts)
                if donor is not None:
                    dbox = self._tracks[donor].box
                    pair = self.handover_pair * self.config.line.face_px
                    wide = dbox is not None and dbox[2] - dbox[0] >= pair
                    self.counter.hand_over(tb.track_id, donor, share=wide)
            crossing = self.counter.observe(
                tb.track_id,
                cx,
                cy,
                ts,
                at_edge=edge,
                size=float(box[3] - box[1]),
                born_inside=born_inside,
                border=border,
                gone=cut_by_border(
                    dets.boxes[tb.det_index],
                    self.line,
                    self.width,
                    self.height,
                    self.line.edge_margin,
                    self.gone_cut,
                )
                if 0 <= tb.det_index < len(dets)
                else None,
            )
            for stitch in self.counter.pop_stitches():
                old = self._tracks.pop(stitch.old_id, None)
                if old is not None:  # the same person: keep their embeddings and visitor number
                    self._tracks[stitch.new_id] = old
                self.stats.stitches += 1
            info = self._tracks.get(tb.track_id)
            if info is None:
                info = self._tracks[tb.track_id] = _TrackInfo(last_ts=ts)
            info.follow(bx, ts)
            info.face |= dets.is_face(tb.det_index)
            info.last_ts = ts
            st["count"] += (time.perf_counter() - tc) * 1000
            if (
                self.identities
                and dets.is_face(tb.det_index)
                and (not edge or (crossing is not None and not info.vectors))
            ):
                # faces cut by the frame border embed badly: skip them unless nothing better exists
                gray = self._maybe_embed(
                    frame,
                    gray,
                    dets,
                    tb.det_index,
                    info,
                    force=crossing is not None and not info.vectors,
                )
            if crossing is not None:
                self._report(report, crossing, info, ts, now)
        alive = {tb.track_id for tb in tracked}
        for crossing in self.counter.settle(ts, alive):
            self._report(report, crossing, self._tracks.get(crossing.track_id), ts, now)
        self._prune(ts, alive)
        return report

    def drain(self, now: datetime) -> FrameReport:
        """Count the crossings still waiting for their track to be clearly
        across or gone (:meth:`LineCounter.settle`): at the end of a clip, or
        before the service stops; ``now`` is the time of the last frame."""
        report = FrameReport(detected=False)
        ts = self._last_ts
        for crossing in self.counter.settle(ts, final=True):
            self._report(report, crossing, self._tracks.get(crossing.track_id), ts, now)
        return report

    def flush(self, now: datetime) -> list[HourBucket]:
        """Close the current hour (service stop)."""
        return self.hours.flush(now)

    def close(self) -> None:
        """Forget everything held in memory (embeddings included)."""
        for info in self._tracks.values():
            info.wipe()
        self._tracks.clear()
        self.visitors.clear()
        self.book.clear()
        self.counter.reset()
        self.tracker.reset()

    def restore_attendance(self, day: str, sessions: dict[str, tuple[int, datetime]]) -> None:
        self.book.restore(day, sessions)

    def summary(self) -> dict[str, Any]:
        s = self.stats
        return {
            "frames": s.frames,
            "detected_frames": s.detected_frames,
            "visits_in": s.visits_in,
            "visits_out": s.visits_out,
            "unique_visitors": self.visitors.count if self.identities else None,
            "attendance_records": s.attendance_records,
            "staff_crossings": s.staff_crossings,
            "occlusion_stitches": s.stitches,
            "embeddings_computed": s.embeds,
            "stage_ms_per_frame": s.per_frame_ms(),
        }

    # ----------------------------------------------------------------- internals
    def _donor(self, box: tuple[float, float, float, float], ts: float) -> int | None:
        """The track a new face-less head came out of (on a depth line
        only): a track seen within ``handover_recent`` seconds, established
        on the inside, with the new head above its head box's centre and
        within ``handover_span`` of its widths sideways
        (:func:`came_out_of`); the nearest sideways, or None."""
        if self.handover_span <= 0 or self.config.line.face_px <= 0:
            return None  # off, or not a depth line (a camera above the door)
        best: tuple[float, int] | None = None
        for tid, info in self._tracks.items():
            if info.box is None or ts - info.last_ts > self.handover_recent:
                continue
            if self.counter.established(tid) is not Zone.IN:
                continue
            dx = came_out_of(box, info.box, self.handover_span)
            if dx is not None and (best is None or dx < best[0]):
                best = (dx, tid)
        return best[1] if best is not None else None

    def _roll_day(self, now: datetime) -> list[HourBucket]:
        day = now.date().isoformat()
        if self._day is None:
            self._day = day
            return []
        if day == self._day:
            return []
        closed = [b for b in self.hours.flush(now) if not b.empty]
        for b in closed:
            b.partial = False
        self.visitors.clear()
        for info in self._tracks.values():
            info.visitor = None
        self._day = day
        log.info("footfall_day_rollover", day=day)
        return closed

    def _maybe_embed(
        self,
        frame: np.ndarray,
        gray: np.ndarray | None,
        dets: Detections,
        idx: int,
        info: _TrackInfo,
        *,
        force: bool,
    ) -> np.ndarray | None:
        cfg = self.config
        box = dets.boxes[idx]
        width = float(box[2] - box[0])
        want = (
            len(info.vectors) < cfg.max_embeds_per_track
            and width >= cfg.embed_min_face_px
            and (not info.vectors or width >= 1.2 * info.embedded_px)
        )
        if not (want or force):
            return gray
        assert isinstance(self.detector, FaceBoxDetector)
        t0 = time.perf_counter()
        if gray is None and dets.kps is None:
            gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        try:
            face = self.detector.face_for(
                frame,
                box,
                float(dets.scores[idx]),
                None if dets.kps is None else dets.kps[idx],
                gray,
            )
            vec = self.detector.embed(frame, face)
        except Exception as exc:
            log.warning("footfall_embed_failed", error=type(exc).__name__)
            return gray
        finally:
            self.stats.stage_ms["landmarks_embed"] += (time.perf_counter() - t0) * 1000
        info.vectors.append(np.asarray(vec, np.float32).copy())
        info.embedded_px = max(info.embedded_px, width)
        self.stats.embeds += 1
        return gray

    def _decide(self, info: _TrackInfo) -> Decision:
        if info.decision is not None and info.decided_with == len(info.vectors):
            return info.decision
        desc = info.descriptor()
        if desc is None or self.gallery is None or len(self.gallery) == 0:
            decision = Decision("anonymous")
        else:
            t0 = time.perf_counter()
            top = self.gallery.search(desc, k=3)
            decision = classify(
                top,
                accept_threshold=self.accept_threshold,
                min_margin=self.min_margin,
                attendance_margin=self.config.attendance_margin,
                staff_ids=self.staff_ids,
                consented_ids=self.consented_ids,
            )
            self.stats.stage_ms["identify"] += (time.perf_counter() - t0) * 1000
            log.debug(
                "footfall_decision",
                kind=decision.kind,
                vectors=len(info.vectors),
                best=round(top[0].score, 3) if top else None,
            )
        info.decision, info.decided_with = decision, len(info.vectors)
        return decision

    def _report(
        self,
        report: FrameReport,
        crossing: Crossing,
        info: _TrackInfo | None,
        ts: float,
        now: datetime,
    ) -> None:
        """Count a crossing; it is dated when the track went over the line,
        which may be before this frame (a crossing counts once the person is
        clearly across or has left the picture)."""
        ev = self._on_crossing(
            crossing,
            info or _TrackInfo(last_ts=ts),
            now,
            now - timedelta(seconds=max(0.0, ts - crossing.t)),
        )
        report.events.append(ev)
        if ev.attendance is not None:
            report.attendance.append(ev.attendance)

    def _on_crossing(
        self, crossing: Crossing, info: _TrackInfo, now: datetime, at: datetime
    ) -> FootfallEvent:
        decision = self._decide(info) if self.identities else Decision("anonymous")
        if decision.kind == "staff":
            self.stats.staff_crossings += 1
            return FootfallEvent(crossing.direction, crossing.track_id, at, counted=False)
        new_visitor = False
        record: AttendanceRecord | None = None
        if crossing.direction == "in":
            self.stats.visits_in += 1
            self.hours.add(now, "in")
            if self.identities:
                if info.visitor is None:
                    desc = info.descriptor()
                    if desc is not None:
                        info.visitor, new_visitor = self.visitors.visit(desc)
                    else:
                        info.visitor, new_visitor = self.visitors.new_anonymous(), True
                    if new_visitor:
                        self.hours.add(now, "new_visitor")
                if decision.kind == "attendee" and decision.resident_id is not None:
                    record = self.book.observe(decision.resident_id, now, decision.score)
                    if record is not None:
                        self.stats.attendance_records += 1
                        self.hours.add(now, "attendance")
        else:
            self.stats.visits_out += 1
            self.hours.add(now, "out")
        return FootfallEvent(
            crossing.direction,
            crossing.track_id,
            at,
            counted=True,
            new_visitor=new_visitor,
            attendance=record,
        )

    def _prune(self, ts: float, alive: set[int]) -> None:
        self.counter.prune(ts, alive)
        ttl = self.config.track_ttl
        for tid in [t for t, i in self._tracks.items() if t not in alive and ts - i.last_ts > ttl]:
            self._tracks.pop(tid).wipe()


def build_face_pipeline(
    engine: FaceEngine,
    config: FootfallConfig,
    frame_size: tuple[int, int],
    **kwargs: Any,
) -> FootfallPipeline:
    """A pipeline on the face engine (one :meth:`~face.pipeline.FaceEngine.observe`
    pass per analysed frame) with a ByteTrack tracker."""
    from face.footfall.tracking import ByteTrackAdapter

    detector = FaceBoxDetector(engine, config.det_score, min_face_px=config.min_face_px)
    tracker = ByteTrackAdapter(
        fps=config.fps / config.detect_stride,
        min_consecutive_frames=config.track_min_frames,
        lost_seconds=config.lost_seconds,
    )
    return FootfallPipeline(detector, tracker, config, frame_size, **kwargs)
