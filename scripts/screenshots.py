#!/usr/bin/env python3
"""Render every kiosk screen to PNG (offscreen) into ``docs/screenshots/``.

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/screenshots.py [--out DIR]

Uses the demo world (``terminal.app.demo``: fictitious residents, the open
model pack, insightface's sample photo) at a fixed time (a Monday at 11:30) so
the pictures are reproducible. Flow states come from the real pure flow
(``payment.flow.step``) against the demo database; staff and manager pages
use the real back end. Faces in the camera preview are pixelated for the docs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from payment.flow import (  # noqa: E402
    Challenge,
    FaceResult,
    FaceSeen,
    Idle,
    PrintResult,
    State,
    Touch,
    step,
)
from terminal.core.clock import CHINA_TZ  # noqa: E402
from ui.model import ChallengeView, FlowView, PreviewFrame  # noqa: E402

AT = datetime(2026, 3, 2, 11, 30, 0, 400_000, tzinfo=CHINA_TZ)  # a Monday, lunch


class ScriptedKiosk:
    """A ``KioskPort`` whose state the script sets (no threads)."""

    def __init__(self) -> None:
        self.subs: list[Callable[[Any], None]] = []
        self.view = FlowView(Idle(), AT, 0)
        self.posted: list[Any] = []

    def subscribe(self, fn: Callable[[Any], None]) -> Callable[[], None]:
        self.subs.append(fn)
        fn(self.view)
        return lambda: self.subs.remove(fn) if fn in self.subs else None

    def publish(self, update: Any) -> None:
        if isinstance(update, FlowView):
            self.view = update
        for fn in list(self.subs):
            fn(update)

    def post(self, event: Any) -> None:
        self.posted.append(event)

    def set_mode(self, mode: str) -> None:
        pass

    def current(self) -> FlowView:
        return self.view


def footfall_camera(tmp: Path) -> Any:
    """The footfall line page's camera: a clip of the drawn entrance (the
    footfall generator's empty scene) read through the real frame source,
    with the line where the generator puts it."""
    import cv2

    from face.footfall.counting import LineSpec
    from face.footfall.synth import _background
    from terminal.app.footfall_snapshot import FootfallLineSnapshots

    path = tmp / "footfall-camera.avi"
    out = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 15.0, (640, 480))
    for _ in range(3):
        out.write(_background(640, 480, 0))
    out.release()
    camera = argparse.Namespace(width=640, height=480, fps=15.0)
    return FootfallLineSnapshots(str(path), LineSpec(0.03, 0.5, 0.97, 0.5), camera)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    ap.add_argument(
        "--pack", type=Path, default=None, help="model pack (default: the installed one)"
    )
    args = ap.parse_args()

    from terminal.app.demo import demo_people, prepare_demo
    from terminal.app.kiosk_compose import build_kiosk
    from terminal.kiosk.face_port import RecogniserFace
    from terminal.kiosk.runner import idle_info_from_context
    from ui import theme
    from ui.i18n import Translator
    from ui.views.app import make_app
    from ui.views.window import KioskWindow

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="care-shots-"))
    print("preparing the demo world ...", file=sys.stderr)
    demo = prepare_demo(tmp, pack_dir=args.pack, at=AT, platform=False, history_days=6)
    services = demo.services
    app_ = make_app()
    # a senior of centre-a visiting (city-wide meals), in an in-memory district
    from payment.domain import SeniorCategory
    from terminal.kiosk.visitors import DistrictDirectory, DistrictSenior

    district = DistrictDirectory(
        [
            DistrictSenior(
                "P-7d1c0a9e",
                "centre-a",
                (SeniorCategory.AGE_80_89,),
                cards=("9001",),
                home_centre_name="东风社区照料中心",
            ),
            DistrictSenior(
                "P-3e52b7c1",
                "centre-c",
                (SeniorCategory.AGE_80_89,),
                cards=("9002",),
                home_centre_name="河西村照料中心",
            ),
        ]
    )
    kiosk_app = build_kiosk(services, camera=False, sync=False, visitors=district)
    kiosk_app.backend.d.model_pack = services.recogniser.pack_id
    store = services.payment
    kiosk = ScriptedKiosk()
    tr = Translator("zh_CN")
    win = KioskWindow(kiosk, kiosk_app.backend, tr, clock=lambda: AT)
    win.preview.set_privacy_blur(True)
    win.resize(theme.SCREEN_W, theme.SCREEN_H)
    win.show()
    ctx = store.context()
    kiosk.publish(idle_info_from_context(ctx, AT))

    # a camera frame with the demo resident in front of the screen
    rec = services.recogniser
    face = RecogniserFace(rec)
    from face.liveness_synth import SimulatedKioskCamera

    camera = SimulatedKioskCamera(demo_people(rec.engine)[:1])
    frames = [camera.frame_at(t / 10, 0.0) for t in range(int(camera.approach_s * 10) + 10)]
    near = frames[-1]
    far = next(f for f in frames if (o := face.observe(f)) is not None and o.reason == "too_small")

    def preview(img: Any, guidance: str | None = None) -> PreviewFrame:
        obs = face.observe(img)
        rgb = img[:, :, ::-1].copy()
        box = obs.box if obs else None
        key = guidance or (obs.guidance if obs else None)
        return PreviewFrame(1, time.monotonic(), rgb, box, bool(obs and obs.ok), key, 1)

    def settle() -> None:
        for _ in range(5):
            app_.processEvents()
            time.sleep(0.02)

    def shot(name: str) -> None:
        settle()
        if (win.width(), win.height()) != (theme.SCREEN_W, theme.SCREEN_H):
            print(f"  ! {name}: the window grew to {win.width()}x{win.height()}", file=sys.stderr)
            for lab in (win.banner.centre, win.banner.date, win.banner.clock, win.banner.extra):
                print(
                    "    label",
                    repr(lab.text()),
                    lab.minimumSizeHint().width(),
                    lab.isVisible(),
                    file=sys.stderr,
                )
            for part in (win.banner, win.stack):
                h = part.minimumSizeHint()
                print(f"    {type(part).__name__} needs {h.width()}x{h.height()}", file=sys.stderr)
            for i in range(win.stack.count()):
                pg = win.stack.widget(i)
                hint = pg.minimumSizeHint()
                if hint.width() > theme.SCREEN_W or hint.height() > theme.SCREEN_H - 100:
                    print(
                        f"    {type(pg).__name__} needs {hint.width()}x{hint.height()}",
                        file=sys.stderr,
                    )
            win.resize(theme.SCREEN_W, theme.SCREEN_H)
            settle()
        path = out / f"{name}.png"
        win.grab().save(str(path))
        print(f"  {path.relative_to(REPO) if path.is_relative_to(REPO) else path}", file=sys.stderr)

    def show(state: State) -> None:
        kiosk.publish(FlowView(state, AT, kiosk.view.seq + 1))

    def run(state: State, *events: Any) -> State:
        for ev in events:
            state, _eff = step(state, ev, AT, ctx)
        return state

    print("rendering screens ...", file=sys.stderr)
    show(Idle())
    kiosk.publish(preview(near, "face.quality.ok"))
    shot("01-idle")

    checking = run(Idle(), FaceSeen())
    show(checking)
    kiosk.publish(preview(far))
    shot("02-scan-come-closer")

    soft = FaceResult("identified", "D001", 0.82, 0.5)
    # every face payment asks for the head-turn challenge here
    challenge = Challenge(1, AT + timedelta(seconds=12), soft, "turn", 1)
    show(challenge)
    kiosk.publish(ChallengeView(challenge.kind, "face.liveness.turn_left", time.monotonic() + 6))  # type: ignore[attr-defined]
    kiosk.publish(preview(near))
    shot("03-scan-liveness-challenge")

    from payment.flow import ChallengeResult

    confirm = run(
        Idle(),
        FaceSeen(),
        FaceResult("identified", "D001", 0.93, 0.99),
        ChallengeResult("turn", True, {}),
    )
    show(confirm)
    shot("04-confirm")

    uncertain = run(Idle(), FaceSeen(), FaceResult("uncertain", "D002", 0.45, 0.99))
    # the uncertain match passed the challenge: confirm, then the phone last-4 pad
    uncertain = run(uncertain, ChallengeResult(uncertain.kind, True, {}), Touch("confirm"))  # type: ignore[attr-defined]
    show(uncertain)
    win.keypad.keypad.press("1")
    win.keypad.keypad.press("2")
    shot("05-second-factor-keypad")

    charging = run(confirm, Touch("confirm"))
    show(charging)
    shot("06-charging")
    req = charging.request  # type: ignore[attr-defined]
    committed = store.charge(req)
    done = run(charging, committed)
    show(done)
    shot("07-done-printing")
    show(run(done, PrintResult(False, "paper_out")))
    shot("08-done-print-failed")

    show(run(Idle(), FaceSeen(), FaceResult("unknown", None, 0.2, 0.99)))
    shot("09-failed-not-recognised")

    again = FaceResult("identified", "D001", 0.93, 0.99)
    show(run(Idle(), FaceSeen(), again, ChallengeResult("turn", True, {})))
    shot("10-already-paid")

    from payment.flow import CardTapped

    poor = run(Idle(), CardTapped("IC-0010"))
    show(poor)
    shot("11-failed-insufficient-balance")

    from payment.domain import VerificationMethod
    from payment.flow import Candidate, OverrideKind, StaffRequired

    lim = StaffRequired(
        1,
        AT,
        Candidate("D006", VerificationMethod.CARD),
        "杨*强",
        "over_resident_unsynced_limit",
        OverrideKind.LIMITS,
    )
    show(lim)
    shot("12-staff-required")

    # city-wide meals: a senior of another centre
    from terminal.kiosk.visitors import answer

    def visiting(*events: Any) -> State:
        """The flow with the district answering its visitor effects."""
        state: State = Idle()
        pending = list(events)
        while pending:
            state, effects = step(state, pending.pop(0), AT, ctx)
            pending[:0] = [a for e in effects if (a := answer(district, e)) is not None]
        return state

    visitor = visiting(CardTapped("9001"))
    show(visitor)
    shot("15-visitor-confirm")
    vcharging = run(visitor, Touch("confirm"))
    vdone = run(vcharging, store.charge(vcharging.request))  # type: ignore[attr-defined]
    show(vdone)
    shot("16-visitor-done")
    # another senior who ate at a third centre a moment ago: no second subsidy
    district.take_slot("P-3e52b7c1", AT.date().isoformat(), "lunch")
    show(visiting(CardTapped("9002")))
    shot("17-visitor-subsidy-used-elsewhere")
    show(run(Idle(), FaceSeen(), FaceResult("unknown", None, 0.2, 0.99)))
    shot("18-visitor-face-unknown")
    # the platform does not answer and this terminal's offline budget is spent
    from dataclasses import replace

    from payment.visiting import OfflineVisitLimits

    visitors_on = store.config
    assert visitors_on.visitors is not None
    store.config = replace(
        visitors_on, visitors=replace(visitors_on.visitors, limits=OfflineVisitLimits(0, 0))
    )
    district.online = False
    district.seniors.append(
        DistrictSenior(
            "P-9a0c44d2",
            "centre-d",
            (SeniorCategory.AGE_80_89,),
            cards=("9003",),
            home_centre_name="南湖社区照料中心",
        )
    )
    show(visiting(CardTapped("9003")))
    shot("32-visitor-offline-limit")
    store.config, district.online = visitors_on, True
    # the district wallet (policy home_wallet): online the balance before and
    # after this meal; with the platform down the meal is paid in cash, saying why
    from payment.visiting import PaymentSource

    district.payment_source = PaymentSource.HOME_WALLET
    district.wallets["P-9a0c44d2"] = 2000
    show(visiting(CardTapped("9003")))
    shot("34-visitor-home-wallet")
    district.online = False
    show(visiting(CardTapped("9003")))
    shot("35-visitor-home-wallet-offline")
    district.payment_source, district.online = PaymentSource.CASH, True

    # English
    tr.set_language("en")
    show(Idle())
    kiosk.publish(preview(near, "face.quality.ok"))
    shot("13-idle-english")
    show(confirm)
    shot("14-confirm-english")
    show(visitor)
    shot("19-visitor-confirm-english")
    tr.set_language("zh_CN")
    show(Idle())
    settle()

    # staff mode
    win.open_pin("menu")
    for d in "24":
        win.pin.keypad.press(d)
    shot("20-staff-pin")
    from ui.model import PinResult

    win.pin_purpose = None
    win.ctx.staff = PinResult(True, "M01", "赵主任", "manager")
    win.enter_staff()
    shot("21-staff-home")

    def page(name: str, wait: Callable[[], bool] | None = None) -> None:
        win.show_page(name)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            app_.processEvents()
            if win.tasks.busy == 0 and (wait is None or wait()):
                break
            time.sleep(0.02)

    enrol = win.pages["enrol"]
    page("enrol")
    shot("22-staff-enrol-search")
    rows = enrol.picker.results  # type: ignore[attr-defined]
    enrol.select(next(r for r in rows if r.resident_id == "D003"))  # type: ignore[attr-defined]
    shot("23-staff-enrol-consent")
    page("transactions")
    shot("24-staff-transactions")
    tx = win.pages["transactions"]
    tx.list.setCurrentRow(0)  # type: ignore[attr-defined]
    tx._clicked(tx.list.item(0))  # type: ignore[attr-defined]
    tx.ask_void()  # type: ignore[attr-defined]
    shot("25-staff-void-reason")
    page("topup")
    topup = win.pages["topup"]
    topup.select(next(r for r in topup.picker.results if r.resident_id == "D010"))  # type: ignore[attr-defined]
    for d in "50":
        topup.keypad.press(d)  # type: ignore[attr-defined]
    shot("26-staff-topup")
    # the same page where the district pays visits from district wallets
    # (the home_wallet policy of the pulled roster): which wallet to top up
    kiosk_app.backend.d.district_wallet = lambda: True
    page("topup")
    topup.select(next(r for r in topup.picker.results if r.resident_id == "D010"))  # type: ignore[attr-defined]
    topup.district_btn.setChecked(True)  # type: ignore[attr-defined]
    for d in "50":
        topup.keypad.press(d)  # type: ignore[attr-defined]
    shot("36-staff-topup-district-wallet")
    kiosk_app.backend.d.district_wallet = None
    page("menu")
    shot("27-staff-menu")
    page("status")
    shot("28-staff-device-status")
    win.ctx.footfall = footfall_camera(tmp)
    page("footfall")
    shot("33-staff-footfall-line")
    page("manager", wait=lambda: win.pages["manager"].report is not None)  # type: ignore[attr-defined]
    for _ in range(20):  # charts lay themselves out over a few event-loop turns
        app_.processEvents()
        time.sleep(0.02)
    shot("29-manager")
    tr.set_language("en")
    win.pages["manager"].refresh()  # type: ignore[attr-defined]
    for _ in range(30):
        app_.processEvents()
        time.sleep(0.02)
    shot("31-manager-visitors-english")
    tr.set_language("zh_CN")

    # out of service (what a crash looks like to a senior)
    win.exit_staff()
    win.show_out_of_service("E-worker_failed")
    shot("30-out-of-service")

    win.shutdown()
    win.close()
    kiosk_app.close()
    demo.close()
    print(f"done: {len(list(out.glob('*.png')))} screenshots in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
