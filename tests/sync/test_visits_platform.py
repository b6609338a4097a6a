"""City-wide meals (spec 1.2) at the platform: the district roster made from the
centres' rosters, the eligibility answer, the atomic slot claim (two devices of
two centres at the same moment: exactly one 200), offline visiting meals flagged
at upload, reviews for both centres, and the settlement report (JSON, CSV and the
``platform settlement`` command).

Everything runs against a real ``care-terminal platform serve`` process on
loopback with a real SQLite file; the terminal side is the real
:class:`sync.visits.VisitsClient`, :class:`sync.pull.Puller` and sync.db."""

from __future__ import annotations

import csv
import io
import json
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from sync import schemas
from sync.auth import Signer, id_number_hmac, load_device_key, provision_device_key
from sync.client import PlatformClient, PlatformError, encode_body
from sync.platform.store import PlatformStore, PlatformStoreError
from sync.pull import Puller
from sync.samples import demo_datasets
from sync.store.outbox import SyncStore
from sync.visits import (
    PlatformUnavailable,
    SlotClaimed,
    VisitorAnswer,
    VisitsClient,
    card_hmac,
    lookup_hmac,
    pepper_id,
    pepper_matches,
    roster_lookup,
)
from terminal.core.clock import SystemClock
from terminal.core.ids import new_ulid
from terminal.db.outbox import GENESIS, hash_of

CARE_TERMINAL = Path(sys.executable).parent / "care-terminal"
PEPPER = bytes(range(32))
DAY = date(2026, 1, 5)
ID_NUMBER = "11010519491231002X"
CENTRES = {"dev-a1": "centre-a", "dev-b1": "centre-b", "dev-b2": "centre-b"}


def _resident(rid: str, name: str, card: str, **over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "resident_id": rid,
        "name": name,
        "name_masked": name[0] + "*" + name[2:],
        "id_number_hmac": None,
        "phone_last4": None,
        "categories": ["age_80_89"],
        "card_ids": [card],
        "consent_face_pay": True,
        "consent_attendance": False,
        "active": True,
    }
    doc.update(over)
    return doc


def rosters() -> dict[str, list[dict[str, Any]]]:
    """centre-a: the visitor (card CA0001, ID card, phone 1234) and two seniors
    who share a name and phone last 4 (an ambiguous lookup); centre-b: its own."""
    return {
        "centre-a": [
            _resident(
                "A001",
                "张桂华",
                "CA0001",
                id_number_hmac=id_number_hmac(PEPPER, ID_NUMBER),
                phone_last4="1234",
            ),
            _resident("A002", "李建国", "CA0002", phone_last4="5678"),
            _resident("A003", "李建国", "CA0003", phone_last4="5678"),
        ],
        "centre-b": [_resident("B001", "王秀英", "CB0001", categories=["dibao"])],
    }


CENTRE_NAMES = {"centre-a": "东风社区照料中心", "centre-b": "河西村照料中心"}


def seed_doc(pubs: dict[str, str]) -> dict[str, Any]:
    datasets: list[dict[str, Any]] = []
    for centre, residents in rosters().items():
        for ds in demo_datasets(centre):
            if ds["kind"] == "roster":
                ds = {**ds, "data": {**ds["data"], "residents": residents}}
            if ds["kind"] == "centre_info":
                ds = {**ds, "data": {**ds["data"], "name": CENTRE_NAMES[centre]}}
            datasets.append(ds)
    return {
        "devices": [
            {"device_id": d, "centre_id": c, "public_key": pubs[d]} for d, c in CENTRES.items()
        ],
        "datasets": datasets,
    }


@dataclass
class District:
    """A platform process and the keys of its devices."""

    url: str
    db: Path
    proc: subprocess.Popen[str]
    keys: dict[str, Path]
    tmp: Path

    def client(self, device: str, *, timeout: float = 5.0) -> VisitsClient:
        signer = Signer(device, load_device_key(self.keys[device]))
        return VisitsClient(PlatformClient(self.url, signer, SystemClock()), timeout=timeout)

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.db) as db:
            return list(db.execute(query, args).fetchall())


def start_district(tmp: Path, *extra: str, db_url: str | None = None) -> District:
    """``platform serve`` with three devices of two centres (SQLite unless
    ``db_url`` says otherwise)."""
    keys = {d: tmp / "keys" / f"{d}.pem" for d in CENTRES}
    pubs = {d: provision_device_key(k) for d, k in keys.items()}
    seed = tmp / "seed.json"
    seed.write_text(json.dumps(seed_doc(pubs), ensure_ascii=False), encoding="utf-8")
    pepper = tmp / "district-pepper"
    pepper.write_bytes(PEPPER)
    pepper.chmod(0o600)
    db = tmp / "platform.db"
    cmd = [
        str(CARE_TERMINAL),
        "platform",
        "serve",
        "--port",
        "0",
        "--db",
        db_url or f"sqlite:///{db}",
        "--seed",
        str(seed),
        "--district-pepper",
        str(pepper),
        "--print-url",
        *extra,
    ]
    log = tmp / "platform.log"
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=10)
        raise AssertionError(f"platform did not start: {log.read_text()[-2000:]}")
    url = json.loads(line)["url"]
    httpx.get(url + "/healthz", timeout=60).raise_for_status()  # the workers are up
    return District(url, db, proc, keys, tmp)


def stop(d: District) -> None:
    if d.proc.poll() is None:
        d.proc.send_signal(signal.SIGTERM)
        try:
            d.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            d.proc.kill()
            d.proc.wait(timeout=10)
    if d.proc.stdout is not None:
        d.proc.stdout.close()


@pytest.fixture
def district(tmp_path: Path) -> Iterator[District]:
    d = start_district(tmp_path)
    try:
        yield d
    finally:
        stop(d)


# -- records as a 1.2 terminal makes them ----------------------------------------------------


def visit_meal(
    person: str, *, source: str, claim_id: str | None, subsidy: int = 300, home: str = "centre-a"
) -> dict[str, Any]:
    """A visiting senior's lunch (cash), as a spec 1.2 terminal records it."""
    lines = (
        [
            {
                "policy_id": "district-2026",
                "policy_version": 3,
                "category": "age_80_89",
                "rule": "age_80_89/lunch: fixed 3.00",
                "amount_fen": subsidy,
            }
        ]
        if subsidy
        else []
    )
    return {
        "resident_id": person,
        "categories": ["age_80_89"],
        "meal_date": DAY.isoformat(),
        "slot": "lunch",
        "items": [
            {
                "item_id": "M1",
                "name": "红烧肉套餐",
                "quantity": 1,
                "unit_price_fen": 1200,
                "line_total_fen": 1200,
                "subsidisable": True,
            }
        ],
        "list_total_fen": 1200,
        "subsidy_lines": lines,
        "subsidy_total_fen": subsidy,
        "amount_due_fen": 1200 - subsidy,
        "payment_source": "cash",
        "wallet_before_fen": 0,
        "wallet_after_fen": 0,
        "verification": {
            "method": "card",
            "match_score": None,
            "match_threshold": None,
            "liveness": None,
            "card_id_hmac": card_hmac(PEPPER, "CA0001"),
            "id_number_hmac": None,
            "staff_id": None,
        },
        "staff_id": None,
        "corrects_record_id": None,
        "receipt_no": None,
        "visit": {
            "person_id": person,
            "home_centre_id": home,
            "source": source,
            "claim_id": claim_id,
            "review": source == "roster",
            "payment_source": "cash",
        },
    }


def void_of(meal_record_id: str, person: str) -> dict[str, Any]:
    """A void of a visiting lunch from :func:`visit_meal` (9.00 paid, 3.00 subsidy)."""
    return {
        "original_record_id": meal_record_id,
        "resident_id": person,
        "reason_code": "customer_request",
        "reason_text": None,
        "staff_id": "S01",
        "amount_returned_fen": 900,
        "subsidy_reversed_fen": 300,
        "wallet_before_fen": 0,
        "wallet_after_fen": 0,
    }


class Stream:
    """A device's kiosk stream: version 2 envelopes, signed uploads."""

    def __init__(self, d: District, device: str) -> None:
        self.device, self.centre = device, CENTRES[device]
        self.client = PlatformClient(
            d.url, Signer(device, load_device_key(d.keys[device])), SystemClock()
        )
        self.seq, self.prev = 0, GENESIS

    def record(
        self, kind: str, payload: dict[str, Any], record_id: str | None = None
    ) -> dict[str, Any]:
        self.seq += 1
        env: dict[str, Any] = {
            "device_id": self.device,
            "centre_id": self.centre,
            "stream": "kiosk",
            "seq": self.seq,
            "record_id": record_id or new_ulid(),
            "kind": kind,
            "created_at": "2026-01-05T12:00:00.000+08:00",
            "prev_hash": self.prev,
            "payload": payload,
            "hash_version": 2,
        }
        env["hash"] = hash_of(env)
        self.prev = env["hash"]
        return env

    def upload(self, *records: dict[str, Any], generation: str = "") -> list[dict[str, Any]]:
        reply = self.client.upload_batch(
            self.device, self.centre, "kiosk", list(records), key_generation=generation
        )
        return list(reply["results"])


def person_of(d: District, card: str = "CA0001") -> VisitorAnswer:
    with d.client("dev-b1") as c:
        ans = c.eligibility(
            centre_id="centre-b",
            key_type="card",
            key=card_hmac(PEPPER, card),
            day=DAY,
            slot="lunch",
        )
    assert ans is not None
    return ans


# -- the district roster ---------------------------------------------------------------------


def test_the_district_roster_is_pulled_indexed_and_looked_up_offline(
    district: District, tmp_path: Path
) -> None:
    sync_db = tmp_path / "terminal-b" / "sync.db"
    sync_db.parent.mkdir()
    store = SyncStore(f"sqlite:///{sync_db}")
    client = PlatformClient(
        district.url, Signer("dev-b1", load_device_key(district.keys["dev-b1"])), SystemClock()
    )
    try:
        out = Puller(store, client, "centre-b", SystemClock()).pull("district_roster")
        assert out.status == "updated", out
        held = store.dataset("district_roster")
        assert held is not None and held.centre_id == "centre-b"
        again = Puller(store, client, "centre-b", SystemClock()).pull("district_roster")
        assert again.status == "unchanged"  # 304 on the ETag
    finally:
        client.close()
        store.close()
    text = json.dumps(held.data, ensure_ascii=False)
    for clear in ("张桂华", "李建国", "CA0001", "1234", ID_NUMBER):
        assert clear not in text  # no names, no card numbers, no phone digits
    assert held.data["payment_source"] == "cash"
    assert len(held.data["entries"]) == 4

    by_card = roster_lookup(sync_db, key_type="card", key=card_hmac(PEPPER, " ca0001 "))
    by_id = roster_lookup(sync_db, key_type="id_number", key=id_number_hmac(PEPPER, ID_NUMBER))
    by_name = roster_lookup(sync_db, key_type="lookup", key=lookup_hmac(PEPPER, "张 桂华", "1234"))
    assert by_card is not None and by_card == by_id == by_name
    assert by_card.home_centre_id == "centre-a" and by_card.source == "roster"
    assert by_card.home_centre_name == "东风社区照料中心"  # for the visitor's screen
    assert held.data["centres"] == [
        {"centre_id": c, "name": n} for c, n in sorted(CENTRE_NAMES.items())
    ]
    assert by_card.categories == ("age_80_89",) and by_card.subsidised_in_district is None
    assert by_card.person_id.startswith("P-") and "A001" not in by_card.person_id
    # two seniors with one name and phone last 4: the lookup names neither of them
    assert (
        roster_lookup(sync_db, key_type="lookup", key=lookup_hmac(PEPPER, "李建国", "5678")) is None
    )
    assert roster_lookup(sync_db, key_type="card", key=card_hmac(PEPPER, "CA0002")) is not None
    assert roster_lookup(sync_db, key_type="card", key=card_hmac(PEPPER, "ZZ9999")) is None
    assert pepper_matches(sync_db, PEPPER) is True
    assert pepper_matches(sync_db, b"another-district-pepper-32bytes!") is False
    assert roster_lookup(tmp_path / "nowhere.db", key_type="card", key="0" * 64) is None


# -- online ------------------------------------------------------------------------------


def test_eligibility_answers_who_the_visitor_is_without_a_name(district: District) -> None:
    ans = person_of(district)
    assert ans.home_centre_id == "centre-a" and ans.source == "online"
    assert ans.home_centre_name == "东风社区照料中心"
    assert ans.subsidised_in_district is False and ans.payment_source == "cash" and ans.active
    with district.client("dev-b1") as c:
        assert (
            c.eligibility(
                centre_id="centre-b",
                key_type="id_number",
                key=id_number_hmac(PEPPER, ID_NUMBER),
                day=DAY,
                slot="lunch",
            )
            == ans
        )
        unknown = card_hmac(PEPPER, "ZZ9999")
        assert (
            c.eligibility(centre_id="centre-b", key_type="card", key=unknown, day=DAY, slot="lunch")
            is None
        )
        with pytest.raises(PlatformError) as refused:  # another centre's name: 403
            c.eligibility(centre_id="centre-a", key_type="card", key=unknown, day=DAY, slot="lunch")
        assert refused.value.status == 403


def test_two_centres_claim_the_same_slot_at_the_same_moment_exactly_one_wins(
    district: District,
) -> None:
    """Rounds of two requests released together by a barrier, from a device of
    centre A and a device of centre B, each for the same senior and slot."""
    person = person_of(district).person_id
    clients = [district.client("dev-a1"), district.client("dev-b1")]
    try:
        for c in clients:  # connections open before the race
            c.eligibility(
                centre_id=CENTRES[c.client.signer.device_id],
                key_type="card",
                key=card_hmac(PEPPER, "CA0001"),
                day=DAY,
                slot="lunch",
            )
        for n, slot in enumerate(("breakfast", "lunch", "dinner")):
            day = date(2026, 2, 1 + n)
            barrier = threading.Barrier(2)
            outcomes: dict[str, str] = {}
            records = {id(c): new_ulid() for c in clients}

            def go(c: VisitsClient, day: date = day, slot: str = slot) -> None:
                centre = CENTRES[c.client.signer.device_id]
                barrier.wait()
                try:
                    outcomes[centre] = c.claim(
                        person_id=person,
                        day=day,
                        slot=slot,
                        record_id=records[id(c)],
                        centre_id=centre,
                    )
                except SlotClaimed:
                    outcomes[centre] = "slot_claimed"

            threads = [threading.Thread(target=go, args=(c,)) for c in clients]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=30)
            assert sorted(v == "slot_claimed" for v in outcomes.values()) == [False, True], outcomes
            winner = next(
                c for c in clients if outcomes[CENTRES[c.client.signer.device_id]] != "slot_claimed"
            )
            centre = CENTRES[winner.client.signer.device_id]
            # the same record again (a retry after a lost answer): the same claim
            assert (
                winner.claim(
                    person_id=person,
                    day=day,
                    slot=slot,
                    record_id=records[id(winner)],
                    centre_id=centre,
                )
                == outcomes[centre]
            )
        rows = district.sql("SELECT day, slot, centre_id FROM visit_claims ORDER BY day")
        assert [r[:2] for r in rows] == [
            ("2026-02-01", "breakfast"),
            ("2026-02-02", "lunch"),
            ("2026-02-03", "dinner"),
        ]
    finally:
        for c in clients:
            c.close()
    # and the district now says the slot is subsidised
    with district.client("dev-b1") as c:
        again = c.eligibility(
            centre_id="centre-b",
            key_type="card",
            key=card_hmac(PEPPER, "CA0001"),
            day=date(2026, 2, 2),
            slot="lunch",
        )
    assert again is not None and again.subsidised_in_district is True


def test_a_claim_for_an_unknown_person_is_refused(district: District) -> None:
    with district.client("dev-b1") as c, pytest.raises(PlatformError) as refused:
        c.claim(
            person_id="P-nobody", day=DAY, slot="lunch", record_id=new_ulid(), centre_id="centre-b"
        )
    assert refused.value.status == 404


def test_no_platform_is_platform_unavailable_within_the_timeout(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    provision_device_key(key)
    client = PlatformClient(
        "http://127.0.0.1:9", Signer("dev-b1", load_device_key(key)), SystemClock()
    )
    with VisitsClient(client, timeout=0.5) as c, pytest.raises(PlatformUnavailable):
        c.eligibility(centre_id="centre-b", key_type="card", key="0" * 64, day=DAY, slot="lunch")


# -- offline meals at upload --------------------------------------------------------------


def test_an_offline_visiting_meal_on_a_claimed_slot_is_quarantined_for_both_centres(
    district: District,
) -> None:
    person = person_of(district).person_id
    # centre A's own terminal had the senior's lunch first (online claim, then its record)
    held_id = new_ulid()
    with district.client("dev-a1") as c:
        claim = c.claim(
            person_id=person, day=DAY, slot="lunch", record_id=held_id, centre_id="centre-a"
        )
    a = Stream(district, "dev-a1")
    assert (
        a.upload(
            a.record(
                "meal_transaction", visit_meal(person, source="online", claim_id=claim), held_id
            )
        )[0]["stored_as"]
        == "record"
    )

    # centre B decided offline from the roster: subsidised, marked for review
    b = Stream(district, "dev-b1")
    late = b.record("meal_transaction", visit_meal(person, source="roster", claim_id=None))
    [res] = b.upload(late)
    assert (res["result"], res["stored_as"], res["quarantine_reason"]) == (
        "accepted",
        "quarantined",
        "citywide_duplicate_subsidy",
    )
    # the same request again is its stored answer; the record sent again under a
    # new key is a duplicate: never a second claim or a second review
    assert b.upload(late) == [res]
    [again] = b.upload(late, generation="0123456789abcdef")
    assert (again["result"], again["quarantine_reason"]) == (
        "duplicate",
        "citywide_duplicate_subsidy",
    )
    assert district.sql("SELECT count(*) FROM visit_claims") == [(1,)]
    assert district.sql("SELECT count(*) FROM visit_meals WHERE held_by_record_id IS NOT NULL") == [
        (1,)
    ]

    for device in ("dev-a1", "dev-b1"):
        status, doc = signed_get(
            district, device, "/v1/visits/reviews?from=2026-01-01&to=2026-01-31"
        )
        assert status == 200 and schemas.is_valid("VisitReviewList", doc), doc
        assert [
            (i["record_id"], i["held_by_record_id"], i["held_by_centre_id"]) for i in doc["items"]
        ] == [(late["record_id"], held_id, "centre-a")], device


def test_an_offline_visiting_meal_on_a_free_slot_claims_it_at_upload(district: District) -> None:
    person = person_of(district).person_id
    b = Stream(district, "dev-b1")
    [res] = b.upload(
        b.record("meal_transaction", visit_meal(person, source="roster", claim_id=None))
    )
    assert (res["result"], res["stored_as"]) == ("accepted", "record")
    assert district.sql("SELECT source, centre_id FROM visit_claims") == [("upload", "centre-b")]
    assert person_of(district).subsidised_in_district is True
    # an unsubsidised visiting meal in the same slot is no duplicate subsidy
    [free] = b.upload(
        b.record("meal_transaction", visit_meal(person, source="roster", claim_id=None, subsidy=0))
    )
    assert (free["result"], free["stored_as"]) == ("accepted", "record")


# -- settlement ----------------------------------------------------------------------------


def signed_get(
    d: District, device: str, path_qs: str, accept: str | None = None
) -> tuple[int, Any]:
    path, _, qs = path_qs.partition("?")
    signer = Signer(device, load_device_key(d.keys[device]))
    headers = {"Accept": accept} if accept else {}
    import time

    signed = signer.sign("GET", path, qs, b"", headers, created=int(time.time()))
    r = httpx.get(d.url + path_qs, headers={**headers, **signed}, timeout=10)
    if "json" in r.headers.get("content-type", ""):
        return r.status_code, r.json()
    return r.status_code, r.text


def settlement_command(d: District, *extra: str) -> str:
    """``care-terminal platform settlement`` for 2026-01-05 on the platform host."""
    cmd = [str(CARE_TERMINAL), "platform", "settlement", "--db", f"sqlite:///{d.db}"]
    cmd += ["--from", "2026-01-05", "--to", "2026-01-05", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout


def test_settlement_lists_each_centres_subsidy_paid_for_another(district: District) -> None:
    person = person_of(district).person_id
    b1, b2 = Stream(district, "dev-b1"), Stream(district, "dev-b2")
    with district.client("dev-b1") as c:
        claim = c.claim(
            person_id=person,
            day=DAY,
            slot="lunch",
            record_id=(lunch := new_ulid()),
            centre_id="centre-b",
        )
    assert (
        b1.upload(
            b1.record(
                "meal_transaction", visit_meal(person, source="online", claim_id=claim), lunch
            )
        )[0]["stored_as"]
        == "record"
    )
    dinner = dict(visit_meal(person, source="roster", claim_id=None), slot="dinner")
    d_rec = b2.record("meal_transaction", dinner)
    assert b2.upload(d_rec)[0]["stored_as"] == "record"
    # a voided visiting meal is not settled
    breakfast = dict(visit_meal(person, source="roster", claim_id=None), slot="breakfast")
    v_rec = b2.record("meal_transaction", breakfast)
    results = b2.upload(v_rec, b2.record("meal_void", void_of(v_rec["record_id"], person)))
    assert [r["stored_as"] for r in results] == ["record", "record"]

    status, doc = signed_get(district, "dev-a1", "/v1/settlements?from=2026-01-01&to=2026-01-31")
    assert status == 200 and schemas.is_valid("SettlementReport", doc), doc
    assert doc["centre_id"] == "centre-a"
    [line] = doc["lines"]
    assert (line["claimant_centre_id"], line["debtor_centre_id"]) == ("centre-b", "centre-a")
    assert (line["meals"], line["subsidy_fen"]) == (2, 600)
    assert sorted(line["record_ids"]) == sorted([lunch, d_rec["record_id"]])

    status, text = signed_get(
        district, "dev-b2", "/v1/settlements?from=2026-01-01&to=2026-01-31", accept="text/csv"
    )
    assert status == 200
    rows = list(csv.reader(io.StringIO(text)))
    assert rows == [
        [
            "claimant_centre_id",
            "debtor_centre_id",
            "period_from",
            "period_to",
            "meals",
            "subsidy_fen",
            "subsidy_yuan",
        ],
        ["centre-b", "centre-a", "2026-01-01", "2026-01-31", "2", "600", "6.00"],
    ]
    status, empty = signed_get(district, "dev-a1", "/v1/settlements?from=2026-02-01&to=2026-02-28")
    assert status == 200 and empty["lines"] == []
    status, bad = signed_get(district, "dev-a1", "/v1/settlements?from=2026-02-01&to=2026-01-01")
    assert status == 200 and bad["lines"] == []  # a period ending before it starts is empty
    status, bad = signed_get(district, "dev-a1", "/v1/settlements?from=2026-02-30&to=2026-03-01")
    assert status == 400 and bad["error"] == "malformed_request"

    # the district's whole report on the platform host
    out = settlement_command(district, "--csv")
    assert out.splitlines()[1] == "centre-b,centre-a,2026-01-05,2026-01-05,2,600,6.00,0,0,0.00"
    report = json.loads(settlement_command(district))
    assert report["centre_id"] is None and report["lines"][0]["subsidy_fen"] == 600


def test_visit_requests_are_checked_like_every_request(district: District) -> None:
    signer = Signer("dev-b1", load_device_key(district.keys["dev-b1"]))
    import time

    body = encode_body(
        {
            "centre_id": "centre-b",
            "key_type": "card",
            "key": "not-hex",
            "day": "2026-01-05",
            "slot": "lunch",
        }
    )
    path = "/v1/visits/eligibility"
    signed = signer.sign(
        "POST", path, "", body, {"Content-Type": "application/json"}, created=int(time.time())
    )
    r = httpx.post(
        district.url + path, content=body, headers={"Content-Type": "application/json", **signed}
    )
    assert r.status_code == 422 and r.json()["error"] == "schema_invalid"
    assert "not-hex" not in r.text
    r = httpx.post(district.url + path, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 401
    r = httpx.get(district.url + path)
    assert r.status_code == 405 and r.headers["Allow"] == "POST"


# -- a terminal as provisioned: the agent pulls, the kiosk reads ---------------------------


def test_a_provisioned_terminal_pulls_the_roster_and_checks_its_pepper(
    district: District, tmp_path: Path
) -> None:
    """``care-terminal sync now`` (the agent's cycle) pulls the district roster;
    the kiosk's helpers then find the visitor online and offline, and refuse a
    pepper that is not the district's."""
    import shutil

    from sync.agent import sync_now
    from sync.visits import district_pepper
    from terminal.config.settings import CentreSettings, Settings, SyncSettings
    from terminal.core.errors import TerminalError

    data = tmp_path / "terminal-b"
    settings = Settings(
        data_dir=data,
        centre=CentreSettings(device_id="dev-b1", centre_id="centre-b"),
        sync=SyncSettings(platform_url=district.url),
    )
    with pytest.raises(TerminalError) as missing:
        district_pepper(settings)
    assert missing.value.code == "district_pepper_missing"
    settings.device_key_file.parent.mkdir(parents=True, mode=0o700)
    shutil.copy(district.keys["dev-b1"], settings.device_key_file)
    pepper_file = data / "keys" / "district-pepper"
    shutil.copy(district.tmp / "district-pepper", pepper_file)
    pepper_file.chmod(0o600)

    report = sync_now(settings)
    pulled = {p["kind"]: p["status"] for p in report["pulls"]}
    assert pulled["district_roster"] == "updated", report
    pepper = district_pepper(settings)
    assert pepper == PEPPER
    key = card_hmac(pepper, "CA0001")
    offline = roster_lookup(data / "sync.db", key_type="card", key=key)
    with VisitsClient.from_settings(settings) as c:
        online = c.eligibility(
            centre_id="centre-b", key_type="card", key=key, day=DAY, slot="lunch"
        )
    assert offline is not None and online is not None
    assert (offline.person_id, offline.home_centre_id) == (online.person_id, online.home_centre_id)

    pepper_file.write_bytes(b"a-pepper-made-on-this-device-32b")  # not the district's
    with pytest.raises(TerminalError) as wrong:
        district_pepper(settings)
    assert wrong.value.code == "district_pepper_mismatch"


def test_a_new_district_pepper_rekeys_the_cards_not_the_persons(tmp_path: Path) -> None:
    """On the store itself (a real SQLite file): the day's claims keep naming the
    senior when district IT replaces the pepper."""
    from sync.platform.store import PlatformStore

    store = PlatformStore(f"sqlite:///{tmp_path / 'platform.db'}")
    now = SystemClock().now()
    try:
        store.set_district(now, pepper=PEPPER)
        for ds in seed_doc({d: "" for d in CENTRES})["datasets"]:
            store.put_dataset(ds["centre_id"], ds["kind"], ds["data"], now)
        before = store.visitor("card", card_hmac(PEPPER, "CA0001"), "2026-01-05", "lunch")
        held = store.district_roster("centre-b")
        new = b"the-districts-new-pepper-32bytes"
        store.set_district(now, pepper=new)
        assert store.visitor("card", card_hmac(PEPPER, "CA0001"), "2026-01-05", "lunch") is None
        after = store.visitor("card", card_hmac(new, "CA0001"), "2026-01-05", "lunch")
        assert before is not None and after is not None
        assert after["person_id"] == before["person_id"]
        roster = store.district_roster("centre-b")
        assert held is not None and roster is not None
        assert roster["version"] == held["version"] + 1  # every terminal pulls the new keys
        assert roster["data"]["pepper_id"] == pepper_id(new) != held["data"]["pepper_id"]
    finally:
        store.close()


def test_every_visit_payment_policy_can_be_set_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    store = PlatformStore(f"sqlite:///{tmp_path / 'platform.db'}")
    try:
        with pytest.raises(PlatformStoreError) as e:
            store.set_district(datetime.now(UTC), payment_source="credit")
        assert e.value.code == "bad_payment_source"
        assert store.visit_payment_source() == "cash"  # nothing changed
        for source in ("home_wallet", "visited_wallet", "cash"):
            store.set_district(datetime.now(UTC), payment_source=source)
            assert store.visit_payment_source() == source
    finally:
        store.engine.dispose()
