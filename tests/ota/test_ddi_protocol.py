"""DDI protocol details against a server that follows hawkBit's DDI API:
polling interval, target token, mutual TLS, resumable downloads, every hash,
cancel, confirmation, installed base, maintenance windows, retry-after."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import warnings
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from device_sim import SimDevice, make_release
from hawkbit_like import HawkbitLike
from ota_rig import make_agent
from test_update_cycle import bundle

from sync.auth import client_ssl_context
from sync.ota.ddi import Artifact, DdiClient, DdiConfig, feedback_body, parse_sleep
from sync.ota.errors import BundleRejected, DdiError

TOKEN = "s3cret-token"


@pytest.fixture
def server():
    s = HawkbitLike(token=TOKEN)
    yield s
    s.stop()


@pytest.fixture
def device(tmp_path: Path) -> SimDevice:
    dev = SimDevice(tmp_path / "dev")
    dev.install_factory(make_release(tmp_path / "factory", "1.0.0"), "1.0.0-c5", counter=5)
    return dev


def agent_for(dev, server, key, triggered, **kw):
    return make_agent(
        dev,
        server.url,
        "hb-01",
        key,
        trigger=triggered.append,
        ddi={"target_token": TOKEN, **kw.pop("ddi", {})},
        **kw,
    )


def test_poll_honours_the_server_interval_and_puts_config_data(server, device, session_key) -> None:
    agent, _ = agent_for(device, server, session_key, [])
    assert agent.run_once() == 300.0  # "00:05:00"
    assert server.config_data[0]["mode"] == "merge"
    data = server.config_data[0]["data"]
    assert (
        data["hw_boardname"] == "care-pi"
        and data["hw_revision"] == "1"
        and data["sw_version"] == "1.0.0"
    )
    assert all(h[2].get("Authorization") == f"TargetToken {TOKEN}" for h in server.requests)
    agent.run_once()
    assert len(server.config_data) == 1  # unchanged data is not sent again unless asked
    server.sleep = "00:00:00"
    assert agent.run_once() == 1.0  # clamped to the configured minimum


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("00:00:30", 30.0),
        ("12:00:00", 43200.0),
        ("garbage", 300.0),
        (None, 300.0),
        ("99:00:00", 86400.0),
    ],
)
def test_parse_sleep(text, expected) -> None:
    assert (
        parse_sleep(text, DdiConfig(base_url="http://x", controller_id="c", min_sleep_s=1))
        == expected
    )


def test_wrong_token_is_a_final_refusal(server) -> None:
    with (
        DdiClient(DdiConfig(base_url=server.url, controller_id="hb-01", target_token="wrong")) as c,
        pytest.raises(DdiError) as err,
    ):
        c.poll()
    assert err.value.status == 401 and not err.value.retryable and err.value.code == "ddi_refused"


def test_503_with_retry_after_is_honoured(server, device, session_key) -> None:
    agent, _ = agent_for(device, server, session_key, [])
    server.fail_next = [(503, "42")]
    assert agent.run_once() == 42.0
    assert agent.run_once() == 300.0


def test_interrupted_download_resumes_with_range_and_checks_every_hash(
    server, device, session_key, tmp_path
) -> None:
    server.artifact = bundle(tmp_path, session_key, "1.1.0", 6).read_bytes()
    server.action = {"id": "17", "state": "open"}
    server.drop_after = len(server.artifact) // 3
    triggered = []
    agent, _ = agent_for(device, server, session_key, triggered)
    agent.run_once()  # connection drops mid-body: retry later, keep the partial file
    part = device.base / "ota-work" / "downloads" / "action-17.swu.part"
    assert part.exists() and 0 < part.stat().st_size < len(server.artifact)
    agent.run_once()
    ranges = [h.get("Range") for m, p, h in server.requests if p.startswith("/artifacts/")]
    assert ranges == [None, f"bytes={len(server.artifact) // 3}-"]
    assert len(triggered) == 1
    assert server.executions() == ["proceeding", "downloaded", "proceeding", "proceeding"]


def test_corrupt_partial_download_is_discarded_and_fetched_again(
    server, device, session_key, tmp_path
) -> None:
    server.artifact = bundle(tmp_path, session_key, "1.1.0", 6).read_bytes()
    server.action = {"id": "18", "state": "open"}
    downloads = device.base / "ota-work" / "downloads"
    downloads.mkdir(parents=True)
    (downloads / "action-18.swu.part").write_bytes(b"\xff" * 1000)
    triggered = []
    agent, _ = agent_for(device, server, session_key, triggered)
    agent._state["action"] = {
        "id": "18",
        "phase": "downloading",
        "bundle": "",
        "version": "",
        "counter": 0,
        "wait_reason": "",
    }
    agent.run_once()
    assert len(triggered) == 1


@pytest.mark.parametrize("which", ["sha256", "sha1", "md5"])
def test_each_server_hash_is_checked(server, tmp_path, which) -> None:
    server.artifact = b"x" * 5000
    good = Artifact("a.swu", 5000, {}, server.url + "/artifacts/1/a.swu")
    import hashlib

    hashes_ = {h: hashlib.new(h, server.artifact).hexdigest() for h in ("sha256", "sha1", "md5")}
    hashes_[which] = "0" * len(hashes_[which])
    art = Artifact(good.filename, good.size, hashes_, good.download_url)
    with (
        DdiClient(DdiConfig(base_url=server.url, controller_id="c", target_token=TOKEN)) as c,
        pytest.raises(BundleRejected) as err,
    ):
        c.download(art, tmp_path / "a.swu", max_bytes=1 << 20)
    assert err.value.code == "artifact_hash" and which in str(err.value)
    assert not (tmp_path / "a.swu").exists() and not (tmp_path / "a.swu.part").exists()


def test_server_sending_more_than_the_artifact_size_is_cut_off(server, tmp_path) -> None:
    server.artifact = b"y" * 10_000
    art = Artifact("a.swu", 4_000, {"sha1": "0" * 40}, server.url + "/artifacts/1/a.swu")
    with (
        DdiClient(DdiConfig(base_url=server.url, controller_id="c", target_token=TOKEN)) as c,
        pytest.raises(BundleRejected) as err,
    ):
        c.download(art, tmp_path / "a.swu", max_bytes=1 << 20)
    assert err.value.code == "artifact_size"
    assert not (tmp_path / "a.swu.part").exists()


def test_token_is_not_sent_to_another_download_host(server, device, session_key, tmp_path) -> None:
    other = HawkbitLike(token=TOKEN)
    try:
        other.artifact = server.artifact = bundle(tmp_path, session_key, "1.1.0", 6).read_bytes()
        server.download_host = other.url
        server.action = {"id": "19", "state": "open"}
        triggered = []
        agent, _ = agent_for(device, server, session_key, triggered)
        agent.run_once()
        dl = [h for _, p, h in other.requests if p.startswith("/artifacts/")]
        assert dl and all("Authorization" not in h for h in dl)
        assert len(triggered) == 1
    finally:
        other.stop()


def test_cancel_before_activation_is_confirmed(server, device, session_key, tmp_path) -> None:
    server.artifact = bundle(tmp_path, session_key, "1.1.0", 6).read_bytes()
    server.action = {"id": "20", "state": "open", "window": "unavailable"}
    triggered = []
    agent, _ = agent_for(device, server, session_key, triggered)
    agent.run_once()
    assert agent.action.phase == "waiting" and agent.action.wait_reason == "server_window"
    server.action["state"] = "cancel"
    agent.run_once()
    assert agent.action is None and triggered == []
    assert server.executions("cancelAction") == ["closed"]
    assert not list((device.base / "ota-work" / "downloads").glob("*"))


def test_cancel_during_activation_is_rejected(server, device, session_key, tmp_path) -> None:
    server.artifact = bundle(tmp_path, session_key, "1.1.0", 6).read_bytes()
    server.action = {"id": "21", "state": "open"}
    triggered = []
    agent, _ = agent_for(device, server, session_key, triggered)
    agent.run_once()
    assert agent.action.phase == "activating"
    server.action["state"] = "cancel"
    agent.run_once()
    assert server.executions("cancelAction") == ["rejected"]
    body = next(b for k, _, b in server.feedback if k == "cancelAction")
    assert (
        body["status"]["result"]["finished"] == "none"
        and "already activating" in body["status"]["details"][0]
    )


def test_maintenance_window_available_lets_the_update_run(
    server, device, session_key, tmp_path
) -> None:
    server.artifact = bundle(tmp_path, session_key, "1.1.0", 6).read_bytes()
    server.action = {"id": "22", "state": "open", "window": "available"}
    triggered = []
    agent, _ = agent_for(device, server, session_key, triggered)
    agent.run_once()
    assert len(triggered) == 1


def test_confirmation_flow_auto_and_staff(server, device, session_key, tmp_path) -> None:
    server.artifact = bundle(tmp_path, session_key, "1.1.0", 6).read_bytes()
    server.action = {"id": "23", "state": "confirm"}
    triggered = []
    agent, _ = agent_for(device, server, session_key, triggered, confirmation="staff")
    agent.run_once()
    assert agent.pending_confirmation == "23" and triggered == []
    assert agent.confirm_pending(False, who="centre manager")
    body = [b for k, _, b in server.feedback if k == "confirmationBase"][-1]
    assert body["confirmation"] == "denied" and "centre manager" in body["details"][0]
    assert server.action["state"] == "confirm"
    agent.run_once()
    assert agent.confirm_pending(True)
    agent.run_once()  # now confirmed: the deployment link appears and runs
    assert len(triggered) == 1
    agent2, _ = agent_for(device, server, session_key, [], confirmation="auto")
    server.action = {"id": "24", "state": "confirm"}
    agent2.run_once()
    assert [b for k, _, b in server.feedback if k == "confirmationBase"][-1][
        "confirmation"
    ] == "confirmed"
    with DdiClient(DdiConfig(base_url=server.url, controller_id="hb-01", target_token=TOKEN)) as c:
        c.set_auto_confirm(True, initiator="district", remark="fleet policy")
        assert c.get_confirmation_base().auto_confirm is True
        c.set_auto_confirm(False)
        assert c.get_confirmation_base().auto_confirm is False


def test_installed_base_and_feedback_shape(server, device, session_key, tmp_path) -> None:
    server.artifact = b"z" * 100
    server.installed_action = "9"
    with DdiClient(DdiConfig(base_url=server.url, controller_id="hb-01", target_token=TOKEN)) as c:
        base = c.poll()
        dep = c.get_installed(base.link("installedBase"))
    assert dep.action_id == "9" and dep.chunks[0].metadata == {"channel": "stable"}
    art = dep.artifacts()[0]
    assert set(art.hashes) == {"sha1", "md5", "sha256"} and art.size == 100
    body = feedback_body("proceeding", "none", ["x" * 900], progress=(1, 3), code=12)
    assert body["status"]["result"] == {"finished": "none", "progress": {"cnt": 1, "of": 3}}
    assert len(body["status"]["details"][0]) == 500 and body["status"]["code"] == 12
    assert len(body["time"]) == 15  # hawkBit's yyyyMMdd'T'HHmmss


# -- mutual TLS ------------------------------------------------------------------------------


def _cert(subject: str, issuer_key, issuer_name, key, *, ca: bool = False, ip: str | None = None):
    now = dt.datetime.now(dt.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ip:
        b = b.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False
        )
    return b.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert=None, key=None) -> Path:
    if cert is not None:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return path


def test_mutual_tls_with_the_device_certificate(tmp_path) -> None:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "district-ca")])
    ca = _cert("district-ca", ca_key, ca_name, ca_key, ca=True)
    srv_key, dev_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca_pem = _write(tmp_path / "ca.pem", ca)
    srv_pem = _write(tmp_path / "srv.pem", _cert("ota", ca_key, ca_name, srv_key, ip="127.0.0.1"))
    srv_key_pem = _write(tmp_path / "srv.key", key=srv_key)
    dev_pem = _write(tmp_path / "dev.pem", _cert("hb-01", ca_key, ca_name, dev_key))
    dev_key_pem = _write(tmp_path / "dev.key", key=dev_key)
    sctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    sctx.load_cert_chain(srv_pem, srv_key_pem)
    sctx.load_verify_locations(ca_pem)
    sctx.verify_mode = ssl.CERT_REQUIRED
    s = HawkbitLike(token=TOKEN, ssl_context=sctx)
    try:
        ctx = client_ssl_context(ca_pem, dev_pem, dev_key_pem)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            client = DdiClient(
                DdiConfig(
                    base_url=s.url, controller_id="hb-01", target_token=TOKEN, ssl_context=ctx
                )
            )
        # httpx gets the device's SSLContext as verify=, not the deprecated cert= / verify=<str>
        assert not [w for w in caught if issubclass(w.category, DeprecationWarning)], [
            str(w.message) for w in caught
        ]
        with client as c:
            assert c.poll().sleep_s == 300.0
        no_cert = client_ssl_context(ca_pem)
        with (
            DdiClient(
                DdiConfig(
                    base_url=s.url,
                    controller_id="hb-01",
                    target_token=TOKEN,
                    ssl_context=no_cert,
                    timeout_s=5,
                )
            ) as c,
            pytest.raises(DdiError) as err,
        ):
            c.poll()
        assert err.value.retryable and err.value.code == "ddi_unreachable"
    finally:
        s.stop()
