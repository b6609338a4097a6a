"""The recogniser: a verified model pack, the face engine and the in-memory
gallery, answering "who is this face?" for the CLI, the kiosk and footfall.

:meth:`Recogniser.observe` is the one call per frame: one detector pass gives
the faces, the largest one's landmarks and quality verdict, and - when asked -
its embedding, who it is (with the passive liveness signal) and the frame of
an active liveness challenge (:class:`ChallengeAsk`)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from face.challenge import ChallengeFrame, is_second_face
from face.gallery import Gallery, Match, decide, decide_with
from face.packs.manifest import PackManifest
from face.packs.verify import verify_pack
from face.pipeline import Box, FaceEngine, Image, Observation, PrimaryFace, Vector
from face.store import StoredTemplate
from face.surround import surround_thumbnail
from terminal.config.settings import FaceSettings
from terminal.core.errors import ImageError, NoFaceError, TerminalError
from terminal.core.identification import Identification, LivenessDecision
from terminal.core.log import get_logger

log = get_logger(__name__)


class EnrolmentError(TerminalError):
    code = "enrolment_failed"


@dataclass(frozen=True)
class IdentifyResult:
    identification: Identification
    top: list[Match]
    faces_found: int
    box: Box
    quality_ok: bool
    quality_reason: str
    quality_text_en: str
    quality_text_zh: str

    @classmethod
    def of(cls, obs: Observation) -> IdentifyResult:
        """The result of an observation made with ``identify=True``; raises
        :class:`NoFaceError` when the frame had no face."""
        if obs.identification is None or obs.quality is None or obs.box is None:
            raise NoFaceError("no face found in the image")
        q = obs.quality
        return cls(
            identification=obs.identification,
            top=list(obs.matches),
            faces_found=obs.faces_found,
            box=obs.box,
            quality_ok=bool(q.ok),
            quality_reason=str(q.reason),
            quality_text_en=str(q.text_en),
            quality_text_zh=str(q.text_zh),
        )

    def as_dict(self) -> dict[str, Any]:
        ident = self.identification
        live = ident.liveness
        return {
            "decision": ident.decision,
            "resident_id": ident.resident_id,
            "score": round(ident.score, 4),
            "second_score": round(ident.second_score, 4),
            "accept_threshold": ident.threshold,
            "min_margin": ident.margin,
            "top": [{"resident_id": m.resident_id, "score": round(m.score, 4)} for m in self.top],
            "faces_found": self.faces_found,
            "note": "several faces found; used the largest" if self.faces_found > 1 else None,
            "box": [round(v, 1) for v in self.box],
            "quality": {
                "ok": self.quality_ok,
                "reason": self.quality_reason,
                "text_en": self.quality_text_en,
                "text_zh": self.quality_text_zh,
            },
            "liveness": None
            if live is None
            else {
                "live": live.live,
                "method": live.method,
                "signals": {k: round(v, 4) for k, v in live.signals.items()},
                "reason": live.reason,
            },
        }


def _as_box(b: np.ndarray) -> Box:
    return (float(b[0]), float(b[1]), float(b[2]), float(b[3]))


@dataclass(frozen=True, slots=True)
class ChallengeAsk:
    """Ask :meth:`Recogniser.observe` for the frame of an active liveness
    challenge (:class:`face.challenge.ChallengeFrame`): taken at ``t``
    (monotonic seconds), re-identified against ``resident_id``'s own templates;
    faces at least ``second_face_ratio`` as wide as the largest count as a
    second face, unless they lie inside its box (``face.challenge.is_second_face``)."""

    resident_id: str
    t: float
    second_face_ratio: float = 0.5


@dataclass(frozen=True)
class EnrolCandidate:
    source: str
    embedding: Vector | None
    quality: float
    problem: str | None = None


@dataclass
class EnrolPlan:
    chosen: list[EnrolCandidate] = field(default_factory=list)
    rejected: list[EnrolCandidate] = field(default_factory=list)


def quality_score(obs: Observation) -> float:
    """One number to rank enrolment frames: larger, sharper, more frontal faces
    with a confident detection rank higher. Only used for ordering."""
    if obs.face is None or obs.quality is None:
        return 0.0
    m = obs.quality.metrics
    size = float(m.get("face_px", 0.0) or 0.0)
    sharp = float(m.get("sharpness", 0.0) or 0.0)
    yaw = abs(float(m.get("yaw", 0.0) or 0.0))
    pitch = abs(float(m.get("pitch", 0.0) or 0.0))
    det = float(obs.face.score)
    frontal = max(0.0, 1.0 - (yaw + pitch) / 90.0)
    return det * frontal * min(size / 160.0, 1.5) * min(sharp / 200.0, 1.5)


def template_space_id(manifest: PackManifest) -> str:
    """Templates compare only with templates of the same embedding model: the id
    names the pack kind and the embedding model's hash."""
    return f"{manifest.kind}-{manifest.require('embedding').sha256[:16]}"


class Recogniser:
    """Thread-safe: one lock serialises model calls (an engine is not re-entrant);
    the gallery has its own lock."""

    def __init__(self, engine: FaceEngine, settings: FaceSettings, pack_id: str) -> None:
        self.engine = engine
        self.settings = settings
        self.pack_id = pack_id
        self.gallery = Gallery()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, pack_dir: Path, settings: FaceSettings) -> Recogniser:
        manifest = verify_pack(pack_dir)  # refuses a missing, truncated or tampered pack
        engine = FaceEngine.from_pack(pack_dir, settings)
        return cls(engine, settings, pack_id=template_space_id(manifest))

    @property
    def model_lock(self) -> threading.Lock:
        """Held around every model call: an engine is not re-entrant, so callers
        that use ``engine`` directly (the kiosk's per-frame guidance) take it too."""
        return self._lock

    # -- gallery ---------------------------------------------------------------------
    def load_gallery(self, templates: Iterable[StoredTemplate]) -> None:
        self.gallery.load((t.resident_id, t.vector) for t in templates)

    # -- observation -----------------------------------------------------------------
    def observe(
        self,
        image: Image,
        *,
        identify: bool = False,
        embed: bool = False,
        require_quality: bool = False,
        liveness: bool | None = None,
        challenge: ChallengeAsk | None = None,
    ) -> Observation:
        """One detector pass over ``image`` and what it shows (see
        :class:`face.pipeline.Observation`): the faces, the largest one's
        landmarks and quality verdict, and when asked

        * ``embed``: its embedding;
        * ``identify``: who it is: the 1:N search and the decision, with the
          passive liveness signal recorded (``liveness`` defaults to on here).
          A face that fails the quality gate never identifies on its own (it
          is at most "uncertain");
        * ``challenge``: the frame of an active liveness challenge (faces of
          comparable size, box, 68 landmarks, re-identification against the
          candidate's own templates, and the passive score with ``liveness``).

        ``require_quality`` skips the embedding, the liveness model and the
        search when the face fails the gate (the kiosk asks for a better frame
        instead). Model calls hold :attr:`model_lock`.
        """
        if liveness is None:
            liveness = identify
        with self._lock:
            obs = self.engine.observe(
                image,
                embed=embed or identify or challenge is not None,
                require_quality=require_quality,
                liveness=liveness,
            )
        if identify and obs.embedding is not None:
            obs = self._identified(obs)
        if challenge is not None:
            obs = replace(obs, challenge=self._challenge_frame(obs, challenge, image))
        return obs

    def _passive_decision(self, score: float | None) -> LivenessDecision:
        if score is None:
            return LivenessDecision(
                live=False, method="none", reason="no liveness model in the pack"
            )
        return LivenessDecision(
            live=score >= self.settings.liveness_threshold,
            method="passive",
            signals={"passive": float(score)},
            reason="passive model only: not sufficient for payment on its own",
        )

    def _identified(self, obs: Observation) -> Observation:
        assert obs.embedding is not None and obs.quality is not None
        liveness = self._passive_decision(obs.passive_liveness)
        top = self.gallery.search(obs.embedding, k=3)
        ident = decide_with(top, self.settings, liveness=liveness)
        q = obs.quality
        if not q.ok and ident.decision == "identified":
            # A poor frame never identifies on its own; the kiosk asks for a better one.
            # (no cosine reaches 2.0, so the best candidate is at most "uncertain")
            ident = decide(
                top, 2.0, self.settings.uncertain_threshold, self.settings.min_margin, liveness
            )
        # Every identification is recorded with the liveness decision and its
        # inputs; no resident id, name, image or embedding goes into the log.
        log.info(
            "identification",
            decision=ident.decision,
            score=round(ident.score, 4),
            second_score=round(ident.second_score, 4),
            accept_threshold=ident.threshold,
            min_margin=ident.margin,
            quality=str(q.reason),
            faces_found=obs.faces_found,
            liveness_live=liveness.live,
            liveness_method=liveness.method,
            liveness_signals={k: round(float(v), 4) for k, v in liveness.signals.items()},
        )
        return replace(obs, identification=ident, matches=tuple(top))

    def _challenge_frame(self, obs: Observation, ask: ChallengeAsk, image: Image) -> ChallengeFrame:
        face, vec = obs.face, obs.embedding
        if face is None:
            return ChallengeFrame(ask.t)
        # the surround check's thumbnail (face.surround.surround_motion)
        thumb, thumb_scale = surround_thumbnail(np.asarray(image))
        paying = _as_box(face.box)
        big = 1 + sum(
            is_second_face(paying, _as_box(f.box), min_ratio=ask.second_face_ratio)
            for f in obs.faces[1:]
        )
        reid = None  # not embedded (the gate of require_quality refused the frame)
        if vec is not None:
            templates = self.gallery.templates_of(ask.resident_id)
            reid = float(np.max(templates @ vec)) if len(templates) else -1.0
        return ChallengeFrame(
            ask.t,
            faces=big,
            box=obs.box,
            landmarks68=face.landmarks68,
            reid=reid,
            passive=obs.passive_liveness,
            thumb=thumb,
            thumb_scale=thumb_scale,
        )

    # -- convenience (each one observe() call) ---------------------------------------
    def identify(self, image: Image) -> IdentifyResult:
        """Who is the largest face? Raises :class:`NoFaceError` without one."""
        return IdentifyResult.of(self.observe(image, identify=True))

    def challenge_frame(
        self,
        image: Image,
        t: float,
        resident_id: str,
        *,
        passive: bool = False,
        second_face_ratio: float = 0.5,
    ) -> ChallengeFrame:
        """What a frame of an active challenge shows (``observe`` with a
        :class:`ChallengeAsk`). Used by the evaluation."""
        obs = self.observe(
            image, liveness=passive, challenge=ChallengeAsk(resident_id, t, second_face_ratio)
        )
        assert obs.challenge is not None
        return obs.challenge

    def embed_primary(self, image: Image) -> PrimaryFace:
        with self._lock:
            return self.engine.primary(image, require_quality=False)

    # -- enrolment -------------------------------------------------------------------
    def plan_enrolment(self, images: Sequence[tuple[str, Image | None, str | None]]) -> EnrolPlan:
        """Rank candidate images/frames and keep the best ``enrol_max_templates``.
        ``images`` are (label, image or None, load problem)."""
        plan = EnrolPlan()
        good: list[EnrolCandidate] = []
        for label, image, problem in images:
            if image is None:
                plan.rejected.append(
                    EnrolCandidate(label, None, 0.0, problem or "unreadable image")
                )
                continue
            try:
                obs = self.observe(image, embed=True, require_quality=True)
            except ImageError as exc:
                plan.rejected.append(EnrolCandidate(label, None, 0.0, str(exc)))
                continue
            if obs.quality is None:
                plan.rejected.append(EnrolCandidate(label, None, 0.0, "no face found"))
                continue
            if obs.embedding is None or not obs.ok:
                plan.rejected.append(
                    EnrolCandidate(label, None, 0.0, f"quality: {obs.quality.text_en}")
                )
                continue
            good.append(
                EnrolCandidate(
                    label,
                    obs.embedding,
                    quality_score(obs),
                    "several faces; used the largest" if obs.several_faces else None,
                )
            )
        good.sort(key=lambda c: c.quality, reverse=True)
        keep = self.settings.enrol_max_templates
        plan.chosen = good[:keep]
        plan.rejected.extend(
            EnrolCandidate(c.source, None, c.quality, "not among the best frames")
            for c in good[keep:]
        )
        return plan

    def check_not_someone_else(self, resident_id: str, vectors: Sequence[np.ndarray]) -> str | None:
        """Refuse enrolling a face that already identifies as another resident
        (one person, one account). Returns the other resident's id or None."""
        for v in vectors:
            top = self.gallery.search(v, k=3)
            for m in top:
                if m.resident_id != resident_id and m.score >= self.settings.accept_threshold:
                    return m.resident_id
        return None
