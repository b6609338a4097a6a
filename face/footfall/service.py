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
restart does not record a senior's first session twice. With a
:class:`~face.footfall.visitor_vault.VisitorVault` it also restores the day's
anonymous visitors: whenever they change, the service writes them encrypted
(AES-GCM, per-day key in memory and in the kernel keyring only), so after a
*service restart* within the day a returning visitor is not counted again.
After a *reboot* the key is gone, the file is deleted and the day's visitors
start afresh (a visitor seen before the reboot may be counted again); without
a usable keyring the visitors stay in memory only, as with no vault. At the
day rollover the file is overwritten and deleted and the day's key dropped.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from face.footfall.config import FootfallConfig
from face.footfall.pipeline import FootfallPipeline, build_face_pipeline
from face.footfall.store import FootfallStore
from face.footfall.visitor_vault import (
    KeyStore,
    VisitorState,
    VisitorVault,
    kernel_keyring,
)
from terminal.core.clock import Clock
from terminal.core.errors import TerminalError
from terminal.core.log import get_logger

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from face.gallery import Gallery
    from face.sources import FrameSource
    from terminal.core.sdnotify import Notifier

log = get_logger(__name__)

PipelineFactory = Callable[[FootfallConfig, tuple[int, int]], FootfallPipeline]


FOOTFALL_NICE = 10  # how much lower than the kiosk the counting thread runs


def lower_thread_priority(step: int = FOOTFALL_NICE) -> int | None:
    """Lower the calling thread's scheduling priority by ``step`` nice levels
    (Linux schedules threads apart; the footfall sessions run one intra-op
    thread, in the caller). The kiosk's identify then wins the CPU whenever
    both want it, and footfall takes what is left. Returns the new nice
    value, or None where the platform cannot do it."""
    try:
        tid = threading.get_native_id()
        now = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, now + step))
        return os.getpriority(os.PRIO_PROCESS, tid)
    except (AttributeError, OSError):
        return None


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
        from face.footfall.person_model import PersonSsdDetector
        from face.footfall.tracking import ByteTrackAdapter

        pdir = _person_pack_dir(config, pack_dir)
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
    if config.detector == "fusion":
        return _fusion_factory(
            config,
            eng,
            pack_dir=pack_dir,
            threads=threads,
            gallery=gallery,
            accept_threshold=fs.accept_threshold,
            min_margin=fs.min_margin,
            consented_ids=consented_ids,
        )

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


def _person_pack_dir(config: FootfallConfig, pack_dir: Path) -> Path:
    from face.footfall.person_model import default_person_pack_dir

    if config.person_pack_dir:
        return Path(config.person_pack_dir)
    return default_person_pack_dir(pack_dir)


def _fusion_factory(
    config: FootfallConfig,
    engine: Any,
    *,
    pack_dir: Path,
    threads: int,
    **kwargs: Any,
) -> PipelineFactory:
    """Face detector on every frame, the body detector on every ``body_every``-th."""
    from face.footfall.fused import FusedTrackerAdapter, FusionDetector, MotionDetector
    from face.footfall.fusion import FusionParams, TrackerParams
    from face.footfall.person_model import PersonSsdDetector

    pdir = _person_pack_dir(config, pack_dir)
    person = PersonSsdDetector.from_pack(pdir, threads=threads, score_threshold=config.body_score)

    def make_fusion(cfg: FootfallConfig, size: tuple[int, int]) -> FootfallPipeline:
        params = FusionParams(head_w=cfg.head_w, head_cy=cfg.head_cy, body_score=cfg.body_score)
        detector = FusionDetector(
            engine,
            person,
            params,
            body_every=cfg.body_every,
            score_threshold=cfg.det_score,
            min_face_px=cfg.min_face_px,
            motion=MotionDetector() if cfg.motion else None,
        )
        tracker = FusedTrackerAdapter(
            TrackerParams(min_hits=cfg.track_min_frames, lost_seconds=cfg.lost_seconds)
        )
        return FootfallPipeline(detector, tracker, cfg, size, **kwargs)

    return make_fusion


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
        vault: VisitorVault | None = None,
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
        self.vault = vault
        self._vault_day: str | None = None
        self._saved_version = -1
        # called by every iteration of the counting loop (a frame, or at most
        # every 0.5 s of a silent camera): the systemd watchdog's ping belongs
        # there, so a wedged loop stops the pings
        self.heartbeat: Callable[[FootfallService], None] | None = None

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
        lower_thread_priority()
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
            if self.heartbeat is not None:
                self.heartbeat(self)
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
            now = self.clock.now()
            report = pipe.process(frame.image, frame.ts, now)
            if report.attendance or report.closed_hours:
                self._write(report.attendance, report.closed_hours)
            self._keep_visitors(pipe, now)
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
            now = self.clock.now()
            # keep hours closing while the camera is silent (nothing observed)
            closed = [b for b in p.hours.tick(now) if not b.empty]
            if closed:
                self._write([], closed)
            self._keep_visitors(p, now)

    def _open_pipeline(self, size: tuple[int, int]) -> None:
        pipe = self.make_pipeline(self.config, size)
        now = self.clock.now()
        with self.sessions() as session:
            day = now.date().isoformat()
            pipe.restore_attendance(day, self.store.attendance_sessions(session, day))
        self._restore_visitors(pipe, day)
        self.pipeline = pipe

    # ------------------------------------------------------------ visitor vault
    def _restore_visitors(self, pipe: FootfallPipeline, day: str) -> None:
        self._vault_day = day
        self._saved_version = pipe.visitors.version
        if self.vault is None or not pipe.identities:
            return
        try:
            state = self.vault.load(day)
            if state is not None:
                pipe.visitors.restore_state(state.visitors, state.owners, state.vectors)
        except Exception as exc:  # never stop counting over the vault
            log.warning("footfall_visitors_restore_failed", error=type(exc).__name__)
            pipe.visitors.clear()
            self.vault.forget(day)
        self._saved_version = pipe.visitors.version

    def _keep_visitors(self, pipe: FootfallPipeline, now: datetime) -> None:
        """Day rollover: forget the file and the key; else persist a change."""
        if self.vault is None or not pipe.identities:
            return
        day = now.date().isoformat()
        try:
            if day != self._vault_day:
                self.vault.forget(self._vault_day)
                self._vault_day = day
                if pipe.visitors.version == self._saved_version:
                    # idle at midnight (the pipeline clears on its next frame), or the
                    # pipeline opened just before midnight: yesterday's visitors go now
                    pipe.visitors.clear()
                    self._saved_version = pipe.visitors.version
                    return
                # else the pipeline rolled over in this frame (and may already hold
                # the new day's first visitor): fall through and save the new day
            if pipe.visitors.version != self._saved_version:
                visitors, owners, vectors = pipe.visitors.export_state()
                self.vault.save(day, now, VisitorState(visitors, owners, vectors))
                vectors.fill(0.0)
                self._saved_version = pipe.visitors.version
        except Exception as exc:
            log.warning("footfall_visitors_save_failed", error=type(exc).__name__)
            self._saved_version = pipe.visitors.version  # retried on the next change

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
            now = self.clock.now()
            # crossings still waiting for their track to be clearly across
            drained = p.drain(now)
            hours = p.flush(now)
            if hours or drained.attendance:
                self._write(drained.attendance, hours)
            self._keep_visitors(p, now)  # before close() forgets them in memory
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
    vault_dir: Path | None = None,
    centre_id: str = "",
    keys: KeyStore | None = None,
) -> FootfallService:
    """The service as the app wires it: its own engine, the shared gallery,
    the outbox, consent from the roster, and the visitor vault.

    The vault's file goes to ``vault_dir``, by default the directory of the
    SQLite database (the data directory); its associated data binds
    ``centre_id`` and the outbox's device id. ``keys`` defaults to the kernel
    keyring; when that is unusable (or the database is not a file) the day's
    visitors stay in memory only."""
    store = FootfallStore(outbox)
    factory = make_pipeline_factory(
        config, pack_dir=pack_dir, face_settings=face_settings, gallery=gallery, engine=engine
    )
    directory = vault_dir if vault_dir is not None else _database_dir(sessions)
    vault = None
    if directory is not None and config.identities:
        store_keys = keys if keys is not None else kernel_keyring()
        if store_keys is not None:
            device = str(getattr(outbox, "device_id", ""))
            vault = VisitorVault(directory, centre_id=centre_id, device_id=device, keys=store_keys)
    return FootfallService(source, factory, replace(config), sessions, store, clock, vault=vault)


def _database_dir(sessions: Any) -> Path | None:
    """The directory of the SQLite database file the sessions are bound to."""
    url = getattr(sessions.kw.get("bind"), "url", None) if hasattr(sessions, "kw") else None
    database = getattr(url, "database", None)
    if (
        not database
        or database == ":memory:"
        or not str(getattr(url, "drivername", "")).startswith("sqlite")
    ):
        return None
    return Path(database).resolve().parent


def status_line(status: ServiceStatus) -> str:
    """The one line ``systemctl status`` shows for the counter."""
    unique = "" if status.unique_visitors is None else f", {status.unique_visitors} unique"
    return (
        f"footfall: camera {status.source_state}, in {status.visits_in} out "
        f"{status.visits_out}{unique}, {status.fps:.1f} fps"
    )


def run_blocking(
    service: FootfallService, seconds: float | None = None, *, notifier: Notifier | None = None
) -> dict[str, Any]:
    """``footfall run`` in the foreground: start, run until ``seconds`` passed
    (None: until Ctrl-C, SIGTERM turned into KeyboardInterrupt by the caller,
    or the source ends), stop (writing the partial hour), and return the final
    status. With a ``notifier`` (under systemd): ``READY=1`` from the counting
    loop once the pipeline is open (or the camera is missing), ``WATCHDOG=1`` and a ``STATUS=`` line from its
    turns (at most every 2 s); the caller sends ``STOPPING=1``."""
    if notifier is not None and notifier.enabled:
        started = threading.Event()
        last = [float("-inf")]

        def beat(svc: FootfallService) -> None:
            mono = time.monotonic()
            text = status_line(svc.status()) if mono - last[0] >= 2.0 else None
            if text is not None:
                last[0] = mono
            if not started.is_set():
                # ready once the models are loaded (the first frame opened the
                # pipeline), or at once when the camera is not there to wait for
                waiting = svc.source.status().state.value == "connected"
                if svc.pipeline is None and waiting:
                    return
                started.set()
                notifier.ready(text or status_line(svc.status()))
                return
            notifier.alive(text)

        service.heartbeat = beat
    try:
        service.run_for(seconds)
    except KeyboardInterrupt:
        service.stop()
    return service.status().as_dict()
