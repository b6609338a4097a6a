"""OTA error types. Every refusal carries a stable ``code`` (sent to the DDI
server in the feedback ``details`` and used by tests) and a message fit to show."""

from __future__ import annotations

from terminal.core.errors import TerminalError


class OtaError(TerminalError):
    """Root of OTA errors."""

    code = "ota_error"


class OtaConfigError(OtaError):
    code = "ota_config_invalid"


class BundleRejected(OtaError):
    """A bundle failed verification; nothing from it was installed.

    ``code`` is one of the reason codes below; ``str(err)`` explains it."""

    code = "bundle_rejected"


class DdiError(OtaError):
    """The DDI server could not be reached, refused a request, or answered
    something that is not DDI. ``retryable`` tells the poll loop whether to back
    off and try again (network trouble, 5xx, 429) or give up on this request."""

    code = "ddi_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        retryable: bool = False,
        retry_after: str | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after


# Reason codes for BundleRejected (stable; documented in deploy/README.md).
REASONS: dict[str, str] = {
    "bad_container": "the bundle is not a readable .swu (cpio newc) archive",
    "missing_manifest": "the bundle has no manifest or no signature",
    "bad_manifest": "the manifest is not valid",
    "bad_signature": "the manifest signature does not verify against a trusted key",
    "unknown_key": "the manifest is signed by a key the terminal does not trust",
    "wrong_product": "the bundle is for another product or hardware",
    "downgrade": "the bundle would install an older version",
    "replayed": "the manifest is not newer than one already installed (replay)",
    "hash_mismatch": "a file in the bundle does not match its hash",
    "length_mismatch": "a file in the bundle does not have its declared length",
    "unlisted_file": "the bundle contains a file its manifest does not list",
    "missing_file": "a file listed in the manifest is missing from the bundle",
    "oversize": "the bundle or a file in it is larger than allowed",
    "unsafe_archive": "an archive in the bundle has an unsafe entry",
    "damaged_archive": "an archive in the bundle is damaged or truncated",
    "artifact_hash": "the downloaded artifact does not match the hash the server gave",
    "artifact_size": "the downloaded artifact does not have the size the server gave",
    "rolled_back": "the bundle was installed and rolled back on this terminal before",
}
