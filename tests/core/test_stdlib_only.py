"""terminal.core is standard library only, by rule: every import in every module
under terminal/core (at module level, in functions, under TYPE_CHECKING, and
``importlib.import_module("...")`` with a literal name) names a module of the
running Python's standard library (``sys.stdlib_module_names``) or
``terminal.core`` itself. No list of forbidden packages to keep up to date."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "terminal" / "core"
PACKAGE = "terminal.core"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join([*base, *([name] if name else [])])


def imported_names(source: str, module: str = PACKAGE, is_package: bool = False) -> list[str]:
    """Every module name ``source`` imports, relative imports made absolute."""
    names: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = (
                _resolve_relative(module, is_package, node.level, node.module)
                if node.level
                else node.module or ""
            )
            if node.module is None:  # `from . import x`: x is a module
                names.extend(f"{base}.{alias.name}" for alias in node.names)
            else:
                names.append(base)
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Name) and node.func.id == "__import__")
                or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
            )
        ):
            names.append(node.args[0].value)
    return names


def allowed(name: str) -> bool:
    if name == PACKAGE or name.startswith(PACKAGE + "."):
        return True
    return name.split(".")[0] in sys.stdlib_module_names


def offenders(source: str, module: str = PACKAGE + ".x", is_package: bool = False) -> list[str]:
    return [n for n in imported_names(source, module, is_package) if not allowed(n)]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import os, json\nfrom collections.abc import Mapping", []),
        ("from __future__ import annotations", []),
        ("from terminal.core.money import Money\nfrom . import ids", []),
        ("import numpy as np", ["numpy"]),
        ("from sqlalchemy.orm import Session", ["sqlalchemy.orm"]),
        ("def f():\n    import cv2\n", ["cv2"]),
        (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pydantic\n",
            ["pydantic"],
        ),
        ("import importlib\nimportlib.import_module('httpx')", ["httpx"]),
        ("__import__('cryptography')", ["cryptography"]),
        ("from terminal.db.engine import write_session", ["terminal.db.engine"]),
        ("from .. import db", ["terminal.db"]),
        ("from ..db import engine", ["terminal.db"]),
        ("import face.gallery", ["face.gallery"]),
    ],
)
def test_the_checker_finds_every_kind_of_import(source: str, expected: list[str]) -> None:
    assert offenders(source) == expected


CORE_MODULES = sorted(CORE.rglob("*.py"))


def test_terminal_core_has_modules() -> None:
    assert len(CORE_MODULES) >= 5  # the glob found the package


@pytest.mark.parametrize("path", CORE_MODULES, ids=lambda p: str(p.relative_to(REPO)))
def test_terminal_core_imports_only_the_standard_library(path: Path) -> None:
    found = offenders(
        path.read_text(encoding="utf-8"), module_name(path), is_package=path.name == "__init__.py"
    )
    assert found == [], (
        f"{path.relative_to(REPO)} imports {found}: terminal.core is standard library only "
        "(put code that needs a third-party package in terminal.db / terminal.hw / a feature)"
    )
