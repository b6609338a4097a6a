"""``care-terminal bench footfall --json``: what footfall costs on this box.

Three measurements, one JSON document:

``max``
    Every frame of a clip through decode -> detect -> track -> count ->
    (embed) as fast as possible: frames per second, milliseconds per stage
    per frame, CPU share (process CPU seconds / wall seconds; 1.0 = one core
    busy) and RSS.
``paced``
    The same pipeline fed at the camera rate (15 fps) for ``paced_seconds``:
    the CPU share it takes from the kiosk in service.
``kiosk``
    The kiosk's identify latency (largest face -> embedding -> 1:N search, on
    its own engine) alone, and again while the paced footfall pipeline runs
    in a thread of the same process (as in the app): median and p95, and
    the difference.

Without a video the standard synthetic clip (``synth.py``) is generated into
a temporary directory first (a few seconds).
"""

from __future__ import annotations

import os
import resource
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from face.footfall.config import FootfallConfig
from face.footfall.service import (
    FOOTFALL_NICE,
    footfall_face_settings,
    lower_thread_priority,
    make_pipeline_factory,
)
from terminal.core.clock import CHINA_TZ
from terminal.core.errors import TerminalError


def _rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        pass
    return 0.0


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


class _Frames:
    """Frames of a video file, decoded on demand, looping (decode is part of the
    cost: a USB camera delivers MJPEG that must be decoded too)."""

    def __init__(self, video: Path) -> None:
        self.video = video
        self.cap = cv2.VideoCapture(str(video))
        if not self.cap.isOpened():
            raise TerminalError(f"cannot open video file {video.name}", code="bench_input")
        fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0 < fps < 1000 else 15.0
        self.decode_ms = 0.0
        self.decoded = 0

    def next(self, loop: bool = True) -> np.ndarray | None:
        t0 = time.perf_counter()
        ok, frame = self.cap.read()
        if not ok and loop:
            self.cap.release()
            self.cap = cv2.VideoCapture(str(self.video))
            ok, frame = self.cap.read()
        self.decode_ms += (time.perf_counter() - t0) * 1000
        if not ok:
            return None
        self.decoded += 1
        return frame

    def close(self) -> None:
        self.cap.release()


def _pctl(values: list[float], q: float) -> float:
    s = sorted(values)
    return round(s[min(len(s) - 1, round(q * (len(s) - 1)))], 2)


def bench_footfall(
    pack_dir: Path,
    face_settings: Any = None,
    *,
    video: Path | None = None,
    config: FootfallConfig | None = None,
    max_frames: int = 450,
    paced_seconds: float = 10.0,
    kiosk_repeats: int = 40,
    kiosk_image: Path | None = None,
    kiosk_threads: int | None = None,
    kiosk_rate: float = 8.0,
) -> dict[str, Any]:
    """``kiosk_rate``: identifications a second as the kiosk makes them while a
    face is in view (its runner's ``analysis_fps``), for the beside-the-kiosk
    figure; the back-to-back figures are the worst case beside it."""
    from datetime import datetime, timedelta

    from face.pipeline import FaceEngine, load_image

    cfg = config or FootfallConfig()
    rss_start = _rss_mb()
    fs = footfall_face_settings(face_settings, 1)
    engine = FaceEngine.from_pack(pack_dir, fs)
    tmp: tempfile.TemporaryDirectory[str] | None = None
    try:
        if video is None:
            # generated in a child process, so its memory does not count as footfall's RSS
            import subprocess
            import sys

            tmp = tempfile.TemporaryDirectory(prefix="care-footfall-bench-")
            proc = subprocess.run(
                [sys.executable, "-m", "face.footfall.synth", tmp.name, "--pack", str(pack_dir)],
                capture_output=True,
                text=True,
                check=False,
                stdin=subprocess.DEVNULL,
                timeout=600,
            )
            if proc.returncode != 0:
                raise TerminalError(
                    f"could not generate the benchmark clip: {proc.stderr.strip()[-300:]}",
                    code="bench_input",
                )
            video = Path(tmp.name) / "entrance_a.avi"
        src = _Frames(Path(video))
        fps = src.fps
        first = src.next()
        if first is None:
            raise TerminalError(f"no decodable frames in {Path(video).name}", code="bench_input")
        h, w = first.shape[:2]
        src.close()
        factory = make_pipeline_factory(
            cfg,
            pack_dir=pack_dir,
            face_settings=face_settings,
            engine=engine if cfg.detector != "person" else None,
        )
        t_day = datetime(2026, 1, 5, 9, 0, tzinfo=CHINA_TZ)

        # -- max throughput ------------------------------------------------------
        pipe = factory(cfg, (w, h))
        src = _Frames(Path(video))
        n = 0
        cpu0, wall0 = time.process_time(), time.perf_counter()
        while n < max_frames:
            frame = src.next(loop=False)
            if frame is None:
                break
            pipe.process(frame, n / fps, t_day + timedelta(seconds=n / fps))
            n += 1
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
        decode_ms = src.decode_ms / max(1, n)
        src.close()
        summary = pipe.summary()
        pipe.close()
        total_ms = wall * 1000 / max(1, n)
        max_doc = {
            "frames": n,
            "size": [w, h],
            "fps": round(n / wall, 1),
            "stage_ms_per_frame": {"decode": round(decode_ms, 3), **summary["stage_ms_per_frame"]},
            "total_ms_per_frame": round(total_ms, 3),
            "embeddings_computed": summary["embeddings_computed"],
            "cpu_share": round(cpu / wall, 3),
            "rss_mb_after": _rss_mb(),
        }

        # -- paced at the camera rate ------------------------------------------------
        stop = threading.Event()
        paced: dict[str, Any] = {}

        def run_paced(seconds: float, niced: bool = False) -> None:
            if niced:  # as the service's counting thread does
                paced["nice"] = lower_thread_priority()
            p = factory(cfg, (w, h))
            feed = _Frames(Path(video))
            period = 1.0 / min(cfg.max_fps, fps)
            k = 0
            c0, t0 = time.process_time(), time.perf_counter()
            thread_c0 = time.thread_time()
            while not stop.is_set() and time.perf_counter() - t0 < seconds:
                due = t0 + k * period
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                frame = feed.next()
                if frame is None:
                    break
                p.process(frame, k * period, t_day + timedelta(seconds=k * period))
                k += 1
            el = time.perf_counter() - t0
            paced.update(
                {
                    "niced": niced,
                    "seconds": round(el, 2),
                    "frames": k,
                    "fps": round(k / el, 2),
                    "cpu_share_thread": round((time.thread_time() - thread_c0) / el, 3),
                    "cpu_share_process": round((time.process_time() - c0) / el, 3),
                }
            )
            feed.close()
            p.close()

        run_paced(paced_seconds)
        paced_doc = dict(paced)

        # -- kiosk identify latency, alone and next to footfall ----------------------
        kiosk_doc: dict[str, Any] = {}
        if kiosk_repeats > 0:
            from face.footfall.synth import default_face_images
            from face.gallery import Gallery

            base = face_settings or fs.model_copy(update={"intra_op_threads": 2})
            if kiosk_threads is not None:
                base = base.model_copy(update={"intra_op_threads": kiosk_threads})
            kiosk_engine = FaceEngine.from_pack(pack_dir, base)
            path = kiosk_image or default_face_images()[0][0]
            img = load_image(path)
            gallery = Gallery()
            rng = np.random.default_rng(0)
            gallery.load(
                (f"r{i}", rng.normal(size=(3, 512)).astype(np.float32)) for i in range(300)
            )

            def identify_ms() -> float:
                t = time.perf_counter()
                prim = kiosk_engine.primary(img)
                gallery.search(prim.embedding, k=3)
                return (time.perf_counter() - t) * 1000

            def at_kiosk_rate() -> list[float]:
                """Identify ``kiosk_repeats`` times at ``kiosk_rate`` a second."""
                period, ms = 1.0 / kiosk_rate, []
                t0 = time.perf_counter()
                for k in range(kiosk_repeats):
                    delay = t0 + k * period - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    ms.append(identify_ms())
                return ms

            def beside_footfall(
                niced: bool, kiosk: Callable[[], list[float]] | None = None
            ) -> tuple[list[float], Any]:
                paced.clear()
                stop.clear()
                th = threading.Thread(target=run_paced, args=(3600.0, niced), daemon=True)
                th.start()
                time.sleep(1.0)
                together = kiosk() if kiosk else [identify_ms() for _ in range(kiosk_repeats)]
                stop.set()
                th.join(30)
                return together, paced.get("fps")

            identify_ms()  # warm-up
            # alone before, between and after the "together" blocks, to spread background noise
            alone = [identify_ms() for _ in range(kiosk_repeats)]
            # footfall's thread niced as in the service, then at the kiosk's priority
            together, fps_niced = beside_footfall(True)
            alone += [identify_ms() for _ in range(kiosk_repeats)]
            same, fps_same = beside_footfall(False)
            alone += [identify_ms() for _ in range(kiosk_repeats)]
            # as the kiosk really identifies while a face is in view, footfall niced
            rate_alone = at_kiosk_rate()
            rated, fps_rated = beside_footfall(True, at_kiosk_rate)

            def stats(ms: list[float]) -> dict[str, float]:
                return {"median": round(statistics.median(ms), 2), "p95": _pctl(ms, 0.95)}

            kiosk_doc = {
                "identify_ms_alone": stats(alone),
                "identify_ms_with_footfall": stats(together),
                "added_ms_median": round(statistics.median(together) - statistics.median(alone), 2),
                "footfall_fps_meanwhile": fps_niced,
                "footfall_nice": FOOTFALL_NICE,
                "identify_ms_with_footfall_same_priority": stats(same),
                "added_ms_median_same_priority": round(
                    statistics.median(same) - statistics.median(alone), 2
                ),
                "footfall_fps_meanwhile_same_priority": fps_same,
                "kiosk_rate_per_s": kiosk_rate,
                "identify_ms_at_kiosk_rate_alone": stats(rate_alone),
                "identify_ms_at_kiosk_rate_with_footfall": stats(rated),
                "added_ms_median_at_kiosk_rate": round(
                    statistics.median(rated) - statistics.median(rate_alone), 2
                ),
                "footfall_fps_meanwhile_at_kiosk_rate": fps_rated,
                "kiosk_threads": kiosk_engine.threads,
                "gallery_identities": 300,
            }
        return {
            "video": Path(video).name,
            "detector": cfg.detector,
            "footfall_threads": fs.intra_op_threads,
            "cpu_count": os.cpu_count(),
            "max": max_doc,
            "paced": paced_doc,
            "kiosk": kiosk_doc,
            "rss_mb": {"start": rss_start, "end": _rss_mb(), "peak": _peak_rss_mb()},
            "target_fps": 15,
            "met": max_doc["fps"] >= 15,
        }
    finally:
        if tmp is not None:
            tmp.cleanup()


def run_cli_bench(
    pack_dir: Path,
    face_settings: Any = None,
    *,
    video: Path | None = None,
    config: FootfallConfig | None = None,
    quick: bool = False,
    kiosk_rate: float = 8.0,
) -> dict[str, Any]:
    """What ``care-terminal bench footfall --json`` prints (``quick``: shorter runs)."""
    if quick:
        return bench_footfall(
            pack_dir,
            face_settings,
            video=video,
            config=config,
            max_frames=150,
            paced_seconds=3.0,
            kiosk_repeats=10,
            kiosk_rate=kiosk_rate,
        )
    return bench_footfall(
        pack_dir, face_settings, video=video, config=config, kiosk_rate=kiosk_rate
    )
