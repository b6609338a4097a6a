"""Reads the health report the running release writes (format in
sync/ota/health.py; kept in step by tests) and runs the release's own
health command when ``release.json`` names one."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

REQUIRED_CHECKS = ("kiosk", "db", "model_pack", "camera")


def report_problem(path: Path, version: str, not_before: float) -> str | None:
    """None when the file says ``version`` is healthy and was written at or
    after ``not_before`` (unix time); otherwise what is wrong."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "no health report yet"
    except (OSError, ValueError):
        return "health report unreadable"
    if not isinstance(doc, dict) or doc.get("format") != 1:
        return "health report has an unknown format"
    if doc.get("version") != version:
        return f"health report is from version {str(doc.get('version'))[:40]}"
    written = doc.get("written_at")
    if not isinstance(written, (int, float)) or written < not_before:
        return "health report is older than the switch"
    checks = doc.get("checks")
    if not isinstance(checks, dict):
        return "health report has no checks"
    bad = []
    for name in REQUIRED_CHECKS:
        result = checks.get(name)
        if result == "ok" or (name == "camera" and result == "absent"):
            continue
        bad.append(f"{name}={result}")
    if bad or doc.get("healthy") is not True:
        detail = str(doc.get("detail", ""))[:200]
        return (
            "unhealthy: " + ", ".join(bad or ["healthy=false"]) + (f" ({detail})" if detail else "")
        )
    return None


def run_health_command(app_dir: Path, argv: list[str], timeout: float) -> str | None:
    try:
        proc = subprocess.run(
            [str(app_dir / argv[0]), *argv[1:]],
            cwd=app_dir,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"health command failed to run ({type(exc).__name__})"
    if proc.returncode != 0:
        return f"health command exited {proc.returncode}"
    return None
