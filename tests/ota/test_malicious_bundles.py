"""At least 30 malicious or broken bundles, offered through a real DDI server
(goosebit): none is installed, each refusal reaches the server as feedback
with its reason. The same catalogue is also checked directly against
verification + staging (no server), so a refusal never depends on goosebit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bundle_cases import CASES, INSTALLED_COUNTER, INSTALLED_VERSION, Ctx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from device_sim import SimDevice, make_release
from ota_rig import make_agent, releases

from sync.ota.archive import ArchiveLimits
from sync.ota.bundle import InstalledState, VerifyPolicy, verify_bundle
from sync.ota.errors import REASONS, BundleRejected
from sync.ota.manifest import TrustStore
from sync.ota.staging import stage_bundle

ROGUE = Ed25519PrivateKey.generate()


def test_catalogue_is_big_enough_and_uses_documented_reasons() -> None:
    assert len(CASES) >= 30
    assert len({c.name for c in CASES}) == len(CASES)
    assert {c.code for c in CASES} <= set(REASONS)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_refused_by_verification_and_staging(case, tmp_path: Path, session_key) -> None:
    (tmp_path / "work").mkdir()
    ctx = Ctx(tmp_path / "work", session_key, ROGUE, "5.0.0")
    bundle = case.build(ctx)
    policy = VerifyPolicy(
        board="care-pi",
        revision="1",
        max_bundle_bytes=1 << 20,
        max_payload_bytes=1 << 20,
        max_unpacked_bytes=16 << 20,
    )
    releases_dir = tmp_path / "releases"
    with pytest.raises(BundleRejected) as err:
        vb = verify_bundle(
            bundle,
            TrustStore({"test": session_key.public_key()}),
            policy,
            InstalledState(INSTALLED_VERSION, INSTALLED_COUNTER),
        )
        stage_bundle(vb, releases_dir, ArchiveLimits(max_total_bytes=16 << 20))
    assert err.value.code == case.code, str(err.value)
    assert str(err.value)  # a message fit to show
    assert not releases_dir.exists() or list(releases_dir.iterdir()) == []


@pytest.fixture(scope="module")
def rig(goosebit, tmp_path_factory, session_key):
    base = tmp_path_factory.mktemp("mal")
    dev = SimDevice(base / "dev")
    dev.install_factory(
        make_release(base / "factory", INSTALLED_VERSION), "1.0.0-c5", counter=INSTALLED_COUNTER
    )
    triggered: list[Path] = []
    agent, _ = make_agent(dev, goosebit.url, "mal-01", session_key, trigger=triggered.append)
    agent.run_once()  # registers: goosebit asks for config data first
    assert goosebit.device("mal-01")["sw_version"] == INSTALLED_VERSION
    work = base / "bundles"
    work.mkdir()
    yield {"dev": dev, "agent": agent, "triggered": triggered, "work": work, "server": goosebit}
    agent.client.close()


@pytest.mark.parametrize("index", range(len(CASES)), ids=[c.name for c in CASES])
def test_offered_through_goosebit_and_refused_with_feedback(rig, index: int, session_key) -> None:
    case = CASES[index]
    server, agent = rig["server"], rig["agent"]
    ctx = Ctx(rig["work"], session_key, ROGUE, f"5.{index}.0")
    bundle = case.build(ctx)
    software_id = server.upload(bundle)
    server.assign("mal-01", software_id, force=True)
    agent.run_once()
    action = str(software_id)
    finished = agent._state["finished"].get(action)
    assert finished is not None, f"{case.name}: the agent did not process action {action}"
    assert finished["result"] == "failure"
    assert finished["details"][0] == f"refused: {case.code}", finished["details"]
    log = server.device_log("mal-01")["log"]
    assert f"refused: {case.code}" in log, log
    assert server.device("mal-01")["last_state"] == "Error", server.device("mal-01")


def test_nothing_was_installed(rig) -> None:
    dev = rig["dev"]
    assert rig["triggered"] == []
    assert dev.current() == "1.0.0-c5"
    assert releases(dev.root) == ["1.0.0-c5"]
    assert not (dev.root / "spool" / "request.json").exists()
    downloads = dev.base / "ota-work" / "downloads"
    assert not downloads.exists() or list(downloads.iterdir()) == []
    state = json.loads((dev.base / "ota-work" / "agent-state.json").read_text())
    assert state["action"] is None
    assert sum(1 for f in state["finished"].values() if f["result"] == "failure") >= min(
        len(CASES), 50
    )
