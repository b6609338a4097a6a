"""Pure modules do no IO (ARCHITECTURE.md: pricing, subsidy rules, the kiosk
flow, gallery matching, footfall counting, the retry schedule).

Checked by rule on the import graph: neither a pure module nor anything of
the project it imports, directly or through other project modules, at run
time, imports a database, network, device, vision or process library.
Imports under ``TYPE_CHECKING`` do not run and are not counted."""

from __future__ import annotations

import pytest

grimp = pytest.importorskip("grimp", reason="the import graph comes from grimp (import-linter)")

ROOTS = ("terminal", "face", "payment", "sync", "ui")

# Libraries that do IO, and what a pure module would be doing with them.
IO_LIBRARIES = {
    "sqlalchemy": "database",
    "alembic": "database migrations",
    "sqlite3": "database",
    "httpx": "network",
    "socket": "network",
    "ssl": "network",
    "http": "network",
    "serial": "serial ports",
    "cv2": "cameras and images",
    "onnxruntime": "model inference",
    "insightface": "model files",
    "PyQt6": "the screen",
    "subprocess": "processes",
    "multiprocessing": "processes",
    "shutil": "file system",
    "tempfile": "file system",
}

PURE: list[tuple[str, dict[str, str]]] = [
    # (module, {library it may reach: why})
    ("payment.domain", {}),
    ("payment.subsidy", {}),
    ("payment.ledger", {}),
    ("payment.limits", {}),
    ("payment.guard", {}),
    ("payment.visiting", {}),
    ("payment.flow", {}),
    ("payment.receipt", {}),
    ("face.gallery", {}),
    # face.meanshape reads the mean face shape shipped in the insightface wheel by
    # path (importlib.util.find_spec), without importing insightface
    ("face.challenge", {}),
    ("face.footfall.counting", {}),
    ("sync.retry", {}),
    ("terminal.core.backoff", {}),
]


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(
        *ROOTS, include_external_packages=True, exclude_type_checking_imports=True
    )


@pytest.mark.parametrize(("module", "allowed"), PURE, ids=[m for m, _ in PURE])
def test_pure_module_reaches_no_io_library(
    graph: grimp.ImportGraph, module: str, allowed: dict[str, str]
) -> None:
    assert module in graph.modules, f"{module} is gone: update this table"
    reached = graph.find_upstream_modules(module) | {module}
    bad = sorted(
        (lib, graph.find_shortest_chain(importer=module, imported=lib))
        for lib in IO_LIBRARIES
        if lib in reached and lib not in allowed
    )
    assert bad == [], "\n".join(
        f"{module} reaches {lib} ({IO_LIBRARIES[lib]}) via {' -> '.join(chain or ())}"
        for lib, chain in bad
    )


@pytest.mark.parametrize(("module", "allowed"), PURE, ids=[m for m, _ in PURE])
def test_allowances_are_still_needed(
    graph: grimp.ImportGraph, module: str, allowed: dict[str, str]
) -> None:
    reached = graph.find_upstream_modules(module)
    assert set(allowed) <= reached, f"{module} no longer reaches {set(allowed) - reached}"
