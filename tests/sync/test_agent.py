"""The agent wiring from Settings: ``sync now`` in-process, ``sync status``, the
heartbeat stream, the single-writer lock, and clean shutdown on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sync_helpers import CENTRE, DEVICE, Env, append_records

from sync import agent as sync_agent
from sync.store.outbox import SyncStore
from sync.store.status import latest_dataset
from terminal.config.settings import CentreSettings, Settings, SyncSettings
from terminal.core.clock import SystemClock
from terminal.db.crypto import FieldCipher, load_or_create_key

REPO = Path(__file__).resolve().parents[2]


def _settings(env: Env, data: Path) -> Settings:
    return Settings(
        data_dir=data,
        centre=CentreSettings(device_id=DEVICE, centre_id=CENTRE),
        sync=SyncSettings(
            platform_url=env.platform.url,
            backoff_base_s=0.01,
            backoff_cap_s=0.1,
            idle_interval_s=0.2,
            batch_size=40,
        ),
    )


def _prepare(env: Env, tmp_path: Path) -> Settings:
    data = tmp_path / "data"
    s = _settings(env, data)
    pub = sync_agent.provision(s)
    env.platform.store.register_device(DEVICE, CENTRE, pub, SystemClock().now())
    return s


def test_sync_now_runs_one_cycle_and_status_reads_it(env: Env, tmp_path: Path) -> None:
    s = _prepare(env, tmp_path)
    append_records(s.database_url, 90)
    before = sync_agent.status(s)
    assert before["queue_depth"] == 90 and before["oldest_unsynced_age_s"] is not None
    (s.kiosk_health_file.parent).mkdir(parents=True, exist_ok=True)
    sync_agent.write_kiosk_health(s.kiosk_health_file, "ok", "paper_out", SystemClock().now())
    report = sync_agent.sync_now(s)
    kiosk = report["uploads"][0]
    assert kiosk["drained"] and kiosk["acked_seq"] == 90
    assert {p["status"] for p in report["pulls"]} == {"updated"}
    after = sync_agent.status(s)
    assert after["queue_depth"] == 0 and after["dead_letters"] == 0
    assert set(after["datasets"]) >= {
        "roster",
        "menu",
        "subsidy_policy",
        "terminal_config",
        "centre_info",
    }
    # The heartbeat went up in the agent stream with the kiosk's health.
    beats = env.platform.store.records(DEVICE, "agent")
    assert len(beats) == 1 and beats[0].kind == "heartbeat"
    hb = json.loads(beats[0].payload)
    assert (
        hb["queue_depth"] == 90
        and hb["printer_status"] == "paper_out"
        and hb["camera_status"] == "ok"
    )
    menu = latest_dataset(s.sync_db_url, "menu", FieldCipher(load_or_create_key(s.data_key_file)))
    assert menu is not None and menu.data["items"]


def test_only_one_writer_of_sync_db(env: Env, tmp_path: Path) -> None:
    s = _prepare(env, tmp_path)
    with (
        sync_agent.writer_lock(s.sync_db_url),
        pytest.raises(sync_agent.AgentBusy, match=str(os.getpid())),
        sync_agent.writer_lock(s.sync_db_url),
    ):
        pass


def test_agent_service_syncs_wakes_on_sync_now_and_stops_on_sigterm(
    env: Env, tmp_path: Path
) -> None:
    s = _prepare(env, tmp_path)
    append_records(s.database_url, 50)
    env_vars = {
        **os.environ,
        "CARE_DATA_DIR": str(s.data_dir),
        "CARE_CENTRE__DEVICE_ID": DEVICE,
        "CARE_CENTRE__CENTRE_ID": CENTRE,
        "CARE_SYNC__PLATFORM_URL": env.platform.url,
        "CARE_SYNC__IDLE_INTERVAL_S": "30",
        "CARE_SYNC__BACKOFF_BASE_S": "0.01",
        "CARE_SYNC__BACKOFF_CAP_S": "0.1",
    }
    code = (
        "import sys; from terminal.config.settings import load_settings; "
        "from sync.agent import run_agent; sys.exit(run_agent(load_settings()))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env_vars,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(env.platform.store.records(DEVICE)) < 50:
            time.sleep(0.2)
        assert len(env.platform.store.records(DEVICE)) == 50
        # The agent now sleeps 30 s; `sync now` wakes it instead of writing sync.db itself.
        append_records(s.database_url, 10, start=50)
        report = sync_agent.sync_now(s)
        assert report["delegated_to_pid"] == proc.pid
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(env.platform.store.records(DEVICE)) < 60:
            time.sleep(0.1)
        assert len(env.platform.store.records(DEVICE)) == 60
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    store = SyncStore(s.sync_db_url)
    assert store.stream_state("kiosk").acked_seq == 60
    store.close()
