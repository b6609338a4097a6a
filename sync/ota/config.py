"""The OTA client's runtime objects, built from the validated ``[ota]`` section
of config.toml (:class:`terminal.config.ota.OtaSettings`, ``Settings.ota``).

The section's values were all checked at boot with the rest of the
configuration; what is left for run time is the file system: the DDI token
files must be readable and hold one token, and the TLS files must load.
"""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

from sync.auth import client_ssl_context
from sync.ota.ddi import DdiConfig
from sync.ota.errors import OtaConfigError
from sync.ota.window import WindowPolicy
from terminal.config.ota import DdiSection, WindowSection


def window_policy(window: WindowSection) -> WindowPolicy:
    """``[ota.window]`` as the activation gate's policy."""
    return WindowPolicy.from_strings(window.allowed, window.meal_slots, ZoneInfo(window.timezone))


def ddi_config(ddi: DdiSection) -> DdiConfig:
    """``[ota.ddi]`` as the DDI client's config (reads the token files)."""
    ctx = None
    if ddi.base_url.startswith("https://") or ddi.cert_file:
        ctx = client_ssl_context(ddi.ca_file, ddi.cert_file, ddi.key_file)
    return DdiConfig(
        base_url=ddi.base_url,
        controller_id=ddi.controller_id,
        tenant=ddi.tenant,
        target_token=_read_secret(ddi.target_token_file),
        gateway_token=_read_secret(ddi.gateway_token_file),
        ssl_context=ctx,
        timeout_s=ddi.timeout_s,
    )


def _read_secret(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise OtaConfigError(f"cannot read {path}: {exc.strerror}") from None
    if not text or len(text) > 512 or any(c.isspace() for c in text):
        raise OtaConfigError(f"{path} does not hold a single token")
    return text
