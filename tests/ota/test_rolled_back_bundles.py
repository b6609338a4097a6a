"""A bundle that was rolled back is not installed again: the agent keeps a
bad list in its state and refuses the same artifact (before downloading it)
or the same signed release (before staging it) with DDI feedback; the
updater refuses to activate a release it rolled back even if asked.

Runs the real agent against a hawkBit-style DDI server (new action ids for
the same artifact, as hawkBit gives on every re-assignment) and the real
stdlib updater on a simulated device."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

from device_sim import db_dump
from hawkbit_like import HawkbitLike
from ota_rig import make_agent
from test_update_cycle import bundle, device_at_1_0_0

from sync.ota.staging import StagedRelease, write_activation_request

TOKEN = "s3cret-token"


def closed_feedback(server: HawkbitLike, action: str) -> list[dict]:
    return [
        b["status"]
        for kind, aid, b in server.feedback
        if kind == "deploymentBase" and aid == action and b["status"]["execution"] == "closed"
    ]


def downloads_of(server: HawkbitLike, action: str) -> list[str]:
    return [path for _, path, _ in server.requests if f"/artifacts/{action}/" in path]


def test_rolled_back_bundle_is_refused_when_offered_again(tmp_path: Path, session_key) -> None:
    server = HawkbitLike(token=TOKEN, sleep="00:00:01")
    dev = device_at_1_0_0(tmp_path)
    runs = []
    agent, _ = make_agent(
        dev,
        server.url,
        "hb-bad",
        session_key,
        trigger=lambda req: runs.append(dev.updater("activate")),
        ddi={"target_token": TOKEN},
    )
    try:
        swu = bundle(
            tmp_path, session_key, "1.2.0", 7, mode="unhealthy", schema=2, migrate=True,
            health_timeout_s=5,
        )  # fmt: skip
        server.artifact = swu.read_bytes()
        server.action = {"id": "31", "state": "open"}
        agent.run_once()  # download, stage, the updater migrates, finds it unhealthy, rolls back
        assert len(runs) == 1 and runs[0].returncode == 1, (
            runs[0].stderr if runs else server.feedback
        )
        assert dev.current() == "1.0.0-c5"
        agent.run_once()  # reports the rollback and remembers the bundle
        bad = agent._state["bad_bundles"]
        assert [(b["version"], b["counter"], b["release"]) for b in bad] == [
            ("1.2.0", 7, "1.2.0-c7")
        ]
        assert bad[0]["hashes"]["sha256"] == hashlib.sha256(server.artifact).hexdigest()
        assert "rolled back" in bad[0]["reason"]
        db_before, events_before = db_dump(dev.db), dev.events()
        staged_inode = (dev.root / "releases" / "1.2.0-c7").stat().st_ino

        # The same artifact again, as a new action: refused before any download.
        server.action = {"id": "32", "state": "open"}
        agent.run_once()
        (status,) = closed_feedback(server, "32")
        assert status["result"]["finished"] == "failure"
        assert status["details"][0] == "refused: rolled_back"
        assert "1.2.0 (counter 7) was rolled back on this terminal" in status["details"][1]
        assert downloads_of(server, "32") == []
        assert len(runs) == 1 and agent.action is None

        # The same signed release in a rebuilt container (other bytes, same
        # version and counter): downloaded, verified, refused before staging.
        (tmp_path / "again").mkdir()
        server.artifact = bundle(
            tmp_path / "again", session_key, "1.2.0", 7, mode="unhealthy", schema=2,
            migrate=True, health_timeout_s=5,
        ).read_bytes()  # fmt: skip
        server.action = {"id": "33", "state": "open"}
        agent.run_once()
        (status,) = closed_feedback(server, "33")
        assert status["details"][0] == "refused: rolled_back"
        assert downloads_of(server, "33") != []
        assert len(runs) == 1
        assert (dev.root / "releases" / "1.2.0-c7").stat().st_ino == staged_inode  # not restaged

        # Nothing ran again: no stop/start, no migration, no second rollback.
        assert dev.current() == "1.0.0-c5"
        assert dev.events() == events_before and db_dump(dev.db) == db_before
        assert len(agent._state["bad_bundles"]) == 1

        # A newer counter of the same version is a new release and is not refused.
        agent._refuse_if_rolled_back({"sha256": "0" * 64}, "1.2.0", 8)

        # An updater asked to activate the rolled-back release anyway (say by an
        # agent whose state was lost) refuses it from its own bad list.
        staged = StagedRelease("1.2.0", 7, dev.root / "releases" / "1.2.0-c7", True, False)
        write_activation_request(
            dev.root / "spool",
            staged,
            action_id="34",
            from_version="1.0.0",
            health_timeout_s=5,
            feedback=None,
            requested_at=datetime.now(UTC).isoformat(),
        )
        proc = dev.updater("activate")
        assert proc.returncode == 2, proc.stderr
        res = dev.results()["34"]
        assert res["outcome"] == "failed"
        assert "was rolled back on this terminal before" in res["details"][0]
        assert not (dev.root / "spool" / "request.json").exists()
        assert dev.current() == "1.0.0-c5"
        assert dev.events() == events_before and db_dump(dev.db) == db_before
    finally:
        agent.client.close()
        server.stop()
        dev.stop()
