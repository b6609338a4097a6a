"""End to end through a real DDI server (goosebit): assignment, download,
verification, staging, the stdlib updater's switch and health check, and the
feedback the server ends up with. The device is simulated with real
processes (see tests/deploy/device_sim.py)."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from device_sim import SimDevice, db_dump, make_db, make_release
from ota_rig import make_agent

from sync.ota.bundle import build_bundle
from sync.ota.window import PaymentActivityFlag

FINISHED, ERROR = "Finished", "Error"  # goosebit shows UpdateStateEnum names


def model_pack(dest: Path) -> Path:
    dest.mkdir(parents=True)
    files = []
    for name in ("fr_detect.onnx", "fr_feature.onnx"):
        data = hashlib.sha256(name.encode()).digest() * 64
        (dest / name).write_bytes(data)
        files.append({"path": name, "sha256": hashlib.sha256(data).hexdigest()})
    (dest / "manifest.json").write_text(json.dumps({"files": files}))
    return dest


def device_at_1_0_0(tmp_path: Path, **kw) -> SimDevice:
    dev = SimDevice(tmp_path / "dev", **kw)
    make_db(dev.db)
    dev.install_factory(make_release(tmp_path / "factory", "1.0.0"), "1.0.0-c5", counter=5)
    dev.start()
    dev.wait_health("1.0.0")
    return dev


def bundle(tmp_path: Path, key, version: str, counter: int, **kw) -> Path:
    app = make_release(
        tmp_path / f"src-{version}",
        version,
        **{k: v for k, v in kw.items() if k in ("mode", "schema", "migrate")},
    )
    mig = None
    if kw.get("migrate"):
        mig = tmp_path / f"mig-{version}"
        mig.mkdir()
        (mig / "0002_add_note.sql").write_text("-- run by bin/migrate\n")
    out = tmp_path / f"care-terminal-{version}.swu"
    build_bundle(
        out,
        version=version,
        counter=counter,
        key=key,
        key_id="test",
        app=app,
        model_pack=kw.get("model_pack"),
        migrations=mig,
        boards={"care-pi": ["1"]},
        created=datetime.now(UTC),
        health_timeout_s=kw.get("health_timeout_s"),
    )
    return out


def test_full_update_cycle(goosebit, tmp_path, session_key, record_property) -> None:
    dev = device_at_1_0_0(tmp_path)
    runs = []
    agent, _ = make_agent(
        dev,
        goosebit.url,
        "cycle-ok",
        session_key,
        trigger=lambda req: runs.append(dev.updater("activate")),
    )
    try:
        agent.run_once()  # first contact: goosebit asks for config data
        assert goosebit.device("cycle-ok")["hardware"]["model"] == "care-pi"
        swu = bundle(tmp_path, session_key, "1.1.0", 6, model_pack=model_pack(tmp_path / "pack"))
        t0 = time.monotonic()
        sid = goosebit.upload(swu)
        goosebit.assign("cycle-ok", sid)
        sleep = agent.run_once()  # download, verify, stage, hand over; the updater runs now
        cycle_s = time.monotonic() - t0
        assert len(runs) == 1 and runs[0].returncode == 0, (
            runs[0].stderr if runs else "updater not run"
        )
        assert dev.current() == "1.1.0-c6"
        assert (dev.root / "current" / "models" / "manifest.json").is_file()
        assert (
            dev.health_doc()["version"] == "1.1.0"
            and dev.health_doc()["checks"]["model_pack"] == "ok"
        )
        gb = goosebit.device("cycle-ok")
        assert gb["sw_version"] == "1.1.0" and gb["last_state"] == FINISHED, gb
        log = goosebit.device_log("cycle-ok")["log"]
        for line in (
            "downloading",
            "downloaded care-terminal-1.1.0.swu",
            "verified 1.1.0 (counter 6",
            "staged 1.1.0-c6; activating",
            "updater: activating 1.1.0-c6",
            "1.1.0-c6 healthy after",
        ):
            assert line in log, log
        # The next cycle sees the updater's result, reports the new version, and finds nothing to do.
        agent.run_once()
        assert agent.installed().version == "1.1.0" and agent.installed().counter == 6
        assert agent._state["finished"][str(sid)]["result"] == "success"
        assert 0 < sleep <= 30
        record_property("goosebit_update_cycle_s", round(cycle_s, 2))
        print(
            f"\ngoosebit full update cycle: {cycle_s:.2f} s (assign -> healthy -> success feedback)"
        )
    finally:
        agent.client.close()
        dev.stop()


def test_failing_release_is_rolled_back_and_reported(goosebit, tmp_path, session_key) -> None:
    dev = device_at_1_0_0(tmp_path)
    before = db_dump(dev.db)
    runs = []
    agent, _ = make_agent(
        dev,
        goosebit.url,
        "cycle-bad",
        session_key,
        trigger=lambda req: runs.append(dev.updater("activate")),
    )
    try:
        agent.run_once()
        swu = bundle(
            tmp_path,
            session_key,
            "1.2.0",
            7,
            mode="unhealthy",
            schema=2,
            migrate=True,
            health_timeout_s=5,
        )
        sid = goosebit.upload(swu)
        goosebit.assign("cycle-bad", sid)
        t0 = time.monotonic()
        agent.run_once()
        elapsed = time.monotonic() - t0
        assert runs and runs[0].returncode == 1, runs[0].stderr if runs else "updater not run"
        assert elapsed < 5 + 10  # configured health time + download/stage/stop/start slack
        assert dev.current() == "1.0.0-c5"
        dev.wait_health("1.0.0", timeout=5)
        assert db_dump(dev.db) == before  # migration undone from the backup
        gb = goosebit.device("cycle-bad")
        assert gb["last_state"] == ERROR and gb["sw_version"] == "1.0.0", gb
        log = goosebit.device_log("cycle-bad")["log"]
        assert "rolled back: not healthy within 5 s" in log and "database restored" in log, log
        agent.run_once()
        assert agent._state["finished"][str(sid)]["result"] == "failure"
        assert agent.installed().version == "1.0.0"
    finally:
        agent.client.close()
        dev.stop()


def test_activation_waits_for_meal_service_and_payments(goosebit, tmp_path, session_key) -> None:
    dev = SimDevice(tmp_path / "dev")
    dev.install_factory(make_release(tmp_path / "factory", "1.0.0"), "1.0.0-c5", counter=5)
    triggered: list[Path] = []
    agent, clock = make_agent(
        dev, goosebit.url, "cycle-wait", session_key, trigger=triggered.append
    )
    try:
        agent.run_once()
        clock.set(clock.now().replace(hour=11, minute=50))  # lunch service
        sid = goosebit.upload(bundle(tmp_path, session_key, "1.3.0", 8))
        goosebit.assign("cycle-wait", sid)
        retry = agent.run_once()
        assert triggered == [] and agent.action is not None and agent.action.phase == "waiting"
        assert 0 < retry <= 5  # min(server poll interval, time to the end of lunch)
        assert "waiting to activate: meal_service" in goosebit.device_log("cycle-wait")["log"]
        # After lunch, but a senior is paying right now.
        clock.set(clock.now().replace(hour=13, minute=40))
        flag = PaymentActivityFlag(dev.base / "run" / "payment-active")
        flag.set(clock.now())
        agent.run_once()
        assert triggered == [] and agent.action.wait_reason == "payment_active"
        # A flag left over by a kiosk that died does not block updates for ever.
        doc = json.loads(flag.path.read_text())
        doc["pid"] = 999_999_999
        flag.path.write_text(json.dumps(doc))
        clock.advance(timedelta(seconds=30).total_seconds())
        agent.run_once()
        assert len(triggered) == 1 and json.loads(triggered[0].read_text())["version"] == "1.3.0"
        assert agent.action.phase == "activating"
        assert (dev.root / "releases" / "1.3.0-c8" / "app" / "release.json").is_file()
    finally:
        agent.client.close()
