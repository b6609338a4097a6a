"""The SQLAlchemy contract in pyproject.toml is a rule, not a list of modules:
run exactly that contract (with the project's session options) against a
small made-up project and check it accepts and refuses the right shapes,
including a feature store that is a package (``feature.store.rows``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("importlinter")

REPO = Path(__file__).resolve().parents[2]

MODULES = {
    "proj/__init__.py": "",
    "proj/db/__init__.py": "",
    "proj/db/engine.py": "import sqlalchemy\n",
    "proj/db/migrate.py": "import alembic\n",
    # a feature whose store is one module
    "proj/face/__init__.py": "",
    "proj/face/store.py": "from sqlalchemy import select\n",
    "proj/face/footfall/__init__.py": "",
    "proj/face/footfall/store.py": "from sqlalchemy.orm import Session\n",
    # a feature whose store is a package
    "proj/payment/__init__.py": "",
    "proj/payment/store/__init__.py": "from sqlalchemy.orm import sessionmaker\n",
    "proj/payment/store/rows.py": "from sqlalchemy.orm import Mapped\n",
    "proj/payment/store/queries/__init__.py": "",
    "proj/payment/store/queries/ledger.py": "from sqlalchemy import func\n",
    # types only: never runs
    "proj/payment/enrol.py": (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from sqlalchemy.orm import Session\n"
    ),
    # through another module: fine (allow_indirect_imports)
    "proj/payment/service.py": "from proj.payment.store import rows\n",
}

VIOLATIONS = {
    "proj/payment/report.py": ("from sqlalchemy import select\n", "proj.payment.report"),
    "proj/payment/storefront.py": ("import sqlalchemy\n", "proj.payment.storefront"),
    "proj/payment/store/migrations.py": ("import alembic\n", "proj.payment.store.migrations"),
    "proj/sync/__init__.py": ("", ""),
    "proj/sync/restore.py": ("import sqlalchemy.orm\n", "proj.sync.restore"),
    "proj/dbtools.py": ("import sqlalchemy\n", "proj.dbtools"),
}


def _toml(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)  # strings, lists and booleans read the same


def _config(tmp: Path) -> Path:
    doc = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    linter = doc["tool"]["importlinter"]
    [contract] = [c for c in linter["contracts"] if "sqlalchemy" in c.get("forbidden_modules", ())]
    contract = dict(contract)
    assert sorted(contract["source_modules"]) == sorted(linter["root_packages"]), (
        "the contract covers every root package"
    )
    contract["source_modules"] = ["proj"]
    contract["ignore_imports"] = [
        e.replace("terminal.db", "proj.db") for e in contract.get("ignore_imports", [])
    ]
    lines = ["[tool.importlinter]", 'root_packages = ["proj"]']
    for key, value in linter.items():
        if key not in ("root_packages", "contracts"):
            lines.append(f"{key} = {_toml(value)}")
    lines.append("[[tool.importlinter.contracts]]")
    lines += [f"{key} = {_toml(value)}" for key, value in contract.items()]
    path = tmp / "pyproject.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _lint(tmp: Path, files: dict[str, str]) -> subprocess.CompletedProcess[str]:
    for rel, text in files.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_text(text, encoding="utf-8")
    config = _config(tmp)
    code = (
        "import sys; from importlinter.cli import lint_imports; "
        f"sys.exit(lint_imports(config_filename={str(config)!r}, no_cache=True, no_logo=True))"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp)}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=tmp, env=env, capture_output=True, text=True, timeout=120
    )


def test_terminal_db_and_store_modules_and_packages_are_allowed(tmp_path: Path) -> None:
    done = _lint(tmp_path, MODULES)
    assert done.returncode == 0, done.stdout + done.stderr


def test_everything_else_is_refused(tmp_path: Path) -> None:
    done = _lint(tmp_path, {**MODULES, **{rel: text for rel, (text, _) in VIOLATIONS.items()}})
    assert done.returncode == 1, done.stdout + done.stderr
    for _rel, (_text, module) in VIOLATIONS.items():
        if module:
            assert f"{module} -> " in done.stdout, f"{module} not reported:\n{done.stdout}"
    for allowed in ("proj.payment.store.rows ->", "proj.payment.enrol ->", "proj.db.engine ->"):
        assert allowed not in done.stdout
