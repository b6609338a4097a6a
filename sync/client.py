"""HTTP client for the district platform (httpx).

Every request is signed (:mod:`sync.auth`); every reply is validated against the
published spec before anyone acts on it. A reply that is not JSON, violates the
schema, or does not answer the request that was sent (wrong number of results,
other sequence numbers) raises :class:`ReplyInvalid`: the caller marks nothing
acknowledged and retries later, so nothing is lost.

Retry policy is not here (httpx retries nothing but connects; the uploader owns
the schedule): this module only classifies failures as retryable or final.
"""

from __future__ import annotations

import hashlib
import json
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode

import httpx

from sync import schemas
from sync.auth import Signer
from sync.retry import is_retryable_status
from terminal.core.clock import Clock
from terminal.core.errors import TerminalError
from terminal.core.log import get_logger

log = get_logger(__name__)


class PlatformError(TerminalError):
    """The platform could not be reached or refused a request.

    ``retryable`` follows the spec's retry table; ``retry_after`` is the raw
    ``Retry-After`` header when the server sent one; ``error`` is the spec's
    error code (``network`` for transport failures)."""

    code = "platform_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool,
        error: str = "",
        retry_after: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.error = error
        self.retry_after = retry_after


class ReplyInvalid(PlatformError):
    """The platform's reply is malformed or violates the spec (nothing was acked)."""

    code = "platform_reply_invalid"

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message, status=status, retryable=True, error="reply_invalid")


def encode_body(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def body_idempotency_key(body: bytes, generation: str = "") -> str:
    """The reference terminal's Idempotency-Key: derived from the body and the
    uploader's send *generation*, so a retry of the same batch in the same
    generation is a replay and a different batch never reuses a key.

    The generation matters because the platform replays the first answer for a
    key for days: after a ``seq_gap`` (the platform lost records it had
    acknowledged and the terminal rewound to its head) the terminal sends batches
    whose bodies can repeat earlier ones byte for byte, and under the old key the
    platform would replay the stale answer instead of looking again. The uploader
    draws a new generation for that (see :class:`sync.uploader.Uploader`)."""
    material = generation.encode("utf-8") + b"\n" + body if generation else body
    return "batch-" + hashlib.sha256(material).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class DatasetReply:
    etag: str
    doc: dict[str, Any]


class PlatformClient:
    def __init__(
        self,
        base_url: str,
        signer: Signer,
        clock: Clock,
        *,
        verify: ssl.SSLContext | bool = True,
        timeout_s: float = 30.0,
        validate_requests: bool = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.signer = signer
        self.clock = clock
        self.validate_requests = validate_requests
        self.clock_offset_s = 0
        self._http = httpx.Client(
            base_url=self.base_url,
            verify=verify,
            timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
            transport=transport,
            headers={"User-Agent": "care-terminal-sync/1"},
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PlatformClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ----------------------------------------------------------------------
    def _now_s(self) -> int:
        return int(self.clock.now().timestamp()) + self.clock_offset_s

    def _send(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None,
        body: bytes,
        headers: dict[str, str],
    ) -> httpx.Response:
        qs = urlencode(sorted(query.items())) if query else ""
        signed = self.signer.sign(method, path, qs, body, headers, created=self._now_s())
        url = path + ("?" + qs if qs else "")
        try:
            return self._http.request(
                method, url, content=body or None, headers={**headers, **signed}
            )
        except httpx.TimeoutException as exc:
            raise PlatformError(
                f"platform timed out ({type(exc).__name__})", retryable=True, error="network"
            ) from exc
        except httpx.TransportError as exc:
            raise PlatformError(
                f"platform unreachable ({type(exc).__name__})", retryable=True, error="network"
            ) from exc

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        hdrs = dict(headers or {})
        if body:
            hdrs["Content-Type"] = "application/json"
        resp = self._send(method, path, query, body, hdrs)
        if resp.status_code == 401 and self._fix_clock(resp):
            resp = self._send(method, path, query, body, hdrs)
        if resp.status_code in (200, 304):
            return resp
        raise self._failure(resp)

    def _fix_clock(self, resp: httpx.Response) -> bool:
        """On ``clock_skew`` adopt the platform's clock from its Date header (once)."""
        try:
            err = resp.json()
        except ValueError:
            return False
        if not isinstance(err, dict) or err.get("error") != "clock_skew":
            return False
        date = resp.headers.get("Date")
        if not date:
            return False
        try:
            server = int(parsedate_to_datetime(date).timestamp())
        except (TypeError, ValueError):
            return False
        offset = server - int(self.clock.now().timestamp())
        if offset == self.clock_offset_s:
            return False
        log.warning("platform_clock_offset", offset_s=offset)
        self.clock_offset_s = offset
        return True

    def _failure(self, resp: httpx.Response) -> PlatformError:
        status = resp.status_code
        retryable = is_retryable_status(status)
        code, message = "", ""
        try:
            err = resp.json()
        except ValueError:
            err = None
        if isinstance(err, dict) and schemas.is_valid("Error", err):
            code, message = str(err["error"]), str(err["message"])
        text = f"platform answered HTTP {status}" + (f" {code}: {message}" if code else "")
        return PlatformError(
            text,
            status=status,
            retryable=retryable,
            error=code or f"http_{status}",
            retry_after=resp.headers.get("Retry-After"),
        )

    @staticmethod
    def _json(resp: httpx.Response, schema: str, what: str) -> dict[str, Any]:
        ctype = resp.headers.get("Content-Type", "")
        if "json" not in ctype:
            raise ReplyInvalid(
                f"{what}: reply is not JSON (Content-Type {ctype!r})", resp.status_code
            )
        try:
            doc = resp.json()
        except ValueError as exc:
            raise ReplyInvalid(f"{what}: reply is not valid JSON", resp.status_code) from exc
        problems = [] if schemas.is_valid(schema, doc) else schemas.problems(schema, doc)
        if problems:
            raise ReplyInvalid(
                f"{what}: reply violates the data spec ({schema}): {'; '.join(problems[:3])}",
                resp.status_code,
            )
        if not isinstance(doc, dict):  # pragma: no cover - the schemas are objects
            raise ReplyInvalid(f"{what}: reply is not an object", resp.status_code)
        return doc

    # -- endpoints ---------------------------------------------------------------------
    def upload_batch(
        self,
        device_id: str,
        centre_id: str,
        stream: str,
        records: Sequence[dict[str, Any]],
        *,
        key_generation: str = "",
    ) -> dict[str, Any]:
        """POST one batch; returns the validated BatchResponse whose results match
        the records sent one for one (else :class:`ReplyInvalid`).

        The Idempotency-Key is :func:`body_idempotency_key` of the body and
        ``key_generation``: the same records sent again in the same generation
        get the platform's first answer replayed."""
        doc = {
            "device_id": device_id,
            "centre_id": centre_id,
            "stream": stream,
            "records": list(records),
        }
        if self.validate_requests:
            schemas.validate("BatchRequest", doc, "batch request")
            for rec in records:
                schemas.validate("RecordEnvelope", rec, f"record seq {rec.get('seq')}")
        body = encode_body(doc)
        resp = self._request(
            "POST",
            "/v1/batches",
            body=body,
            headers={"Idempotency-Key": body_idempotency_key(body, key_generation)},
        )
        reply = self._json(resp, "BatchResponse", "batch upload")
        results = reply["results"]
        if reply["device_id"] != device_id or reply["stream"] != stream:
            raise ReplyInvalid("batch upload: reply is for another device or stream")
        if len(results) != len(records):
            raise ReplyInvalid(
                f"batch upload: {len(results)} results for {len(records)} records sent"
            )
        for rec, res in zip(records, results, strict=True):
            if res["seq"] != rec["seq"] or res["record_id"] != rec["record_id"]:
                raise ReplyInvalid(
                    f"batch upload: result for seq {res['seq']} does not match record seq {rec['seq']}"
                )
        return reply

    def stream_head(self, device_id: str, stream: str) -> dict[str, Any]:
        resp = self._request("GET", f"/v1/devices/{device_id}/streams/{stream}")
        doc = self._json(resp, "StreamHead", "stream head")
        if doc["device_id"] != device_id or doc["stream"] != stream:
            raise ReplyInvalid("stream head: reply is for another device or stream")
        return doc

    def get_dataset(
        self, centre_id: str, kind: str, etag: str | None = None, cursor: str | None = None
    ) -> DatasetReply | None:
        """GET a dataset; None when unchanged (304). The document is validated
        (DatasetDocument or, for consent_changes, ConsentChangesPage)."""
        headers = {"If-None-Match": f'"{etag}"'} if etag else {}
        query = {"cursor": cursor} if cursor else None
        resp = self._request(
            "GET", f"/v1/centres/{centre_id}/datasets/{kind}", query=query, headers=headers
        )
        if resp.status_code == 304:
            return None
        schema = "ConsentChangesPage" if kind == "consent_changes" else "DatasetDocument"
        doc = self._json(resp, schema, f"dataset {kind}")
        if doc["kind"] != kind or doc["centre_id"] != centre_id:
            raise ReplyInvalid(f"dataset {kind}: reply is for another kind or centre")
        etag_header = resp.headers.get("ETag", "").strip().strip('"')
        return DatasetReply(
            etag=etag_header or str(doc.get("etag") or doc.get("next_cursor")), doc=doc
        )
