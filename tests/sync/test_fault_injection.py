"""Fault injection of the ASGI platform, kind by kind: a reset before processing
stores nothing, a reply dropped after the commit sends not a byte but the batch
is stored (and the retry with the same key gets it replayed), a bad reply is a
200 that violates the spec, injected errors and back-pressure are JSON answers."""

from __future__ import annotations

import contextlib
import socket
import time

import httpx
import pytest
from sync_helpers import CENTRE, DEVICE, Env
from test_http import _batch_text

from sync.auth import Signer, load_device_key
from sync.client import PlatformError, ReplyInvalid
from sync.platform.server import Faults


def _signed_post(env: Env, body: bytes, key: str) -> httpx.Response:
    signer = Signer(DEVICE, load_device_key(env.key_path))
    headers = {"Idempotency-Key": key, "Content-Type": "application/json"}
    headers.update(signer.sign("POST", "/v1/batches", "", body, headers, created=int(time.time())))
    return httpx.post(env.platform.url + "/v1/batches", content=body, headers=headers)


def test_reset_and_drop_after_commit(env: Env) -> None:
    body = _batch_text().encode("utf-8")
    env.platform.server.faults = Faults(reset_rate=1.0)
    with pytest.raises(httpx.TransportError):
        _signed_post(env, body, "k-1")
    assert env.platform.store.record_count() == 0  # reset before processing
    env.platform.server.faults = Faults(drop_after_commit_rate=1.0)
    with pytest.raises(httpx.TransportError):
        _signed_post(env, body, "k-1")
    assert env.platform.store.record_count() == 1  # committed, the reply lost
    env.platform.server.faults = Faults()
    again = _signed_post(env, body, "k-1")
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["results"][0]["result"] == "accepted"
    # a dropped reply is not a byte: the connection ends without an answer
    env.platform.server.faults = Faults(drop_after_commit_rate=1.0)
    host, port = env.platform.address
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(b"GET /v1/devices/x/streams/kiosk HTTP/1.1\r\nHost: x\r\n\r\n")
        with contextlib.suppress(ConnectionResetError):
            assert s.recv(65536) == b""


def test_bad_replies_errors_and_back_pressure(env: Env) -> None:
    with env.client() as client:
        env.platform.server.faults = Faults(bad_reply_rate=1.0)
        with pytest.raises(ReplyInvalid):
            client.get_dataset(CENTRE, "menu")
        env.platform.server.faults = Faults(error_rate=1.0, seed=3)
        for _ in range(5):
            with pytest.raises(PlatformError) as info:
                client.stream_head(DEVICE, "kiosk")
            assert info.value.status in (500, 502, 503, 504, 408) and info.value.retryable
        env.platform.server.faults = Faults(retry_after_rate=1.0, retry_after_s=4)
        r = httpx.get(env.platform.url + f"/v1/devices/{DEVICE}/streams/kiosk")
        assert r.status_code in (429, 503) and r.headers["Retry-After"] == "4"
        assert r.json()["retry_after_s"] == 4
        env.platform.server.faults = Faults()
        assert client.stream_head(DEVICE, "kiosk")["next_seq"] == 1
    assert env.platform.faults.counts == {}
