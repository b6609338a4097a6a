"""Provisioning a terminal (library for ``care-terminal provision``).

Steps, each usable on its own:

1. :func:`create_device_key` - the device's Ed25519 key pair (private key 0600);
   the public key signs every platform request (see :mod:`sync.auth`).
2. :func:`registration_record` - what district IT registers at the platform
   (device id, centre, public key, DDI controller id, hardware); the platform
   spec has no self-registration endpoint, so registration is an
   administrator's act. :func:`check_platform_registration` then proves it
   took effect with a signed request.
3. :func:`write_configs` - ``config.toml`` (data directory, centre and
   device, platform URL, device key path, and - only when a DDI server is
   given - the ``[ota]`` section: ``enabled``, DDI server, hardware, paths,
   windows; other settings already in the file are kept) and the DDI token
   file (0640) beside it. :func:`provision` then loads the written file as the
   services will (``terminal.config.settings.load_settings``) and reports any
   problem.
4. :func:`check_hardware` - stable device names, cameras, touch, audio,
   clock synchronisation and free disk space, each with a fix-it hint.

A terminal provisioned before OTA settings moved into config.toml has an
``ota.toml`` beside it, which the services read as the ``[ota]`` table until
it is moved (so an over-the-air update from that release keeps OTA working).
Provisioning again moves it: its tables become ``[ota]``
(under what config.toml already says there, and under what provisioning
owns), ``enabled = true`` unless the file said otherwise (its presence used to
turn OTA on), and the file is renamed ``ota.toml.migrated``.

One key path convention everywhere: ``<data dir>/keys/device_ed25519.pem``
(:func:`terminal.config.settings.device_key_path`), written into
``config.toml`` as ``sync.device_key_file`` so the agent, the kiosk and any
tool read the same file.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import ssl
import subprocess
import time
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from sync.auth import Signer, load_device_key, provision_device_key
from sync.ota.errors import OtaConfigError
from terminal.config.settings import (
    DEVICE_CONFIG_DIR,
    DEVICE_DATA_DIR,
    device_key_path,
    load_settings,
)
from terminal.core.atomic import atomic_write_bytes, atomic_write_text
from terminal.core.clock import rfc3339
from terminal.core.errors import ConfigError

_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclass(frozen=True, slots=True)
class ProvisionRequest:
    centre_id: str
    device_id: str
    platform_url: str = ""
    ddi_url: str = ""
    ddi_tenant: str = "DEFAULT"
    controller_id: str = ""  # defaults to device_id
    ddi_token: str | None = None
    board: str = "care-pi4"
    revision: str = "1"
    centre_name: str = ""
    config_file: Path = DEVICE_CONFIG_DIR / "config.toml"
    data_dir: Path = DEVICE_DATA_DIR
    key_file: Path | None = None  # default: device_key_path(data_dir)
    # The district's 32-byte pepper (city-wide meals, ID-card HMACs): copied to
    # <data_dir>/keys/district-pepper. The same file on every terminal and at
    # the platform (`platform serve --district-pepper`).
    district_pepper_file: Path | None = None
    release_root: Path = Path("/opt/care-terminal")
    windows: tuple[str, ...] = ("14:00-16:30", "20:00-06:00")
    meal_slots: tuple[str, ...] = ("10:30-13:30", "16:30-18:30")

    def __post_init__(self) -> None:
        for name in ("centre_id", "device_id", "board", "revision"):
            if not _ID_RE.fullmatch(getattr(self, name)):
                raise OtaConfigError(
                    f"{name} may only use letters, digits, '.', '_' and '-' (1-64)"
                )
        for name in ("platform_url", "ddi_url"):
            url = getattr(self, name)
            if url and not url.startswith(("https://", "http://")):
                raise OtaConfigError(
                    f"{name} must start with https:// (or http:// on a test network)"
                )
        if self.controller_id and not _ID_RE.fullmatch(self.controller_id):
            raise OtaConfigError("controller_id may only use letters, digits, '.', '_' and '-'")

    @property
    def controller(self) -> str:
        return self.controller_id or self.device_id

    @property
    def config_dir(self) -> Path:
        """The DDI token and ``registration.json`` live beside config.toml."""
        return self.config_file.parent

    @property
    def key_path(self) -> Path:
        return self.key_file or device_key_path(self.data_dir)


DISTRICT_PEPPER_BYTES = 32


def install_district_pepper(src: Path, data_dir: Path) -> tuple[Path, str]:
    """Copy the district pepper into ``<data_dir>/keys/district-pepper`` (0600).

    Returns the installed path and what happened (``installed``, ``unchanged``
    or ``replaced``: a pepper made on this device by an older release matched
    no other terminal and is overwritten). A file that is not 32 bytes is
    refused before anything is written."""
    try:
        pepper = src.read_bytes()
    except OSError as exc:
        raise OtaConfigError(f"cannot read the district pepper {src}: {exc.strerror}") from exc
    if len(pepper) != DISTRICT_PEPPER_BYTES:
        raise OtaConfigError(
            f"the district pepper {src} has {len(pepper)} bytes, not {DISTRICT_PEPPER_BYTES}: "
            "use the file the platform wrote for --district-pepper"
        )
    dest = data_dir / "keys" / "district-pepper"
    try:
        held = dest.read_bytes()
    except FileNotFoundError:
        held = None
    except OSError as exc:
        raise OtaConfigError(f"cannot read {dest}: {exc.strerror}") from exc
    if held == pepper:
        dest.chmod(0o600)
        return dest, "unchanged"
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write_bytes(dest, pepper, mode=0o600)
    return dest, "installed" if held is None else "replaced"


def create_device_key(path: Path) -> str:
    """Create (once) the device key; return the public key text (base64)."""
    return provision_device_key(path)


def registration_record(
    req: ProvisionRequest, public_key: str, sw_version: str, now: datetime
) -> dict[str, Any]:
    return {
        "device_id": req.device_id,
        "centre_id": req.centre_id,
        "public_key": public_key,
        "key_alg": "ed25519",
        "ddi_controller_id": req.controller,
        "hw_boardname": req.board,
        "hw_revision": req.revision,
        "sw_version": sw_version,
        "created_at": rfc3339(now),
        "platform_url": req.platform_url,
        "device_key_file": str(req.key_path),
        "config_file": str(req.config_file),
        # The reference platform's command line takes this form:
        "platform_register_arg": f"{req.device_id}:{req.centre_id}:{public_key}",
    }


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise OtaConfigError(f"cannot write {value} to TOML")
        return repr(value)
    if isinstance(value, str):
        return _toml_str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise OtaConfigError(f"cannot write a {type(value).__name__} to config.toml")


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_str(key)


def dump_toml(doc: Mapping[str, Any], header: str = "") -> str:
    """A small TOML writer for configuration documents (tables, strings,
    numbers, booleans and lists of those)."""
    out: list[str] = []

    def table(prefix: str, body: Mapping[str, Any]) -> None:
        plain = [(k, v) for k, v in body.items() if not isinstance(v, Mapping)]
        subs = [(k, v) for k, v in body.items() if isinstance(v, Mapping)]
        if prefix and (plain or not subs):
            out.append(f"\n[{prefix}]")
        out.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in plain)
        for k, v in subs:
            table(f"{prefix}.{_toml_key(k)}" if prefix else _toml_key(k), v)

    table("", doc)
    text = "\n".join(out).lstrip("\n") + "\n"
    return header + text


def _merged(doc: dict[str, Any], updates: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in updates.items():
        if isinstance(value, Mapping):
            sub = doc.get(key)
            if not isinstance(sub, dict):
                sub = {}
            doc[key] = _merged(sub, value)
        elif value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise OtaConfigError(
            f"{path} is not valid TOML ({exc}); fix or move it, then provision again"
        ) from None


def terminal_settings(req: ProvisionRequest) -> dict[str, Any]:
    """What provisioning owns in config.toml (merged over what is there)."""
    centre: dict[str, Any] = {"centre_id": req.centre_id, "device_id": req.device_id}
    if req.centre_name:
        centre["centre_name"] = req.centre_name
    sync: dict[str, Any] = {"device_key_file": str(req.key_path)}
    if req.platform_url:
        sync["platform_url"] = req.platform_url.rstrip("/")
    return {"data_dir": str(req.data_dir), "centre": centre, "sync": sync}


def ota_settings(req: ProvisionRequest, token_file: Path | None) -> dict[str, Any]:
    """What provisioning owns in config.toml's ``[ota]`` (given a DDI server)."""
    ddi: dict[str, Any] = {
        "base_url": req.ddi_url.rstrip("/"),
        "tenant": req.ddi_tenant,
        "controller_id": req.controller,
    }
    if token_file is not None:
        ddi["target_token_file"] = str(token_file)
    return {
        "enabled": True,
        "ddi": ddi,
        "device": {"board": req.board, "revision": req.revision},
        "paths": {
            "root": str(req.release_root),
            "work_dir": str(req.data_dir / "ota"),
            "trust_dir": str(req.config_dir / "ota-keys"),
        },
        "window": {"allowed": list(req.windows), "meal_slots": list(req.meal_slots)},
        "updater": {"trigger": []},
    }


LEGACY_OTA_FILE = "ota.toml"


def write_configs(req: ProvisionRequest) -> list[Path]:
    """Write config.toml (merged: settings provisioning does not own are kept;
    ``[ota]`` when a DDI server is given) and the DDI token (0640); move a
    leftover ``ota.toml`` into ``[ota]``. A file that is changed is kept once
    as ``*.bak``. Returns the files written."""
    req.config_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def put(path: Path, text: str, mode: int = 0o640) -> None:
        if path.exists():
            if path.read_bytes() == text.encode("utf-8"):
                written.append(path)
                return
            if not path.with_suffix(path.suffix + ".bak").exists():
                shutil.copy2(path, path.with_suffix(path.suffix + ".bak"))
        atomic_write_text(path, text, mode=mode)
        written.append(path)

    header = (
        "# care-terminal settings (terminal/config/settings.py). `care-terminal provision`\n"
        "# owns data_dir, [centre] and [sync] platform_url / device_key_file and, with\n"
        "# --ddi, [ota] enabled and the [ota.ddi] / [ota.device] / [ota.paths] /\n"
        "# [ota.window] / [ota.updater] values it writes; it keeps everything else.\n"
    )
    doc = _read_toml(req.config_file)
    legacy = req.config_dir / LEGACY_OTA_FILE
    moved = legacy.is_file()
    if moved:
        # Its presence meant "OTA on"; config.toml's own [ota] values win over it.
        old = _merged({"enabled": True}, _read_toml(legacy))
        existing = doc.get("ota")
        doc["ota"] = _merged(old, existing if isinstance(existing, dict) else {})
    doc = _merged(doc, terminal_settings(req))
    if req.ddi_url:
        token_file: Path | None = None
        if req.ddi_token is not None:
            if not req.ddi_token or any(c.isspace() for c in req.ddi_token):
                raise OtaConfigError("the DDI target token must be one word")
            token_file = req.config_dir / "ddi-token"
            put(token_file, req.ddi_token + "\n", 0o640)
        doc = _merged(doc, {"ota": ota_settings(req, token_file)})
    put(req.config_file, dump_toml(doc, header))
    if moved:
        done = legacy.with_name(legacy.name + ".migrated")
        os.replace(legacy, done)
        written.append(done)
    return written


def check_written_config(config_file: Path) -> str:
    """Load the written config.toml as the services will; the problems, or ''."""
    try:
        load_settings(config_file=config_file)
    except ConfigError as exc:
        return str(exc)
    return ""


def check_platform_registration(
    platform_url: str,
    device_id: str,
    key_path: Path,
    *,
    verify: ssl.SSLContext | bool = True,
    timeout_s: float = 15.0,
    now: float | None = None,
) -> tuple[bool, str]:
    """Ask the platform, with a signed request, where this device's kiosk stream
    ends. 200 means the key is registered; 401/403 means it is not (yet)."""
    key = load_device_key(key_path)
    signer = Signer(device_id=device_id, key=key)
    path = f"/v1/devices/{device_id}/streams/kiosk"
    headers = signer.sign(
        "GET", path, "", b"", {}, created=int(now if now is not None else time.time())
    )
    try:
        with httpx.Client(verify=verify, timeout=timeout_s) as http:
            r = http.get(platform_url.rstrip("/") + path, headers=headers)
    except httpx.TransportError as exc:
        return False, f"platform not reachable ({type(exc).__name__})"
    if r.status_code == 200:
        return True, "registered: the platform accepted the device signature"
    if r.status_code in (401, 403):
        return (
            False,
            f"not registered yet (HTTP {r.status_code}); give district IT the registration record",
        )
    return False, f"platform answered HTTP {r.status_code}"


@dataclass(frozen=True, slots=True)
class HardwareCheck:
    name: str
    ok: bool
    detail: str
    hint: str = ""


@dataclass(frozen=True, slots=True)
class HardwareEnv:
    """Where to look (overridable for tests)."""

    dev: Path = Path("/dev")
    sys_video: Path = Path("/sys/class/video4linux")
    asound_cards: Path = Path("/proc/asound/cards")
    data_dir: Path = DEVICE_DATA_DIR
    min_free_bytes: int = 2 << 30
    timedatectl: list[str] = field(
        default_factory=lambda: ["timedatectl", "show", "-p", "NTPSynchronized"]
    )


def check_hardware(env: HardwareEnv | None = None) -> list[HardwareCheck]:
    e = env or HardwareEnv()
    out: list[HardwareCheck] = []
    for name, path, hint in (
        (
            "printer",
            e.dev / "care-printer",
            "plug the receipt printer in, or pin its port in 98-care-terminal-local.rules",
        ),
        (
            "id card reader",
            e.dev / "care-idreader",
            "plug the ID card reader in, or pin its port in the local rules",
        ),
        (
            "payer camera",
            e.dev / "care-camera-pay",
            "plug the face-pay camera in; check `v4l2-ctl --list-devices`",
        ),
        (
            "touch screen",
            e.dev / "input" / "care-touch",
            "check the touch cable; `libinput list-devices`",
        ),
    ):
        present = path.exists()
        target = os.path.realpath(path) if present else ""
        out.append(
            HardwareCheck(
                name,
                present,
                f"{path} -> {target}" if present else f"{path} missing",
                "" if present else hint,
            )
        )
    door = e.dev / "care-camera-door"
    out.append(
        HardwareCheck(
            "entrance camera",
            True,
            f"{door} present" if door.exists() else "not installed (footfall counting off)",
        )
    )
    cams = sorted(p.name for p in e.sys_video.glob("video*")) if e.sys_video.is_dir() else []
    out.append(
        HardwareCheck(
            "video devices",
            bool(cams),
            ", ".join(cams) or "none",
            "" if cams else "no camera seen by the kernel",
        )
    )
    try:
        cards = e.asound_cards.read_text()
        audio = bool(cards.strip()) and "no soundcards" not in cards
    except OSError:
        audio = False
    out.append(
        HardwareCheck(
            "audio",
            audio,
            "sound card present" if audio else "no sound card",
            "" if audio else "connect the speaker / enable HDMI audio",
        )
    )
    try:
        proc = subprocess.run(
            e.timedatectl, capture_output=True, text=True, timeout=10, check=False
        )
        synced = "NTPSynchronized=yes" in proc.stdout
        detail = proc.stdout.strip() or proc.stderr.strip()[:100]
    except (OSError, subprocess.TimeoutExpired):
        synced, detail = False, "timedatectl not available"
    out.append(
        HardwareCheck(
            "clock synchronised",
            synced,
            detail,
            "" if synced else "enable NTP: timedatectl set-ntp true (needs network)",
        )
    )
    e.data_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(e.data_dir).free
    out.append(
        HardwareCheck(
            "free disk",
            free >= e.min_free_bytes,
            f"{free >> 20} MiB free",
            "" if free >= e.min_free_bytes else "use a larger SD card / remove old files",
        )
    )
    return out


@dataclass(frozen=True, slots=True)
class ProvisionReport:
    public_key: str
    registration: dict[str, Any]
    files: list[str]
    registered: bool | None
    registration_detail: str
    hardware: list[HardwareCheck]
    # What the services would say about the written config.toml ('' = it loads).
    config_problem: str = ""
    district_pepper: str = ""

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["hardware"] = [asdict(h) for h in self.hardware]
        return doc

    @property
    def ok(self) -> bool:
        return (
            self.registered is not False
            and not self.config_problem
            and all(h.ok for h in self.hardware)
        )


def provision(
    req: ProvisionRequest,
    *,
    sw_version: str,
    now: datetime,
    hardware: HardwareEnv | None = None,
    verify: ssl.SSLContext | bool = True,
    check_hw: bool = True,
) -> ProvisionReport:
    """All four steps. Safe to run again: the key is kept, configs merged."""
    pub = create_device_key(req.key_path)
    record = registration_record(req, pub, sw_version, now)
    files = write_configs(req)
    pepper_note = "no --district-pepper given: visitors from other centres are off"
    if req.district_pepper_file is not None:
        pepper_path, what = install_district_pepper(req.district_pepper_file, req.data_dir)
        files.append(pepper_path)
        pepper_note = f"district pepper {what} at {pepper_path}"
    config_problem = check_written_config(req.config_file)
    reg_path = req.config_dir / "registration.json"
    atomic_write_text(reg_path, json.dumps(record, indent=1, ensure_ascii=False) + "\n", mode=0o640)
    files.append(reg_path)
    registered: bool | None = None
    detail = "no platform URL given; registration not checked"
    if req.platform_url:
        registered, detail = check_platform_registration(
            req.platform_url, req.device_id, req.key_path, verify=verify, now=now.timestamp()
        )
    hw = check_hardware(hardware or HardwareEnv(data_dir=req.data_dir)) if check_hw else []
    return ProvisionReport(
        pub, record, [str(f) for f in files], registered, detail, hw, config_problem, pepper_note
    )


def summarize(report: ProvisionReport) -> Mapping[str, Any]:
    """Short form for the console: what to hand to district IT, where things went."""
    reg = report.registration
    return {
        "ok": report.ok,
        "device_id": reg["device_id"],
        "centre_id": reg["centre_id"],
        "public_key": report.public_key,
        "platform_register_arg": reg["platform_register_arg"],
        "platform_url": reg.get("platform_url", ""),
        "device_key_file": reg.get("device_key_file", ""),
        "config_file": reg.get("config_file", ""),
        "registered": report.registered,
        "detail": report.registration_detail,
        "district_pepper": report.district_pepper,
        "problems": [
            *([f"config: {report.config_problem}"] if report.config_problem else []),
            *(f"{h.name}: {h.detail} ({h.hint})" for h in report.hardware if not h.ok),
        ],
    }
