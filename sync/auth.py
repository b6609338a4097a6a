"""Device identity and request signing.

* Each terminal gets an Ed25519 key pair at provisioning
  (:func:`provision_device_key`); the private key stays in a 0600 file (or a
  systemd credential), the public key is registered at the platform.
* Every request is signed per RFC 9421 (HTTP Message Signatures) with the
  components ``"@method" "@path" "@query" "content-digest"`` (plus
  ``"idempotency-key"`` when present) and the parameters ``created``, ``nonce``,
  ``keyid`` and ``alg="ed25519"``. ``Content-Digest`` is RFC 9530 sha-256.
  The platform refuses a request outside its timestamp window or with a nonce
  it has already seen (see :class:`NonceWindow` and :func:`verify_request`).
* Mutual TLS: :func:`client_ssl_context` builds the ``ssl.SSLContext`` that is
  passed as ``verify=`` to httpx (``cert=`` is deprecated there);
  :func:`server_ssl_context` is the platform side.

Also here: the spec's pseudonyms made with the district pepper:
:func:`id_number_hmac` (ID-card numbers), :func:`card_hmac` and
:func:`lookup_hmac` (city-wide meals, spec 1.2), and :func:`pepper_id`, which
names a pepper without revealing it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import ssl
import stat
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from terminal.core.atomic import atomic_write_bytes
from terminal.core.errors import TerminalError

SIGNATURE_LABEL = "sig1"
DEFAULT_WINDOW_S = 300
_BASE_COMPONENTS = ("@method", "@path", "@query", "content-digest")


class AuthError(TerminalError):
    """A request could not be signed, or a signature was refused. ``code`` is the
    spec's error code (bad_signature, clock_skew, replayed_request, ...)."""

    code = "bad_signature"


# -- keys --------------------------------------------------------------------------------


def provision_device_key(path: Path) -> str:
    """Create the device's Ed25519 private key at ``path`` (0600, parent 0700) if it
    does not exist yet, and return the public key in the spec's text form
    (base64 of the 32 raw bytes) for registration at the platform."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        # whole or not at all, and durable: a power cut must not leave a short key
        atomic_write_bytes(path, pem, mode=0o600, overwrite=False)
    return public_key_text(load_device_key(path))


def load_device_key(path: Path) -> Ed25519PrivateKey:
    """Read the device key; refuse a file readable by group or others."""
    if not path.is_file():
        raise AuthError(
            f"device key {path} is missing; provision the device first", code="device_key_missing"
        )
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise AuthError(
            f"device key {path} is readable by others (mode {mode:o}); run chmod 600 on it",
            code="device_key_invalid",
        )
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except ValueError as exc:
        raise AuthError(
            f"device key {path} is not a PEM private key", code="device_key_invalid"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise AuthError(f"device key {path} is not an Ed25519 key", code="device_key_invalid")
    return key


def public_key_text(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def parse_public_key(text: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, TypeError) as exc:
        raise AuthError(
            "not an Ed25519 public key (base64 of 32 bytes)", code="bad_public_key"
        ) from exc


# -- RFC 9530 / 9421 ---------------------------------------------------------------------


def content_digest(body: bytes) -> str:
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode("ascii") + ":"


def _quote(value: str) -> str:
    if not re.fullmatch(r"[\x20-\x7e]*", value) or '"' in value or "\\" in value:
        raise AuthError("signature parameter has characters outside the allowed set")
    return f'"{value}"'


def signature_params(components: tuple[str, ...], created: int, nonce: str, keyid: str) -> str:
    inner = " ".join(_quote(c) for c in components)
    return f'({inner});created={created};nonce={_quote(nonce)};keyid={_quote(keyid)};alg="ed25519"'


def signature_base(
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    components: tuple[str, ...],
    params: str,
) -> bytes:
    """The RFC 9421 signature base. ``headers`` keys are lower-case."""
    lines = []
    for comp in components:
        if comp == "@method":
            value = method.upper()
        elif comp == "@path":
            value = path or "/"
        elif comp == "@query":
            value = "?" + query if query else "?"
        elif comp.startswith("@"):
            raise AuthError(f"unsupported derived component {comp}")
        else:
            if comp not in headers:
                raise AuthError(f"covered header {comp} is missing")
            value = headers[comp].strip()
        lines.append(f'"{comp}": {value}')
    lines.append(f'"@signature-params": {params}')
    return "\n".join(lines).encode("utf-8")


@dataclass(frozen=True, slots=True)
class Signer:
    """Signs requests for one device."""

    device_id: str
    key: Ed25519PrivateKey

    def sign(
        self,
        method: str,
        path: str,
        query: str,
        body: bytes,
        headers: Mapping[str, str],
        created: int,
        nonce: str | None = None,
    ) -> dict[str, str]:
        """Return the headers to add: Content-Digest, Signature-Input, Signature.
        ``headers`` are the request's other headers (any case)."""
        lower = {k.lower(): v for k, v in headers.items()}
        lower["content-digest"] = content_digest(body)
        components = _BASE_COMPONENTS + (("idempotency-key",) if "idempotency-key" in lower else ())
        params = signature_params(
            components, created, nonce or secrets.token_urlsafe(18), self.device_id
        )
        base = signature_base(method, path, query, lower, components, params)
        sig = base64.b64encode(self.key.sign(base)).decode("ascii")
        return {
            "Content-Digest": lower["content-digest"],
            "Signature-Input": f"{SIGNATURE_LABEL}={params}",
            "Signature": f"{SIGNATURE_LABEL}=:{sig}:",
        }


_INPUT_RE = re.compile(
    r'^sig1=\((?P<components>(?:"[^"]+"\s*)*)\)'
    r'(?P<params>(?:;[a-z]+=(?:"[^"]*"|\d+))*)$'
)
_PARAM_RE = re.compile(r';([a-z]+)=("[^"]*"|\d+)')
_SIG_RE = re.compile(r"^sig1=:(?P<sig>[A-Za-z0-9+/=]+):$")


@dataclass(frozen=True, slots=True)
class SignedRequest:
    keyid: str
    created: int
    nonce: str
    components: tuple[str, ...]
    params: str
    signature: bytes


def parse_signature_headers(headers: Mapping[str, str]) -> SignedRequest:
    """Parse Signature-Input and Signature (``headers`` keys lower-case)."""
    sig_input = headers.get("signature-input", "").strip()
    sig_value = headers.get("signature", "").strip()
    m = _INPUT_RE.match(sig_input)
    s = _SIG_RE.match(sig_value)
    if not m or not s:
        raise AuthError("missing or unreadable Signature-Input / Signature headers")
    components = tuple(re.findall(r'"([^"]+)"', m.group("components")))
    params = dict((k, v.strip('"')) for k, v in _PARAM_RE.findall(m.group("params")))
    for required in ("created", "nonce", "keyid", "alg"):
        if required not in params:
            raise AuthError(f"signature parameter {required} is missing")
    if params["alg"] != "ed25519":
        raise AuthError('only alg="ed25519" is accepted')
    if not params["created"].isdigit():
        raise AuthError("signature parameter created must be an integer")
    if not 16 <= len(params["nonce"]) <= 64:
        raise AuthError("signature nonce must be 16-64 characters")
    return SignedRequest(
        keyid=params["keyid"],
        created=int(params["created"]),
        nonce=params["nonce"],
        components=components,
        params=sig_input.removeprefix(f"{SIGNATURE_LABEL}="),
        signature=base64.b64decode(s.group("sig")),
    )


class NonceWindow:
    """Nonces seen per device within the timestamp window (thread-safe, in memory).

    The reference platform also persists nonces in its database; this class is the
    fast path and the whole mechanism for single-process use."""

    def __init__(self, window_s: int = DEFAULT_WINDOW_S, max_entries: int = 200_000) -> None:
        self.window_s = window_s
        self._seen: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_entries

    def check_and_add(self, keyid: str, nonce: str, created: int, now: int) -> bool:
        """True if fresh (and remembered); False if replayed."""
        with self._lock:
            horizon = now - 2 * self.window_s
            while self._seen:
                (_k, first) = next(iter(self._seen.items()))
                if first >= horizon and len(self._seen) < self._max:
                    break
                self._seen.popitem(last=False)
            key = (keyid, nonce)
            if key in self._seen:
                return False
            self._seen[key] = max(created, now)
            return True


def verify_request(
    method: str,
    path: str,
    query: str,
    body: bytes,
    headers: Mapping[str, str],
    public_key: Ed25519PublicKey,
    now: int,
    window_s: int = DEFAULT_WINDOW_S,
    nonces: NonceWindow | None = None,
) -> SignedRequest:
    """Verify a signed request (``headers`` keys lower-case). Raises AuthError with the
    spec's code: digest_mismatch, bad_signature, clock_skew, replayed_request."""
    signed = parse_signature_headers(headers)
    needed = set(_BASE_COMPONENTS) | (
        {"idempotency-key"} if "idempotency-key" in headers else set()
    )
    if not needed <= set(signed.components):
        raise AuthError(f"signature must cover {', '.join(sorted(needed))}")
    if headers.get("content-digest", "").strip() != content_digest(body):
        raise AuthError("Content-Digest does not match the body", code="digest_mismatch")
    base = signature_base(method, path, query, headers, signed.components, signed.params)
    try:
        public_key.verify(signed.signature, base)
    except InvalidSignature:
        raise AuthError("signature does not verify", code="bad_signature") from None
    if abs(now - signed.created) > window_s:
        raise AuthError(
            f"request time is {now - signed.created:+d} s from the platform's clock "
            f"(allowed {window_s} s)",
            code="clock_skew",
        )
    if nonces is not None and not nonces.check_and_add(
        signed.keyid, signed.nonce, signed.created, now
    ):
        raise AuthError(
            "this request was already received (replayed nonce)", code="replayed_request"
        )
    return signed


# -- TLS ---------------------------------------------------------------------------------


def client_ssl_context(
    ca_file: Path | None = None, cert_file: Path | None = None, key_file: Path | None = None
) -> ssl.SSLContext:
    """TLS context for the platform connection: verify the server against ``ca_file``
    (or the system store) and, for mutual TLS, present ``cert_file``/``key_file``.
    Pass it to httpx as ``verify=``."""
    ctx = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=str(ca_file) if ca_file else None
    )
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if (cert_file is None) != (key_file is None):
        raise AuthError("mutual TLS needs both a client certificate and its key", code="tls_config")
    if cert_file is not None and key_file is not None:
        try:
            ctx.load_cert_chain(str(cert_file), str(key_file))
        except (OSError, ssl.SSLError) as exc:
            raise AuthError(
                f"cannot load the client certificate: {exc}", code="tls_config"
            ) from exc
    return ctx


def server_ssl_context(
    cert_file: Path, key_file: Path, client_ca_file: Path | None = None
) -> ssl.SSLContext:
    """Platform-side TLS; with ``client_ca_file`` a client certificate is required."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert_file), str(key_file))
    if client_ca_file is not None:
        ctx.load_verify_locations(cafile=str(client_ca_file))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


# -- pseudonyms --------------------------------------------------------------------------


def normalise_id_number(id_number: str) -> str:
    text = "".join(id_number.split()).upper()
    if not re.fullmatch(r"\d{17}[\dX]|\d{15}", text):
        raise TerminalError("not a valid ID-card number format", code="bad_id_number")
    return text


def id_number_hmac(pepper: bytes, id_number: str) -> str:
    """The spec's ``id_number_hmac``: HMAC-SHA256(district pepper, normalised number)."""
    if len(pepper) < 16:
        raise TerminalError("the district pepper must be at least 16 bytes", code="bad_pepper")
    return hmac.new(
        pepper, normalise_id_number(id_number).encode("ascii"), hashlib.sha256
    ).hexdigest()


def _check_pepper(pepper: bytes) -> None:
    if len(pepper) < 16:
        raise TerminalError("the district pepper must be at least 16 bytes", code="bad_pepper")


def normalise_card_number(card_number: str) -> str:
    text = "".join(card_number.split()).upper()
    if not text or len(text) > 64 or not text.isascii() or not text.isalnum():
        raise TerminalError("not a card number (letters and digits)", code="bad_card_number")
    return text


def card_hmac(pepper: bytes, card_number: str) -> str:
    """The spec's ``card_hmac``: HMAC-SHA256(district pepper, the card number with
    spaces removed, upper-cased), lowercase hex."""
    _check_pepper(pepper)
    text = normalise_card_number(card_number).encode("ascii")
    return hmac.new(pepper, text, hashlib.sha256).hexdigest()


def lookup_text(name: str, phone_last4: str) -> str:
    """``NFKC(name)`` with every white space removed, ``|``, the phone's last 4 digits."""
    clean = "".join(unicodedata.normalize("NFKC", name).split())
    last4 = "".join(phone_last4.split())
    if not clean:
        raise TerminalError("the name is empty", code="bad_lookup")
    if len(last4) != 4 or not last4.isascii() or not last4.isdigit():
        raise TerminalError("the phone's last four digits are needed", code="bad_lookup")
    return f"{clean}|{last4}"


def lookup_hmac(pepper: bytes, name: str, phone_last4: str) -> str:
    """The spec's ``lookup_hmac``: HMAC-SHA256(district pepper, NFKC name without
    white space + ``|`` + phone last 4), lowercase hex."""
    _check_pepper(pepper)
    text = lookup_text(name, phone_last4).encode("utf-8")
    return hmac.new(pepper, text, hashlib.sha256).hexdigest()


PEPPER_ID_LABEL = b"care-terminal/district-pepper-id"


def pepper_id(pepper: bytes) -> str:
    """The district roster's ``pepper_id``: 16 hex digits naming the pepper."""
    _check_pepper(pepper)
    return hmac.new(pepper, PEPPER_ID_LABEL, hashlib.sha256).hexdigest()[:16]
