"""A real goosebit DDI server on loopback, in its own virtual environment.

goosebit (PyPI) reconfigures logging and OpenTelemetry when imported, so it
never runs in the test process: it gets its own venv (created once, cached
under ``$CARE_GOOSEBIT_VENV`` or ``~/.cache/care-terminal/goosebit-venv-<ver>``)
and runs as a ``uvicorn`` subprocess with SQLite, after ``aerich upgrade``.

CI can create the venv ahead of the tests with::

    python tests/ota/goosebit_server.py --ensure
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

GOOSEBIT_VERSION = "0.2.12"
ADMIN_USER = "admin@care-terminal.test"


def venv_dir() -> Path:
    explicit = os.environ.get("CARE_GOOSEBIT_VENV")
    if explicit:
        return Path(explicit)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "care-terminal" / f"goosebit-venv-{GOOSEBIT_VERSION}"


def _base_python() -> str:
    # A venv made from inside a venv is based on the base interpreter anyway.
    return getattr(sys, "_base_executable", None) or sys.executable


def ensure_venv(log: Any = None) -> Path:
    """Create the goosebit venv once (locked against parallel test workers)."""
    d = venv_dir()
    ready = d / ".care-ready"
    if ready.is_file():
        return d
    d.parent.mkdir(parents=True, exist_ok=True)
    with open(d.parent / f".{d.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready.is_file():
            return d
        shutil.rmtree(d, ignore_errors=True)
        subprocess.run([_base_python(), "-m", "venv", str(d)], check=True, timeout=300)
        proc = subprocess.run(
            [
                str(d / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                f"goosebit=={GOOSEBIT_VERSION}",
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if proc.returncode != 0:
            shutil.rmtree(d, ignore_errors=True)
            raise RuntimeError(f"pip install goosebit failed:\n{proc.stderr[-3000:]}")
        ready.write_text(GOOSEBIT_VERSION)
    return d


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GoosebitServer:
    """Start with :meth:`start`; use :attr:`url` as the DDI base URL."""

    def __init__(
        self, workdir: Path, *, poll_time: str = "00:00:05", device_auth: str | None = None
    ) -> None:
        self.workdir = workdir
        self.poll_time = poll_time
        self.device_auth = device_auth  # None, "setup", "lax" or "strict"
        self.port = 0
        self.url = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = ""
        self.password = secrets.token_urlsafe(16)
        self.timings: dict[str, float] = {}
        self._http = httpx.Client(timeout=30)

    def start(self) -> GoosebitServer:
        venv = ensure_venv()
        py = venv / "bin" / "python"
        self.workdir.mkdir(parents=True, exist_ok=True)
        site = subprocess.run(
            [
                str(py),
                "-c",
                "import sysconfig;print(sysconfig.get_paths()['purelib'] + '/goosebit')",
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd=self.workdir,
            env=self._env(),
        ).stdout.strip()
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (self.workdir / "pyproject.toml").write_text(
            "[tool.aerich]\n"
            'tortoise_orm = "goosebit.db.config.TORTOISE_CONF"\n'
            f'location = "{site}/db/migrations"\n'
            'src_folder = "./."\n'
        )
        auth = ""
        if self.device_auth:
            auth = f"device_auth:\n  enable: true\n  mode: {self.device_auth}\n"
        (self.workdir / "goosebit.yaml").write_text(
            f"port: {self.port}\n"
            f"db_uri: sqlite:///{self.workdir}/db.sqlite3\n"
            f"artifacts_dir: {self.workdir}/artifacts\n"
            f'poll_time: "{self.poll_time}"\n'
            f'secret_key: "{secrets.token_urlsafe(32)}"\n'
            "track_device_ip: false\n" + auth
        )
        t0 = time.monotonic()
        subprocess.run(
            [str(venv / "bin" / "aerich"), "upgrade"],
            cwd=self.workdir,
            check=True,
            capture_output=True,
            timeout=120,
            env=self._env(),
        )
        t1 = time.monotonic()
        self._log = open(self.workdir / "server.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                str(py),
                "-m",
                "uvicorn",
                "goosebit:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            cwd=self.workdir,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self._env(),
        )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"goosebit exited: {self.log_tail()}")
            try:
                if self._http.get(self.url + "/login").status_code in (200, 302):
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"goosebit did not come up: {self.log_tail()}")
            time.sleep(0.1)
        t2 = time.monotonic()
        r = self._http.post(
            self.url + "/setup", data={"username": ADMIN_USER, "password": self.password}
        )
        r.raise_for_status()
        self.token = r.json()["access_token"]
        self.timings = {"aerich_upgrade_s": t1 - t0, "start_to_ready_s": t2 - t1}
        return self

    def _env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PYTHON", "VIRTUAL_ENV", "OTEL"))
        }
        env["OTEL_SDK_DISABLED"] = "true"
        return env

    def log_tail(self, n: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return (self.workdir / "server.log").read_bytes()[-n:].decode("utf-8", "replace")
        return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._http.close()
        with contextlib.suppress(Exception):
            self._log.close()

    # -- management API ------------------------------------------------------------------------

    def api(self, method: str, path: str, **kw: Any) -> Any:
        r = self._http.request(
            method,
            self.url + "/api/v1" + path,
            headers={"Authorization": f"Bearer {self.token}"},
            **kw,
        )
        if r.status_code >= 400:
            raise RuntimeError(f"goosebit {method} {path} -> {r.status_code}: {r.text[:500]}")
        return r.json() if r.content else None

    def upload(self, swu: Path) -> int:
        with swu.open("rb") as fh:
            return int(self.api("PUT", "/software", files={"file": (swu.name, fh)})["id"])

    def assign(self, device: str, software_id: int, *, force: bool = False) -> None:
        body: dict[str, Any] = {"devices": [device], "software": str(software_id)}
        if force:
            body["force_update"] = True
        self.api("PATCH", "/devices", json=body)

    def device_log(self, device: str) -> dict[str, Any]:
        return dict(self.api("GET", f"/devices/{device}/log"))

    def device(self, device: str) -> dict[str, Any]:
        for d in self.api("GET", "/devices")["devices"]:
            if d["id"] == device:
                return dict(d)
        raise KeyError(device)


if __name__ == "__main__":
    if "--ensure" in sys.argv:
        print(ensure_venv())
    else:
        print(__doc__)
