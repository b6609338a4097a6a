"""The demo as ``./run demo`` wires it, without the screen: the simulated
residents walk up, answer the kiosk's challenge and tap 确认支付 on their own,
so a demo left running pays meals and prints receipts (the demo printer on a
pty) through the real runner, store, challenge and ESC/POS adapter."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

from terminal.app.demo import answer_prompts, prepare_demo
from terminal.app.demo_printer import DemoPrinter
from terminal.app.kiosk_compose import build_kiosk, open_printer
from terminal.core.clock import CHINA_TZ


def test_demo_residents_pay_by_face_and_get_a_receipt(tmp_path: Path, open_pack: Path) -> None:
    lunch = datetime.now(CHINA_TZ).replace(hour=11, minute=30, second=0, microsecond=0)
    demo = prepare_demo(
        tmp_path / "demo", pack_dir=open_pack, at=lunch, platform=False, history_days=0
    )
    printer = DemoPrinter(demo.base / "receipts.txt")
    source = demo.camera()
    app = build_kiosk(demo.services, source=source, printer=open_printer(printer.path), sync=False)
    states: list[str] = []
    app.runner.subscribe(answer_prompts(source, app.runner))
    app.runner.subscribe(lambda u: states.append(type(getattr(u, "state", u)).__name__))
    receipts = demo.base / "receipts.txt"
    try:
        app.start()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if receipts.exists() and "刷脸" in receipts.read_text(encoding="utf-8"):
                break
            time.sleep(0.2)
        text = receipts.read_text(encoding="utf-8") if receipts.exists() else ""
        assert "刷脸" in text and "午餐" in text, states[-20:]  # paid by face, at lunch
        assert "Confirm" in states and "Done" in states
        paid = [t for t in demo.services.payment.transactions() if t.kind == "charge"]
        assert any(t.method == "face" and t.staff_id is None for t in paid)
    finally:
        app.close()
        printer.close()
        demo.close()
