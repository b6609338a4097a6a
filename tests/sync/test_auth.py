from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sync_helpers import CENTRE, DEVICE

from sync.auth import (
    AuthError,
    NonceWindow,
    Signer,
    client_ssl_context,
    id_number_hmac,
    load_device_key,
    parse_public_key,
    provision_device_key,
    public_key_text,
    server_ssl_context,
    verify_request,
)
from sync.client import PlatformClient, PlatformError
from sync.platform.server import serve
from terminal.core.clock import SystemClock
from terminal.core.errors import TerminalError

T = 1_800_000_000


@pytest.fixture
def signer(tmp_path: Path) -> Signer:
    provision_device_key(tmp_path / "k.pem")
    return Signer("dev-01", load_device_key(tmp_path / "k.pem"))


def _verify(
    signer: Signer,
    hdrs: dict[str, str],
    *,
    method: str = "POST",
    path: str = "/v1/batches",
    query: str = "",
    body: bytes = b"{}",
    now: int = T,
    nonces: NonceWindow | None = None,
) -> None:
    lower = {k.lower(): v for k, v in hdrs.items()}
    pub = parse_public_key(public_key_text(signer.key))
    verify_request(method, path, query, body, lower, pub, now, 300, nonces)


def test_sign_verify_roundtrip_and_every_tamper_is_caught(signer: Signer) -> None:
    base = {"Idempotency-Key": "batch-1"}
    hdrs = {**base, **signer.sign("POST", "/v1/batches", "", b"{}", base, created=T)}
    assert (
        '"idempotency-key"' in hdrs["Signature-Input"]
        and 'alg="ed25519"' in hdrs["Signature-Input"]
    )
    _verify(signer, hdrs)
    cases = [
        ({"body": b"{ }"}, "digest_mismatch"),
        ({"path": "/v1/other"}, "bad_signature"),
        ({"method": "PUT"}, "bad_signature"),
        ({"query": "a=1"}, "bad_signature"),
        ({"now": T + 301}, "clock_skew"),
        ({"now": T - 301}, "clock_skew"),
    ]
    for change, code in cases:
        with pytest.raises(AuthError) as info:
            _verify(signer, hdrs, **change)  # type: ignore[arg-type]
        assert info.value.code == code, change
    with pytest.raises(AuthError):
        _verify(signer, {**hdrs, "Idempotency-Key": "batch-2"})
    uncovered = signer.sign("POST", "/v1/batches", "", b"{}", {}, created=T)
    with pytest.raises(AuthError, match="must cover"):
        _verify(signer, {**uncovered, "Idempotency-Key": "batch-1"})  # key added after signing


def test_nonce_replay_is_refused(signer: Signer) -> None:
    nonces = NonceWindow(300)
    hdrs = signer.sign("GET", "/x", "", b"", {}, created=T)
    _verify(signer, hdrs, method="GET", path="/x", body=b"", nonces=nonces)
    with pytest.raises(AuthError) as info:
        _verify(signer, hdrs, method="GET", path="/x", body=b"", nonces=nonces)
    assert info.value.code == "replayed_request"


def test_device_key_file_is_private(tmp_path: Path) -> None:
    key = tmp_path / "keys" / "device.pem"
    pub = provision_device_key(key)
    assert provision_device_key(key) == pub  # idempotent
    assert key.stat().st_mode & 0o777 == 0o600
    key.chmod(0o644)
    with pytest.raises(AuthError, match="readable by others"):
        load_device_key(key)
    with pytest.raises(AuthError, match="missing"):
        load_device_key(tmp_path / "nope.pem")


def test_id_number_hmac_is_normalised_and_keyed() -> None:
    pepper = b"district-pepper-32-bytes-long!!!"
    a = id_number_hmac(pepper, "11010519491231002x")
    assert a == id_number_hmac(pepper, " 110105 19491231002X ")
    assert a != id_number_hmac(b"another-district-pepper-32bytes!", "11010519491231002X")
    assert len(a) == 64 and set(a) <= set("0123456789abcdef")
    assert "11010519491231002" not in a
    with pytest.raises(TerminalError):
        id_number_hmac(pepper, "12345")


def _cert(
    name: str, issuer_key, issuer_name, key, *, ca: bool, san: str | None = None
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        import ipaddress

        b = b.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(san))]), critical=False
        )
    return b.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key) -> tuple[Path, Path]:
    c, k = path.with_suffix(".crt"), path.with_suffix(".key")
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return c, k


def test_mutual_tls_with_a_context_built_here(tmp_path: Path) -> None:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "district CA")])
    ca = _cert("district CA", ca_key, ca_name, ca_key, ca=True)
    ca_file, _ = _write(tmp_path / "ca", ca, ca_key)
    srv_key = ec.generate_private_key(ec.SECP256R1())
    srv_crt, srv_keyf = _write(
        tmp_path / "srv",
        _cert("platform", ca_key, ca_name, srv_key, ca=False, san="127.0.0.1"),
        srv_key,
    )
    cli_key = ec.generate_private_key(ec.SECP256R1())
    cli_crt, cli_keyf = _write(
        tmp_path / "cli", _cert(DEVICE, ca_key, ca_name, cli_key, ca=False), cli_key
    )

    pub = provision_device_key(tmp_path / "device.pem")
    handle = serve(
        "127.0.0.1",
        0,
        f"sqlite:///{tmp_path}/p.db",
        seed={"devices": [{"device_id": DEVICE, "centre_id": CENTRE, "public_key": pub}]},
        ssl_context=server_ssl_context(srv_crt, srv_keyf, client_ca_file=ca_file),
    )
    try:
        assert handle.url.startswith("https://")
        signer = Signer(DEVICE, load_device_key(tmp_path / "device.pem"))
        ctx = client_ssl_context(ca_file, cli_crt, cli_keyf)
        assert isinstance(ctx, ssl.SSLContext)
        with PlatformClient(handle.url, signer, SystemClock(), verify=ctx) as client:
            assert client.stream_head(DEVICE, "kiosk")["next_seq"] == 1
        # Without a client certificate the handshake is refused.
        with (
            PlatformClient(
                handle.url, signer, SystemClock(), verify=client_ssl_context(ca_file), timeout_s=5
            ) as client,
            pytest.raises(PlatformError) as info,
        ):
            client.stream_head(DEVICE, "kiosk")
        assert info.value.retryable and info.value.error == "network"
        # A server certificate from another CA is refused by the terminal.
        with pytest.raises(httpx.ConnectError):
            httpx.get(handle.url + "/healthz", verify=ssl.create_default_context())
    finally:
        handle.stop()
    with pytest.raises(AuthError, match="both"):
        client_ssl_context(ca_file, cli_crt, None)
