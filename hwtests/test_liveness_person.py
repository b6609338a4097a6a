"""The liveness challenge with a real person at the terminal: counts, not impressions.

Protocol (real mode, ``CARE_HW_INTERACTIVE=1 pytest hwtests -s -k liveness``):

1. A volunteer stands at the payer camera; the test captures 5 frames of their
   face and enrols them in a throw-away gallery (nothing is written to the
   terminal's database, nothing is kept after the test).
2. Genuine: ``CARE_HW_LIVENESS_ATTEMPTS`` attempts (default 20). For each, the
   terminal prints what the kiosk would say ("请向左转头，再转回来" ...); the
   volunteer follows it. A failed attempt is tried once more, as the kiosk does.
3. Busy background (``CARE_HW_LIVENESS_BUSY=1``): the genuine attempts are
   repeated while a second person walks slowly to and fro 1-2 m behind the
   volunteer, as a canteen queue does. The challenge checks that the picture
   beside the face stays still while the head turns (a held sheet carries its
   own background with it), so a moving room behind a real senior is the case
   that check could wrongly refuse; it is counted apart.
4. Attacks: the operator holds a printed photo, then a phone showing a photo,
   of the volunteer to the camera for the same number of attempts each, moving
   and tilting it as they like when asked to turn.

The test prints and records the counts: genuine passed at the first try,
needed a second try (passed on it, or failed both: the kiosk would offer the
card), with the 95 % upper bound of each rate; attacks passed (must be 0).
Targets: <= 5 % second tries, <= 1 % to the card, 0 attacks. Only about 300
attempts with no card failover can show 1 % (the bound for 0 of 20 is 14 %).

In simulated mode (CI) the same protocol runs with a simulated senior (a 3-D
head rendered from a test photo, following the prompts) and printed-photo
clips, through the same ``Recogniser.challenge_frame`` + ``LivenessCheck``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hwsupport import device_path, require_device


def _attempt(rec, grab: Callable[[float], np.ndarray], rid: str, settings, say) -> tuple[bool, str]:  # type: ignore[no-untyped-def]
    """One challenge attempt on live frames, as the kiosk runs it."""
    from face.liveness import LivenessCheck

    t0 = time.monotonic()
    check = LivenessCheck(settings, started_at=t0, has_landmarks68=rec.engine.has_landmarks68)
    last_prompt = None
    i = 0
    while True:
        now = time.monotonic()
        prompt = check.prompt(now)
        if prompt != last_prompt:
            say(prompt)
            last_prompt = prompt
        check.observe(rec.challenge_frame(grab(now), now, rid, passive=i % 2 == 0))
        i += 1
        d = check.decide(time.monotonic())
        if d is not None:
            if d.live:
                return True, ""
            # how far the turn got: whether a real person's refusals sit just
            # under the parallax floor (docs/liveness.md) is counted here
            sig = d.signals
            got = ", ".join(
                f"{k.removeprefix('turn_')} {sig[k]:g}"
                for k in (
                    "turn_best_parallax",
                    "turn_need",
                    "turn_best_yaw",
                    "turn_best_nose",
                    "turn_best_surround",
                )
                if k in sig
            )
            return False, f"{d.reason} ({got})" if got else d.reason
        time.sleep(max(0.0, 0.125 - (time.monotonic() - now)))  # ~8 analysed frames/s


def _genuine_phase(rec, grab_genuine, settings, attempts: int, say, between) -> dict:  # type: ignore[no-untyped-def]
    """``attempts`` genuine first tries, each failed one tried once more."""
    from face.liveness_eval import upper95

    first = second = card = 0  # passed first / passed on the second try / to the card
    reasons: list[str] = []
    for _ in range(attempts):
        between()
        ok, why = _attempt(rec, grab_genuine(), "volunteer", settings, say)
        if ok:
            first += 1
            continue
        reasons.append(why)
        between()
        ok2, why2 = _attempt(rec, grab_genuine(), "volunteer", settings, say)
        if ok2:
            second += 1
        else:
            card += 1
            reasons.append(why2)
    retried = second + card  # every failed first try needed a second one
    return {
        "genuine_attempts": attempts,
        "first_try": first,
        "needed_second_try": retried,
        "passed_on_second_try": second,
        "to_the_card": card,
        # what this many attempts can show (one-sided 95 % upper bounds)
        "second_try_rate_upper95": round(upper95(retried, attempts), 4),
        "card_rate_upper95": round(upper95(card, attempts), 4),
        "genuine_fail_reasons": sorted(set(reasons)),
    }


def _run_protocol(
    rec, genuine_phases, grab_attacks, settings, attempts: int, say, record, between=lambda: None
) -> None:  # type: ignore[no-untyped-def]
    """``genuine_phases``: name -> (grab factory, announcement or ""), run in
    order; ``between`` waits between attempts (the volunteer settles, faces
    the camera)."""
    from face.liveness_eval import upper95

    phases: dict[str, dict] = {}  # type: ignore[type-arg]
    for name, (grab_genuine, announce) in genuine_phases.items():
        if announce:
            print(f"operator: {announce}", flush=True)
        phases[name] = _genuine_phase(rec, grab_genuine, settings, attempts, say, between)
    passed_attacks: dict[str, int] = {}
    for name, grab in grab_attacks.items():
        n = 0
        for _ in range(attempts):
            ok, _why = _attempt(rec, grab(), "volunteer", settings, say)
            n += int(ok)
        passed_attacks[name] = n
    total = len(phases) * attempts
    retried = sum(p["needed_second_try"] for p in phases.values())
    card = sum(p["to_the_card"] for p in phases.values())
    summary = {
        "genuine_attempts": total,
        "needed_second_try": retried,
        "to_the_card": card,
        "second_try_rate_upper95": round(upper95(retried, total), 4),
        "card_rate_upper95": round(upper95(card, total), 4),
        "phases": phases,
        "attacks_passed": passed_attacks,
    }
    record("liveness_protocol", summary)
    print(f"\nliveness protocol: {summary}")
    assert sum(passed_attacks.values()) == 0, summary
    for name, p in phases.items():  # each phase meets the targets on its own
        assert p["needed_second_try"] <= 0.05 * attempts + 1e-9, (name, summary)
        assert p["to_the_card"] <= 0.01 * attempts + 1e-9 or (
            attempts < 100 and p["to_the_card"] == 0
        ), (name, summary)


def test_liveness_protocol(hw_mode, record_property, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from face.pipeline import load_image
    from face.recognise import Recogniser
    from terminal.config.settings import load_settings

    settings = load_settings()
    attempts = int(os.environ.get("CARE_HW_LIVENESS_ATTEMPTS", "20"))
    rec = Recogniser.from_settings(settings.face_pack_dir, settings.face)
    if hw_mode == "real":
        if os.environ.get("CARE_HW_INTERACTIVE") != "1":
            pytest.skip("needs a volunteer: set CARE_HW_INTERACTIVE=1 and run with -s")
        from face.sources import CameraSource

        dev = device_path("CARE_HW_CAMERA", "/dev/care-camera-pay")
        require_device(dev, "payer camera")
        cam = CameraSource(str(dev), width=640, height=480, fps=30)
        cam.start()
        try:

            def live() -> Callable[[float], np.ndarray]:
                def grab(_now: float) -> np.ndarray:
                    f = cam.wait_frame(0, timeout=5)
                    assert f is not None, cam.status()
                    return f.image

                return grab

            def say(p: tuple[str, str, str]) -> None:
                print(f"  >>> {p[2]}  ({p[1]})", flush=True)

            print("\nvolunteer: look at the camera for enrolment", flush=True)
            frames = [live()(0.0) for _ in range(5)]
            plan = rec.plan_enrolment([(f"cam{i}", f, None) for i, f in enumerate(frames)])
            rec.gallery.add(
                "volunteer", np.stack([c.embedding for c in plan.chosen if c.embedding is not None])
            )
            attacks = {"printed photo": live, "phone screen": live}
            for name in attacks:
                print(f"operator: the next attempts use a {name}", flush=True)
            phases = {"still background": (live, "")}
            if os.environ.get("CARE_HW_LIVENESS_BUSY") == "1":
                phases["busy background"] = (
                    live,
                    "a second person now walks slowly to and fro 1-2 m behind the volunteer "
                    "during every attempt",
                )
            _run_protocol(rec, phases, attacks, settings.face, attempts, say, record_property)
        finally:
            cam.stop()
        return

    # simulated: a 3-D head that follows the prompts, and printed-photo clips
    from face import liveness_synth as synth

    faces = Path(__file__).resolve().parents[1] / "tests" / "data" / "faces"
    image = load_image(faces / "fr_rose_leslie_img2.jpg")
    enrol = load_image(faces / "fr_rose_leslie_img1.jpg")
    rec.gallery.add("volunteer", rec.embed_primary(enrol).embedding[None, :])
    lm = rec.engine.detect(image)[0].landmarks68
    assert lm is not None
    senior = synth.SimulatedSenior(image, lm)
    prepared = synth.prepare_photo(image, lm)

    def genuine() -> Callable[[float], np.ndarray]:
        return senior.frame

    def printed() -> Callable[[float], np.ndarray]:
        clip = synth.attack_clip(
            "printed", prepared, seed=int(time.monotonic() * 1000) % 997, direction="left"
        )
        t0 = time.monotonic()
        return lambda now: clip.frames[min(len(clip.frames) - 1, int((now - t0) * synth.FPS))]

    def say(p: tuple[str, str, str]) -> None:
        if p[0].startswith("face.liveness.turn_"):
            senior.respond(p[0].rsplit("_", 1)[1], time.monotonic())

    def settle() -> None:  # the volunteer finishes turning and faces the camera
        while senior.busy(time.monotonic()):
            time.sleep(0.05)

    _run_protocol(
        rec,
        {"still background": (genuine, "")},
        {"printed photo": printed},
        settings.face,
        min(attempts, 3),
        say,
        record_property,
        settle,
    )
