"""A second, independent implementation of the sync spec: a Node.js client written
from ``sync/spec/openapi.yaml`` alone (``client.mjs``) talks to a real
``care-terminal platform serve`` process. It signs its requests, uploads one record of
every kind on both streams, replays a batch, pulls every dataset (and gets ``304`` on
a second pull) and checks every reply against the spec's schemas; the platform's
database must then hold every record kind from that device."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from sync.samples import demo_datasets

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CARE_TERMINAL = Path(sys.executable).parent / "care-terminal"
DEVICE = "node-spec-client-01"
CENTRE = "centre-node-01"


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail(
            "node is not installed: the spec's second, independent client is a Node.js "
            "program (./run installs npm, which brings node)"
        )
    return node


def _npm_ci() -> None:
    if (HERE / "node_modules" / "ajv").is_dir() and (HERE / "node_modules" / "js-yaml").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is not installed: needed to install the spec client's packages")
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"


def _client(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_node(), str(HERE / "client.mjs"), *args],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """A platform with the Node client's key registered; yields its URL, the
    database file and the client's key file."""
    _node()
    _npm_ci()
    key = tmp_path / "node-device.pem"
    made = _client("--print-key", str(key))
    assert made.returncode == 0, made.stdout + made.stderr
    pub = json.loads(made.stdout.splitlines()[-1])["public_key"]
    seed = tmp_path / "seed.json"
    change = {
        "change_id": "01JCCCCCCCCCCCCCCCCCCCC001",
        "resident_id": "R00001",
        "consent_face_pay": True,
        "consent_attendance": None,
        "changed_at": "2026-01-05T09:00:00.000+08:00",
        "source": "centre_staff",
    }
    seed.write_text(
        json.dumps(
            {
                "datasets": demo_datasets(CENTRE),
                "consent_changes": [{"centre_id": CENTRE, "change": change}],
            },
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    db = tmp_path / "platform.db"
    log = tmp_path / "platform.log"
    cmd = [
        str(CARE_TERMINAL),
        "platform",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--db",
        f"sqlite:///{db}",
        "--seed",
        str(seed),
        "--register",
        f"{DEVICE}:{CENTRE}:{pub}",
        "--print-url",
    ]
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, f"platform did not start: {log.read_text()[-2000:]}"
        yield json.loads(line)["url"], db, key
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_node_client_implements_the_spec(platform: tuple[str, Path, Path]) -> None:
    url, db, key = platform
    run = _client(url, DEVICE, CENTRE, str(key))
    steps = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
    assert run.returncode == 0, f"the Node client found a difference:\n{run.stdout}{run.stderr}"
    assert steps and steps[-1] == {"step": "done", "ok": True}, run.stdout
    names = {s["step"] for s in steps}
    for expected in (
        "hash_vectors",
        "signing_example",
        "upload_kiosk",
        "replay_kiosk",
        "upload_agent",
        "replay_agent",
    ):
        assert expected in names, run.stdout
    vectors = next(s for s in steps if s["step"] == "hash_vectors")
    assert vectors["checked"] >= 5, vectors
    spec = yaml.safe_load((REPO / "sync/spec/openapi.yaml").read_text(encoding="utf-8"))
    schemas = spec["components"]["schemas"]
    for kind in schemas["DatasetKind"]["enum"]:
        assert {f"pull_{kind}", f"pull_{kind}_unchanged"} <= names, run.stdout

    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT kind, stored_as, centre_id FROM records WHERE device_id = ?", (DEVICE,)
        ).fetchall()
    conn.close()
    assert sorted(r[0] for r in rows) == sorted(schemas["RecordKind"]["enum"]), rows
    assert {(r[1], r[2]) for r in rows} == {("record", CENTRE)}, rows
    # the meal's match score 1e-7, hashed by JavaScript's JCS, was accepted as sent
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        (payload,) = conn.execute(
            "SELECT payload FROM records WHERE kind = 'meal_transaction' AND device_id = ?",
            (DEVICE,),
        ).fetchone()
    conn.close()
    assert json.loads(payload)["verification"]["match_score"] == 1e-7
