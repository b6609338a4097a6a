"""Face and body cues fused into one track per person: the pure core.

No IO, no OpenCV, no clock: boxes and times come in, head boxes and track ids
come out. Table-driven tests in ``tests/footfall/test_footfall_fusion.py``
pin the rules below down.

Why
    A camera facing the door sees the faces of people coming in, but people
    going out show the back of their head, and far or blurred faces are often
    missed by the face detector. A body detector sees both, but it is slower
    (it runs on every ``body_every``-th frame) and its box says less precisely
    where the head is. Counting needs one anchor per person, whichever cue saw
    them.

Cues -> head candidates (:func:`fuse`)
    * A body box predicts a *head box* (:func:`head_from_body`): width
      ``head_w`` times the body width, centred horizontally, its centre
      ``head_cy`` head widths below the body's top. The two ratios are
      measured on the tuning clips (faces matched to bodies), not guessed.
    * A face is attached to the body whose predicted head is nearest, when it
      is within ``attach_gate`` predicted head widths and of a plausible size
      (``attach_size`` ratio either way), or else when it stands on the body
      box (:func:`explains`: a blob of a moving torso whose head stands
      still). Each face and each body is used at most once (nearest pairs
      first, geometric matches before the others).
    * A face with or without its body becomes one candidate with the face's
      box (the more precise cue) and ``face=True``; a body without a face
      becomes a candidate with the predicted head box and ``face=False``,
      unless it is a piece of a face's own person (:func:`claimed`: under
      the face, within the columns its body spans, no wider than that body):
      a moving blob split beside a head must not become a second person.

Tracking (:class:`FusedTracker`)
    * Tracks are predicted with a constant velocity; candidates are assigned
      to tracks by the Hungarian method on the distance from the prediction
      in head widths (gated by ``gate`` plus the track's speed, and by size).
    * A track is confirmed after ``min_hits`` matched frames in total (not in
      a row: a person seen only by the body detector is seen on every
      ``body_every``-th frame; ``body_min_hits`` for a track that never showed
      a face, as body boxes are the less certain cue), and forgotten ``lost_seconds`` after its last
      match, so a person hidden behind another for a second keeps their id.
    * On frames where the body detector did not run, a track that was last
      seen by its body only is simply not observed (no miss is held against
      it); a track is output only on frames where a candidate matched it, so
      counts come from observed positions, never predicted ones.
    * A track that showed a face is matched to a face-less candidate by
      position alone, within its own head width (the head size of a body box
      is a guess, and a wrong one for a blob cut by the frame bottom), so a
      person whose face turns away or leaves the picture keeps their track.
    * A track's head width is smoothed over its matches, from faces only once
      a face was seen (a body box tells the head's size less well) until
      ``face_hold`` seconds pass without a face (the person turned their
      back: the face's size is stale, the body's is followed again); the head
      box output is the candidate's centre with that width, which is what a
      depth line (:func:`face.footfall.counting.depth_anchor`) reads.
    * ``face_seen`` tells which tracks ever showed a face: that is the track
      the pipeline embeds for unique visitors, when the face shows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

Box = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class FusionParams:
    """Geometry of a head inside a body box, and the association gates."""

    head_w: float = 0.39  # head (face box) width / body box width
    head_cy: float = 1.0  # head centre below the body top, in head widths
    attach_gate: float = 1.2  # face to predicted head, in predicted head widths
    attach_size: float = 2.2  # face / predicted head width ratio allowed either way
    body_score: float = 0.35  # body boxes below this score are ignored
    body_min_h: float = 40.0  # body boxes shorter than this (px) are ignored
    claim_share: float = 0.6  # share of a body box's width under a face that makes it that face's
    claim_above: float = 1.0  # ... when its top is at most this many face widths above the face


@dataclass(frozen=True, slots=True)
class Candidate:
    """One person's head on one frame, from whichever cue saw it."""

    box: Box
    score: float
    face: int  # index of the face detection, -1 when the body alone saw it
    body: int  # index of the body detection, -1 when the face alone saw it

    @property
    def cx(self) -> float:
        return (self.box[0] + self.box[2]) / 2

    @property
    def cy(self) -> float:
        return (self.box[1] + self.box[3]) / 2

    @property
    def w(self) -> float:
        return max(1.0, self.box[2] - self.box[0])


def head_from_body(body: Box, p: FusionParams) -> Box:
    x1, y1, x2, _ = body
    hw = p.head_w * (x2 - x1)
    cx = (x1 + x2) / 2
    cy = y1 + p.head_cy * hw
    return (cx - hw / 2, cy - hw / 2, cx + hw / 2, cy + hw / 2)


def head_of_blob(
    extents: Sequence[tuple[int, int]], aspect: float = 1.2, shoulders: float = 1.5
) -> Box:
    """The head at the top of a moving blob, measured on its mask.

    ``extents`` is, for each row of the blob from its top down, the first
    and last-plus-one column of the mask on that row (equal for an empty row).
    Rows are added from the top while the rows taken are fewer than
    ``aspect`` times the width they span (a head is about as tall as
    ``aspect`` times its width), and until a row is more than ``shoulders``
    times as wide as the head so far while lying at least a third of its own
    width below the top (the shoulders; the widening rows of a crown lie
    higher than that, so they do not stop it). Returns the head box (x1, y1, x2, y2) in the blob's
    coordinates.

    A body box's width says how wide the head is only when the whole body is
    in the picture; a person close under a camera facing the door shows only
    their head and shoulders (the rest is below the frame), so the head is
    measured, not predicted, wherever the blob's mask is at hand."""
    left, right, rows = math.inf, -math.inf, 0
    for r, (a, b) in enumerate(extents):
        # shoulders are well below the top: a row more than ``shoulders`` times
        # the head's width comes at least a third of its own width down
        if right > left and b - a > shoulders * (right - left) and r >= (b - a) / 3:
            break
        if b > a:
            left, right = min(left, a), max(right, b)
        rows = r + 1
        if right > left and rows >= aspect * (right - left):
            break
    if right <= left:
        return (0.0, 0.0, 0.0, 0.0)
    return (float(left), 0.0, float(right), float(rows))


def split_columns(
    top: Sequence[float], min_width: int = 6, min_dip: float = 0.3
) -> list[tuple[int, int]]:
    """Column ranges of the separate heads of one foreground blob.

    ``top`` is the blob's top row in each of its columns. Two people side by
    side make one blob whose top has two peaks (heads) with a dip (shoulders)
    between them. The blob is split at the column where the top dips most
    below the higher of the two sides' peaks, when the dip is at least
    ``min_dip`` times the narrower side's width, the two peaks are level
    within that width (a head beside a raised arm is one person), and both
    sides are at least
    ``min_width`` columns and 30 % of the blob wide; each side is split again
    the same way."""
    n = len(top)
    side = max(min_width, int(0.3 * n))  # an arm held out is not a person
    best: tuple[float, int] | None = None
    for c in range(side, n - side + 1):
        left, right = min(top[:c]), min(top[c:])
        dip = top[c - 1] - max(left, right)
        narrow = min(c, n - c)
        need = min_dip * narrow
        level = abs(left - right) <= narrow  # two heads, not a head and a raised arm
        if level and dip >= need and (best is None or dip - need > best[0]):
            best = (dip - need, c)
    if best is None:
        return [(0, n)]
    c = best[1]
    return split_columns(top[:c], min_width, min_dip) + [
        (a + c, b + c) for a, b in split_columns(top[c:], min_width, min_dip)
    ]


def explains(face: Box, body: Box) -> bool:
    """A face explains a body box it stands on: horizontally within the box
    (a quarter of its width to spare), at most 1.5 face widths above its top
    and no lower than its upper half, and no wider than the box. A body box
    that a face explains is that person's, even when it covers only part of
    them (a moving-blob box of a torso whose head stands still)."""
    bx1, by1, bx2, by2 = body
    bw = bx2 - bx1
    fcx, fcy, fw = (face[0] + face[2]) / 2, (face[1] + face[3]) / 2, face[2] - face[0]
    return (
        bx1 - 0.25 * bw <= fcx <= bx2 + 0.25 * bw
        and by1 - 1.5 * fw <= fcy <= by1 + 0.5 * (by2 - by1)
        and fw <= bw
    )


def claimed(face: Box, body: Box, p: FusionParams) -> bool:
    """A body box that is a piece of a face's own person: no other person.

    The body under a face of width ``fw`` spans ``fw / head_w`` columns
    centred on it. A body box no wider than that, lying at least
    ``claim_share`` of its width within those columns, and whose top is at
    most ``claim_above`` face widths above the face's top (hair), is a piece
    of that person: a part of their moving blob that the blob split cut off
    beside the head (hair, a shoulder, an arm), or their torso. It must not
    become a second, face-less person beside them (who would be counted
    again); anyone else there would be hidden behind them. A body box wider
    than that region, or reaching higher above the face, belongs to someone
    else: a nearer person in front, a taller one behind."""
    fw = max(1.0, face[2] - face[0])
    fcx = (face[0] + face[2]) / 2
    half = fw / (2 * p.head_w)
    bx1, by1, bx2, _ = body
    bw = max(1.0, bx2 - bx1)
    inside = max(0.0, min(bx2, fcx + half) - max(bx1, fcx - half))
    return bw <= 2 * half and inside >= p.claim_share * bw and by1 >= face[1] - p.claim_above * fw


def fuse(
    faces: Sequence[Box],
    face_scores: Sequence[float],
    bodies: Sequence[Box],
    body_scores: Sequence[float],
    p: FusionParams,
    body_heads: Sequence[Box | None] | None = None,
) -> list[Candidate]:
    """One candidate per person seen on this frame (see the module doc).
    ``body_heads`` gives, per body box, its head where it was measured (a
    moving blob's top, :func:`head_of_blob`) or None to predict it."""
    heads: list[tuple[int, Box]] = [
        (
            j,
            measured
            if (measured := body_heads[j] if body_heads else None)
            else head_from_body(b, p),
        )
        for j, (b, s) in enumerate(zip(bodies, body_scores, strict=True))
        if s >= p.body_score and b[3] - b[1] >= p.body_min_h
    ]
    pairs: list[tuple[float, int, int]] = []
    for i, f in enumerate(faces):
        fcx, fcy, fw = (f[0] + f[2]) / 2, (f[1] + f[3]) / 2, max(1.0, f[2] - f[0])
        for j, h in heads:
            hw = max(1.0, h[2] - h[0])
            d = math.hypot(fcx - (h[0] + h[2]) / 2, fcy - (h[1] + h[3]) / 2) / hw
            ratio = fw / hw
            if d <= p.attach_gate and 1.0 / p.attach_size <= ratio <= p.attach_size:
                pairs.append((d, i, j))
            elif explains(f, bodies[j]):
                pairs.append((p.attach_gate + d, i, j))  # after every geometric match
    pairs.sort()
    face_body: dict[int, int] = {}
    used_bodies: set[int] = set()
    for _, i, j in pairs:
        if i not in face_body and j not in used_bodies:
            face_body[i] = j
            used_bodies.add(j)
    out = [
        Candidate(
            (float(f[0]), float(f[1]), float(f[2]), float(f[3])),
            max(float(face_scores[i]), float(body_scores[face_body[i]]))
            if i in face_body
            else float(face_scores[i]),
            i,
            face_body.get(i, -1),
        )
        for i, f in enumerate(faces)
    ]
    out += [
        Candidate(h, float(body_scores[j]), -1, j)
        for j, h in heads
        if j not in used_bodies and not any(claimed(f, bodies[j], p) for f in faces)
    ]
    return out


@dataclass(frozen=True, slots=True)
class TrackerParams:
    min_hits: int = 3
    body_min_hits: int = 5  # a track that never showed a face needs this many
    lost_seconds: float = 1.5
    gate: float = 1.5  # head widths from the predicted position
    gate_speed: float = 0.5  # plus this share of the distance the track moved since last seen
    size_ratio: float = 1.8  # candidate / track head width allowed either way
    new_score: float = 0.5  # a candidate below this score never starts a track
    smoothing: float = 0.5  # velocity smoothing (0 = keep the old, 1 = the new)
    face_hold: float = 1.0  # s without a face after which a face track's size follows its body
    # s: a face-less candidate that no track took starts no track when it lies
    # under a track seen this recently (a piece of that person's blob, see
    # FusedTracker._piece); 0 = off. Chosen on the tuning clips (docs/footfall.md)
    claim_recent: float = 0.2
    claim_span: float = 2.0  # ... within this many head widths sideways of a face track
    claim_span_body: float = 0.8  # ... of a track that never showed a face (0 = never)
    # head widths: a track last matched by a face takes no candidate lying
    # more than this far behind its last position along its way (see
    # FusedTracker._behind); 0 = off. Chosen on the tuning clips (docs/footfall.md)
    back_gate: float = 0.5
    back_speed: float = 1.0  # ... when it moves at least this many head widths a second


@dataclass
class FusedTrack:
    track_id: int
    cx: float
    cy: float
    w: float
    last_ts: float
    vx: float = 0.0
    vy: float = 0.0
    hits: int = 1
    confirmed: bool = False
    face_seen: bool = False
    last_face: bool = False  # the last match was (or included) a face
    first: Box = (0.0, 0.0, 0.0, 0.0)  # the head box it was born with
    last_face_ts: float = -math.inf  # when a face last matched it

    def predict(self, ts: float) -> tuple[float, float]:
        dt = ts - self.last_ts
        return self.cx + self.vx * dt, self.cy + self.vy * dt


@dataclass(frozen=True, slots=True)
class Match:
    """A confirmed track observed on this frame."""

    track_id: int
    candidate: int  # index into the frame's candidates
    box: Box  # the head: the candidate's centre, the track's smoothed width
    first: Box = (0.0, 0.0, 0.0, 0.0)  # the head box the track was born with


@dataclass
class FusedTracker:
    params: TrackerParams = field(default_factory=TrackerParams)
    tracks: dict[int, FusedTrack] = field(default_factory=dict)
    next_id: int = 1

    def reset(self) -> None:
        self.tracks.clear()
        self.next_id = 1

    def update(self, cands: Sequence[Candidate], ts: float, body_ran: bool = True) -> list[Match]:
        """Assign this frame's candidates; returns the confirmed tracks seen now.

        ``body_ran`` is False on frames where the body detector did not run:
        tracks last seen by their body alone are then not expected to match.
        """
        p = self.params
        for tid in [t for t, tr in self.tracks.items() if ts - tr.last_ts > p.lost_seconds]:
            del self.tracks[tid]
        ids = list(self.tracks)
        assigned: dict[int, int] = {}  # candidate -> track id
        if ids and cands:
            big = 1e6
            cost = np.full((len(cands), len(ids)), big)
            for a, c in enumerate(cands):
                for b, tid in enumerate(ids):
                    tr = self.tracks[tid]
                    if not body_ran and c.face < 0:
                        continue  # cannot happen (no body box without the body detector)
                    ratio = c.w / tr.w
                    # a track that showed a face knows its head's size; a body box's head
                    # is a guess (a blob cut by the frame bottom, shoulders and all), so
                    # only its position is held against the track's own head width
                    by_face = tr.face_seen and c.face < 0
                    if not by_face and not 1.0 / p.size_ratio <= ratio <= p.size_ratio:
                        continue
                    px, py = tr.predict(ts)
                    scale = tr.w if by_face else max(tr.w, c.w)
                    moved = math.hypot(tr.vx, tr.vy) * max(0.0, ts - tr.last_ts)
                    d = math.hypot(c.cx - px, c.cy - py)
                    if d > p.gate * scale + p.gate_speed * moved:
                        continue
                    if self._behind(tr, c):
                        continue
                    cost[a, b] = d / scale
            from scipy.optimize import linear_sum_assignment

            rows, cols = linear_sum_assignment(cost)
            for a, b in zip(rows, cols, strict=True):
                if cost[a, b] < big:
                    assigned[int(a)] = ids[int(b)]
        out: list[Match] = []
        for a, c in enumerate(cands):
            got = assigned.get(a)
            if got is None:
                if c.score < p.new_score or self._piece(c, ts, set(assigned.values())):
                    continue
                tid = self.next_id
                self.next_id += 1
                self.tracks[tid] = FusedTrack(
                    tid, c.cx, c.cy, c.w, ts, face_seen=c.face >= 0, first=c.box
                )
                tr = self.tracks[tid]
                tr.last_face = c.face >= 0
                if c.face >= 0:
                    tr.last_face_ts = ts
            else:
                tid = got
                tr = self.tracks[tid]
                dt = ts - tr.last_ts
                if dt > 1e-6:
                    a_ = p.smoothing
                    tr.vx = (1 - a_) * tr.vx + a_ * (c.cx - tr.cx) / dt
                    tr.vy = (1 - a_) * tr.vy + a_ * (c.cy - tr.cy) / dt
                tr.cx, tr.cy, tr.last_ts = c.cx, c.cy, ts
                if c.face >= 0 or not tr.face_seen or ts - tr.last_face_ts >= p.face_hold:
                    # a body box tells the head's size less well than a face, but
                    # after face_hold without one the face's size is stale (the
                    # person turned their back and walks away)
                    tr.w = 0.5 * tr.w + 0.5 * c.w
                tr.hits += 1
                tr.face_seen |= c.face >= 0
                tr.last_face = c.face >= 0
                if c.face >= 0:
                    tr.last_face_ts = ts
            need = p.min_hits if tr.face_seen else max(p.min_hits, p.body_min_hits)
            if not tr.confirmed and tr.hits >= need:
                tr.confirmed = True
            if tr.confirmed:
                half = tr.w / 2
                box = (c.cx - half, c.cy - half, c.cx + half, c.cy + half)
                out.append(Match(tid, a, box, tr.first))
        return out

    def _behind(self, tr: FusedTrack, c: Candidate) -> bool:
        """Whether a candidate lies more than ``back_gate`` head widths behind
        a track's last position, measured along the way the track moves (a
        track last matched by a face, moving at least ``back_speed`` head
        widths a second). Two people walking in one behind the other under a
        camera facing the door: the leader's face, large and fast near the
        bottom of the picture, is lost for a few frames before it leaves
        through the bottom border, and the wide gate of a fast track then
        reaches back to the follower's face or blob; taking it would swap the
        two (the leader, never seen leaving, is not counted). No one walks
        backwards a head width between two frames at that speed."""
        p = self.params
        if p.back_gate <= 0 or not tr.last_face:
            return False
        speed = math.hypot(tr.vx, tr.vy)
        if speed < p.back_speed * tr.w:
            return False
        along = ((c.cx - tr.cx) * tr.vx + (c.cy - tr.cy) * tr.vy) / speed
        return along < -p.back_gate * tr.w

    def _piece(self, c: Candidate, ts: float, matched: set[int]) -> bool:
        """Whether an unmatched face-less candidate is a piece of a person
        already tracked: a confirmed track seen within ``claim_recent``
        seconds (or on this frame) has it under its head: its centre within
        ``claim_span`` head widths of the track's predicted centre sideways
        (``claim_span_body`` for a track that never showed a face: the back
        of a head, whose width is itself measured on a blob), its top at
        most one head width above the head's top. Near the camera a face
        blurs or leaves the picture at the bottom while the body's blob
        breaks into pieces beside and below the head (and a person walking
        out from under the camera shows as a head and two shoulders); each
        piece would otherwise become a face-less track of its own and be
        counted as a second person."""
        p = self.params
        if c.face >= 0 or p.claim_recent <= 0:
            return False
        for tid, tr in self.tracks.items():
            recent = tid in matched or ts - tr.last_ts <= p.claim_recent
            span = p.claim_span if tr.face_seen else p.claim_span_body
            if not (tr.confirmed and recent and span > 0):
                continue
            px, py = tr.predict(ts)
            if abs(c.cx - px) <= span * tr.w and c.box[1] >= py - 1.5 * tr.w:
                return True
        return False
