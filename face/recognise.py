"""The recogniser: a verified model pack, the face engine and the in-memory
gallery, answering "who is this face?" for the CLI, the kiosk and footfall."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from face.challenge import ChallengeFrame
from face.gallery import Gallery, Match, decide, decide_with
from face.modelpack import PackManifest, verify_pack
from face.pipeline import FaceEngine, FaceObservation, PrimaryFace
from face.store import StoredTemplate
from terminal.config.settings import FaceSettings
from terminal.core.errors import ImageError, NoFaceError, TerminalError
from terminal.core.log import get_logger
from terminal.core.protocols import Identification, LivenessDecision

log = get_logger(__name__)


class EnrolmentError(TerminalError):
    code = "enrolment_failed"


@dataclass(frozen=True)
class IdentifyResult:
    identification: Identification
    top: list[Match]
    faces_found: int
    box: tuple[float, float, float, float]
    quality_ok: bool
    quality_reason: str
    quality_text_en: str
    quality_text_zh: str

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


@dataclass(frozen=True)
class EnrolCandidate:
    source: str
    embedding: np.ndarray | None
    quality: float
    problem: str | None = None


@dataclass
class EnrolPlan:
    chosen: list[EnrolCandidate] = field(default_factory=list)
    rejected: list[EnrolCandidate] = field(default_factory=list)


def quality_score(obs: FaceObservation) -> float:
    """One number to rank enrolment frames: larger, sharper, more frontal faces
    with a confident detection rank higher. Only used for ordering."""
    m = getattr(obs.quality, "metrics", {}) or {}
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

    # -- identification --------------------------------------------------------------
    def _liveness(self, image: np.ndarray, primary: PrimaryFace) -> LivenessDecision:
        score = self.engine.passive_liveness(image, primary.observation.face)
        if score is None:
            return LivenessDecision(
                live=False, method="none", reason="no liveness model in the pack"
            )
        live = score >= self.settings.liveness_threshold
        return LivenessDecision(
            live=live,
            method="passive",
            signals={"passive": float(score)},
            reason="passive model only: not sufficient for payment on its own",
        )

    def identify(self, image: np.ndarray) -> IdentifyResult:
        with self._lock:
            primary = self.engine.primary(image, require_quality=False)
            liveness = self._liveness(image, primary)
        top = self.gallery.search(primary.embedding, k=3)
        ident = decide_with(top, self.settings, liveness=liveness)
        q = primary.observation.quality
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
            faces_found=primary.faces_found,
            liveness_live=liveness.live,
            liveness_method=liveness.method,
            liveness_signals={k: round(float(v), 4) for k, v in liveness.signals.items()},
        )
        face = primary.observation.face
        return IdentifyResult(
            identification=ident,
            top=top,
            faces_found=primary.faces_found,
            box=tuple(float(v) for v in face.box),  # type: ignore[arg-type]
            quality_ok=bool(q.ok),
            quality_reason=str(q.reason),
            quality_text_en=str(q.text_en),
            quality_text_zh=str(q.text_zh),
        )

    def challenge_frame(
        self,
        image: np.ndarray,
        t: float,
        resident_id: str,
        *,
        passive: bool = False,
        second_face_ratio: float = 0.5,
    ) -> ChallengeFrame:
        """What a frame of an active challenge shows: how many faces of
        comparable size, the largest one's box and 68 landmarks, its cosine to
        ``resident_id``'s own templates (re-identification), and optionally
        the passive model's score. Used by the kiosk and by the evaluation."""
        with self._lock:
            faces = self.engine.detect(image)
            if not faces:
                return ChallengeFrame(t)
            face = faces[0]
            vec = self.engine.embed(image, face)
            score = self.engine.passive_liveness(image, face) if passive else None
        big = sum(1 for f in faces if f.width >= second_face_ratio * face.width)
        templates = self.gallery.templates_of(resident_id)
        reid = float(np.max(templates @ vec)) if len(templates) else -1.0
        box = tuple(float(v) for v in face.box)
        return ChallengeFrame(
            t,
            faces=big,
            box=(box[0], box[1], box[2], box[3]),
            landmarks68=face.landmarks68,
            reid=reid,
            passive=score,
        )

    def embed_primary(self, image: np.ndarray) -> PrimaryFace:
        with self._lock:
            return self.engine.primary(image, require_quality=False)

    # -- enrolment -------------------------------------------------------------------
    def plan_enrolment(
        self, images: Sequence[tuple[str, np.ndarray | None, str | None]]
    ) -> EnrolPlan:
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
                with self._lock:
                    obs_all = self.engine.analyze(image)
            except (ImageError, NoFaceError) as exc:
                plan.rejected.append(EnrolCandidate(label, None, 0.0, str(exc)))
                continue
            if not obs_all:
                plan.rejected.append(EnrolCandidate(label, None, 0.0, "no face found"))
                continue
            obs = obs_all[0]
            if obs.embedding is None or not obs.quality.ok:
                plan.rejected.append(
                    EnrolCandidate(label, None, 0.0, f"quality: {obs.quality.text_en}")
                )
                continue
            good.append(
                EnrolCandidate(
                    label,
                    obs.embedding,
                    quality_score(obs),
                    "several faces; used the largest" if len(obs_all) > 1 else None,
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
