"""Wiring for OTA tests: an agent on a simulated device talking to goosebit."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from device_sim import SimDevice

from sync.ota.agent import OtaAgent
from sync.ota.ddi import DdiClient, DdiConfig
from sync.ota.manifest import TrustStore
from terminal.config.ota import OtaSettings
from terminal.core.clock import CHINA_TZ, FakeClock

AFTERNOON = datetime(2026, 5, 6, 15, 0, tzinfo=CHINA_TZ)  # outside the default meal slots


def make_agent(
    dev: SimDevice,
    server_url: str,
    controller_id: str,
    key: Ed25519PrivateKey,
    *,
    trigger: Any,
    clock: FakeClock | None = None,
    ddi: dict[str, Any] | None = None,
    confirmation: str = "auto",
    **policy: Any,
) -> tuple[OtaAgent, FakeClock]:
    cfg = OtaSettings.model_validate(
        {
            "ddi": {"base_url": server_url, "controller_id": controller_id},
            "device": {"board": "care-pi", "revision": "1"},
            "paths": {
                "root": str(dev.root),
                "work_dir": str(dev.base / "ota-work"),
                "trust_dir": str(dev.base / "keys"),
            },
            "policy": {
                "max_bundle_mb": 1,
                "max_unpacked_mb": 16,
                "health_timeout_s": 20,
                "confirmation": confirmation,
                **policy,
            },
            "window": {"payment_flag": str(dev.base / "run" / "payment-active")},
        }
    )
    clock = clock or FakeClock(AFTERNOON)
    client = DdiClient(
        DdiConfig(base_url=server_url, controller_id=controller_id, min_sleep_s=1.0, **(ddi or {}))
    )
    agent = OtaAgent(
        client, cfg, TrustStore({"test": key.public_key()}), clock, trigger_updater=trigger
    )
    return agent, clock


def releases(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "releases").iterdir())
