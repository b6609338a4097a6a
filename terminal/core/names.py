"""Display masking of names and the shape of district-issued ids, shared by the
roster, payment and the data spec (stdlib only)."""

from __future__ import annotations

import re

# The data spec's `Code`: ids assigned by the district (resident, device, staff ...).
CODE_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def is_code(text: str) -> bool:
    """True when ``text`` (already stripped) is a valid district id."""
    return CODE_RE.match(text) is not None


def mask_name(name: str) -> str:
    """Mask a name for display: 张三华 -> 张*华, 张三 -> 张*, 张 -> 张; names with
    spaces (Latin names) are masked word by word. Only the masked form is ever
    stored in clear or shown on the kiosk."""
    name = name.strip()
    if not name:
        return ""
    if " " in name:
        return " ".join(mask_name(part) for part in name.split())
    if len(name) == 1:
        return name
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]
