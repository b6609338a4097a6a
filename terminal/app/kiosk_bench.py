"""``care-terminal bench kiosk --json``: the kiosk end to end, offscreen.

Builds the demo world (no platform server), puts the real window on the real
runner with a simulated camera, and measures:

* ``frame_to_screen_ms``: camera capture time -> the frame painted on screen
  (p50 / p95 / max over every painted frame);
* ``face_to_confirm_ms``: the first frame in which a face was seen -> the
  confirm screen shown (per walk-up);
* ``confirm_to_done_ms``: touch "pay" -> the success screen (the durable
  commit with ``synchronous=FULL`` is in between);
* ``idle_cpu_percent``: process CPU while the camera shows an empty room
  (100 = one core busy);
* ``rss_mb``: resident memory at the end (models, Qt, fonts).

Timings depend on the machine; the document says which one.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def _rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def run_kiosk_bench(
    pack_dir: Path | None = None, *, idle_s: float = 6.0, walkups: int = 2
) -> dict[str, Any]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("QT_LOGGING_RULES", "qt.multimedia*=false;qt.qpa.*=false")
    from datetime import datetime

    from face.footfall.synth import Scene, write_clip
    from face.liveness_synth import SimulatedKioskCamera
    from face.sources import VideoFileSource
    from payment.flow import Touch
    from terminal.app.demo import answer_prompts, demo_sprites, prepare_demo
    from terminal.app.kiosk_compose import build_kiosk
    from terminal.core.clock import CHINA_TZ
    from terminal.kiosk.runner import RunnerConfig
    from ui.i18n import Translator
    from ui.model import ChallengeView, PreviewFrame
    from ui.views.app import make_app
    from ui.views.window import KioskWindow

    base = Path(tempfile.mkdtemp(prefix="care-bench-kiosk-"))
    at = datetime.now(CHINA_TZ).replace(hour=11, minute=30)
    demo = prepare_demo(base, pack_dir=pack_dir, at=at, platform=False, history_days=0)
    services = demo.services
    sprites = demo_sprites(services.recogniser.engine)
    # the room alone, then enrolled people walking up one after another; they
    # turn their head when the kiosk asks (the real challenge, nothing waived)
    empty = Scene("bench_empty", idle_s, (), fps=15)
    empty_clip, _ = write_clip(empty, {s.key: s for s in sprites}, base / "clips")
    enrolled = demo.people[:2]
    camera = SimulatedKioskCamera(
        [enrolled[i % len(enrolled)] for i in range(walkups)], fps=15.0, stay_s=12.0
    )

    app_qt = make_app()
    results: dict[str, Any] = {}
    source = VideoFileSource(empty_clip, realtime=True, loop=True)
    kiosk = build_kiosk(services, source=source, sync=False, runner_config=RunnerConfig())
    tr = Translator("zh_CN")
    win = KioskWindow(
        kiosk.runner, kiosk.backend, tr, clock=services.clock.now, wedge_key=kiosk.wedge_key
    )
    win.resize(1280, 800)
    win.show()
    frames_seen: list[tuple[float, bool]] = []  # (capture time, a face in it)
    prompts: list[float] = []  # when the kiosk asked for the turn

    def on_update(u: Any) -> None:
        if isinstance(u, PreviewFrame):
            frames_seen.append((u.captured, u.box is not None))
        elif isinstance(u, ChallengeView) and u.prompt.startswith("face.liveness.turn_"):
            prompts.append(time.monotonic())

    def approach_start(shown: float) -> float | None:
        """Capture time of the first frame of the face run that led to ``shown``."""
        start = None
        for ts, face in reversed([f for f in list(frames_seen) if f[0] <= shown]):
            if not face:
                break
            start = ts
        return start

    kiosk.runner.subscribe(on_update)
    kiosk.runner.subscribe(answer_prompts(camera))

    def spin(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            app_qt.processEvents()
            time.sleep(0.002)

    try:
        kiosk.start()
        spin(1.5)  # warm-up: models, fonts, first frames
        cpu0, wall0 = _cpu_s(), time.monotonic()
        spin(idle_s - 1.5)
        results["idle_cpu_percent"] = round(100 * (_cpu_s() - cpu0) / (time.monotonic() - wall0), 1)
        # swap the camera to the walk-ups (same runner, new clip)
        kiosk.runner.stop()
        kiosk.runner.set_source(camera)
        win.latencies.clear()
        win.screen_log.clear()
        frames_seen.clear()
        kiosk.runner.start()
        to_confirm: list[float] = []
        challenge: list[float] = []
        to_done: list[float] = []
        end = time.monotonic() + camera.cycle_s * walkups + 5
        while time.monotonic() < end:
            app_qt.processEvents()
            time.sleep(0.002)
            log = win.screen_log
            if (
                log
                and log[-1][1] == "Confirm"
                and (not to_confirm or len(to_confirm) < len(to_done) + 1)
            ):
                shown = log[-1][0]
                first = approach_start(shown)
                if first is not None:
                    to_confirm.append((shown - first) * 1000)
                if prompts:
                    challenge.append((time.monotonic() - prompts[-1]) * 1000)
                t_touch = time.monotonic()
                kiosk.runner.post(Touch("confirm"))
                while time.monotonic() < t_touch + 10:
                    app_qt.processEvents()
                    time.sleep(0.001)
                    if win.screen_log[-1][1] == "Done":
                        to_done.append((win.screen_log[-1][0] - t_touch) * 1000)
                        break
                kiosk.runner.post(Touch("confirm"))  # finish
            if len(to_done) >= walkups:
                break
        lat = [v * 1000 for v in win.latencies]
        results["frame_to_screen_ms"] = {
            "p50": round(_pct(lat, 0.5), 1),
            "p95": round(_pct(lat, 0.95), 1),
            "max": round(max(lat), 1) if lat else None,
            "frames": len(lat),
        }
        results["face_to_confirm_ms"] = [round(v) for v in to_confirm]
        results["confirm_to_done_ms"] = [round(v) for v in to_done]
        # from the turn prompt to the confirm screen: the challenge's share,
        # including the simulated senior's 0.5 s reaction and 1.8 s turn and back
        results["prompt_to_confirm_ms"] = [round(v) for v in challenge]
        if to_confirm:
            results["face_to_confirm_median_ms"] = round(statistics.median(to_confirm))
        results["rss_mb"] = _rss_mb()
    finally:
        win.shutdown()
        win.close()
        win.deleteLater()
        app_qt.processEvents()
        kiosk.close()
        demo.close()
    results["settings"] = {
        "analysis_fps": RunnerConfig().analysis_fps,
        "preview_fps": RunnerConfig().preview_fps,
        "camera": "simulated 3-D heads 640x480 @ 15 fps (real time), answering the challenge",
        "qt_platform": os.environ.get("QT_QPA_PLATFORM"),
    }
    results["machine"] = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }
    return results
