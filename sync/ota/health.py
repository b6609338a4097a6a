"""The health report a running release writes and the updater reads.

The updater (deploy/updater, standard library only) has its own reader of
this format; keep both in step. File: ``/run/care-terminal/health.json``::

    {"format": 1, "version": "1.4.0", "pid": 1234, "written_at": 1760000000.5,
     "healthy": true,
     "checks": {"kiosk": "ok", "db": "ok", "model_pack": "ok", "camera": "absent"},
     "detail": ""}

A release is healthy when every check is ``ok``, except ``camera`` which may
also be ``absent`` (no camera plugged in is honest, a camera that fails to
open is not). The kiosk rewrites the file every few seconds while it runs;
the updater only trusts a report written after it switched releases.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from terminal.core.atomic import atomic_write_text

HEALTH_FILE: Final = Path("/run/care-terminal/health.json")
REQUIRED_CHECKS: Final = ("kiosk", "db", "model_pack", "camera")
CheckResult = Literal["ok", "absent", "failed"]


@dataclass(frozen=True, slots=True)
class HealthReport:
    version: str
    checks: Mapping[str, CheckResult]
    written_at: float
    pid: int = field(default_factory=os.getpid)
    detail: str = ""

    @property
    def healthy(self) -> bool:
        for name in REQUIRED_CHECKS:
            result = self.checks.get(name)
            if result == "ok" or (name == "camera" and result == "absent"):
                continue
            return False
        return True

    def to_json(self) -> dict[str, object]:
        return {
            "format": 1,
            "version": self.version,
            "pid": self.pid,
            "written_at": self.written_at,
            "healthy": self.healthy,
            "checks": dict(self.checks),
            "detail": self.detail[:500],
        }


def run_checks(
    checks: Mapping[str, Callable[[], CheckResult]],
) -> tuple[dict[str, CheckResult], str]:
    """Run named checks; a check that raises counts as ``failed`` (its error
    type goes into the detail, never a traceback)."""
    out: dict[str, CheckResult] = {}
    problems: list[str] = []
    for name, check in checks.items():
        try:
            out[name] = check()
        except Exception as exc:  # a health check must never crash the reporter
            out[name] = "failed"
            problems.append(f"{name}: {type(exc).__name__}: {str(exc)[:120]}")
        if out[name] == "failed" and not any(p.startswith(f"{name}:") for p in problems):
            problems.append(f"{name}: failed")
    return out, "; ".join(problems)


def write_health(path: Path, report: HealthReport) -> None:
    """Atomically replace the health file (readers never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(report.to_json()))
