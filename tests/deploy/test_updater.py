"""The stdlib updater against a simulated device (real processes, real SQLite,
real symlink switches; the supervisor plays systemd)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from device_sim import RUN_UPDATER, SimDevice, db_dump, make_db, make_release, stage_release

UPDATER_DIR = RUN_UPDATER.parent


def factory_device(sim_factory, tmp_path: Path, **kw) -> SimDevice:
    dev: SimDevice = sim_factory(**kw)
    make_db(dev.db)
    dev.install_factory(make_release(tmp_path / "src-1.0.0", "1.0.0"), "1.0.0-c0")
    dev.start()
    dev.wait_health("1.0.0")
    return dev


def test_healthy_release_is_activated_and_reported(
    sim_factory, tmp_path, release_key, feedback_sink
) -> None:
    dev = factory_device(sim_factory, tmp_path)
    app = make_release(tmp_path / "src-1.1.0", "1.1.0")
    stage_release(
        dev,
        app,
        version="1.1.0",
        counter=2,
        key=release_key,
        action_id="41",
        feedback_url=feedback_sink.url + "/DEFAULT/controller/v1/t1/deploymentBase/41/feedback",
    )
    t0 = time.time()
    proc = dev.updater("activate")
    assert proc.returncode == 0, proc.stderr
    assert dev.current() == "1.1.0-c2"
    assert os.readlink(dev.root / "current") == "releases/1.1.0-c2"  # relative, atomic switch
    assert dev.health_doc()["version"] == "1.1.0" and dev.health_doc()["written_at"] >= t0
    st = dev.state()
    assert st["known_good"] == "1.1.0-c2" and st["previous"] == "1.0.0-c0" and st["trial"] is None
    res = dev.results()["41"]
    assert res["outcome"] == "success" and res["reported"] is True
    closed = feedback_sink.closed()
    assert len(closed) == 1 and closed[0]["status"]["result"]["finished"] == "success"
    assert any("healthy after" in d for d in closed[0]["status"]["details"])
    assert not (dev.root / "spool" / "request.json").exists()


def test_unhealthy_release_rolls_back_in_time_with_db_restored(
    sim_factory, tmp_path, release_key, feedback_sink
) -> None:
    timeout = 4.0
    dev = factory_device(sim_factory, tmp_path, health_timeout_s=timeout)
    before = db_dump(dev.db)
    app = make_release(tmp_path / "src-2.0.0", "2.0.0", mode="unhealthy", schema=2, migrate=True)
    stage_release(
        dev,
        app,
        version="2.0.0",
        counter=3,
        key=release_key,
        migrations=True,
        action_id="42",
        feedback_url=feedback_sink.url + "/fb/42",
        health_timeout_s=int(timeout),
    )
    t0 = time.monotonic()
    proc = dev.updater("activate")
    elapsed = time.monotonic() - t0
    assert proc.returncode == 1, proc.stderr
    # The previous release is back and serving, within the configured time (+ stop/start slack).
    assert dev.current() == "1.0.0-c0"
    assert elapsed < timeout + 8.0
    dev.wait_health("1.0.0", timeout=5)
    # The migration really ran on the new release and was undone from the backup.
    assert db_dump(dev.db) == before
    assert list(dev.root.glob("backups/*.db"))
    res = dev.results()["42"]
    assert res["outcome"] == "rolled_back" and res["reported"] is True
    text = " ".join(res["details"])
    assert "not healthy within 4 s" in text and "kiosk=failed" in text
    assert "database restored" in text and "healthy again" in text
    closed = feedback_sink.closed()
    assert closed and closed[-1]["status"]["result"]["finished"] == "failure"
    assert "2.0.0-c3" in dev.state()["bad"]


def test_failed_migration_restores_db_and_keeps_old_release(
    sim_factory, tmp_path, release_key
) -> None:
    dev = factory_device(sim_factory, tmp_path)
    before = db_dump(dev.db)
    app = make_release(tmp_path / "src-2.1.0", "2.1.0", schema=2, migrate=True, migrate_fails=True)
    stage_release(
        dev, app, version="2.1.0", counter=4, key=release_key, migrations=True, action_id="43"
    )
    proc = dev.updater("activate")
    assert proc.returncode == 1
    assert dev.current() == "1.0.0-c0"
    assert db_dump(dev.db) == before
    res = dev.results()["43"]
    assert res["outcome"] == "rolled_back" and "migration failed" in res["details"][0]
    assert res["reported"] is False  # no DDI target given: the agent re-sends it later
    dev.wait_health("1.0.0", timeout=5)


def test_crash_looping_release_is_rolled_back_before_the_health_timeout(
    sim_factory, tmp_path, release_key
) -> None:
    dev = factory_device(sim_factory, tmp_path, health_timeout_s=60.0, burst=3)
    app = make_release(tmp_path / "src-3.0.0", "3.0.0", mode="crash")
    stage_release(dev, app, version="3.0.0", counter=5, key=release_key, action_id="44")
    t0 = time.monotonic()
    proc = dev.updater("activate")
    elapsed = time.monotonic() - t0
    assert proc.returncode == 1, proc.stderr
    assert elapsed < 20, "OnFailure should cut the 60 s health wait short"
    assert dev.current() == "1.0.0-c0"
    assert "crash-looped" in dev.results()["44"]["details"][0]
    assert sum("exit 3" in e for e in dev.events()) >= 3
    dev.wait_health("1.0.0", timeout=5)


def test_confirmed_release_that_starts_crash_looping_is_rolled_back(
    sim_factory, tmp_path, release_key
) -> None:
    dev = factory_device(sim_factory, tmp_path, crash_threshold=2, burst=2)
    app = make_release(tmp_path / "src-1.2.0", "1.2.0")
    stage_release(dev, app, version="1.2.0", counter=6, key=release_key, action_id="45")
    assert dev.updater("activate").returncode == 0
    # Later (e.g. after a reboot) the confirmed release crashes on every start.
    (dev.root / "releases" / "1.2.0-c6" / "app" / "CRASH_NOW").write_text("")
    dev.stop()
    dev.start()  # supervisor gives up after `burst` crashes and calls on-failure
    deadline = time.time() + 20
    while dev.current() != "1.0.0-c0" and time.time() < deadline:
        if not (dev.svc / "supervisor.pid").exists():
            dev.start()  # the next boot / manual restart crashes again
        time.sleep(0.2)
    assert dev.current() == "1.0.0-c0"
    dev.wait_health("1.0.0", timeout=10)
    st = dev.state()
    assert st["known_good"] == "1.0.0-c0" and st["previous"] is None  # no ping-pong


def test_power_cut_during_trial_then_repeated_boots_roll_back(
    sim_factory, tmp_path, release_key
) -> None:
    dev = factory_device(sim_factory, tmp_path, max_boot_attempts=1, health_timeout_s=3.0)
    app = make_release(tmp_path / "src-4.0.0", "4.0.0", mode="unhealthy")
    stage_release(dev, app, version="4.0.0", counter=7, key=release_key, action_id="46")
    # Run the activation and "cut the power" while it waits for health.
    p = subprocess.Popen(
        dev.updater_cmd("activate"),
        env=dev.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            if dev.state()["trial"] and dev.state()["trial"]["phase"] == "checking":
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    p.kill()
    p.wait()
    dev.stop()
    assert dev.current() == "4.0.0-c7" and dev.state()["trial"]["release"] == "4.0.0-c7"
    # Boot 1: the trial gets another chance (boot asks for 'activate' to resume).
    marker = tmp_path / "resumed"
    proc = dev.updater("boot", "--resume-command", "touch", str(marker))
    assert proc.returncode == 0 and marker.exists()
    # Boot 2: out of chances -> rolled back without waiting.
    proc = dev.updater("boot")
    assert proc.returncode == 1
    assert dev.current() == "1.0.0-c0"
    assert dev.results()["46"]["outcome"] == "rolled_back"


def test_resume_after_interrupted_activation_finishes_it(
    sim_factory, tmp_path, release_key
) -> None:
    dev = factory_device(sim_factory, tmp_path)
    app = make_release(tmp_path / "src-1.3.0", "1.3.0")
    stage_release(dev, app, version="1.3.0", counter=8, key=release_key, action_id="47")
    p = subprocess.Popen(
        dev.updater_cmd("activate"),
        env=dev.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            if dev.state()["trial"]["phase"] in ("switched", "checking"):
                break
        except (OSError, ValueError, KeyError, TypeError):
            pass
        time.sleep(0.01)
    p.kill()
    p.wait()
    proc = dev.updater("activate")  # as started by 'boot' after the power came back
    assert proc.returncode == 0, proc.stderr
    assert dev.current() == "1.3.0-c8" and dev.results()["47"]["outcome"] == "success"


@pytest.mark.parametrize(
    ("request_doc", "message"),
    [
        ({"format": 1, "release": "../../etc", "version": "1.0.0"}, "no valid release"),
        ({"format": 1, "release": "9.9.9-c99", "version": "9.9.9"}, "not staged"),
        ({"format": 2}, "unknown format"),
    ],
)
def test_bad_activation_requests_change_nothing(
    sim_factory, tmp_path, request_doc, message
) -> None:
    dev = factory_device(sim_factory, tmp_path)
    req = dev.root / "spool" / "request.json"
    req.parent.mkdir(parents=True, exist_ok=True)
    req.write_text(json.dumps(request_doc))
    proc = dev.updater("activate")
    assert proc.returncode == 2 and message in proc.stderr
    assert dev.current() == "1.0.0-c0"


def test_manual_rollback_and_prune(sim_factory, tmp_path, release_key) -> None:
    dev = factory_device(sim_factory, tmp_path)
    for i, v in enumerate(["1.4.0", "1.5.0", "1.6.0", "1.7.0"], start=10):
        stage_release(
            dev,
            make_release(tmp_path / f"src-{v}", v),
            version=v,
            counter=i,
            key=release_key,
            action_id=str(i),
        )
        assert dev.updater("activate").returncode == 0
    names = sorted(p.name for p in (dev.root / "releases").iterdir())
    assert "1.7.0-c13" in names and "1.6.0-c12" in names and len(names) <= 3
    assert dev.updater("rollback", "--reason", "district asked").returncode == 1
    assert dev.current() == "1.6.0-c12"
    dev.wait_health("1.6.0", timeout=5)
    assert dev.updater("rollback").returncode == 2  # no second step back


def test_updater_uses_only_the_standard_library() -> None:
    allowed = set(sys.stdlib_module_names) | {"care_updater", "__future__"}
    for path in UPDATER_DIR.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for n in names:
                assert n.split(".")[0] in allowed, f"{path.name} imports {n}"


def test_updater_runs_isolated_from_the_project(tmp_path) -> None:
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": "/nonexistent"}
    proc = subprocess.run(
        [
            sys.executable,
            "-I",
            str(RUN_UPDATER),
            "--config",
            str(tmp_path / "missing.toml"),
            "status",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=30,
    )
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    (tmp_path / "u.toml").write_text(f'root = "{tmp_path}"\n')
    proc = subprocess.run(
        [sys.executable, "-I", str(RUN_UPDATER), "--config", str(tmp_path / "u.toml"), "status"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=30,
    )
    assert proc.returncode == 0 and json.loads(proc.stdout)["current"] is None
