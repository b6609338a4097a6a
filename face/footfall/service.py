"""``footfall run``: the footfall counter as a service the app starts and stops.

:class:`FootfallService` owns one thread that takes the newest frame from its
own frame source (latest-frame-wins, see ``face/sources.py``), runs the
pipeline at most ``max_fps`` times a second, and writes what the pipeline
returns into the outbox:

* an ``attendance`` record as soon as a consenting senior starts a session;
* a ``footfall_hourly`` record when a clock hour closes, and the partial
  hour on stop (hourly records are additive, see ``aggregate.py``).

The service loads its own face engine (one onnxruntime thread by default) so
it never waits on the kiosk's recogniser lock; it shares only the in-memory
gallery (read-only searches; the gallery has its own lock).

On start it restores today's attendance sessions from the outbox, so a
restart does not record a senior's first session twice. Anonymous visitor
embeddings are deliberately *not* restored (they are never stored): after a
restart, a visitor seen earlier the same day may be counted as new again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from face.footfall.config import FootfallConfig
from face.footfall.pipeline import FootfallPipeline, build_face_pipeline
from face.footfall.store import FootfallStore
from terminal.core.clock import Clock
from terminal.core.errors import TerminalError
from terminal.core.log import get_logger

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from face.gallery import Gallery
    from face.sources import FrameSource

log = get_logger(__name__)

PipelineFactory = Callable[[FootfallConfig, tuple[int, int]], FootfallPipeline]


def footfall_face_settings(face_settings: Any, threads: int = 1) -> Any:
    """The kiosk's face settings with the footfall engine's own thread count."""
    if face_settings is None:
        from terminal.config.settings import FaceSettings

        face_settings = FaceSettings()
    return face_settings.model_copy(update={"intra_op_threads": threads})


def make_pipeline_factory(
    config: FootfallConfig,
    *,
    pack_dir: Path,
    face_settings: Any = None,
    gallery: Gallery | None = None,
    consented_ids: Collection[str] = (),
    threads: int = 1,
    engine: Any = None,
) -> PipelineFactory:
    """A factory building pipelines for a frame size, loading the detector once."""
    fs = footfall_face_settings(face_settings, threads)
    if config.detector == "person":
        from face.footfall.person_model import PersonSsdDetector, default_person_pack_dir
        from face.footfall.tracking import ByteTrackAdapter

        pdir = (
            Path(config.person_pack_dir)
            if config.person_pack_dir
            else default_person_pack_dir(pack_dir)
        )
        # one OpenCV thread (process-wide setting): with the default of all cores the DNN
        # doubled the kiosk's identify latency in `bench footfall`
        detector = PersonSsdDetector.from_pack(pdir, threads=threads)

        def make_person(cfg: FootfallConfig, size: tuple[int, int]) -> FootfallPipeline:
            tracker = ByteTrackAdapter(
                fps=cfg.fps / cfg.detect_stride,
                min_consecutive_frames=cfg.track_min_frames,
                lost_seconds=cfg.lost_seconds,
            )
            return FootfallPipeline(detector, tracker, cfg, size)

        return make_person

    from face.pipeline import FaceEngine

    eng = engine or FaceEngine.from_pack(pack_dir, fs)

    def make_face(cfg: FootfallConfig, size: tuple[int, int]) -> FootfallPipeline:
        return build_face_pipeline(
            eng,
            cfg,
            size,
            gallery=gallery,
            accept_threshold=fs.accept_threshold,
            min_margin=fs.min_margin,
            consented_ids=consented_ids,
        )

    return make_face


@dataclass(frozen=True)
class ServiceStatus:
    running: bool
    source: str
    source_state: str
    frames: int
    visits_in: int
    visits_out: int
    unique_visitors: int | None
    attendance_records: int
    fps: float
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class FootfallService:
    """Counts visitors from ``source`` in a background thread."""

    def __init__(
        self,
        source: FrameSource,
        make_pipeline: PipelineFactory,
        config: FootfallConfig,
        sessions: sessionmaker[Session],
        store: FootfallStore,
        clock: Clock,
        *,
        consent_refresh_s: float = 60.0,
    ) -> None:
        self.source = source
        self.make_pipeline = make_pipeline
        self.config = config
        self.sessions = sessions
        self.store = store
        self.clock = clock
        self.consent_refresh_s = consent_refresh_s
        self.pipeline: FootfallPipeline | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._error: str | None = None
        self._fps = 0.0
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ control
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._error = None
        self._last_seq = 0
        self._idle_since = 0.0
        self.source.start()
        self._thread = threading.Thread(target=self._run_guarded, name="care-footfall", daemon=True)
        self._thread.start()
        log.info("footfall_started", source=self.source.name, detector=self.config.detector)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread, write the partial hour, forget all embeddings."""
        self._stop.set()
        t = self._thread
        if t is not None:
            t.join(timeout)
            if t.is_alive():
                log.warning("footfall_stop_timeout", seconds=timeout)
        self._thread = None
        self.source.stop()
        log.info("footfall_stopped")

    def run_for(self, seconds: float | None) -> None:
        """Start, run ``seconds`` (None: no limit) or until the source ended
        (or failed) and every frame was processed, then stop."""
        self.start()
        deadline = None if seconds is None else time.monotonic() + seconds
        try:
            while self.running and (deadline is None or time.monotonic() < deadline):
                finished = self.source.status().state.value in ("ended", "error")
                if finished and self._idle_since and time.monotonic() - self._idle_since > 0.3:
                    break
                time.sleep(0.05)
        finally:
            self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def status(self) -> ServiceStatus:
        p = self.pipeline
        s = p.summary() if p else self._last_summary
        src = self.source.status()
        return ServiceStatus(
            running=self.running,
            source=self.source.name,
            source_state=src.state.value,
            frames=int(s.get("frames", 0)),
            visits_in=int(s.get("visits_in", 0)),
            visits_out=int(s.get("visits_out", 0)),
            unique_visitors=s.get("unique_visitors"),
            attendance_records=int(s.get("attendance_records", 0)),
            fps=round(self._fps, 2),
            error=self._error,
        )

    # ------------------------------------------------------------------ thread
    _last_seq = 0
    _idle_since = 0.0
    _last_summary: dict[str, Any] = {}  # noqa: RUF012 - replaced, never mutated

    def _run_guarded(self) -> None:
        try:
            self._run()
        except TerminalError as exc:
            self._error = str(exc)
            log.error("footfall_failed", code=exc.code, detail=str(exc))
        except Exception as exc:  # the thread must never die silently
            self._error = f"{type(exc).__name__}"
            log.exception("footfall_crashed", exc_type=type(exc).__name__)
        finally:
            self._shutdown()

    def _next_frame(self) -> Any:
        wait = getattr(self.source, "wait_frame", None)
        if wait is not None:
            return wait(self._last_seq, 0.5)
        frame = self.source.latest()
        if frame is None or frame.seq <= self._last_seq:
            self._stop.wait(0.01)
            return None
        return frame

    def _run(self) -> None:
        period = 1.0 / self.config.max_fps
        next_consent = 0.0
        t_rate, n_rate = time.monotonic(), 0
        while not self._stop.is_set():
            frame = self._next_frame()
            if frame is None:
                if not self._idle_since:
                    self._idle_since = time.monotonic()
                self._tick_idle()
                continue
            self._idle_since = 0.0
            self._last_seq = frame.seq
            if self.pipeline is None:
                self._open_pipeline(frame.size)
            pipe = self.pipeline
            assert pipe is not None
            mono = time.monotonic()
            if mono >= next_consent:
                self._refresh_consent(pipe)
                next_consent = mono + self.consent_refresh_s
            report = pipe.process(frame.image, frame.ts, self.clock.now())
            if report.attendance or report.closed_hours:
                self._write(report.attendance, report.closed_hours)
            n_rate += 1
            if mono - t_rate >= 2.0:
                self._fps = n_rate / (mono - t_rate)
                t_rate, n_rate = mono, 0
            spare = period - (time.monotonic() - mono)
            if spare > 0:
                self._stop.wait(spare)

    def _tick_idle(self) -> None:
        p = self.pipeline
        if p is not None:
            # keep hours closing while the camera is silent (nothing observed)
            closed = [b for b in p.hours.tick(self.clock.now()) if not b.empty]
            if closed:
                self._write([], closed)

    def _open_pipeline(self, size: tuple[int, int]) -> None:
        pipe = self.make_pipeline(self.config, size)
        now = self.clock.now()
        with self.sessions() as session:
            day = now.date().isoformat()
            pipe.restore_attendance(day, self.store.attendance_sessions(session, day))
        self.pipeline = pipe

    def _refresh_consent(self, pipe: FootfallPipeline) -> None:
        try:
            with self.sessions() as session:
                pipe.consented_ids = frozenset(self.store.consented_residents(session))
        except Exception as exc:
            log.warning("footfall_consent_refresh_failed", error=type(exc).__name__)

    def _write(self, attendance: list[Any], hours: list[Any]) -> None:
        identities = self.pipeline.identities if self.pipeline else True
        self.store.write(
            self.sessions,
            self.clock.now(),
            attendance=attendance,
            hours=hours,
            identities=identities,
            detector=self.config.detector,
        )

    def _shutdown(self) -> None:
        p = self.pipeline
        if p is None:
            return
        try:
            hours = p.flush(self.clock.now())
            if hours:
                self._write([], hours)
        except Exception as exc:
            log.error("footfall_flush_failed", error=type(exc).__name__)
        finally:
            self._last_summary = p.summary()
            p.close()
            self.pipeline = None


def build_service(
    *,
    source: FrameSource,
    config: FootfallConfig,
    pack_dir: Path,
    face_settings: Any,
    sessions: sessionmaker[Session],
    outbox: Any,
    clock: Clock,
    gallery: Gallery | None = None,
    engine: Any = None,
) -> FootfallService:
    """The service as the app wires it: its own engine, the shared gallery,
    the outbox, consent from the roster."""
    store = FootfallStore(outbox)
    factory = make_pipeline_factory(
        config, pack_dir=pack_dir, face_settings=face_settings, gallery=gallery, engine=engine
    )
    return FootfallService(source, factory, replace(config), sessions, store, clock)


def run_blocking(service: FootfallService, seconds: float | None = None) -> dict[str, Any]:
    """``footfall run`` in the foreground: start, run until ``seconds`` passed
    (None: until Ctrl-C or the source ends), stop (writing the partial hour),
    and return the final status."""
    try:
        service.run_for(seconds)
    except KeyboardInterrupt:
        service.stop()
    return service.status().as_dict()
