"""Start the real services the way their systemd units start them.

Reads ``ExecStart=``, ``Environment=``, ``EnvironmentFile=`` and
``WatchdogSec=`` from ``deploy/systemd/*.service`` and runs the command with
what systemd would give it: ``NOTIFY_SOCKET`` (a real AF_UNIX datagram socket
bound by the test), ``WATCHDOG_USEC`` (systemd's variable, from ``WatchdogSec=``;
a test may shorten it) and ``WATCHDOG_PID`` (the main process), each in a new
process group that a SIGTERM reaches as a whole (``KillMode=control-group``).

Device paths (``/etc/care-terminal``, ``/var/lib/care-terminal``,
``/opt/care-terminal``, ``/run/care-terminal``) are mapped below a root folder,
the layout ``install-rpi.sh --root`` creates. The kiosk unit runs
``kiosk-session.sh``: the script is run as it is, except its ``setterm`` line
(it would write to the host's /dev/tty1), with a stand-in for the ``cage``
compositor that starts the UI as its child on Qt's offscreen platform.
"""

from __future__ import annotations

import itertools
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
VENV_BIN = Path(sys.executable).parent
DEVICE_DIRS = (
    "/etc/care-terminal",
    "/var/lib/care-terminal",
    "/opt/care-terminal",
    "/run/care-terminal",
    "/dev/care-camera-door",  # the entrance camera: a video file in a test
)

FAKE_CAGE = """#!{python}
# Stands in for the cage Wayland compositor: runs the one client as a child
# (so the client is not the unit's main process) on Qt's offscreen platform.
import os, signal, subprocess, sys
args = sys.argv[1:]
args = args[args.index("--") + 1:]
# FAKE_CAGE_QPA stands in for the screen: "offscreen" unless a test wants to tap
# (e.g. "vnc:size=1280x800:port=5901", Qt's VNC platform: pointer input over VNC).
qpa = os.environ.get("FAKE_CAGE_QPA", "offscreen")
child = subprocess.Popen(args, env=dict(os.environ, QT_QPA_PLATFORM=qpa))
signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
sys.exit(child.wait())
"""

WRAPPER = """#!/bin/sh
# bin/care-terminal of a test release: the checkout's virtual environment
exec {venv}/care-terminal "$@"
"""


def make_app_release(dest: Path, version: str = "1.0.0") -> Path:
    """An application release folder as ``install-rpi.sh --app`` takes it, whose
    ``bin/care-terminal`` is this checkout's virtual environment."""
    (dest / "bin").mkdir(parents=True, exist_ok=True)
    (dest / "release.json").write_text(f'{{"version": "{version}"}}\n')
    ct = dest / "bin" / "care-terminal"
    ct.write_text(WRAPPER.format(venv=VENV_BIN))
    ct.chmod(0o755)
    return dest


@dataclass
class Unit:
    name: str
    service: dict[str, list[str]]

    def one(self, key: str) -> str:
        return self.service[key][-1]

    @property
    def exec_start(self) -> list[str]:
        return shlex.split(self.one("ExecStart"))

    @property
    def watchdog_usec(self) -> int:
        text = self.one("WatchdogSec")
        return int(float(text.rstrip("s")) * 1_000_000)

    @property
    def environment(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for line in self.service.get("Environment", []):
            for item in shlex.split(line):
                key, _, value = item.partition("=")
                env[key] = value
        return env


def read_unit(name: str) -> Unit:
    """The [Service] section, every value of repeated keys kept in order."""
    section = ""
    service: dict[str, list[str]] = {}
    for raw in (DEPLOY / "systemd" / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        if section == "Service" and "=" in line:
            key, _, value = line.partition("=")
            service.setdefault(key.strip(), []).append(value.strip())
    return Unit(name, service)


def map_path(text: str, root: Path) -> str:
    for d in DEVICE_DIRS:
        if text == d or text.startswith(d + "/"):
            return str(root) + text
    return text


def read_env_file(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, _, value = line.partition("=")
                env[key.strip()] = value.strip().strip('"')
    return env


class NotifySocket:
    """systemd's side of sd_notify: a bound datagram socket that records every
    message with its arrival time. ``abstract=True`` binds ``@name``."""

    def __init__(self, tmp: Path, *, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"care-terminal-test-{uuid.uuid4().hex}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            path = tmp / "notify.sock"
            self.sock.bind(str(path))
            self.address = str(path)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(
                line.split("=", 1) for line in data.decode("utf-8").splitlines() if "=" in line
            )
            with self._lock:
                self.messages.append((time.monotonic(), fields))

    def snapshot(self) -> list[tuple[float, dict[str, str]]]:
        with self._lock:
            return list(self.messages)

    def times(self, key: str, since: float = 0.0) -> list[float]:
        return [t for t, m in self.snapshot() if key in m and t >= since]

    def values(self, key: str) -> list[str]:
        return [m[key] for _t, m in self.snapshot() if key in m]

    def wait_for(self, key: str, value: str | None = None, timeout: float = 60.0) -> float:
        """Arrival time of the first message with ``key`` (and ``value``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, m in self.snapshot():
                if key in m and (value is None or m[key] == value):
                    return t
            time.sleep(0.05)
        raise AssertionError(f"no {key}={value or '*'} within {timeout} s: {self.snapshot()}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@dataclass
class Service:
    unit: Unit
    proc: subprocess.Popen[str]
    log: Path
    notify: NotifySocket
    extra: dict[str, str] = field(default_factory=dict)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM to the whole process group, as systemd stops a unit."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)  # TimeoutStopSec= ran out
            self.proc.wait(10)
            raise

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def service_env(
    unit: Unit, root: Path, notify: NotifySocket, extra: dict[str, str]
) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "NOTIFY_SOCKET": notify.address,
        "WATCHDOG_USEC": str(unit.watchdog_usec),
        "RUNTIME_DIRECTORY": str(root / "run" / "care-terminal"),
        # onnxruntime and BLAS: one thread each on the shared test machine
        "OMP_NUM_THREADS": "1",
    }
    for key, value in unit.environment.items():
        env[key] = map_path(value, root)
    for spec in unit.service.get("EnvironmentFile", []):
        env.update(read_env_file(Path(map_path(spec.lstrip("-"), root))))
    env.update(extra)
    return env


def _session_script(root: Path, app: Path, bin_dir: Path) -> Path:
    """kiosk-session.sh as installed in the release, minus the console
    blanking line (it writes to the host's /dev/tty1)."""
    src = (DEPLOY / "kiosk" / "kiosk-session.sh").read_text().splitlines()
    lines = [line for line in src if not line.lstrip().startswith("setterm ")]
    assert len(lines) == len(src) - 1, "kiosk-session.sh changed: update the test harness"
    script = app / "share" / "care-terminal" / "kiosk-session.sh"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text("\n".join(lines) + "\n")
    script.chmod(0o755)
    cage = bin_dir / "cage"
    cage.write_text(FAKE_CAGE.format(python=sys.executable))
    cage.chmod(0o755)
    return script


def start_service(
    name: str,
    root: Path,
    tmp: Path,
    *,
    extra_env: dict[str, str] | None = None,
    abstract_socket: bool = False,
) -> Service:
    """Start ``name`` (e.g. ``care-terminal-agent.service``) as systemd would,
    with device paths below ``root``."""
    unit = read_unit(name)
    tmp.mkdir(parents=True, exist_ok=True)
    notify = NotifySocket(tmp, abstract=abstract_socket)
    extra = dict(extra_env or {})
    env = service_env(unit, root, notify, extra)
    (root / "run" / "care-terminal").mkdir(parents=True, exist_ok=True)
    argv = [map_path(a, root) for a in unit.exec_start]
    if argv[0].endswith("/kiosk-session.sh"):
        app = Path(argv[0]).parents[2]
        if not (app / "bin" / "care-terminal").exists():
            make_app_release(app)
        bin_dir = tmp / "bin"
        bin_dir.mkdir(exist_ok=True)
        argv = [str(_session_script(root, app, bin_dir))]
        env["PATH"] = f"{bin_dir}:{env['PATH']}"
    elif not Path(argv[0]).exists() and argv[0].endswith("/bin/care-terminal"):
        argv[0] = str(VENV_BIN / "care-terminal")
    log = tmp / f"{name}.log"
    # systemd exports the main PID as WATCHDOG_PID; the shell keeps its PID through exec.
    proc = subprocess.Popen(
        ["/bin/sh", "-c", 'WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$@"', "sh", *argv],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        cwd=str(root),
    )
    return Service(unit, proc, log, notify, extra)


def max_gap(times: list[float]) -> float:
    return max((b - a for a, b in itertools.pairwise(times)), default=float("inf"))
