"""A city of simulated terminals against a real ``platform serve`` (load test and
``care-terminal bench platform``), loopback only, bounded in count and time.

Each simulated terminal has its own device id, centre and Ed25519 key (derived
from its index, so the parent registers the public keys and the client
processes rebuild the private ones without passing keys around). It uploads
``rounds`` signed batches of ``batch`` records on its kiosk stream, chained and
hashed with the project's own record helpers (``terminal.db.outbox.hash_of``),
and pulls its centre's menu after each batch (``If-None-Match`` once it has an
ETag). A 503 or 429 is retried after its ``Retry-After`` and a transport error
after a short pause, with the same Idempotency-Key and body, as a terminal does.

Terminals run as asyncio tasks over httpx in a few client processes. The parent
starts the platform as a real process (PostgreSQL, several workers), samples
the resident memory of the server and all its workers, and at the end compares
what every terminal sent with what the database holds: records lost, records
held twice, records held that nobody sent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform as pyplatform
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sync.auth import Signer, public_key_text
from sync.client import encode_body
from sync.platform.store import PlatformStore
from sync.samples import demo_datasets, sample_payload
from terminal.core.clock import SystemClock, rfc3339
from terminal.core.ids import new_ulid
from terminal.db.outbox import GENESIS, HASH_VERSION, hash_of

POOL = 8  # connections per httpx client
KINDS = ("meal_transaction", "attendance", "footfall_hourly", "meal_transaction", "enrolment")


def device_id(i: int) -> str:
    return f"load-{i:05d}"


def centre_id(i: int, centres: int) -> str:
    return f"load-centre-{i % centres:04d}"


def device_key(i: int, seed: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(f"care-load-{seed}-{i}".encode()).digest()
    )


def seed_document(terminals: int, centres: int, seed: int) -> dict[str, Any]:
    """Devices (all registered) and each centre's datasets."""
    return {
        "devices": [
            {
                "device_id": device_id(i),
                "centre_id": centre_id(i, centres),
                "public_key": public_key_text(device_key(i, seed)),
            }
            for i in range(terminals)
        ],
        "datasets": [
            ds
            for c in range(min(centres, terminals))
            for ds in demo_datasets(centre_id(c, centres))
            if ds["kind"] == "menu"
        ],
    }


# -- a client process: many terminals ---------------------------------------------------


@dataclass
class _Stats:
    upload_ms: list[float] = field(default_factory=list)
    pull_ms: list[float] = field(default_factory=list)
    sent: list[tuple[str, int, str, str]] = field(default_factory=list)  # device, seq, id, hash
    busy: int = 0
    transport_errors: int = 0
    refused: list[str] = field(default_factory=list)


class _Terminal:
    def __init__(self, i: int, centres: int, seed: int) -> None:
        self.device = device_id(i)
        self.centre = centre_id(i, centres)
        self.signer = Signer(self.device, device_key(i, seed))
        self.seq = 0
        self.head = GENESIS
        self.etag: str | None = None
        self.clock = SystemClock()

    def batch(self, n: int) -> tuple[bytes, list[tuple[str, int, str, str]]]:
        records, sent = [], []
        now = self.clock.now()
        for _ in range(n):
            self.seq += 1
            kind = KINDS[self.seq % len(KINDS)]
            env: dict[str, Any] = {
                "device_id": self.device,
                "centre_id": self.centre,
                "stream": "kiosk",
                "seq": self.seq,
                "record_id": new_ulid(),
                "kind": kind,
                "created_at": rfc3339(now + timedelta(milliseconds=self.seq)),
                "prev_hash": self.head,
                "payload": sample_payload(kind, self.seq, now),
            }
            if HASH_VERSION != 1:
                env["hash_version"] = HASH_VERSION
            env["hash"] = hash_of(env)
            self.head = env["hash"]
            records.append(env)
            sent.append((self.device, self.seq, env["record_id"], env["hash"]))
        body = encode_body(
            {
                "device_id": self.device,
                "centre_id": self.centre,
                "stream": "kiosk",
                "records": records,
            }
        )
        return body, sent


async def _send(
    client: httpx.AsyncClient,
    gate: asyncio.Semaphore,
    t: _Terminal,
    method: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
    stats: _Stats,
    deadline: float,
) -> tuple[httpx.Response, float]:
    """One request, retried as a terminal retries (same key and body, new signature)."""
    while True:
        hdrs = dict(headers)
        hdrs.update(t.signer.sign(method, path, "", body, hdrs, created=int(time.time())))
        try:
            async with gate:  # no request queues inside httpx's pool
                started = time.perf_counter()  # from a free connection: the server's time
                resp = await client.request(method, path, content=body or None, headers=hdrs)
        except httpx.TransportError:
            stats.transport_errors += 1
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2 + random.random() * 0.3)
            continue
        took = (time.perf_counter() - started) * 1000
        if resp.status_code in (429, 503) and time.monotonic() < deadline:
            stats.busy += 1
            wait = resp.headers.get("Retry-After", "1")
            await asyncio.sleep((float(wait) if wait.isdigit() else 1.0) + random.random() * 0.5)
            continue
        return resp, took


async def _run_terminal(
    client: httpx.AsyncClient,
    gate: asyncio.Semaphore,
    t: _Terminal,
    rounds: int,
    batch: int,
    stats: _Stats,
    ramp_s: float,
    deadline: float,
) -> None:
    await asyncio.sleep(random.random() * ramp_s)
    for _ in range(rounds):
        body, sent = t.batch(batch)
        key = hashlib.sha256(body).hexdigest()
        resp, took = await _send(
            client,
            gate,
            t,
            "POST",
            "/v1/batches",
            body,
            {"Idempotency-Key": key, "Content-Type": "application/json"},
            stats,
            deadline,
        )
        stats.sent.extend(sent)
        results = resp.json().get("results", []) if resp.status_code == 200 else []
        if resp.status_code != 200 or any(
            r["result"] not in ("accepted", "duplicate") for r in results
        ):
            stats.refused.append(f"{t.device}: {resp.status_code} {resp.text[:200]}")
            return
        stats.upload_ms.append(took)
        path = f"/v1/centres/{t.centre}/datasets/menu"
        headers = {"If-None-Match": f'"{t.etag}"'} if t.etag else {}
        resp, took = await _send(client, gate, t, "GET", path, b"", headers, stats, deadline)
        if resp.status_code == 200:
            t.etag = resp.json()["etag"]
        elif resp.status_code != 304:
            stats.refused.append(f"{t.device} pull: {resp.status_code} {resp.text[:200]}")
            return
        stats.pull_ms.append(took)


async def _client_main(
    url: str,
    indices: list[int],
    centres: int,
    seed: int,
    rounds: int,
    batch: int,
    connections: int,
    ramp_s: float,
    max_seconds: float,
) -> _Stats:
    stats = _Stats()
    terminals = [_Terminal(i, centres, seed) for i in indices]
    # Small pools: httpx's pool scans all its connections for every request, so
    # one pool of hundreds of connections costs more CPU than the requests.
    pools = max(1, connections // POOL)
    limits = httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL)
    deadline = time.monotonic() + max_seconds
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=url, limits=limits, timeout=60.0)
            )
            for _ in range(pools)
        ]
        gates = [asyncio.Semaphore(POOL) for _ in range(pools)]
        await asyncio.wait_for(
            asyncio.gather(
                *(
                    _run_terminal(
                        clients[n % pools],
                        gates[n % pools],
                        t,
                        rounds,
                        batch,
                        stats,
                        ramp_s,
                        deadline,
                    )
                    for n, t in enumerate(terminals)
                )
            ),
            timeout=max_seconds + 60,
        )
    return stats


def client_process(argv: list[str]) -> int:
    """``python -m sync.platform.load client ...``: run a slice of the terminals,
    write what was sent and measured as JSON."""
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--first", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--centres", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--rounds", type=int, required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--connections", type=int, required=True)
    p.add_argument("--ramp-s", type=float, required=True)
    p.add_argument("--max-seconds", type=float, required=True)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    stats = asyncio.run(
        _client_main(
            a.url,
            list(range(a.first, a.first + a.count)),
            a.centres,
            a.seed,
            a.rounds,
            a.batch,
            a.connections,
            a.ramp_s,
            a.max_seconds,
        )
    )
    a.out.write_text(json.dumps(stats.__dict__), encoding="utf-8")
    return 0


# -- the parent: server, clients, memory, verification ----------------------------------


def _tree_rss_kb(root: int) -> dict[int, int]:
    """VmRSS of ``root`` and all its descendants (kB by pid)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in tree:
                tree.add(child)
                frontier.append(child)
    out = {}
    for pid in tree:
        try:
            m = re.search(r"^VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text(), re.M)
        except OSError:
            continue
        if m:
            out[pid] = int(m.group(1))
    return out


@contextmanager
def _platform_process(
    db_url: str, seed_path: Path, workers: int, log: Path, extra: list[str]
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    cmd = [
        sys.executable,
        "-m",
        "sync.platform.server",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--db",
        db_url,
        "--seed",
        str(seed_path),
        "--workers",
        str(workers),
        "--print-url",
        *extra,
    ]
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"platform serve did not start: {log.read_text()[-2000:]}")
        url = json.loads(line)["url"]
        _wait_healthy(url)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def _wait_healthy(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("platform serve did not answer /healthz")


def _ms(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p99": 0.0, "max": 0.0}
    qs = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": round(qs[49], 1), "p99": round(qs[98], 1), "max": round(max(values), 1)}


def run_load(
    db_url: str,
    *,
    terminals: int = 2000,
    centres: int = 200,
    rounds: int = 2,
    batch: int = 5,
    workers: int = 2,
    client_processes: int = 2,
    connections: int = 16,
    ramp_s: float = 2.0,
    max_seconds: float = 600.0,
    seed: int = 1,
    work_dir: Path | None = None,
    server_args: list[str] | None = None,
) -> dict[str, Any]:
    """Run the city against ``platform serve`` on ``db_url`` (a fresh database)
    and report throughput, latency, server memory and the exactness check."""
    tmp = tempfile.TemporaryDirectory(prefix="platform-load-") if work_dir is None else None
    root = Path(tmp.name) if tmp else Path(work_dir or ".")
    try:
        seed_path = root / "seed.json"
        seed_path.write_text(json.dumps(seed_document(terminals, centres, seed)), encoding="utf-8")
        extra = ["--max-handlers", "256", "--db-threads", "6", *(server_args or [])]
        with _platform_process(db_url, seed_path, workers, root / "platform.log", extra) as (
            proc,
            url,
        ):
            idle = sum(_tree_rss_kb(proc.pid).values())
            peak = {"total": idle, "procs": 0}
            stop = threading.Event()

            def sample() -> None:
                while not stop.wait(0.25):
                    rss = _tree_rss_kb(proc.pid)
                    if sum(rss.values()) > peak["total"]:
                        peak["total"], peak["procs"] = sum(rss.values()), len(rss)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            share = -(-terminals // client_processes)
            clients = []
            started = time.perf_counter()
            for k in range(client_processes):
                first = k * share
                count = min(share, terminals - first)
                if count <= 0:
                    break
                out = root / f"client-{k}.json"
                clients.append(
                    (
                        subprocess.Popen(
                            [
                                sys.executable,
                                "-m",
                                "sync.platform.load",
                                "client",
                                "--url",
                                url,
                                "--first",
                                str(first),
                                "--count",
                                str(count),
                                "--centres",
                                str(centres),
                                "--seed",
                                str(seed),
                                "--rounds",
                                str(rounds),
                                "--batch",
                                str(batch),
                                "--connections",
                                str(connections),
                                "--ramp-s",
                                str(ramp_s),
                                "--max-seconds",
                                str(max_seconds),
                                "--out",
                                str(out),
                            ]
                        ),
                        out,
                    )
                )
            for c, _out in clients:
                try:
                    c.wait(timeout=max_seconds + 120)
                except subprocess.TimeoutExpired:
                    c.kill()
                    c.wait()
            seconds = time.perf_counter() - started
            stop.set()
            sampler.join()
            after = _tree_rss_kb(proc.pid)
            server_log = (root / "platform.log").read_text(errors="replace")
        stats = _Stats()
        for c, out in clients:
            if c.returncode != 0 or not out.exists():
                raise RuntimeError(f"a client process failed (exit {c.returncode})")
            part = json.loads(out.read_text(encoding="utf-8"))
            stats.upload_ms += part["upload_ms"]
            stats.pull_ms += part["pull_ms"]
            stats.sent += [tuple(s) for s in part["sent"]]
            stats.busy += part["busy"]
            stats.transport_errors += part["transport_errors"]
            stats.refused += part["refused"]
        exact = verify(db_url, stats.sent, terminals)
        records = len(stats.sent)
        return {
            "terminals": terminals,
            "centres": min(centres, terminals),
            "rounds": rounds,
            "records_per_batch": batch,
            "records_sent": records,
            "batches": len(stats.upload_ms),
            "pulls": len(stats.pull_ms),
            "seconds": round(seconds, 1),
            "records_per_second": round(records / seconds, 1),
            "requests_per_second": round((len(stats.upload_ms) + len(stats.pull_ms)) / seconds, 1),
            "upload_latency_ms": _ms(stats.upload_ms),
            "pull_latency_ms": _ms(stats.pull_ms),
            "server_rss_mb": {
                "idle_total": round(idle / 1024, 1),
                "peak_total": round(peak["total"] / 1024, 1),
                "after_total": round(sum(after.values()) / 1024, 1),
                "processes": len(after),
            },
            "retried_busy": stats.busy,
            "retried_transport_errors": stats.transport_errors,
            "refused": stats.refused[:5],
            **exact,
            "server_tracebacks": server_log.count("Traceback"),
            "workers": workers,
            "client_processes": len(clients),
            "connections_per_client_process": connections,
            "database": db_url.split("://", 1)[0].split("+", 1)[0],
            "machine": f"{pyplatform.machine()} {os.cpu_count()} cpu, "
            f"Python {pyplatform.python_version()}",
        }
    finally:
        if tmp is not None:
            tmp.cleanup()


def verify(db_url: str, sent: list[Any], terminals: int) -> dict[str, int]:
    """What the database holds against what was sent, per device and stream."""
    want: dict[str, dict[int, tuple[str, str]]] = {}
    for dev, seq, rid, digest in sent:
        want.setdefault(dev, {})[seq] = (rid, digest)
    lost = duplicated = extra = held = quarantined = 0
    store = PlatformStore(db_url)
    try:
        for i in range(terminals):
            dev = device_id(i)
            rows = store.records(dev, "kiosk")
            held += len(rows)
            quarantined += sum(1 for r in rows if r.stored_as == "quarantined")
            seen: dict[str, int] = {}
            for r in rows:
                seen[r.record_id] = seen.get(r.record_id, 0) + 1
            duplicated += sum(n - 1 for n in seen.values())
            have = {(r.seq, r.record_id, r.hash) for r in rows}
            mine = {(seq, rid, digest) for seq, (rid, digest) in want.get(dev, {}).items()}
            lost += len(mine - have)
            extra += len(have - mine)
    finally:
        store.close()
    return {
        "records_held": held,
        "records_quarantined": quarantined,
        "lost": lost,
        "duplicated": duplicated,
        "extra": extra,
    }


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        sys.exit(client_process(sys.argv[2:]))
    sys.exit(2)
