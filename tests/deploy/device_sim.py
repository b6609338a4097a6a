"""A simulated terminal for updater tests: release trees with a stdlib "kiosk"
that writes real health reports, a migrate script that really changes the
SQLite database, and a small service supervisor that behaves like systemd's
``Restart=on-failure`` + ``StartLimitBurst`` + ``OnFailure=``.

Everything runs as real processes; nothing in the updater is mocked.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
RUN_UPDATER = REPO / "deploy" / "updater" / "run_updater.py"

KIOSK = r'''#!{python}
"""Simulated kiosk: checks the DB and the model pack, writes health reports."""
import hashlib, json, os, sqlite3, sys, time
from pathlib import Path
app = Path(__file__).resolve().parent.parent
rel = json.loads((app / "release.json").read_text())
sim = rel.get("sim", {{}})
health = Path(os.environ["CARE_HEALTH_FILE"])
db = os.environ["CARE_DB"]
mode = sim.get("mode", "healthy")
if (app / "CRASH_NOW").exists():
    mode = "crash"
if mode == "crash":
    print("kiosk: crashing on start", file=sys.stderr)
    sys.exit(3)
def check_db():
    try:
        con = sqlite3.connect(f"file:{{db}}?mode=rw", uri=True)
        ok = con.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        ver = con.execute("SELECT version FROM schema_version").fetchone()[0]
        con.close()
        return "ok" if ok and ver == sim.get("schema", 1) else "failed"
    except Exception:
        return "failed"
def check_models():
    m = app.parent / "models" / "manifest.json"
    if not m.exists():
        return "ok"
    doc = json.loads(m.read_text())
    for f in doc["files"]:
        if hashlib.sha256((m.parent / f["path"]).read_bytes()).hexdigest() != f["sha256"]:
            return "failed"
    return "ok"
while True:
    checks = {{"kiosk": "ok", "db": check_db(), "model_pack": check_models(), "camera": "absent"}}
    if mode == "unhealthy":
        checks["kiosk"] = "failed"
    healthy = all(v == "ok" or (k == "camera" and v == "absent") for k, v in checks.items())
    doc = {{"format": 1, "version": rel["version"], "pid": os.getpid(), "written_at": time.time(),
           "healthy": healthy, "checks": checks, "detail": "" if healthy else "simulated failure"}}
    tmp = health.with_name(".health.tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, health)
    time.sleep(0.1)
'''

MIGRATE = r'''#!{python}
"""Simulated migration: schema version {schema}, adds a column and rewrites data."""
import os, sqlite3, sys
con = sqlite3.connect(os.environ["CARE_DB"])
con.execute("ALTER TABLE meals ADD COLUMN note_{schema} TEXT")
con.execute("UPDATE meals SET amount_fen = amount_fen * 100")
con.execute("UPDATE schema_version SET version = {schema}")
con.commit()
con.close()
if {fail}:
    print("migration step 2 failed", file=sys.stderr)
    sys.exit(1)
'''


def make_release(
    dest: Path,
    version: str,
    *,
    mode: str = "healthy",
    schema: int = 1,
    migrate: bool = False,
    migrate_fails: bool = False,
) -> Path:
    """An application release tree (what goes into the bundle's app payload)."""
    (dest / "bin").mkdir(parents=True, exist_ok=True)
    rel: dict[str, Any] = {"version": version, "sim": {"mode": mode, "schema": schema}}
    if migrate:
        rel["migrate"] = ["bin/migrate"]
        (dest / "bin" / "migrate").write_text(
            MIGRATE.format(python=sys.executable, schema=schema, fail=migrate_fails)
        )
        (dest / "bin" / "migrate").chmod(0o755)
    (dest / "release.json").write_text(json.dumps(rel))
    (dest / "bin" / "kiosk").write_text(KIOSK.format(python=sys.executable))
    (dest / "bin" / "kiosk").chmod(0o755)
    (dest / "lib").mkdir(exist_ok=True)
    (dest / "lib" / "care_terminal.txt").write_text(f"care-terminal {version}\n")
    return dest


def make_db(path: Path, schema: int = 1, rows: int = 50) -> None:
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    con.execute("INSERT INTO schema_version VALUES (?)", (schema,))
    con.execute("CREATE TABLE meals (id INTEGER PRIMARY KEY, resident TEXT, amount_fen INTEGER)")
    con.executemany(
        "INSERT INTO meals (resident, amount_fen) VALUES (?, ?)",
        [(f"r{i:03d}", 500 + i) for i in range(rows)],
    )
    con.commit()
    con.close()


def db_dump(path: Path) -> list[str]:
    con = sqlite3.connect(path)
    try:
        return list(con.iterdump())
    finally:
        con.close()


SUPERVISOR = r'''
"""Tiny stand-in for systemd: start/stop one service with Restart=on-failure,
StartLimitBurst and OnFailure=, as real processes."""
import json, os, signal, subprocess, sys, time
from pathlib import Path
state = Path(sys.argv[1]); cmd = sys.argv[2]
cfg = json.loads((state / "config.json").read_text())
pidfile = state / "supervisor.pid"
def alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie (nobody reaps it in a container) is dead for our purposes
        return Path(f"/proc/{{pid}}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
def read_pid():
    try:
        return int(pidfile.read_text())
    except (OSError, ValueError):
        return 0
if cmd == "start":
    pid = read_pid()
    if pid and alive(pid):
        sys.exit(0)
    log = open(state / "supervisor.log", "ab")
    p = subprocess.Popen([sys.executable, __file__, str(state), "supervise"], start_new_session=True,
                         stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    pidfile.write_text(str(p.pid))
    with open(state / "events.log", "a") as ev:
        ev.write(f"{{time.time()}} start\n")
    sys.exit(0)
if cmd == "stop":
    pid = read_pid()
    if pid and alive(pid):
        try:
            os.killpg(pid, signal.SIGTERM)
        except OSError:
            pass
        deadline = time.time() + 5
        while alive(pid) and time.time() < deadline:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.02)
        if alive(pid):
            os.killpg(pid, signal.SIGKILL)
    pidfile.unlink(missing_ok=True)
    with open(state / "events.log", "a") as ev:
        ev.write(f"{{time.time()}} stop\n")
    sys.exit(0)
# supervise
child = None
def term(*_):
    # Do not wait() here: the interrupted main loop holds Popen's wait lock.
    if child is not None:
        try:
            child.terminate()
        except OSError:
            pass
    os._exit(0)
signal.signal(signal.SIGTERM, term)
failures = []
env = dict(os.environ, **cfg["env"])
while True:
    exe = Path(cfg["root"]) / "current" / "app" / "bin" / "kiosk"
    child = subprocess.Popen([str(exe)], env=env)
    rc = child.wait()
    if rc == 0:
        sys.exit(0)
    now = time.time()
    failures = [t for t in failures if now - t < cfg["interval"]] + [now]
    with open(state / "events.log", "a") as ev:
        ev.write(f"{{now}} exit {{rc}}\n")
    if len(failures) >= cfg["burst"]:
        with open(state / "events.log", "a") as ev:
            ev.write(f"{{now}} failed\n")
        pidfile.unlink(missing_ok=True)
        if cfg.get("on_failure"):
            subprocess.run(cfg["on_failure"], env=env)
        sys.exit(1)
    time.sleep(cfg["restart_sec"])
'''


class SimDevice:
    """A device root with releases, a database, a health file and a supervisor."""

    def __init__(
        self,
        base: Path,
        *,
        health_timeout_s: float = 8.0,
        burst: int = 3,
        crash_threshold: int = 2,
        max_boot_attempts: int = 2,
    ) -> None:
        self.base = base
        self.root = base / "opt"
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "releases").mkdir(exist_ok=True)
        self.db = base / "var" / "terminal.db"
        self.db.parent.mkdir(parents=True, exist_ok=True)
        self.health = base / "run" / "health.json"
        self.health.parent.mkdir(parents=True, exist_ok=True)
        self.svc = base / "svc"
        self.svc.mkdir(exist_ok=True)
        self.supervisor = self.svc / "supervisor.py"
        self.supervisor.write_text(SUPERVISOR.replace("{{", "{").replace("}}", "}"))
        self.config = base / "updater.toml"
        self.config.write_text(
            f'root = "{self.root}"\n'
            f'db_path = "{self.db}"\n'
            f'health_file = "{self.health}"\n'
            f"health_timeout_s = {health_timeout_s}\n"
            "health_poll_s = 0.1\n"
            f"stop_command = {json.dumps(self.svc_cmd('stop'))}\n"
            f"start_command = {json.dumps(self.svc_cmd('start'))}\n"
            "recover_command = []\n"
            "feedback_retries = 2\n"
            "feedback_timeout_s = 5\n"
            f"crash_threshold = {crash_threshold}\n"
            f"max_boot_attempts = {max_boot_attempts}\n"
        )
        (self.svc / "config.json").write_text(
            json.dumps(
                {
                    "root": str(self.root),
                    "burst": burst,
                    "interval": 30,
                    "restart_sec": 0.1,
                    "env": {"CARE_HEALTH_FILE": str(self.health), "CARE_DB": str(self.db)},
                    "on_failure": self.updater_cmd("on-failure"),
                }
            )
        )

    def svc_cmd(self, what: str) -> list[str]:
        return [sys.executable, "-I", str(self.supervisor), str(self.svc), what]

    def updater_cmd(self, *args: str) -> list[str]:
        return [sys.executable, "-I", str(RUN_UPDATER), "--config", str(self.config), *args]

    def updater(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.updater_cmd(*args),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.base,
            env=self.env(),
        )

    def env(self) -> dict[str, str]:
        """The updater unit's environment (the release's migrate step finds the DB here)."""
        return dict(os.environ, CARE_DB=str(self.db), CARE_HEALTH_FILE=str(self.health))

    def install_factory(self, release_src: Path, name: str, counter: int = 0) -> None:
        """A factory install: the release folder plus ``current`` pointing at it."""
        import shutil

        dest = self.root / "releases" / name
        shutil.copytree(release_src, dest / "app", symlinks=True)
        version = json.loads((dest / "app" / "release.json").read_text())["version"]
        (dest / "manifest.json").write_text(json.dumps({"version": version, "counter": counter}))
        os.symlink(f"releases/{name}", self.root / "current")

    def start(self) -> None:
        subprocess.run(self.svc_cmd("start"), check=True, timeout=30)

    def stop(self) -> None:
        subprocess.run(self.svc_cmd("stop"), check=False, timeout=30)

    def current(self) -> str:
        return Path(os.readlink(self.root / "current")).name

    def health_doc(self) -> dict[str, Any]:
        return dict(json.loads(self.health.read_text()))

    def wait_health(
        self, version: str, timeout: float = 10.0, after: float = 0.0
    ) -> dict[str, Any]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                doc = self.health_doc()
                if doc["version"] == version and doc["written_at"] > after and doc["healthy"]:
                    return doc
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        raise AssertionError(f"no healthy report from {version} within {timeout} s")

    def results(self) -> dict[str, dict[str, Any]]:
        d = self.root / "spool" / "results"
        return {p.stem: json.loads(p.read_text()) for p in d.glob("*.json")} if d.is_dir() else {}

    def state(self) -> dict[str, Any]:
        return dict(json.loads((self.root / "updater-state.json").read_text()))

    def events(self) -> list[str]:
        p = self.svc / "events.log"
        return p.read_text().splitlines() if p.exists() else []


def stage_release(
    dev: SimDevice,
    app: Path,
    *,
    version: str,
    counter: int,
    key: Any,
    migrations: bool = False,
    action_id: str = "1",
    feedback_url: str | None = None,
    health_timeout_s: int = 60,
) -> Path:
    """Build, verify and stage a signed bundle the real way, then write the
    activation request. Returns the request path."""
    from datetime import UTC, datetime

    from sync.ota.bundle import InstalledState, VerifyPolicy, build_bundle, verify_bundle
    from sync.ota.manifest import TrustStore
    from sync.ota.staging import FeedbackTarget, stage_bundle, write_activation_request

    mig = None
    if migrations:
        mig = dev.base / f"mig-{version}"
        mig.mkdir(exist_ok=True)
        (mig / "0002.sql").write_text("-- applied by bin/migrate\n")
    bundle = dev.base / f"care-{version}-c{counter}.swu"
    build_bundle(
        bundle,
        version=version,
        counter=counter,
        key=key,
        key_id="test",
        app=app,
        migrations=mig,
        boards={"care-pi": ["1"]},
        created=datetime.now(UTC),
    )
    vb = verify_bundle(
        bundle,
        TrustStore({"test": key.public_key()}),
        VerifyPolicy(board="care-pi", revision="1"),
        InstalledState("0.0.1", 0),
    )
    staged = stage_bundle(vb, dev.root / "releases")
    fb = FeedbackTarget(url=feedback_url) if feedback_url else None
    return write_activation_request(
        dev.root / "spool",
        staged,
        action_id=action_id,
        from_version="",
        health_timeout_s=health_timeout_s,
        feedback=fb,
        requested_at=datetime.now(UTC).isoformat(),
    )
