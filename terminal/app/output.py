"""How CLI commands print their results (JSON or a line of text).

Kept apart from :mod:`terminal.app.cli`, which imports every command module,
so that the command modules can use it without importing the CLI back."""

from __future__ import annotations

import argparse
import json
from typing import Any


def emit(args: argparse.Namespace, doc: Any, text: str | None = None) -> None:
    """Print ``doc`` as JSON when --json was given, else ``text`` (or JSON)."""
    if getattr(args, "json", False) or text is None:
        print(json.dumps(doc, ensure_ascii=False, indent=2, default=str))
    else:
        print(text)
