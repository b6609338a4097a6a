"""HTTP-level behaviour of the reference platform, against a real
``care-terminal platform serve`` process over loopback: malformed bodies and
cursors answered 400, authentication before the body, slow clients timed out
and handler threads bounded, unknown devices indistinguishable from bad
signatures, dataset versions that survive a restart, RFC 9110 ETags, and every
error a JSON body in the spec's shape."""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from sync_helpers import CENTRE, DEVICE

from sync import schemas
from sync.auth import Signer, load_device_key, provision_device_key
from sync.client import PlatformClient
from sync.platform.server import MAX_BODY, MAX_JSON_DEPTH, json_too_deep
from sync.samples import demo_datasets, sample_payload
from terminal.core.clock import SystemClock
from terminal.db.outbox import GENESIS, record_hash

CARE_TERMINAL = Path(sys.executable).parent / "care-terminal"
SPEC = Path(__file__).resolve().parents[2] / "sync" / "spec" / "openapi.yaml"
NOW = SystemClock().now()
ROSTER = f"/v1/centres/{CENTRE}/datasets/roster"
CONSENT = f"/v1/centres/{CENTRE}/datasets/consent_changes"
HEAD = f"/v1/devices/{DEVICE}/streams/kiosk"


@dataclass
class Platform:
    """A ``care-terminal platform serve`` process."""

    proc: subprocess.Popen[str]
    host: str
    port: int
    signer: Signer
    log: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def status(self, field: str) -> int:
        """A number from /proc/PID/status (``VmRSS`` in kB, ``Threads``)."""
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        m = re.search(rf"^{field}:\s+(\d+)", text, re.M)
        assert m, field
        return int(m.group(1))

    def __enter__(self) -> Platform:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        query: str = "",
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        signer: Signer | None = None,
        sign: bool = True,
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        hdrs = dict(headers or {})
        if sign:
            hdrs.update(
                (signer or self.signer).sign(
                    method, path, query, body, hdrs, created=int(time.time())
                )
            )
        conn = http.client.HTTPConnection(self.host, self.port, timeout=20)
        try:
            conn.request(method, path + ("?" + query if query else ""), body=body, headers=hdrs)
            resp = conn.getresponse()
            return resp.status, resp.headers, resp.read()
        finally:
            conn.close()


def _seed(tmp: Path, pub: str) -> Path:
    changes = [
        {
            "centre_id": CENTRE,
            "change": {
                "change_id": f"01JCCCCCCCCCCCCCCCCCCCC{i:03d}",
                "resident_id": f"R{i:05d}",
                "consent_face_pay": i % 2 == 0,
                "consent_attendance": None,
                "changed_at": "2026-01-05T09:00:00.000+08:00",
                "source": "centre_staff",
            },
        }
        for i in range(1, 4)
    ]
    doc = {
        "devices": [{"device_id": DEVICE, "centre_id": CENTRE, "public_key": pub}],
        "datasets": demo_datasets(CENTRE),
        "consent_changes": changes,
    }
    path = tmp / "seed.json"
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return path


def start_platform(tmp: Path, *extra: str) -> Platform:
    key_path = tmp / "keys" / "device.pem"
    pub = provision_device_key(key_path)
    seed = _seed(tmp, pub)
    log = tmp / f"platform-{time.monotonic_ns()}.log"
    cmd = [
        str(CARE_TERMINAL),
        "platform",
        "serve",
        "--port",
        "0",
        "--db",
        f"sqlite:///{tmp}/platform.db",
        "--seed",
        str(seed),
        "--print-url",
        *extra,
    ]
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=10)
        raise AssertionError(f"platform did not start: {log.read_text()[-2000:]}")
    host, port = json.loads(line)["url"].removeprefix("http://").rsplit(":", 1)
    return Platform(proc, host, int(port), Signer(DEVICE, load_device_key(key_path)), log)


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    with start_platform(tmp_path) as p:
        yield p


def _error(status: int, body: bytes, code: str) -> dict[str, Any]:
    doc = json.loads(body)
    assert schemas.is_valid("Error", doc), doc
    assert doc["error"] == code, doc
    assert doc["retryable"] is (status in (408, 429) or (status >= 500 and status != 501))
    return dict(doc)


def _raw(p: Platform, data: bytes, *, then: bytes = b"") -> bytes:
    """Send ``data``, read the answer until the server closes (``then`` is sent
    after the answer arrived, errors ignored)."""
    with socket.create_connection((p.host, p.port), timeout=20) as s:
        s.sendall(data)
        out = b""
        while b"\r\n\r\n" not in out:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk
        head, _, rest = out.partition(b"\r\n\r\n")
        m = re.search(rb"content-length: *(\d+)", head, re.I)
        while m and len(rest) < int(m.group(1)):
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
        if then:
            with contextlib.suppress(OSError):
                s.sendall(then)
        return head + b"\r\n\r\n" + rest


def _split(answer: bytes) -> tuple[int, str, bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head.decode("latin-1"), body


def _batch_text() -> str:
    payload = sample_payload("meal_transaction", 1, NOW)
    rid = "01JBBBBBBBBBBBBBBBBBBBB001"
    rec = {
        "device_id": DEVICE,
        "centre_id": CENTRE,
        "stream": "kiosk",
        "seq": 1,
        "record_id": rid,
        "kind": "meal_transaction",
        "created_at": "2026-01-05T11:30:00.000+08:00",
        "prev_hash": GENESIS,
        "hash": record_hash(DEVICE, 1, GENESIS, "meal_transaction", rid, payload),
        "payload": payload,
    }
    doc = {"device_id": DEVICE, "centre_id": CENTRE, "stream": "kiosk", "records": [rec]}
    return json.dumps(doc, ensure_ascii=False)


def _no_traceback(p: Platform) -> None:
    assert "Traceback" not in p.log.read_text(), p.log.read_text()[-3000:]


# -- 1. malformed bodies and cursors ---------------------------------------------------


def test_json_depth_scan_is_linear_and_ignores_strings() -> None:
    assert json_too_deep(b"[" * 1000 + b"]" * 1000)
    assert not json_too_deep(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH)
    assert json_too_deep(b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1))
    assert not json_too_deep(b'{"a": "' + b"[{" * 500 + b'\\"[["}')
    assert not json_too_deep(b"[" + b"[1],{}," * 10_000 + b"[]]")


@pytest.mark.parametrize("case", ["lone_surrogate", "deep_nesting"])
def test_bodies_the_spec_does_not_allow_are_400_not_a_dropped_connection(
    platform: Platform, case: str
) -> None:
    good = _batch_text()
    if case == "lone_surrogate":
        text = good.replace("红烧肉套餐", "\\ud800")
        assert "\\ud800" in text
    else:
        text = good[:-1] + ', "x": ' + "[" * 1000 + "]" * 1000 + "}"
    for attempt in range(2):  # the same answer each time: a final one, not a retry loop
        status, _h, body = platform.request(
            "POST",
            "/v1/batches",
            body=text.encode("utf-8"),
            headers={"Idempotency-Key": f"bad-{case}-{attempt}"},
        )
        assert status == 400, body
        doc = _error(status, body, "malformed_request")
        assert doc["retryable"] is False
    # the valid batch still goes through, and nothing was stored from the bad ones
    status, _h, body = platform.request(
        "POST", "/v1/batches", body=good.encode("utf-8"), headers={"Idempotency-Key": "good"}
    )
    assert status == 200 and json.loads(body)["results"][0]["result"] == "accepted", body
    _no_traceback(platform)


def test_overlong_consent_cursor_is_400(platform: Platform) -> None:
    status, _h, body = platform.request("GET", CONSENT, query="cursor=" + "9" * 129)
    assert status == 400
    _error(status, body, "malformed_request")
    status, _h, body = platform.request("GET", CONSENT, query="cursor=" + "9" * 128)
    assert status == 200 and json.loads(body)["changes"] == []
    _no_traceback(platform)


# -- 2. authentication before the body, bounded reads and threads ----------------------


def _post_head(p: Platform, length: int, signed: dict[str, str] | None = None) -> bytes:
    lines = [
        "POST /v1/batches HTTP/1.1",
        f"Host: {p.host}",
        "Content-Type: application/json",
        "Idempotency-Key: big-upload",
        f"Content-Length: {length}",
        *(f"{k}: {v}" for k, v in (signed or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _signed_headers(p: Platform, body: bytes, *, created: int | None = None) -> dict[str, str]:
    headers = {"Idempotency-Key": "big-upload"}
    return p.signer.sign(
        "POST", "/v1/batches", "", body, headers, created=created or int(time.time())
    )


def test_unauthenticated_upload_is_refused_before_its_body(platform: Platform) -> None:
    size = 30 * 1024 * 1024
    body = b"x" * size
    rss_before = platform.status("VmRSS")
    cases = {
        "no signature": None,
        "stale timestamp": _signed_headers(platform, body, created=int(time.time()) - 3600),
        "unknown device": Signer("dev-ghost", platform.signer.key).sign(
            "POST", "/v1/batches", "", body, {"Idempotency-Key": "big-upload"}, int(time.time())
        ),
    }
    for what, signed in cases.items():
        started = time.monotonic()
        # the answer comes without a byte of the body sent; the body then goes nowhere
        answer = _raw(platform, _post_head(platform, size, signed), then=body)
        status, head, raw = _split(answer)
        assert status == 401, (what, answer[:300])
        assert "connection: close" in head.lower()
        _error(status, raw, "clock_skew" if what == "stale timestamp" else "bad_signature")
        assert time.monotonic() - started < 10
    grown_kb = platform.status("VmRSS") - rss_before
    assert grown_kb < 12 * 1024, f"the server grew by {grown_kb} kB reading refused bodies"
    # over the limit: 413 on the header alone, even when signed
    answer = _raw(platform, _post_head(platform, MAX_BODY + 1, _signed_headers(platform, b"")))
    status, _head, raw = _split(answer)
    assert status == 413
    doc = _error(status, raw, "payload_too_large")
    assert str(MAX_BODY) in doc["message"]
    assert platform.request("GET", "/healthz", sign=False)[0] == 200
    _no_traceback(platform)


def test_stalled_uploads_time_out_and_threads_stay_bounded(tmp_path: Path) -> None:
    p = start_platform(tmp_path, "--read-timeout-s", "2", "--max-handlers", "8")
    socks: list[socket.socket] = []
    try:
        assert p.request("GET", "/healthz", sign=False)[0] == 200
        time.sleep(0.3)
        baseline = p.status("Threads")
        body = b"{" + b" " * 998 + b"}"
        for _ in range(40):
            s = socket.create_connection((p.host, p.port), timeout=10)
            socks.append(s)
            s.sendall(_post_head(p, len(body), _signed_headers(p, body)) + body[:10])
        time.sleep(0.8)
        during = p.status("Threads")
        assert during <= baseline + 8, (baseline, during)
        # beyond the handlers: 503 with Retry-After (or closed), never a thread each
        busy = 0
        for s in socks[8:]:
            try:
                data = s.recv(65536)
            except OSError:
                continue
            if data.startswith(b"HTTP/1.1 503"):
                busy += 1
                assert b"Retry-After: 1" in data
                _error(503, data.partition(b"\r\n\r\n")[2], "unavailable")
        assert busy >= 16, busy
        # a request whose headers stall (slowloris) is answered 408 and closed as well
        slow = socket.create_connection((p.host, p.port), timeout=10)
        socks.append(slow)
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        time.sleep(3.0)  # the read timeout passes: the stalled uploads are let go
        after = p.status("Threads")
        assert after <= baseline + 1, (baseline, during, after)
        timed_out = 0
        for s in socks[:8]:
            try:
                data = s.recv(65536)
            except OSError:
                continue
            timed_out += data.startswith(b"HTTP/1.1 408")
        assert timed_out >= 1
        answer = slow.recv(65536)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
        _error(408, answer.partition(b"\r\n\r\n")[2], "request_timeout")
        assert p.request("GET", HEAD)[0] == 200  # served again
        assert p.request("GET", "/healthz", sign=False)[0] == 200
        _no_traceback(p)
    finally:
        for s in socks:
            s.close()
        p.stop()


# -- 3. an unknown device looks like a bad signature -----------------------------------


def test_unknown_device_gets_the_answer_of_a_bad_signature(platform: Platform) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    other_key = Ed25519PrivateKey.generate()
    answers = {}
    for what, signer in {
        "bad signature": Signer(DEVICE, other_key),
        "unknown device": Signer("dev-ghost", other_key),
        "unknown device, own key": Signer("dev-ghost", platform.signer.key),
    }.items():
        for method, path, body in (
            ("GET", HEAD, b""),
            ("POST", "/v1/batches", _batch_text().encode("utf-8")),
        ):
            status, _h, raw = platform.request(
                method, path, body=body, headers={"Idempotency-Key": "k-1"}, signer=signer
            )
            answers[(what, method)] = (status, json.loads(raw))
    for method in ("GET", "POST"):
        status, doc = answers[("bad signature", method)]
        assert status == 401 and doc["error"] == "bad_signature", doc
        assert answers[("unknown device", method)] == (status, doc)
        assert answers[("unknown device, own key", method)] == (status, doc)
    assert platform.request("GET", HEAD)[0] == 200


# -- 4. dataset versions survive a restart ---------------------------------------------


def _datasets(p: Platform) -> dict[str, tuple[str, int, str]]:
    out = {}
    for kind in ("roster", "menu", "consent_changes"):
        status, headers, body = p.request("GET", f"/v1/centres/{CENTRE}/datasets/{kind}")
        if status == 404:
            continue
        assert status == 200, (kind, body)
        doc = json.loads(body)
        out[kind] = (headers["ETag"], doc.get("version", 0), doc.get("issued_at", ""))
    return out


def test_restart_with_the_same_seed_keeps_dataset_versions(tmp_path: Path) -> None:
    p = start_platform(tmp_path)
    try:
        before = _datasets(p)
    finally:
        p.stop()
    assert "roster" in before and "consent_changes" in before
    p = start_platform(tmp_path)  # same database, same seed
    try:
        assert _datasets(p) == before
        for kind, (etag, _v, _i) in before.items():
            path = f"/v1/centres/{CENTRE}/datasets/{kind}"
            status, headers, _b = p.request("GET", path, headers={"If-None-Match": etag})
            assert status == 304 and headers["ETag"] == etag, kind
        page = json.loads(p.request("GET", CONSENT)[2])
        assert len(page["changes"]) == 3  # the seed's changes were not added again
    finally:
        p.stop()


# -- 5. ETags per RFC 9110 ---------------------------------------------------------------


def test_etags_are_quoted_and_if_none_match_follows_rfc_9110(platform: Platform) -> None:
    status, headers, body = platform.request("GET", ROSTER)
    assert status == 200
    etag = headers["ETag"]
    assert re.fullmatch(r'"[\x21\x23-\x7e]+"', etag), etag
    assert etag == f'"{json.loads(body)["etag"]}"'
    for inm, expected in (
        (etag, 304),
        (f"W/{etag}", 304),
        (f'"other", {etag}', 304),
        (f'W/"other" ,W/{etag}', 304),
        ("*", 304),
        ('"other"', 200),
        ('W/"other", "more"', 200),
        (etag.strip('"'), 200),  # not an entity-tag: the full answer
    ):
        status, headers, body = platform.request("GET", ROSTER, headers={"If-None-Match": inm})
        assert status == expected, inm
        assert headers["ETag"] == etag
        assert (body == b"") is (expected == 304)
    # the consent-changes page honours If-None-Match too, per cursor
    status, headers, body = platform.request("GET", CONSENT)
    page_etag = headers["ETag"]
    assert status == 200 and re.fullmatch(r'"[\x21\x23-\x7e]+"', page_etag)
    status, headers, _b = platform.request("GET", CONSENT, headers={"If-None-Match": page_etag})
    assert status == 304 and headers["ETag"] == page_etag
    status, headers, _b = platform.request(
        "GET", CONSENT, query="cursor=1", headers={"If-None-Match": page_etag}
    )
    assert status == 200 and headers["ETag"] != page_etag
    # the terminal's client sends what it got back, and gets "unchanged"
    with PlatformClient(platform.url, platform.signer, SystemClock()) as client:
        reply = client.get_dataset(CENTRE, "roster")
        assert reply is not None and f'"{reply.etag}"' == etag
        assert client.get_dataset(CENTRE, "roster", etag=reply.etag) is None


# -- 6. every status documented, every error JSON ----------------------------------------


def test_unknown_paths_other_methods_and_broken_requests_get_json_errors(
    platform: Platform,
) -> None:
    for method, path in (("GET", "/nope"), ("POST", "/v1/nope"), ("DELETE", "/")):
        status, _h, body = platform.request(method, path, sign=False)
        assert status == 404, (method, path)
        _error(status, body, "not_found")
    for method, path, allow in (
        ("GET", "/v1/batches", "POST"),
        ("PUT", "/v1/batches", "POST"),
        ("DELETE", HEAD, "GET"),
        ("POST", ROSTER, "GET"),
        ("HEAD", "/healthz", "GET"),
        ("BREW", "/healthz", "GET"),
    ):
        status, headers, body = platform.request(method, path, body=b"{}", sign=False)
        assert status == 405, (method, path)
        assert headers["Allow"] == allow
        if method != "HEAD":
            assert headers["Content-Type"].startswith("application/json")
            _error(status, body, "method_not_allowed")
    answer = _raw(platform, b"NOT-HTTP\r\n\r\n")
    status, head, body = _split(answer)
    assert status == 400 and "application/json" in head
    _error(status, body, "malformed_request")
    answer = _raw(platform, _post_head(platform, MAX_BODY + 1))
    status, head, body = _split(answer)
    assert status == 413 and "application/json" in head
    _error(status, body, "payload_too_large")
    assert platform.request("GET", HEAD)[0] == 200
    _no_traceback(platform)


def test_spec_documents_every_status_and_the_body_limit() -> None:
    spec = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            codes = set(op["responses"])
            assert {"400", "401", "404", "405", "503"} <= codes, (method, path, codes)
            if method == "post":
                assert "413" in codes
            for code, resp in op["responses"].items():
                if code.startswith(("4", "5")):
                    assert resp["$ref"].startswith("#/components/responses/"), (path, code)
    text = SPEC.read_text(encoding="utf-8")
    assert f"{MAX_BODY} bytes" in text
    description = spec["info"]["description"]
    assert "501" in description and "405" in description and "413" in description
    assert "Allow" in description
