"""City-wide meals (全城通吃): the terminal's side of the platform's visit endpoints.

A senior of another centre identifies with a card, an ID card or a staff lookup
(name and phone last 4). The terminal never sends any of those in clear: it
sends a key made with the district pepper (:func:`card_hmac`,
:func:`sync.auth.id_number_hmac`, :func:`lookup_hmac`) and asks

* :meth:`VisitsClient.eligibility` (``POST /v1/visits/eligibility``): who is
  this (a pseudonymous ``person_id``, home centre, categories), and was their
  one subsidised meal of this slot already had anywhere in the district? The
  terminal waits at most ``timeout`` seconds (2 s), then falls back to
* :func:`roster_lookup`: the pulled ``district_roster`` dataset in ``sync.db``
  (keys only, no names), and then the meal is decided offline and marked for
  review;
* :meth:`VisitsClient.claim` (``POST /v1/visits/claims``): claim the slot for
  the meal about to be committed. Exactly one claim per senior, day and slot
  is granted across the district; another meal gets :class:`SlotClaimed`.
* :meth:`VisitsClient.claim_and_debit` (the same endpoint, spec 1.3): the claim
  and a debit of the senior's district wallet (policy ``home_wallet``) in one
  transaction at the platform; :class:`InsufficientBalance` when the wallet
  holds less (nothing claimed, nothing debited).

The district pepper is the district's, the same 32 bytes on every terminal and
on the platform (:func:`district_pepper`); :func:`pepper_matches` checks the
terminal's pepper against the ``pepper_id`` the district roster was made with.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from sync import schemas
from sync.auth import card_hmac, id_number_hmac, lookup_hmac, pepper_id
from sync.client import PlatformClient, PlatformError, ReplyInvalid, encode_body
from sync.store.district import DistrictRosterIndex, RosterHit
from terminal.core.errors import TerminalError
from terminal.core.log import get_logger

if TYPE_CHECKING:
    from terminal.config.settings import Settings

log = get_logger(__name__)

__all__ = [
    "KEY_TYPES",
    "InsufficientBalance",
    "PlatformUnavailable",
    "SlotClaimed",
    "VisitorAnswer",
    "VisitsClient",
    "WalletClaim",
    "card_hmac",
    "district_pepper",
    "district_pepper_path",
    "id_number_hmac",
    "load_district_pepper",
    "lookup_hmac",
    "pepper_id",
    "pepper_matches",
    "roster_lookup",
    "roster_payment_source",
]

KEY_TYPES = ("card", "id_number", "lookup")


class PlatformUnavailable(TerminalError):
    """The platform did not answer usefully in time (timeout, connection refused,
    5xx, a malformed reply): decide offline from the district roster."""

    code = "platform_unavailable"


class SlotClaimed(TerminalError):
    """``409 slot_claimed``: another meal holds this senior's subsidised meal of the slot."""

    code = "slot_claimed"


class InsufficientBalance(TerminalError):
    """``409 insufficient_balance``: the district wallet holds less than the debit."""

    code = "insufficient_balance"


@dataclass(frozen=True, slots=True)
class WalletClaim:
    """A granted claim with its district wallet debit (spec 1.3)."""

    claim_id: str
    debit_fen: int
    balance_before_fen: int
    balance_after_fen: int


@dataclass(frozen=True, slots=True)
class VisitorAnswer:
    """What the platform (online) or the district roster (offline) says about a visitor."""

    person_id: str
    home_centre_id: str
    categories: tuple[str, ...]
    subsidised_in_district: bool | None  # None when from the offline roster
    payment_source: str  # home_wallet | cash | visited_wallet (district policy)
    source: str  # "online" | "roster"
    active: bool = True
    home_centre_name: str = ""  # the centre's name when the district publishes one
    wallet_balance_fen: int | None = None  # the district wallet (online, when asked)


# -- the district pepper on the terminal --------------------------------------------------


def district_pepper_path(settings: Settings) -> Path:
    """Where provisioning puts the district pepper: ``<data_dir>/keys/district-pepper``."""
    return settings.data_dir / "keys" / "district-pepper"


def load_district_pepper(path: Path) -> bytes:
    """Read a district pepper file (32 raw bytes, mode 0600). Never creates one:
    a pepper made on the device would match no other terminal's keys."""
    from terminal.db.crypto import DataKeyError, load_or_create_key

    try:
        return load_or_create_key(path, create=False)
    except DataKeyError as exc:
        raise TerminalError(
            f"district pepper: {exc}; install the district's pepper file "
            "(the one the platform was given with --district-pepper)",
            code="district_pepper_missing",
        ) from exc


def district_pepper(settings: Settings) -> bytes:
    """The district pepper for this terminal (see :func:`load_district_pepper`).
    Refused (``district_pepper_mismatch``) when a district roster was pulled
    and this pepper did not make its keys: a pepper made on the device (an
    older release made one for ID-card payments) would find no visitor."""
    pepper = load_district_pepper(district_pepper_path(settings))
    url = settings.sync_db_url
    if (
        url.startswith("sqlite:///")
        and pepper_matches(Path(url[len("sqlite:///") :]), pepper) is False
    ):
        raise TerminalError(
            "the district pepper installed here is not the one the district roster was "
            "made with; install the district's pepper file",
            code="district_pepper_mismatch",
        )
    return pepper


def pepper_matches(sync_db_path: Path, pepper: bytes) -> bool | None:
    """Does ``pepper`` make the keys of the pulled district roster? None when no
    district roster has been pulled yet."""
    held = DistrictRosterIndex.open_readonly(sync_db_path)
    if held is None:
        return None
    try:
        meta = held.meta()
    finally:
        held.close()
    return None if meta is None else meta.pepper_id == pepper_id(pepper)


def _claim_request(
    person_id: str, day: date, slot: str, record_id: str, centre_id: str, **extra: Any
) -> dict[str, Any]:
    """A ``VisitClaimRequest`` (``extra``: the 1.3 wallet fields)."""
    doc = {"person_id": person_id, "day": day.isoformat(), "slot": slot}
    return {**doc, "record_id": record_id, "centre_id": centre_id, **extra}


# -- online ----------------------------------------------------------------------------


class VisitsClient:
    """The visit endpoints over the terminal's signed platform client. Every
    request waits at most ``timeout`` seconds in all."""

    def __init__(self, client: PlatformClient, *, timeout: float = 2.0) -> None:
        self.client = client
        self.timeout = timeout

    @classmethod
    def from_settings(cls, settings: Settings, *, timeout: float = 2.0) -> VisitsClient:
        """Built as the sync agent builds its client (device key, platform URL and
        TLS from the settings)."""
        from sync.agent import build_client
        from terminal.core.clock import SystemClock

        return cls(build_client(settings, SystemClock()), timeout=timeout)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> VisitsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _post(self, path: str, doc: dict[str, Any]) -> httpx.Response:
        body = encode_body(doc)
        headers = {"Content-Type": "application/json"}
        timeout = httpx.Timeout(self.timeout)
        c = self.client
        for attempt in range(2):
            signed = c.signer.sign("POST", path, "", body, headers, created=c._now_s())
            try:
                resp = c._http.request(
                    "POST", path, content=body, headers={**headers, **signed}, timeout=timeout
                )
            except httpx.TransportError as exc:  # timeouts included
                raise PlatformUnavailable(
                    f"platform did not answer ({type(exc).__name__})"
                ) from exc
            if resp.status_code == 401 and attempt == 0 and c._fix_clock(resp):
                continue
            return resp
        raise AssertionError("unreachable")  # pragma: no cover

    def _reply(self, resp: httpx.Response, schema: str, what: str) -> dict[str, Any]:
        try:
            return PlatformClient._json(resp, schema, what)
        except ReplyInvalid as exc:
            raise PlatformUnavailable(str(exc)) from exc

    def _failure(self, resp: httpx.Response, what: str) -> TerminalError:
        err = self.client._failure(resp)
        if resp.status_code >= 500 or err.retryable:
            return PlatformUnavailable(f"{what}: {err}")
        return PlatformError(f"{what}: {err}", status=err.status, retryable=False, error=err.error)

    def eligibility(
        self,
        *,
        centre_id: str,
        key_type: str,
        key: str,
        day: date,
        slot: str,
        wallet: bool = False,
    ) -> VisitorAnswer | None:
        """The platform's answer about a visitor; None for a key the district does
        not know (404). ``wallet`` asks for the district wallet's balance (spec
        1.3). Raises :class:`PlatformUnavailable` when it cannot answer,
        :class:`sync.client.PlatformError` for a final refusal (e.g. 403)."""
        doc: dict[str, Any] = {
            "centre_id": centre_id,
            "key_type": key_type,
            "key": key,
            "day": day.isoformat(),
            "slot": slot,
        }
        if wallet:
            doc["wallet"] = True
        schemas.validate("VisitEligibilityRequest", doc, "visit eligibility request")
        resp = self._post("/v1/visits/eligibility", doc)
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise self._failure(resp, "visit eligibility")
        ans = self._reply(resp, "VisitorEligibility", "visit eligibility")
        return VisitorAnswer(
            person_id=ans["person_id"],
            home_centre_id=ans["home_centre_id"],
            categories=tuple(ans["categories"]),
            subsidised_in_district=bool(ans["subsidised_in_district"]),
            payment_source=ans["payment_source"],
            source="online",
            active=bool(ans["active"]),
            home_centre_name=str(ans.get("home_centre_name") or ""),
            wallet_balance_fen=ans.get("wallet_balance_fen"),
        )

    def claim(self, *, person_id: str, day: date, slot: str, record_id: str, centre_id: str) -> str:
        """Claim the slot for meal ``record_id``; returns the ``claim_id``. The same
        ``record_id`` again returns the same claim. Raises :class:`SlotClaimed`
        (another meal holds it) or :class:`PlatformUnavailable`."""
        doc = _claim_request(person_id, day, slot, record_id, centre_id)
        return str(self._claim(doc)["claim_id"])

    def claim_and_debit(
        self,
        *,
        person_id: str,
        day: date,
        slot: str,
        record_id: str,
        centre_id: str,
        debit_fen: int,
        subsidised: bool = True,
    ) -> WalletClaim:
        """Claim the slot (unless not ``subsidised``) and debit ``debit_fen`` from
        the senior's district wallet in one transaction at the platform. The same
        ``record_id`` again returns the same claim and debit. Raises
        :class:`InsufficientBalance`, :class:`SlotClaimed` or
        :class:`PlatformUnavailable`."""
        claim = (person_id, day, slot, record_id, centre_id)
        got = self._claim(_claim_request(*claim, wallet_debit_fen=debit_fen, subsidised=subsidised))
        w = got.get("wallet")
        if not isinstance(w, dict) or w["debit_fen"] != debit_fen:
            raise PlatformUnavailable("visit claim: the reply carries no debit of this amount")
        return WalletClaim(
            str(got["claim_id"]), w["debit_fen"], w["balance_before_fen"], w["balance_after_fen"]
        )

    def _claim(self, doc: dict[str, Any]) -> dict[str, Any]:
        schemas.validate("VisitClaimRequest", doc, "visit claim request")
        resp = self._post("/v1/visits/claims", doc)
        if resp.status_code == 409:
            err = self.client._failure(resp)
            if err.error == "slot_claimed":
                raise SlotClaimed("this senior's subsidised meal of the slot is taken")
            if err.error == "insufficient_balance":
                raise InsufficientBalance("the district wallet holds less than the amount due")
            raise self._failure(resp, "visit claim")
        if resp.status_code != 200:
            raise self._failure(resp, "visit claim")
        got = self._reply(resp, "VisitClaim", "visit claim")
        if got["record_id"] != doc["record_id"] or got["person_id"] != doc["person_id"]:
            raise PlatformUnavailable("visit claim: the reply is for another meal")
        return got

    def _get(self, path: str, query: dict[str, str], schema: str) -> dict[str, Any]:
        """A signed GET of a visit report, validated against ``schema``."""
        try:
            resp = self.client._request("GET", path, query=query)
        except PlatformError as exc:
            if exc.retryable:
                raise PlatformUnavailable(str(exc)) from exc
            raise
        return self._reply(resp, schema, path)

    def reviews(self, period_from: date, period_to: date) -> list[dict[str, Any]]:
        """``GET /v1/visits/reviews``: this centre's duplicate-subsidy reviews
        (the spec's ``VisitReview`` objects) of meals dated in the period."""
        q = {"from": period_from.isoformat(), "to": period_to.isoformat()}
        return list(self._get("/v1/visits/reviews", q, "VisitReviewList")["items"])

    def settlement(
        self, period_from: date, period_to: date, *, wallet: bool = True
    ) -> dict[str, Any]:
        """``GET /v1/settlements``: the ``SettlementReport`` of this centre's lines
        (with the district wallet's money unless ``wallet`` is False)."""
        q = {"from": period_from.isoformat(), "to": period_to.isoformat()}
        if wallet:
            q["wallet"] = "true"
        return self._get("/v1/settlements", q, "SettlementReport")


# -- offline -----------------------------------------------------------------------------


def _answer(hit: RosterHit) -> VisitorAnswer:
    return VisitorAnswer(
        person_id=hit.person_id,
        home_centre_id=hit.home_centre_id,
        categories=hit.categories,
        subsidised_in_district=None,
        payment_source=hit.payment_source,
        source="roster",
        active=hit.active,
        home_centre_name=hit.home_centre_name,
    )


def roster_payment_source(sync_db_path: Path) -> str | None:
    """The district's visit payment policy as the last pulled ``district_roster``
    says (``home_wallet`` | ``cash`` | ``visited_wallet``); None when no roster
    was pulled. Reads only."""
    index = DistrictRosterIndex.open_readonly(sync_db_path)
    if index is None:
        return None
    try:
        meta = index.meta()
    finally:
        index.close()
    return None if meta is None else meta.payment_source


def roster_lookup(sync_db_path: Path, *, key_type: str, key: str) -> VisitorAnswer | None:
    """The visitor as the pulled ``district_roster`` knows them; None when no
    roster was pulled or the key is not in it. Reads only (never writes sync.db)."""
    if key_type not in KEY_TYPES:
        raise TerminalError(f"unknown visitor key type {key_type!r}", code="bad_key_type")
    index = DistrictRosterIndex.open_readonly(sync_db_path)
    if index is None:
        return None
    try:
        hit = index.lookup(key_type, key)
    finally:
        index.close()
    return None if hit is None else _answer(hit)
