"""The reference platform's request handling, independent of any transport.

A request is its method, path, query, headers and (once asked for) its body;
the answer is a :class:`Reply` (status, headers, JSON body, whether to close the
connection). The ASGI application (:mod:`sync.platform.asgi`) is the one
transport: it turns ASGI messages into these calls and the replies back into
ASGI messages. Everything the spec says about an answer is decided here, in two
blocking steps a transport runs off its event loop:

1. :meth:`PlatformCore.head`: everything that needs no body: the route (404,
   405 with ``Allow``), ``/healthz``, the body's length (411 for chunked, 400
   for an unreadable length, 413 above :data:`MAX_BODY`) and the signature
   headers (readable, within the time window, a registered device). A request
   that fails here is answered without a byte of its body being read. A request
   that passes gets a :class:`Pending` ticket saying how many bytes to read.
2. :meth:`PlatformCore.finish`: the signature over the body, revocation, the
   nonce, then the endpoint itself.

The store does the database work (:mod:`sync.platform.store`).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from datetime import date as Day
from email.utils import format_datetime
from typing import Any, TypeVar
from urllib.parse import parse_qs

from sync import schemas
from sync.auth import (
    DEFAULT_WINDOW_S,
    AuthError,
    parse_public_key,
    parse_signature_headers,
    verify_request,
)
from sync.platform.store import (
    Device,
    InsufficientBalance,
    PlatformStore,
    PlatformStoreError,
    PlatformUnavailable,
    SlotTaken,
    StoredAnswer,
    VisitMealFacts,
)
from sync.retry import is_retryable_status
from terminal.core.clock import CHINA_TZ
from terminal.core.log import get_logger

log = get_logger(__name__)

MAX_BODY = 32 * 1024 * 1024  # the spec's request body limit (413 above it)
MAX_JSON_DEPTH = 32  # nesting of arrays/objects in a request body (400 deeper)
MAX_CURSOR = 128  # the spec's maxLength of a consent-changes cursor
MAX_IF_NONE_MATCH = 200  # the spec's maxLength of the If-None-Match header
READ_TIMEOUT_S = 15.0  # a client silent this long while sending is disconnected
MAX_HANDLERS = 64  # requests in progress at once per worker; beyond them 503 + Retry-After
SERVER_NAME = "care-platform-reference/2"
BAD_SIGNATURE = "signature does not verify"
T = TypeVar("T", bound="Reply | Pending")


class BadRequest(Exception):
    """A request body the platform refuses before processing (400 malformed_request)."""


_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"')
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def json_too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True if ``body`` nests arrays/objects deeper than ``limit``: a linear scan
    (strings removed, then only brackets counted), no recursion, before parsing."""
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKET)
    if brackets.count(b"[") + brackets.count(b"{") <= limit:
        return False
    depth = 0
    for b in brackets:
        if b in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def parse_json_body(body: bytes) -> Any:
    """Parse a request body, refusing with :class:`BadRequest` what the spec does
    not allow: not UTF-8 JSON, nested deeper than :data:`MAX_JSON_DEPTH`, or a
    string with a lone surrogate escape (``"\\ud800"``, not Unicode text)."""
    if json_too_deep(body):
        raise BadRequest(f"the body nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest("the body is not JSON") from None
    try:
        json.dumps(doc, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(
            "the body has a string that is not Unicode text (lone surrogate)"
        ) from None
    return doc


# Endpoints and their methods (405 with Allow for another method on a known path).
_DEVICE_STREAM = re.compile(r"^/v1/devices/[^/]+/streams/[^/]+$")
_CENTRE_DATASET = re.compile(r"^/v1/centres/[^/]+/datasets/[^/]+$")


_VISIT_POSTS = ("/v1/visits/eligibility", "/v1/visits/claims")
_VISIT_GETS = ("/v1/visits/reviews", "/v1/settlements")
MAX_ACCEPT = 200  # the spec's maxLength of the Accept header of GET /v1/settlements


def allowed_methods(path: str) -> str | None:
    """The methods a path answers, or None for a path the platform does not have."""
    if path == "/v1/batches" or path in _VISIT_POSTS:
        return "POST"
    if path in _VISIT_GETS:
        return "GET"
    if path == "/healthz" or _DEVICE_STREAM.match(path) or _CENTRE_DATASET.match(path):
        return "GET"
    return None


_ETAG = re.compile(r'\s*(?:W/)?"([\x21\x23-\x7e\x80-\xff]*)"\s*(?:,|$)')


def if_none_match(header: str | None, etag: str) -> bool:
    """RFC 9110 section 13.1.2: does ``If-None-Match`` match the strong ``etag``
    (its opaque text, unquoted)? ``*`` matches; a list matches if one tag does;
    comparison is weak (``W/"x"`` matches ``"x"``). An unreadable header does not
    match (the full answer is sent)."""
    if header is None:
        return False
    text = header.strip()
    if text == "*":
        return True
    pos = 0
    while pos < len(text):
        m = _ETAG.match(text, pos)
        if m is None:
            return False
        if m.group(1) == etag:
            return True
        pos = m.end()
    return False


def consent_page_etag(page: dict[str, Any]) -> str:
    """A consent-changes page's ETag: from its content, so the same page is the
    same tag (also across restarts) and any change to it (new changes, has_more)
    a new one."""
    text = json.dumps(page, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return f"consent-{page['next_cursor']}-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:16]}"


def error_doc(
    status: int, code: str, message: str, retry_after: str | None = None
) -> dict[str, Any]:
    """The spec's ``Error`` body."""
    doc: dict[str, Any] = {
        "error": code,
        "message": message[:500],
        "retryable": is_retryable_status(status),
    }
    if retry_after is not None:
        doc["retry_after_s"] = float(retry_after) if retry_after.isdigit() else None
    schemas.validate("Error", doc, "platform error reply")
    return doc


def http_date(now: float) -> str:
    return format_datetime(datetime.fromtimestamp(now, UTC), usegmt=True)


def _now() -> datetime:
    return datetime.now(CHINA_TZ)


@dataclass(frozen=True, slots=True)
class Request:
    """What the core needs of a request: ``path`` is the raw (undecoded) path the
    signature covers, ``query`` the raw query string, ``headers`` lower-cased
    names (the last value of a repeated header)."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]

    def body_pending(self) -> bool:
        """Does a body follow the headers (not read yet)?"""
        length = self.headers.get("content-length", "0").strip()
        return "transfer-encoding" in self.headers or length not in ("", "0")


@dataclass(slots=True)
class Reply:
    """An answer: ``body`` is the JSON document's bytes (empty for 304)."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    close: bool = False

    @classmethod
    def json(
        cls, status: int, doc: Any, headers: dict[str, str] | None = None, *, close: bool = False
    ) -> Reply:
        body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return cls(status, body, dict(headers or {}), close)

    @classmethod
    def error(
        cls,
        status: int,
        code: str,
        message: str,
        *,
        retry_after: str | None = None,
        headers: dict[str, str] | None = None,
        close: bool = False,
    ) -> Reply:
        hdrs = dict(headers or {})
        if retry_after is not None:
            hdrs["Retry-After"] = retry_after
        return cls.json(status, error_doc(status, code, message, retry_after), hdrs, close=close)


@dataclass(frozen=True, slots=True)
class SettlementRules:
    """The settlement between centres, injected by the composition root (the rules
    are the payment package's, which the platform does not import): ``settle``
    turns visiting meals into the spec's ``SettlementLine`` objects for a period
    (with the district wallet's ``wallet_meals`` and ``wallet_fen``); ``to_csv``
    writes such lines as the report's CSV (the wallet columns when asked)."""

    settle: Callable[[Sequence[VisitMealFacts], Day, Day], list[dict[str, Any]]]
    to_csv: Callable[[Sequence[dict[str, Any]], bool], str]


@dataclass(frozen=True, slots=True)
class Pending:
    """A request whose headers passed: read ``length`` bytes, then :meth:`PlatformCore.finish`."""

    device: Device
    length: int


def busy_reply() -> Reply:
    """503 with Retry-After for a request beyond the handlers (connection closed)."""
    return Reply.error(
        503, "unavailable", "the platform is busy; retry later", retry_after="1", close=True
    )


def _period(query: str) -> tuple[Day, Day] | Reply:
    """``from`` and ``to`` (inclusive dates) of a period query. A period that
    ends before it starts is empty (an answer with nothing in it)."""
    q = parse_qs(query)
    try:
        start = Day.fromisoformat(q["from"][0])
        end = Day.fromisoformat(q["to"][0])
    except (KeyError, IndexError, ValueError):
        return Reply.error(400, "malformed_request", "from and to must be dates (YYYY-MM-DD)")
    return start, end


class PlatformCore:
    """The platform's answers over a :class:`PlatformStore`; thread-safe (the store
    is), blocking (run it off an event loop)."""

    def __init__(
        self,
        store: PlatformStore,
        *,
        window_s: int = DEFAULT_WINDOW_S,
        settlement: SettlementRules | None = None,
    ) -> None:
        self.store = store
        self.window_s = window_s
        self.settlement = settlement
        self.clock_offset_s = 0  # tests move the platform clock

    def now_s(self) -> int:
        return int(time.time()) + self.clock_offset_s

    def date(self) -> str:
        """The ``Date`` header, on the platform clock (terminals adopt it)."""
        return http_date(time.time() + self.clock_offset_s)

    # -- step 1: the headers ----------------------------------------------------------
    def head(self, req: Request) -> Reply | Pending:
        """Route and check everything that needs no body. A refusal of a request
        whose body is still on its way closes the connection after the answer."""
        pending = req.body_pending()
        allow = allowed_methods(req.path)
        if allow is None:
            return Reply.error(404, "not_found", "no such endpoint", close=pending)
        if req.method != allow:
            return Reply.error(
                405,
                "method_not_allowed",
                f"{req.path} answers {allow} only",
                headers={"Allow": allow},
                close=pending,
            )
        if req.path == "/healthz":
            return Reply.json(200, {"status": "ok"}, close=pending)
        return self._guard(req.path, lambda: self._head(req, pending), close=pending)

    def _head(self, req: Request, pending: bool) -> Reply | Pending:
        if "transfer-encoding" in req.headers:
            return Reply.error(
                411, "length_required", "send the body with a Content-Length", close=True
            )
        raw = req.headers.get("content-length")
        length = 0
        if raw is not None:
            if not re.fullmatch(r"[0-9]{1,20}", raw.strip()):
                return Reply.error(
                    400, "malformed_request", "Content-Length is not a number", close=True
                )
            length = int(raw.strip())
        if length > MAX_BODY:
            return Reply.error(
                413,
                "payload_too_large",
                f"the body is {length} bytes; the limit is {MAX_BODY} bytes",
                close=True,
            )
        device = self._pre_authenticate(req, pending)
        if isinstance(device, Reply):
            return device
        return Pending(device, length)

    def _pre_authenticate(self, req: Request, pending: bool) -> Device | Reply:
        """What needs no body: readable signature headers, a timestamp within the
        window and a registered device. An unknown device gets exactly the answer of
        a bad signature, so the answer does not tell which device ids exist."""
        try:
            signed = parse_signature_headers(dict(req.headers))
        except AuthError as exc:
            return Reply.error(401, "bad_signature", str(exc), close=pending)
        now = self.now_s()
        if abs(now - signed.created) > self.window_s:
            return Reply.error(
                401,
                "clock_skew",
                f"request time is {now - signed.created:+d} s from the platform's clock "
                f"(allowed {self.window_s} s)",
                close=pending,
            )
        device = self.store.device(signed.keyid)
        if device is None:
            return Reply.error(401, "bad_signature", BAD_SIGNATURE, close=pending)
        return device

    # -- step 2: the body -------------------------------------------------------------
    def finish(self, req: Request, pending: Pending, body: bytes) -> Reply:
        """Verify the signature over the body, then answer the endpoint."""
        return self._guard(req.path, lambda: self._finish(req, pending.device, body), close=False)

    def _finish(self, req: Request, device: Device, body: bytes) -> Reply:
        refused = self._authenticate(req, device, body)
        if refused is not None:
            return refused
        if req.path in _VISIT_POSTS:
            return self._visit_post(req, device, body)
        if req.path in _VISIT_GETS:
            return self._visit_get(req, device)
        if req.method == "POST":
            return self._post(req, device, body)
        return self._get(req, device)

    # -- city-wide meals (spec 1.2) ---------------------------------------------------
    def _visit_post(self, req: Request, device: Device, body: bytes) -> Reply:
        """``POST /v1/visits/eligibility`` and ``/v1/visits/claims``: read-only or
        idempotent by ``record_id``, so no Idempotency-Key (one sent is ignored)."""
        eligibility = req.path == "/v1/visits/eligibility"
        schema = "VisitEligibilityRequest" if eligibility else "VisitClaimRequest"
        try:
            doc = parse_json_body(body)
        except BadRequest as exc:
            return Reply.error(400, "malformed_request", str(exc))
        found = schemas.problems(schema, doc) if not schemas.is_valid(schema, doc) else []
        if not found:
            try:
                Day.fromisoformat(doc["day"])
            except ValueError:
                found = ["$.day: is not a calendar date (format date)"]
        if found:
            return Reply.error(422, "schema_invalid", "; ".join(found[:3]))
        if doc["centre_id"] != device.centre_id:
            return Reply.error(403, "forbidden", "a device may only ask for its own centre")
        if eligibility:
            answer = self.store.visitor(
                doc["key_type"],
                doc["key"],
                doc["day"],
                doc["slot"],
                wallet=bool(doc.get("wallet")),
            )
            if answer is None:
                return Reply.error(404, "not_found", "the district knows no senior by this key")
            schemas.validate("VisitorEligibility", answer, "platform reply")
            return Reply.json(200, answer)
        try:
            claim = self.store.claim_slot(
                device,
                doc["person_id"],
                doc["day"],
                doc["slot"],
                doc["record_id"],
                _now(),
                wallet_debit_fen=doc.get("wallet_debit_fen"),
                subsidised=bool(doc.get("subsidised", True)),
            )
        except SlotTaken as exc:
            return Reply.error(409, "slot_claimed", str(exc))
        except InsufficientBalance as exc:
            return Reply.error(409, "insufficient_balance", str(exc))
        except PlatformStoreError as exc:
            return Reply.error(404, "not_found", str(exc))
        schemas.validate("VisitClaim", claim, "platform reply")
        return Reply.json(200, claim)

    def _visit_get(self, req: Request, device: Device) -> Reply:
        """``GET /v1/visits/reviews`` and ``GET /v1/settlements`` for the device's centre."""
        period = _period(req.query)
        if isinstance(period, Reply):
            return period
        start, end = period
        if req.path == "/v1/visits/reviews":
            doc: dict[str, Any] = {
                "centre_id": device.centre_id,
                "period_from": start.isoformat(),
                "period_to": end.isoformat(),
                "items": self.store.visit_reviews(device.centre_id, start, end),
            }
            schemas.validate("VisitReviewList", doc, "platform reply")
            return Reply.json(200, doc)
        accept = req.headers.get("accept", "")
        if len(accept) > MAX_ACCEPT:
            return Reply.error(
                400, "malformed_request", f"Accept is longer than {MAX_ACCEPT} characters"
            )
        wallet = parse_qs(req.query, keep_blank_values=True).get("wallet", ["false"])[0]
        if wallet not in ("true", "false"):
            return Reply.error(400, "malformed_request", "wallet must be true or false")
        return self.settlement_reply(
            start, end, device.centre_id, csv="text/csv" in accept, wallet=wallet == "true"
        )

    def settlement_report(
        self, start: Day, end: Day, centre_id: str | None, *, wallet: bool = True
    ) -> dict[str, Any]:
        """The spec's ``SettlementReport``: the lines where ``centre_id`` is claimant
        or debtor (every line when None). Without ``wallet`` (a device of spec 1.2
        did not ask) the lines are the 1.2 ones: subsidy only."""
        if self.settlement is None:
            raise PlatformStoreError(
                "this platform has no settlement rules configured", code="not_found"
            )
        meals = self.store.visit_meals(start, end) if start <= end else []
        lines = [
            line
            for line in (self.settlement.settle(meals, start, end) if meals else [])
            if centre_id is None
            or centre_id in (line["claimant_centre_id"], line["debtor_centre_id"])
        ]
        if not wallet:
            lines = [
                {k: v for k, v in line.items() if k not in ("wallet_meals", "wallet_fen")}
                for line in lines
                if line["meals"] > 0
            ]
        doc = {
            "centre_id": centre_id,
            "period_from": start.isoformat(),
            "period_to": end.isoformat(),
            "lines": lines,
        }
        schemas.validate("SettlementReport", doc, "settlement report")
        return doc

    def settlement_reply(
        self, start: Day, end: Day, centre_id: str, *, csv: bool, wallet: bool = False
    ) -> Reply:
        try:
            doc = self.settlement_report(start, end, centre_id, wallet=wallet)
        except PlatformStoreError as exc:
            return Reply.error(404, "not_found", str(exc))
        if csv and self.settlement is not None:
            text = self.settlement.to_csv(doc["lines"], wallet)
            return Reply(200, text.encode("utf-8"), {"Content-Type": "text/csv; charset=utf-8"})
        return Reply.json(200, doc)

    def _authenticate(self, req: Request, device: Device, body: bytes) -> Reply | None:
        now = self.now_s()
        try:
            signed = verify_request(
                req.method,
                req.path,
                req.query,
                body,
                dict(req.headers),
                parse_public_key(device.public_key),
                now,
                self.window_s,
            )
        except AuthError as exc:
            return Reply.error(401, exc.code, str(exc))
        if device.status != "active":
            return Reply.error(403, "device_revoked", "this device has been revoked")
        if not self.store.remember_nonce(
            device.device_id, signed.nonce, signed.created, now, self.window_s
        ):
            return Reply.error(
                401, "replayed_request", "this request was already received (replayed nonce)"
            )
        return None

    def _guard(self, path: str, route: Callable[[], T], *, close: bool) -> T | Reply:
        """A database that cannot be reached (a PostgreSQL server restarting or
        across a lost network) is a retryable 503, an unforeseen failure a 500,
        both JSON answers, never a dropped connection with a traceback."""
        try:
            return route()
        except PlatformUnavailable as exc:
            log.warning("platform_db_unavailable", path=path)
            return Reply.error(503, "unavailable", str(exc), close=close)
        except Exception:
            log.exception("platform_request_failed", path=path)
            return Reply.error(
                500, "internal_error", "the platform failed on this request", close=True
            )

    def _post(self, req: Request, device: Device, body: bytes) -> Reply:
        """``POST /v1/batches``. Once the request is authenticated and carries a valid
        Idempotency-Key, every final answer (the processed batch, and a 400, 403, 409
        or 422 about the body) is stored under the device's key and replayed for the
        same key and body; the same key with another body is ``422
        idempotency_key_reused`` (not stored). Answers before that point (401, 403
        device_revoked, 411, 413, a bad key) and transient ones (408, 429, 5xx) are
        not stored: the same request is processed when it comes again."""
        key = req.headers.get("idempotency-key", "")
        if not key or len(key) > 255 or not all(0x21 <= ord(c) <= 0x7E for c in key):
            return Reply.error(
                400, "malformed_request", "a valid Idempotency-Key header is required"
            )
        body_sha = hashlib.sha256(body).hexdigest()
        store = self.store

        def final(status: int, code: str, message: str) -> StoredAnswer:
            doc = error_doc(status, code, message)
            return store.remember_answer(device.device_id, key, body_sha, status, doc, _now())

        try:
            answer = store.idempotent_answer(device.device_id, key, body_sha)
            if answer is None:
                answer = self._process(device, body, key, body_sha, final)
        except PlatformStoreError as exc:
            return Reply.error(422, exc.code, str(exc))
        schemas.validate(
            "BatchResponse" if answer.status == 200 else "Error", answer.body, "platform reply"
        )
        return Reply.json(
            answer.status,
            answer.body,
            {"Idempotent-Replayed": "true"} if answer.replayed else None,
        )

    def _process(
        self,
        device: Device,
        body: bytes,
        key: str,
        body_sha: str,
        final: Callable[[int, str, str], StoredAnswer],
    ) -> StoredAnswer:
        """Check the batch as a whole, then apply it (the answer is stored either way)."""
        try:
            doc = parse_json_body(body)
        except BadRequest as exc:
            return final(400, "malformed_request", str(exc))
        # the batch's own fields; each record is checked on its own (per record)
        problems = schemas.batch_shell_problems(doc)
        if problems:
            return final(422, "schema_invalid", "; ".join(problems[:3]))
        if doc["device_id"] != device.device_id:
            return final(403, "forbidden", "the batch is for another device")
        if doc["centre_id"] != device.centre_id:
            return final(409, "centre_mismatch", "the device is registered to another centre")
        return self.store.process_batch(
            device, doc["stream"], doc["records"], key, body_sha, _now()
        )

    def _conditional(self, req: Request, doc: Any, etag: str) -> Reply:
        """200 with the strong ``etag``, or 304 if ``If-None-Match`` matches (RFC 9110)."""
        if if_none_match(req.headers.get("if-none-match"), etag):
            return Reply(304, b"", {"ETag": f'"{etag}"'})
        return Reply.json(200, doc, {"ETag": f'"{etag}"'})

    def _get(self, req: Request, device: Device) -> Reply:
        segs = [p for p in req.path.split("/") if p]
        if segs[-1:] == ["district_roster"] and len(segs) == 5 and segs[2] == device.centre_id:
            return self._district_roster(req, device)
        return self._get_other(req, device)

    def _district_roster(self, req: Request, device: Device) -> Reply:
        """The district roster, served to every centre as its own document."""
        if len(req.headers.get("if-none-match") or "") > MAX_IF_NONE_MATCH:
            return Reply.error(
                400,
                "malformed_request",
                f"If-None-Match is longer than {MAX_IF_NONE_MATCH} characters",
            )
        ds = self.store.district_roster(device.centre_id)
        if ds is None:
            return Reply.error(404, "not_found", "no district_roster published yet")
        if if_none_match(req.headers.get("if-none-match"), str(ds["etag"])):
            return Reply(304, b"", {"ETag": f'"{ds["etag"]}"'})
        schemas.validate("DatasetDocument", ds, "platform reply")
        return Reply.json(200, ds, {"ETag": f'"{ds["etag"]}"'})

    def _get_other(self, req: Request, device: Device) -> Reply:
        segs = [p for p in req.path.split("/") if p]
        if len(segs) == 5 and segs[:2] == ["v1", "devices"] and segs[3] == "streams":
            if segs[2] != device.device_id or segs[4] not in schemas.STREAMS:
                return Reply.error(403, "forbidden", "a device may only read its own streams")
            doc = self.store.stream_head(device.device_id, segs[4])
            schemas.validate("StreamHead", doc, "platform reply")
            return Reply.json(200, doc)
        if len(segs) == 5 and segs[:2] == ["v1", "centres"] and segs[3] == "datasets":
            centre, kind = segs[2], segs[4]
            if centre != device.centre_id:
                return Reply.error(403, "forbidden", "a device may only read its own centre's data")
            if kind not in schemas.DATASET_KINDS:
                return Reply.error(404, "not_found", "no such dataset kind")
            # The spec's limits on the request, for every kind (a cursor is used by
            # consent_changes only, but one over the limit is malformed anywhere).
            cursor = parse_qs(req.query).get("cursor", [None])[0]
            if cursor is not None and len(cursor) > MAX_CURSOR:
                return Reply.error(
                    400, "malformed_request", f"the cursor is longer than {MAX_CURSOR} characters"
                )
            if len(req.headers.get("if-none-match") or "") > MAX_IF_NONE_MATCH:
                return Reply.error(
                    400,
                    "malformed_request",
                    f"If-None-Match is longer than {MAX_IF_NONE_MATCH} characters",
                )
            if kind == "consent_changes":
                page = self.store.consent_page(centre, cursor)
                schemas.validate("ConsentChangesPage", page, "platform reply")
                return self._conditional(req, page, consent_page_etag(page))
            ds = self.store.dataset(centre, kind)
            if ds is None:
                return Reply.error(404, "not_found", f"no {kind} published for this centre yet")
            schemas.validate("DatasetDocument", ds, "platform reply")
            return self._conditional(req, ds, str(ds["etag"]))
        return Reply.error(404, "not_found", "no such endpoint")
