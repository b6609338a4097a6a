"""Eclipse hawkBit Direct Device Integration (DDI) API v1 client (httpx).

Covers what a device does with DDI: poll the controller base (honouring the
server's ``config.polling.sleep``), put config data, fetch the deployment base,
download artifacts (resumable with HTTP ``Range``, length-limited, hash-checked
against every hash the server gives: sha256 / sha1 / md5), send action feedback
in every state, handle cancel actions (confirm or reject), the confirmation
flow (confirm / deny, auto-confirm on/off) and the installed base.

Authentication: ``Authorization: TargetToken <token>`` (or ``GatewayToken``)
and/or a TLS client certificate through an ``ssl.SSLContext`` passed as
``verify=`` (httpx's ``cert=`` is deprecated). Credentials are only ever sent
to the DDI server's own origin, never to a download host it redirects to.

Server differences handled here: goosebit gives sha1 only, has no cancel /
installed base / confirmation / maintenance window and needs ``status.result``
in every feedback (we always send it); hawkBit gives links for all of them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import quote, urlsplit

import httpx

from sync.ota.errors import BundleRejected, DdiError
from sync.retry import is_retryable_status
from terminal.core.atomic import durable_replace
from terminal.core.log import get_logger

log = get_logger(__name__)

Execution = Literal[
    "closed", "proceeding", "canceled", "scheduled", "rejected", "resumed", "downloaded", "download"
]
Finished = Literal["success", "failure", "none"]
MAX_JSON_BYTES: Final = 1 << 20
MAX_DETAIL_LEN: Final = 500
_SLEEP_RE = re.compile(r"^(\d{1,3}):([0-5]\d):([0-5]\d)$")
_HASH_ORDER: Final = ("sha256", "sha1", "md5")


@dataclass(frozen=True, slots=True)
class DdiConfig:
    base_url: str  # server root, e.g. https://ota.district.example
    controller_id: str
    tenant: str = "DEFAULT"
    target_token: str | None = None
    gateway_token: str | None = None
    ssl_context: ssl.SSLContext | None = None
    timeout_s: float = 30.0
    download_timeout_s: float = 120.0
    min_sleep_s: float = 5.0
    max_sleep_s: float = 24 * 3600.0

    @property
    def controller_url(self) -> str:
        return (
            f"{self.base_url.rstrip('/')}/{quote(self.tenant, safe='')}/controller/v1/"
            f"{quote(self.controller_id, safe='')}"
        )


@dataclass(frozen=True, slots=True)
class ControllerBase:
    sleep_s: float
    links: Mapping[str, str] = field(default_factory=dict)

    def link(self, name: str) -> str | None:
        return self.links.get(name)


@dataclass(frozen=True, slots=True)
class Artifact:
    filename: str
    size: int
    hashes: Mapping[str, str]
    download_url: str


@dataclass(frozen=True, slots=True)
class Chunk:
    part: str
    name: str
    version: str
    artifacts: tuple[Artifact, ...]
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Deployment:
    action_id: str
    download: str  # skip | attempt | forced
    update: str
    maintenance_window: str | None  # available | unavailable | None (no window)
    chunks: tuple[Chunk, ...]

    def artifacts(self) -> list[Artifact]:
        return [a for c in self.chunks for a in c.artifacts]


@dataclass(frozen=True, slots=True)
class CancelAction:
    action_id: str
    stop_id: str


@dataclass(frozen=True, slots=True)
class ConfirmationBase:
    auto_confirm: bool
    action_href: str | None  # link to the action waiting for confirmation


def parse_sleep(text: Any, cfg: DdiConfig) -> float:
    """``"HH:MM:SS"`` -> seconds, clamped to [min_sleep_s, max_sleep_s]."""
    if not isinstance(text, str) or not (m := _SLEEP_RE.fullmatch(text.strip())):
        return float(min(max(300.0, cfg.min_sleep_s), cfg.max_sleep_s))
    secs = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + int(m.group(3))
    return float(min(max(secs, cfg.min_sleep_s), cfg.max_sleep_s))


def _bad_reply(what: str) -> DdiError:
    return DdiError(f"DDI server reply is not valid: {what}", code="ddi_bad_reply", retryable=True)


def _str(doc: Mapping[str, Any], key: str, *, required: bool = True, default: str = "") -> str:
    v = doc.get(key)
    if v is None and not required:
        return default
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    if not isinstance(v, str):
        raise _bad_reply(f"{key} missing or not a string")
    return v


def _links(doc: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(doc, dict):
        for k, v in doc.items():
            if isinstance(k, str) and isinstance(v, dict) and isinstance(v.get("href"), str):
                out[k] = v["href"]
    return out


def parse_deployment(doc: Any, key: str = "deployment") -> Deployment:
    if not isinstance(doc, dict) or not isinstance(doc.get(key), dict):
        raise _bad_reply(f"{key} object missing")
    dep = doc[key]
    action_id = _str(doc, "id")
    chunks: list[Chunk] = []
    raw_chunks = dep.get("chunks", [])
    if not isinstance(raw_chunks, list):
        raise _bad_reply("chunks is not a list")
    for c in raw_chunks:
        if not isinstance(c, dict):
            raise _bad_reply("chunk is not an object")
        arts: list[Artifact] = []
        for a in c.get("artifacts", []) or []:
            if not isinstance(a, dict):
                raise _bad_reply("artifact is not an object")
            size = a.get("size")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise _bad_reply("artifact size missing")
            hashes = a.get("hashes") or {}
            if not isinstance(hashes, dict):
                raise _bad_reply("artifact hashes is not an object")
            links = _links(a.get("_links"))
            url = links.get("download") or links.get("download-http")
            if not url:
                raise _bad_reply("artifact has no download link")
            arts.append(
                Artifact(
                    filename=_str(a, "filename"),
                    size=size,
                    hashes={
                        k.lower(): str(v).lower() for k, v in hashes.items() if isinstance(v, str)
                    },
                    download_url=url,
                )
            )
        meta = {
            str(m.get("key")): str(m.get("value"))
            for m in c.get("metadata", []) or []
            if isinstance(m, dict)
        }
        chunks.append(
            Chunk(
                part=_str(c, "part", required=False),
                name=_str(c, "name", required=False),
                version=_str(c, "version", required=False),
                artifacts=tuple(arts),
                metadata=meta,
            )
        )
    mw = dep.get("maintenanceWindow")
    return Deployment(
        action_id=action_id,
        download=_str(dep, "download", required=False, default="forced"),
        update=_str(dep, "update", required=False, default="forced"),
        maintenance_window=mw if isinstance(mw, str) else None,
        chunks=tuple(chunks),
    )


def feedback_body(
    execution: Execution,
    finished: Finished,
    details: Sequence[str] = (),
    *,
    progress: tuple[int, int] | None = None,
    code: int | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The DDI ``DdiActionFeedback`` document. ``status.result`` is always
    present (goosebit requires it; hawkBit accepts it)."""
    result: dict[str, Any] = {"finished": finished}
    if progress is not None:
        result["progress"] = {"cnt": progress[0], "of": progress[1]}
    status: dict[str, Any] = {"execution": execution, "result": result}
    if details:
        status["details"] = [d[:MAX_DETAIL_LEN] for d in details][:20]
    if code is not None:
        status["code"] = code
    ts = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%S")
    return {"time": ts, "status": status}


class DdiClient:
    """One device's DDI session. Thread-unsafe; use from the agent thread."""

    def __init__(self, cfg: DdiConfig, *, transport: httpx.BaseTransport | None = None) -> None:
        self.cfg = cfg
        self._origin = self._origin_of(cfg.base_url)
        verify: ssl.SSLContext | bool = cfg.ssl_context if cfg.ssl_context is not None else True
        self._http = httpx.Client(
            verify=verify,
            timeout=cfg.timeout_s,
            transport=transport,
            follow_redirects=False,
            headers={"Accept": "application/hal+json, application/json"},
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DdiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------

    @staticmethod
    def _origin_of(url: str) -> tuple[str, str, int | None]:
        p = urlsplit(url)
        port = p.port or {"http": 80, "https": 443}.get(p.scheme)
        return (p.scheme, (p.hostname or "").lower(), port)

    def _auth_headers(self, url: str) -> dict[str, str]:
        if self._origin_of(url) != self._origin:
            return {}
        if self.cfg.target_token:
            return {"Authorization": f"TargetToken {self.cfg.target_token}"}
        if self.cfg.gateway_token:
            return {"Authorization": f"GatewayToken {self.cfg.gateway_token}"}
        return {}

    def _request(self, method: str, url: str, body: Any = None) -> Any:
        headers = self._auth_headers(url)
        try:
            if body is None:
                resp = self._http.request(method, url, headers=headers)
            else:
                resp = self._http.request(method, url, headers=headers, json=body)
        except httpx.TransportError as exc:
            raise DdiError(
                f"DDI server not reachable ({type(exc).__name__})",
                code="ddi_unreachable",
                retryable=True,
            ) from None
        if resp.status_code >= 400:
            raise DdiError(
                f"DDI server answered {resp.status_code} to {method} {urlsplit(url).path}",
                code="ddi_refused" if resp.status_code in (401, 403) else "ddi_http_error",
                status=resp.status_code,
                retryable=is_retryable_status(resp.status_code),
                retry_after=resp.headers.get("Retry-After"),
            )
        if len(resp.content) > MAX_JSON_BYTES:
            raise _bad_reply("reply too large")
        if not resp.content.strip():
            return None
        try:
            return json.loads(resp.content)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _bad_reply("not JSON") from None

    def _url(self, *parts: str) -> str:
        return "/".join([self.cfg.controller_url, *(quote(p, safe="") for p in parts)])

    # -- resources --------------------------------------------------------------------------

    def poll(self) -> ControllerBase:
        """GET the controller base: sleep interval and the open links."""
        doc = self._request("GET", self.cfg.controller_url)
        if not isinstance(doc, dict):
            raise _bad_reply("controller base is not an object")
        cfg = doc.get("config")
        sleep_text = cfg.get("polling", {}).get("sleep") if isinstance(cfg, dict) else None
        return ControllerBase(
            sleep_s=parse_sleep(sleep_text, self.cfg), links=_links(doc.get("_links"))
        )

    def put_config_data(self, data: Mapping[str, str], mode: str = "merge") -> None:
        """PUT config data (controller attributes). hawkBit's ``mode``:
        merge | replace | remove."""
        if mode not in ("merge", "replace", "remove"):
            raise ValueError("mode must be merge, replace or remove")
        clean = {str(k)[:128]: str(v)[:128] for k, v in data.items()}
        self._request("PUT", self._url("configData"), {"mode": mode, "data": clean})

    def get_deployment(self, href: str) -> Deployment:
        return parse_deployment(self._request("GET", href))

    def get_installed(self, href: str) -> Deployment:
        return parse_deployment(self._request("GET", href))

    def send_feedback(
        self,
        action_id: str,
        execution: Execution,
        finished: Finished,
        details: Sequence[str] = (),
        *,
        progress: tuple[int, int] | None = None,
        code: int | None = None,
    ) -> None:
        body = feedback_body(execution, finished, details, progress=progress, code=code)
        self._request("POST", self._url("deploymentBase", action_id, "feedback"), body)
        log.info("ddi_feedback", action=action_id, execution=execution, finished=finished)

    def get_cancel(self, href: str) -> CancelAction:
        doc = self._request("GET", href)
        if not isinstance(doc, dict) or not isinstance(doc.get("cancelAction"), dict):
            raise _bad_reply("cancelAction object missing")
        return CancelAction(action_id=_str(doc, "id"), stop_id=_str(doc["cancelAction"], "stopId"))

    def send_cancel_feedback(
        self, action_id: str, accepted: bool, details: Sequence[str] = ()
    ) -> None:
        """Confirm (closed/success) or reject (rejected) a cancellation."""
        body = (
            feedback_body("closed", "success", details)
            if accepted
            else feedback_body("rejected", "none", details)
        )
        self._request("POST", self._url("cancelAction", action_id, "feedback"), body)

    def get_confirmation_base(self, href: str | None = None) -> ConfirmationBase:
        doc = self._request("GET", href or self._url("confirmationBase"))
        if not isinstance(doc, dict):
            raise _bad_reply("confirmation base is not an object")
        auto = doc.get("autoConfirm")
        active = isinstance(auto, dict) and auto.get("state") == "active"
        return ConfirmationBase(
            auto_confirm=active, action_href=_links(doc.get("_links")).get("confirmationBase")
        )

    def get_confirmation_action(self, href: str) -> Deployment:
        return parse_deployment(self._request("GET", href), key="confirmation")

    def send_confirmation(
        self, action_id: str, confirmed: bool, details: Sequence[str] = (), code: int | None = None
    ) -> None:
        body: dict[str, Any] = {"confirmation": "confirmed" if confirmed else "denied"}
        if details:
            body["details"] = [d[:MAX_DETAIL_LEN] for d in details][:20]
        if code is not None:
            body["code"] = code
        self._request("POST", self._url("confirmationBase", action_id, "feedback"), body)

    def set_auto_confirm(self, active: bool, initiator: str = "", remark: str = "") -> None:
        if active:
            body: dict[str, Any] = {}
            if initiator:
                body["initiator"] = initiator
            if remark:
                body["remark"] = remark
            self._request("POST", self._url("confirmationBase", "activateAutoConfirm"), body)
        else:
            self._request("POST", self._url("confirmationBase", "deactivateAutoConfirm"), None)

    # -- downloads --------------------------------------------------------------------------

    def download(self, artifact: Artifact, dest: Path, *, max_bytes: int) -> Path:
        """Download ``artifact`` to ``dest`` (resuming ``dest.part`` with a Range
        request when one exists), refusing more than ``artifact.size`` and
        ``max_bytes``, then check length and every given hash."""
        if artifact.size > max_bytes:
            raise BundleRejected(
                f"artifact {artifact.filename[:60]} is {artifact.size} bytes, more than the allowed {max_bytes}",
                code="oversize",
            )
        if not any(h in artifact.hashes for h in _HASH_ORDER):
            raise BundleRejected(
                "the server gave no sha256/sha1/md5 for the artifact", code="artifact_hash"
            )
        part = dest.with_name(dest.name + ".part")
        for attempt in (0, 1):
            resumed = part.exists() and part.stat().st_size > 0
            try:
                self._fetch(artifact, part)
            except BundleRejected:
                part.unlink(missing_ok=True)
                raise
            size = part.stat().st_size
            problem = None
            if size != artifact.size:
                problem = BundleRejected(
                    f"artifact is {size} bytes, the server said {artifact.size}",
                    code="artifact_size",
                )
            elif (bad := self._hash_problem(part, artifact)) is not None:
                problem = BundleRejected(
                    f"artifact {bad} does not match the server's hash", code="artifact_hash"
                )
            if problem is None:
                durable_replace(part, dest)  # the part file was fsynced by _fetch
                return dest
            part.unlink(missing_ok=True)
            if not (resumed and attempt == 0):
                raise problem
            log.warning("ddi_resume_discarded", reason=problem.code)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _hash_problem(path: Path, artifact: Artifact) -> str | None:
        hs = {name: hashlib.new(name) for name in _HASH_ORDER if name in artifact.hashes}
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 16):
                for h in hs.values():
                    h.update(chunk)
        for name, h in hs.items():
            if h.hexdigest() != artifact.hashes[name]:
                return name
        return None

    def _fetch(self, artifact: Artifact, part: Path) -> None:
        offset = part.stat().st_size if part.exists() else 0
        if offset > artifact.size:
            part.unlink()
            offset = 0
        if offset == artifact.size and offset > 0:
            return
        url = artifact.download_url
        headers = self._auth_headers(url)
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            with self._http.stream(
                "GET",
                url,
                headers=headers,
                follow_redirects=True,
                timeout=self.cfg.download_timeout_s,
            ) as resp:
                if resp.status_code == 416 and offset:
                    part.unlink()
                    raise DdiError(
                        "resume refused by the server (416); starting again",
                        code="ddi_resume",
                        retryable=True,
                    )
                if resp.status_code >= 400:
                    raise DdiError(
                        f"artifact download answered {resp.status_code}",
                        code="ddi_http_error",
                        status=resp.status_code,
                        retryable=is_retryable_status(resp.status_code),
                        retry_after=resp.headers.get("Retry-After"),
                    )
                append = False
                if resp.status_code == 206 and offset:
                    m = re.fullmatch(
                        r"bytes (\d+)-(\d+)/(\d+|\*)", resp.headers.get("Content-Range", "")
                    )
                    if not m or int(m.group(1)) != offset:
                        raise _bad_reply("Content-Range does not continue the partial download")
                    append = True
                elif resp.status_code != 200:
                    raise _bad_reply(f"download answered {resp.status_code}")
                written = offset if append else 0
                declared = resp.headers.get("Content-Length")
                if (
                    declared is not None
                    and declared.isdigit()
                    and written + int(declared) > artifact.size
                ):
                    raise BundleRejected(
                        "the server sends more bytes than the artifact size", code="artifact_size"
                    )
                flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
                fd = os.open(part, flags, 0o600)
                try:
                    for chunk in resp.iter_bytes():
                        written += len(chunk)
                        if written > artifact.size:
                            raise BundleRejected(
                                "the server sends more bytes than the artifact size",
                                code="artifact_size",
                            )
                        os.write(fd, chunk)
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except httpx.TransportError as exc:
            # Keep the partial file: the next attempt resumes from it.
            raise DdiError(
                f"download interrupted ({type(exc).__name__})",
                code="ddi_unreachable",
                retryable=True,
            ) from None
