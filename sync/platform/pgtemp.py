"""A throw-away PostgreSQL server (tests, `bench platform`): ``initdb`` into a temp dir, started
with ``pg_ctl`` on a unix socket only (no TCP port to collide on), fsync off,
trust authentication, stopped with ``pg_ctl stop -m immediate`` and deleted.

PostgreSQL refuses to run as root; when the tests run as root the server runs
as an unprivileged account (``nobody`` or ``postgres``) via ``runuser``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PG_USER = "platform"  # the database superuser initdb creates
_RUN_AS = ("postgres", "nobody")


class PgUnavailable(Exception):
    """PostgreSQL cannot be started on this machine (the reason says why)."""


def find_pg_bin() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres, or None."""
    candidates: list[Path] = []
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(os.path.realpath(initdb)).parent)
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for d in candidates:
        if all((d / exe).is_file() for exe in ("initdb", "pg_ctl", "postgres")):
            return d
    return None


def missing_reason() -> str | None:
    """Why PostgreSQL tests cannot run here, or None when they can."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "the PostgreSQL driver psycopg (psycopg[binary]) is not installed"
    if find_pg_bin() is None:
        return (
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found on PATH "
            "or in /usr/lib/postgresql/*/bin"
        )
    if os.geteuid() == 0:
        if _run_as_user() is None:
            return "running as root and no unprivileged account (postgres, nobody) exists"
        if shutil.which("runuser") is None:
            return "running as root and runuser is not available to drop privileges"
    return None


def _run_as_user() -> pwd.struct_passwd | None:
    for name in _RUN_AS:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    return None


@dataclass
class PgServer:
    bin_dir: Path
    root: Path  # temp dir: data/, sock/, log
    user: pwd.struct_passwd | None  # None: run as the current (non-root) user
    port: int = 5432  # only names the socket file; no TCP listener
    _databases: int = field(default=0)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def sock(self) -> Path:
        return self.root / "sock"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    def _run(self, args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin_dir / args[0]), *args[1:]]
        if self.user is not None:
            cmd = ["runuser", "-u", self.user.pw_name, "--", *cmd]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}
        return subprocess.run(
            cmd, cwd=self.root, env=env, capture_output=True, text=True, timeout=timeout
        )

    def init(self) -> None:
        self.sock.mkdir()
        if self.user is not None:
            for p in (self.root, self.sock):
                os.chown(p, self.user.pw_uid, self.user.pw_gid)
        r = self._run(
            [
                "initdb",
                "-D",
                str(self.data),
                "-U",
                PG_USER,
                "--auth=trust",
                "--no-sync",
                "--encoding=UTF8",
                "--locale=C",
            ]
        )
        if r.returncode != 0:
            raise PgUnavailable(f"initdb failed: {(r.stderr or r.stdout).strip()[-800:]}")

    def start(self) -> None:
        opts = " ".join(
            [
                "-c listen_addresses=''",
                f"-c unix_socket_directories='{self.sock}'",
                f"-p {self.port}",
                # fsync off only risks data on an OS crash. synchronous_commit stays on:
                # stop() is an immediate shutdown (a crash for PostgreSQL), and
                # asynchronous commit would lose batches the platform acknowledged.
                "-c fsync=off",
                "-c full_page_writes=off",
                "-c max_connections=60",
                "-c shared_buffers=32MB",
            ]
        )
        r = self._run(
            [
                "pg_ctl",
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-o",
                opts,
            ]
        )
        if r.returncode != 0:
            log = self.log.read_text(errors="replace")[-1500:] if self.log.exists() else ""
            raise PgUnavailable(f"postgres did not start: {r.stderr.strip()} {log}")

    def stop(self) -> None:
        """Immediate shutdown; kills the postmaster if pg_ctl cannot."""
        if not (self.data / "postmaster.pid").exists():
            return
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            self._run(
                ["pg_ctl", "stop", "-m", "immediate", "-w", "-t", "20", "-D", str(self.data)],
                timeout=30,
            )
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists():
            with contextlib.suppress(ValueError, OSError):
                pid = int(pid_file.read_text().split()[0])
                os.kill(pid, signal.SIGKILL)
                for _ in range(100):
                    os.kill(pid, 0)
                    time.sleep(0.05)
            pid_file.unlink(missing_ok=True)

    def restart(self) -> None:
        self.stop()
        self.start()

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL (psycopg 3 over the unix socket)."""
        return f"postgresql+psycopg://{PG_USER}@/{database}?host={self.sock}&port={self.port}"

    def dsn(self, database: str = "postgres") -> str:
        """libpq connection string for psycopg itself."""
        return f"host={self.sock} port={self.port} user={PG_USER} dbname={database}"

    def create_database(self, prefix: str = "platform") -> str:
        """A fresh empty database; returns its name (see :meth:`url`, :meth:`dsn`)."""
        import psycopg

        self._databases += 1
        name = f"{prefix}_{self._databases}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name


@contextlib.contextmanager
def pg_server() -> Iterator[PgServer]:
    """A running server for the duration of the block, always torn down."""
    reason = missing_reason()
    if reason:
        raise PgUnavailable(reason)
    bin_dir = find_pg_bin()
    assert bin_dir is not None
    user = _run_as_user() if os.geteuid() == 0 else None
    # Not under pytest's tmp_path: its parents are 0700 root, which the unprivileged
    # account cannot traverse. A short path also keeps the socket path short.
    root = Path(tempfile.mkdtemp(prefix="pgt-", dir="/tmp"))
    server = PgServer(bin_dir, root, user)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
