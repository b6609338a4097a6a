"""The systemd contract of the two long-running units, proven by behaviour.

``care-terminal agent`` and the kiosk session are started exactly as their
unit files say (``unit_runner``), with a real notify socket and systemd's
``WATCHDOG_USEC`` shortened to a few seconds. Asserted: ``READY=1`` after
start-up, ``WATCHDOG=1`` at least every ``WatchdogSec/2``, readable ``STATUS=``
lines, ``STOPPING=1`` on SIGTERM, and that a wedged work loop stops the pings
(systemd would then kill and restart the service) while the process lives on.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

from unit_runner import VENV_BIN, max_gap, read_unit, start_service


def care(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "care-terminal"), *args],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def provision_root(root: Path, platform_url: str) -> dict[str, object]:
    """`care-terminal provision` into a device layout below ``root``."""
    r = care(
        "provision",
        "--centre",
        "C0012",
        "--device",
        "C0012-T01",
        "--platform",
        platform_url,
        "--config",
        str(root / "etc/care-terminal/config.toml"),
        "--data-dir",
        str(root / "var/lib/care-terminal"),
        "--release-root",
        str(root / "opt/care-terminal"),
        "--no-hw-check",
        env={"CARE_DEVICE": "1", "HOME": str(root)},
    )
    assert r.returncode in (0, 2), r.stderr
    doc: dict[str, object] = json.loads(r.stdout)
    return doc


def provisioned_with_models(root: Path) -> Path:
    """A device layout below ``root``, not registered, with the open model pack."""
    provision_root(root, "http://127.0.0.1:9")
    env = {
        "CARE_DEVICE": "1",
        "CARE_CONFIG": str(root / "etc/care-terminal/config.toml"),
        "HOME": str(root),
    }
    r = care("models", "fetch", "--json", env=env)
    assert r.returncode == 0, r.stderr
    return root


class SwitchableProxy:
    """A TCP forwarder on loopback in front of the platform. ``hole()`` makes
    it accept connections and never answer (a platform or middlebox that
    hangs); ``release()`` drops those connections and forwards again."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.mode = "forward"
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(conn)
                mode = self.mode
            if mode == "forward":
                threading.Thread(target=self._pump, args=(conn,), daemon=True).start()

    def _pump(self, client: socket.socket) -> None:
        try:
            up = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            client.close()
            return
        try:
            while True:
                ready, _, _ = select.select([client, up], [], [], 0.5)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (up if s is client else client).sendall(data)
        except OSError:
            return
        finally:
            up.close()
            client.close()

    def _drop_all(self) -> None:
        with self.lock:
            conns, self.conns = self.conns, []
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()

    def hole(self) -> None:
        with self.lock:
            self.mode = "hole"
        self._drop_all()  # pooled keep-alive connections must come back through the hole

    def release(self) -> None:
        with self.lock:
            self.mode = "forward"
        self._drop_all()

    def close(self) -> None:
        self.closed = True
        self.listener.close()
        self._drop_all()


def test_agent_unit_ready_watchdog_status_stopping_and_a_wedged_loop(
    tmp_path: Path,
) -> None:
    unit = read_unit("care-terminal-agent.service")
    assert unit.one("Type") == "notify" and unit.watchdog_usec == 120_000_000
    root = tmp_path / "root"
    # the platform knows the device: provision first, then serve with its key
    doc = provision_root(root, "http://127.0.0.1:9")
    platform = subprocess.Popen(
        [
            str(VENV_BIN / "care-terminal"),
            "platform",
            "serve",
            "--port",
            "0",
            "--print-url",
            "--db",
            f"sqlite:///{tmp_path / 'platform.db'}",
            "--register",
            str(doc["platform_register_arg"]),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "CARE_DEVICE": "0"},
    )
    proxy = None
    agent = None
    try:
        assert platform.stdout is not None
        url = json.loads(platform.stdout.readline())["url"]
        host, port = url.split("://", 1)[1].split(":")
        proxy = SwitchableProxy((host, int(port)))
        doc = provision_root(root, proxy.url)  # now with the platform URL in front of the proxy
        assert doc["registered"] is True, doc
        # /etc/care-terminal/environment (EnvironmentFile= of the unit): a long
        # request timeout, so a hung platform really hangs the loop; a short
        # heartbeat, so every cycle talks to the platform.
        (root / "etc/care-terminal/environment").write_text(
            "CARE_SYNC__TIMEOUT_S=600\nCARE_SYNC__HEARTBEAT_INTERVAL_S=1\n"
            "CARE_SYNC__IDLE_INTERVAL_S=1\n"
        )
        watchdog_s = 2.0
        agent = start_service(
            "care-terminal-agent.service",
            root,
            tmp_path / "agent",
            extra_env={
                "CARE_CONFIG": str(root / "etc/care-terminal/config.toml"),
                "WATCHDOG_USEC": str(int(watchdog_s * 1_000_000)),  # systemd's own variable
            },
        )
        n = agent.notify
        ready = n.wait_for("READY", "1", timeout=60)
        assert any(v.startswith("sync: started") for v in n.values("STATUS"))
        # the first heartbeat is acknowledged: the status line says when
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
            "last ack" in v and "never" not in v for v in n.values("STATUS")
        ):
            time.sleep(0.1)
        acked = [v for v in n.values("STATUS") if "last ack" in v and "never" not in v]
        assert acked and acked[-1].startswith("sync: "), (n.values("STATUS"), agent.output())
        time.sleep(max(0.0, ready + 3 * watchdog_s - time.monotonic()))
        pings = n.times("WATCHDOG", since=ready)
        assert len(pings) >= 6 and max_gap([ready, *pings]) <= watchdog_s / 2, pings

        # Wedge: the platform accepts and never answers. The loop blocks inside
        # its upload step, so the pings stop; the process is still there.
        wedged_at = time.monotonic()
        proxy.hole()
        time.sleep(3 * watchdog_s)
        # a loop that was between steps (idle interval 1 s) may ping once more
        # on its way into the step that hangs; after that, silence
        grace = 1.0 + watchdog_s / 2
        late = [t for t in n.times("WATCHDOG", since=wedged_at) if t > wedged_at + grace]
        assert not late, "pings went on while the sync loop was stuck"
        assert agent.proc.poll() is None

        # The connection is dropped: the step fails, the loop goes on, pings resume.
        resumed_from = time.monotonic()
        proxy.release()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not n.times("WATCHDOG", since=resumed_from):
            time.sleep(0.1)
        assert n.times("WATCHDOG", since=resumed_from), agent.output()

        assert agent.terminate(timeout=30) == 0
        assert n.wait_for("STOPPING", "1", timeout=1)
    finally:
        if agent is not None:
            agent.kill()
            agent.notify.close()
        if proxy is not None:
            proxy.close()
        platform.terminate()
        platform.wait(20)


def test_kiosk_unit_runs_the_session_script_and_pings_only_while_the_flow_loop_runs(
    tmp_path: Path, faces_dir: Path
) -> None:
    unit = read_unit("care-terminal-kiosk.service")
    assert unit.one("Type") == "notify" and unit.one("NotifyAccess") == "all"
    assert unit.exec_start[0].endswith("/kiosk-session.sh")
    root = provisioned_with_models(tmp_path / "root")
    camera = tmp_path / "camera"
    camera.mkdir()
    first = sorted(p for p in faces_dir.iterdir() if p.suffix.lower() in (".jpg", ".png"))[0]
    shutil.copy(first, camera / first.name)
    (root / "etc/care-terminal/environment").write_text(
        f"CARE_CAMERA__SOURCE={camera}\nCARE_CAMERA__FPS=2\n"
    )
    watchdog_s = 2.0
    kiosk = start_service(
        "care-terminal-kiosk.service",
        root,
        tmp_path / "kiosk",
        abstract_socket=True,  # "@name": systemd's own socket is abstract too
        extra_env={
            "CARE_CONFIG": str(root / "etc/care-terminal/config.toml"),
            "WATCHDOG_USEC": str(int(watchdog_s * 1_000_000)),
            # test hook (honoured only with CARE_TEST_HOOKS=1): the flow loop
            # blocks for good this many seconds after start-up
            "CARE_TEST_HOOKS": "1",
            "CARE_TEST_WEDGE_AFTER_S": "4",
        },
    )
    n = kiosk.notify
    try:
        ready = n.wait_for("READY", "1", timeout=120)
        status = n.values("STATUS")
        assert status and status[0].startswith("kiosk: ") and "camera" in status[0], status
        # the UI is the session's grandchild: WATCHDOG_PID named the session
        # (main) process, and the session script dropped it for its child
        time.sleep(3.0)
        pings = n.times("WATCHDOG", since=ready)
        assert len(pings) >= 4 and max_gap([ready, *pings]) <= watchdog_s / 2, pings

        # The flow loop is wedged by the hook: once it has been silent for the
        # runner's stall limit, the GUI loop withholds the pings.
        deadline = time.monotonic() + 40
        stopped = False
        while time.monotonic() < deadline:
            last = n.times("WATCHDOG")[-1]
            if time.monotonic() - last > 2 * watchdog_s:
                stopped = True
                break
            time.sleep(0.2)
        assert stopped, "pings went on while the flow loop was stuck"
        assert kiosk.proc.poll() is None  # alive: systemd, not the kiosk, ends it
        assert "watchdog_withheld" in kiosk.output()

        assert kiosk.terminate(timeout=30) == 0
        assert n.wait_for("STOPPING", "1", timeout=1)
    finally:
        kiosk.kill()
        n.close()


def test_footfall_unit_ready_watchdog_status_and_a_clean_stop(tmp_path: Path) -> None:
    from face.footfall.synth import Scene, write_clip

    unit = read_unit("care-terminal-footfall.service")
    assert unit.one("Type") == "notify" and unit.watchdog_usec == 60_000_000
    root = provisioned_with_models(tmp_path / "root")
    # the entrance camera (/dev/care-camera-door below the root): a clip of the
    # empty entrance, played in real time
    clip, _truth = write_clip(Scene("door", 60.0, (), fps=10.0, seed=5), {}, tmp_path / "clip")
    (root / "dev").mkdir()
    (root / "dev/care-camera-door").symlink_to(clip)
    watchdog_s = 4.0  # a frame of the counter can take a second on a loaded test machine
    ff = start_service(
        "care-terminal-footfall.service",
        root,
        tmp_path / "footfall",
        extra_env={
            "CARE_CONFIG": str(root / "etc/care-terminal/config.toml"),
            "WATCHDOG_USEC": str(int(watchdog_s * 1_000_000)),
        },
    )
    n = ff.notify
    try:
        ready = n.wait_for("READY", "1", timeout=120)
        time.sleep(3 * watchdog_s)
        pings = n.times("WATCHDOG", since=ready)
        assert len(pings) >= 6 and max_gap([ready, *pings]) <= watchdog_s / 2, (pings, ff.output())
        status = n.values("STATUS")
        assert any(s.startswith("footfall: camera connected, in 0 out 0") for s in status), status
        assert ff.terminate(timeout=30) == 0, ff.output()  # within TimeoutStopSec=30
        assert n.wait_for("STOPPING", "1", timeout=1)
        final = json.loads(ff.output())  # the counter's last status, after the stop
        assert final["running"] is False and final["error"] is None and final["frames"] > 20
    finally:
        ff.kill()
        n.close()
