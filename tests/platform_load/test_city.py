"""A city against the reference platform: simulated terminals (distinct device
ids and keys, all registered) uploading signed, chained record batches and
pulling their centre's menu concurrently, against ``platform serve`` started as
a real process on a throw-away PostgreSQL with several workers, over loopback.
Nothing sent may be missing from the database, held twice, or held unsent.

The 2,000-terminal run is the README's figure (``care-terminal bench platform``
runs the same code); a small run of the same path stays in the quick suite."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from sync.platform.load import run_load
from sync.platform.pgtemp import PgServer, missing_reason, pg_server

pytestmark = pytest.mark.skipif(missing_reason() is not None, reason=str(missing_reason()))


@pytest.fixture
def pg() -> Iterator[PgServer]:
    with pg_server() as server:
        yield server


def _check(doc: dict, terminals: int, rounds: int, batch: int) -> None:
    assert doc["refused"] == [], doc["refused"]
    assert doc["lost"] == 0 and doc["duplicated"] == 0 and doc["extra"] == 0, doc
    assert doc["records_sent"] == doc["records_held"] == terminals * rounds * batch, doc
    assert doc["batches"] == doc["pulls"] == terminals * rounds, doc
    assert doc["server_tracebacks"] == 0
    assert doc["server_rss_mb"]["processes"] >= 1 + doc["workers"]  # the parent and its workers


def test_a_few_terminals_against_several_workers(pg: PgServer) -> None:
    doc = run_load(
        pg.url(pg.create_database("small")),
        terminals=20,
        centres=4,
        rounds=1,
        batch=5,
        workers=2,
        client_processes=1,
        max_seconds=120,
    )
    _check(doc, 20, 1, 5)


@pytest.mark.slow
def test_a_city_of_2000_terminals(pg: PgServer) -> None:
    doc = run_load(
        pg.url(pg.create_database("city")),
        terminals=2000,
        centres=200,
        rounds=2,
        batch=5,
        workers=2,
        client_processes=2,
        max_seconds=900,
    )
    print(json.dumps(doc, indent=2))
    _check(doc, 2000, 2, 5)
