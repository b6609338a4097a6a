"""Release versions: one to four dot-separated non-negative integers ("1.4.0").

Kept deliberately simple so the terminal, the updater (stdlib only, its own copy
of this rule) and the release tooling can never disagree about ordering.
Pre-release suffixes are refused: a release counter (see the manifest) already
orders builds.
"""

from __future__ import annotations

import re

from sync.ota.errors import BundleRejected

_VERSION_RE = re.compile(r"^(0|[1-9]\d{0,5})(\.(0|[1-9]\d{0,5})){0,3}$")


def parse_version(text: str) -> tuple[int, int, int, int]:
    """``"1.4"`` -> ``(1, 4, 0, 0)``. Raises BundleRejected(bad_manifest) otherwise."""
    if not isinstance(text, str) or not _VERSION_RE.fullmatch(text):
        raise BundleRejected(
            f"version {text!r:.40} is not 1-4 dot-separated numbers (e.g. 1.4.0)",
            code="bad_manifest",
        )
    parts = [int(p) for p in text.split(".")]
    parts += [0] * (4 - len(parts))
    return (parts[0], parts[1], parts[2], parts[3])


def is_valid_version(text: str) -> bool:
    return isinstance(text, str) and _VERSION_RE.fullmatch(text) is not None


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as ``a`` is older than, equal to or newer than ``b``."""
    pa, pb = parse_version(a), parse_version(b)
    return (pa > pb) - (pa < pb)
