"""Pullers for reference data: roster, consent changes, subsidy policy, menu,
terminal config, centre info.

Each dataset is fetched conditionally (``If-None-Match`` with the ETag held, or
the consent-change cursor), validated against the spec (the client does that)
and checked for what a schema cannot say, and only then swapped in as a whole
document in one ``sync.db`` transaction. A document that fails any check is
refused whole; the previous version stays in force. A half-applied roster or
policy is never visible.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sync.client import PlatformClient, PlatformError
from sync.retry import BackoffPolicy, next_delay
from sync.schemas import DATASET_KINDS, SchemaViolation
from sync.store.district import DistrictRosterIndex
from sync.store.outbox import Dataset, SyncStore
from terminal.core.clock import Clock, rfc3339
from terminal.core.log import get_logger

log = get_logger(__name__)

MAX_CONSENT_PAGES = 100


@dataclass(frozen=True, slots=True)
class PullOutcome:
    kind: str
    status: str  # updated | unchanged | failed | waiting
    version: int | None = None
    error: str | None = None


def _unique(values: Iterable[str], what: str) -> None:
    seen: set[str] = set()
    for v in values:
        if v in seen:
            raise SchemaViolation(what, [f"duplicate {what} {v}"])
        seen.add(v)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def semantic_check(kind: str, data: dict[str, Any]) -> None:
    """Checks beyond the JSON Schema (raise SchemaViolation)."""
    if kind == "roster":
        _unique((r["resident_id"] for r in data["residents"]), "resident_id")
        _unique((c for r in data["residents"] for c in r["card_ids"]), "card id")
    elif kind == "district_roster":
        entries = data["entries"]
        _unique((e["person_id"] for e in entries), "person_id")
        for key_type, field in (("card", "card_hmacs"), ("lookup", "lookup_hmac")):
            _unique(
                (k for e in entries for k in _as_list(e[field])),
                f"{key_type} key",
            )
        _unique((e["id_number_hmac"] for e in entries if e["id_number_hmac"]), "id_number key")
    elif kind == "menu":
        _unique((i["item_id"] for i in data["items"]), "menu item_id")
    elif (
        kind == "subsidy_policy"
        and data.get("effective_until")
        and data["effective_until"] < data["effective_from"]
    ):
        raise SchemaViolation("subsidy_policy", ["effective_until is before effective_from"])


class Puller:
    def __init__(
        self,
        store: SyncStore,
        client: PlatformClient,
        centre_id: str,
        clock: Clock,
        *,
        policy: BackoffPolicy | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.client = client
        self.centre_id = centre_id
        self.clock = clock
        self.policy = policy or BackoffPolicy()
        self.rand = rand

    def pull_all(
        self, kinds: Iterable[str] = DATASET_KINDS, *, ignore_schedule: bool = False
    ) -> list[PullOutcome]:
        return [self.pull(k, ignore_schedule=ignore_schedule) for k in kinds]

    def pull(self, kind: str, *, ignore_schedule: bool = False) -> PullOutcome:
        if kind not in DATASET_KINDS:
            raise ValueError(f"unknown dataset kind {kind!r}")
        attempts, next_at = self.store.pull_state(kind)
        if not ignore_schedule and next_at > self.clock.now().timestamp():
            return PullOutcome(kind, "waiting")
        try:
            if kind == "consent_changes":
                return self._pull_consent()
            return self._pull_document(kind)
        except (PlatformError, SchemaViolation) as err:
            now = self.clock.now()
            retry_after = err.retry_after if isinstance(err, PlatformError) else None
            if isinstance(err, PlatformError) and err.status == 404:
                # Nothing published yet for this centre: not an error worth backing off hard.
                self.store.pull_checked(kind, now)
                return PullOutcome(kind, "unchanged", error="not published")
            delay = next_delay(self.policy, attempts, self.rand, now, retry_after)
            self.store.pull_failed(kind, str(err), now.timestamp() + delay)
            log.warning("pull_failed", kind=kind, error=str(err)[:200])
            return PullOutcome(kind, "failed", error=str(err))

    def _pull_document(self, kind: str) -> PullOutcome:
        held = self.store.dataset(kind)
        reply = self.client.get_dataset(self.centre_id, kind, etag=held.etag if held else None)
        now = self.clock.now()
        if reply is None:
            if held is not None and kind == "district_roster":
                self._index_district_roster(held.version, held.data, only_if_stale=True)
            self.store.pull_checked(kind, now)
            return PullOutcome(kind, "unchanged", held.version if held else None)
        doc = reply.doc
        semantic_check(kind, doc["data"])
        if held is not None and doc["version"] < held.version:
            raise SchemaViolation(
                f"dataset {kind}", [f"version {doc['version']} is older than held {held.version}"]
            )
        self.store.swap_dataset(
            Dataset(
                kind=kind,
                centre_id=doc["centre_id"],
                version=doc["version"],
                etag=reply.etag,
                cursor=None,
                issued_at=doc["issued_at"],
                fetched_at=rfc3339(now),
                data=doc["data"],
            )
        )
        if kind == "district_roster":
            self._index_district_roster(doc["version"], doc["data"])
        log.info("dataset_updated", kind=kind, version=doc["version"])
        return PullOutcome(kind, "updated", doc["version"])

    def _index_district_roster(
        self, version: int, data: dict[str, Any], *, only_if_stale: bool = False
    ) -> None:
        """The kiosk looks visitors up by key in an index beside the dataset; it is
        rewritten after the dataset (also when a crash came between the two)."""
        index = DistrictRosterIndex.for_writer(self.store.engine)
        if only_if_stale and index.version() == version:
            return
        keys = index.replace(version, data)
        log.info("district_roster_indexed", version=version, keys=keys)

    def _pull_consent(self) -> PullOutcome:
        """Read every new page first, then apply them all in one swap."""
        held = self.store.dataset("consent_changes")
        consents: dict[str, Any] = dict(held.data["consents"]) if held else {}
        cursor = held.cursor if held else None
        applied = 0
        for _ in range(MAX_CONSENT_PAGES):
            reply = self.client.get_dataset(self.centre_id, "consent_changes", cursor=cursor)
            if reply is None:
                break
            page = reply.doc
            for ch in page["changes"]:
                prev = consents.get(
                    ch["resident_id"], {"consent_face_pay": False, "consent_attendance": False}
                )
                merged = dict(prev)
                for key in ("consent_face_pay", "consent_attendance"):
                    if ch.get(key) is not None:
                        merged[key] = ch[key]
                merged["changed_at"] = ch["changed_at"]
                merged["change_id"] = ch["change_id"]
                consents[ch["resident_id"]] = merged
                applied += 1
            cursor = page["next_cursor"]
            if not page["has_more"]:
                break
        now = self.clock.now()
        if applied == 0 and held is not None:
            self.store.pull_checked("consent_changes", now)
            return PullOutcome("consent_changes", "unchanged", held.version)
        version = (held.version + 1) if held else 1
        self.store.swap_dataset(
            Dataset(
                kind="consent_changes",
                centre_id=self.centre_id,
                version=version,
                etag=cursor or "0",
                cursor=cursor,
                issued_at=rfc3339(now),
                fetched_at=rfc3339(now),
                data={"consents": consents, "applied_changes": applied},
            )
        )
        return PullOutcome("consent_changes", "updated", version)
