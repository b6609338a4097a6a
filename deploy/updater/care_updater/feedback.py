"""DDI feedback from the updater itself (urllib, standard library), so the
outcome is reported even when the new release cannot run the agent."""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def body(execution: str, finished: str, details: list[str]) -> dict[str, Any]:
    return {
        "time": datetime.now(UTC).strftime("%Y%m%dT%H%M%S"),
        "status": {
            "execution": execution,
            "result": {"finished": finished},
            "details": [d[:500] for d in details][:20],
        },
    }


def _context(target: dict[str, Any]) -> ssl.SSLContext | None:
    if not str(target.get("url", "")).startswith("https://"):
        return None
    ctx = ssl.create_default_context(cafile=target.get("ca_file") or None)
    if target.get("cert_file") and target.get("key_file"):
        ctx.load_cert_chain(target["cert_file"], target["key_file"])
    return ctx


def send(
    target: dict[str, Any] | None,
    execution: str,
    finished: str,
    details: list[str],
    retries: int = 3,
    timeout: float = 15.0,
) -> bool:
    """POST the feedback; True when the server accepted it."""
    if not target or not target.get("url"):
        return False
    url = str(target["url"])
    if not url.startswith(("http://", "https://")):
        return False
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    token_file = target.get("token_file")
    try:
        if token_file:
            token = Path(token_file).read_text(encoding="utf-8").strip()
            headers["Authorization"] = f"{target.get('token_kind') or 'TargetToken'} {token}"
        ctx = _context(target)
    except (OSError, ssl.SSLError):
        return False
    data = json.dumps(body(execution, finished, details)).encode("utf-8")
    for attempt in range(max(1, retries)):
        req = urllib.request.Request(url, data=data, headers=headers, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:  # noqa: S310
                if 200 <= resp.status < 300:
                    return True
        except urllib.error.HTTPError as exc:
            if exc.code < 500 and exc.code not in (408, 429):
                return False
        except (urllib.error.URLError, OSError, TimeoutError):
            pass
        time.sleep(min(8.0, 1.0 * 2**attempt))
    return False
