"""The sync agent: ``care-terminal agent`` (a service beside the kiosk) and
``care-terminal sync now|status``.

One cycle = heartbeat (when due) -> upload the kiosk stream -> upload the agent
stream -> pull datasets (when due). The loop sleeps between cycles (the
shorter of the idle interval and the next scheduled retry) and wakes early on
SIGUSR1 (``sync now`` while the agent runs). Under systemd (``Type=notify``,
``WatchdogSec=``) the loop itself tells systemd it is ready, pings the watchdog
between its steps and while it sleeps, and keeps a ``STATUS=`` line such as
``sync: 3 queued, last ack 12:03``; a step that hangs stops the pings, and
systemd restarts the agent. SIGTERM/SIGINT stop it cleanly:
the batch in flight finishes or times out, every ``sync.db`` transaction
either committed or did not happen, nothing is half-written.

Single writer of ``sync.db``: whoever writes it holds an exclusive ``flock`` on
``sync.db.lock``. ``sync now`` runs a cycle in-process when it gets the lock;
when the agent holds it, ``sync now`` wakes the agent instead and says so.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import random
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from sync.auth import Signer, client_ssl_context, load_device_key, provision_device_key
from sync.client import PlatformClient
from sync.pull import Puller, PullOutcome
from sync.retry import BackoffPolicy
from sync.schemas import DATASET_KINDS
from sync.store.kiosk_reader import KioskOutboxReader, sqlite_file
from sync.store.outbox import AgentOutbox, SyncStore
from sync.store.status import sync_status
from sync.uploader import Uploader, UploadReport
from terminal.core.atomic import atomic_write_text
from terminal.core.clock import Clock, SystemClock, rfc3339
from terminal.core.errors import TerminalError
from terminal.core.ids import new_ulid
from terminal.core.log import get_logger
from terminal.core.sdnotify import Notifier

if TYPE_CHECKING:
    from terminal.config.settings import Settings

log = get_logger(__name__)

HEALTH_STALE_S = 300
STATUS_EVERY_S = 5.0  # while draining a backlog, the STATUS= line is refreshed this often


class AgentBusy(TerminalError):
    code = "sync_agent_busy"


# -- the single-writer lock --------------------------------------------------------------


def lock_path(sync_db_url: str) -> Path:
    path = sqlite_file(sync_db_url)
    if path is None:
        raise TerminalError("sync.db must be a SQLite file", code="config_invalid")
    return path.with_name(path.name + ".lock")


@contextlib.contextmanager
def writer_lock(sync_db_url: str) -> Iterator[None]:
    """Hold the exclusive right to write ``sync.db`` (raises AgentBusy with the
    holder's pid when another process has it)."""
    path = lock_path(sync_db_url)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            err = AgentBusy(f"the sync agent (pid {holder or '?'}) is running and owns sync.db")
            err.holder_pid = int(holder) if holder.isdigit() else None  # type: ignore[attr-defined]
            raise err from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
        yield
    finally:
        os.close(fd)  # closing releases the flock


# -- kiosk health (camera/printer) for the heartbeat -------------------------------------


def write_kiosk_health(path: Path, camera_status: str, printer_status: str, now: datetime) -> None:
    """Called by the kiosk (atomic file replace; no shared database writes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "camera_status": camera_status,
        "printer_status": printer_status,
        "written_at": now.timestamp(),
    }
    atomic_write_text(path, json.dumps(doc))


def read_kiosk_health(path: Path | None, now: datetime) -> tuple[str, str]:
    if path is None or not path.is_file():
        return "unknown", "unknown"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if now.timestamp() - float(doc["written_at"]) > HEALTH_STALE_S:
            return "unknown", "unknown"
        cam, prn = str(doc["camera_status"]), str(doc["printer_status"])
    except (ValueError, KeyError, TypeError, OSError):
        return "unknown", "unknown"
    cam = cam if cam in ("ok", "degraded", "offline") else "unknown"
    prn = prn if prn in ("ok", "paper_out", "offline") else "unknown"
    return cam, prn


def _software_version() -> str:
    try:
        return metadata.version("care-terminal")
    except metadata.PackageNotFoundError:
        return "unknown"


def _uptime_s() -> int:
    try:
        return int(float(Path("/proc/uptime").read_text().split()[0]))
    except (OSError, ValueError, IndexError):
        return int(time.monotonic())


# -- the agent ---------------------------------------------------------------------------


@dataclass
class CycleReport:
    uploads: list[UploadReport] = field(default_factory=list)
    pulls: list[PullOutcome] = field(default_factory=list)
    heartbeat: str | None = None
    delegated_to_pid: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "uploads": [u.to_dict() for u in self.uploads],
            "pulls": [asdict(p) for p in self.pulls],
            "heartbeat": self.heartbeat,
            "delegated_to_pid": self.delegated_to_pid,
        }


class SyncAgent:
    def __init__(
        self,
        store: SyncStore,
        client: PlatformClient,
        terminal_db_url: str,
        device_id: str,
        centre_id: str,
        clock: Clock,
        *,
        batch_size: int = 500,
        policy: BackoffPolicy | None = None,
        rand: Callable[[], float] = random.random,
        heartbeat_interval_s: float = 600.0,
        pull_interval_s: float = 300.0,
        idle_interval_s: float = 15.0,
        health_file: Path | None = None,
        disk_path: Path | None = None,
    ) -> None:
        self.store = store
        self.client = client
        self.terminal_db_url = terminal_db_url
        self.device_id = device_id
        self.centre_id = centre_id
        self.clock = clock
        self.policy = policy or BackoffPolicy()
        self.kiosk = KioskOutboxReader(terminal_db_url)
        self.agent_outbox = AgentOutbox(store, device_id, centre_id)
        self.uploaders = [
            Uploader(
                store,
                client,
                src,
                device_id,
                centre_id,
                clock,
                batch_size=batch_size,
                policy=self.policy,
                rand=rand,
            )
            for src in (self.kiosk, self.agent_outbox)
        ]
        self.puller = Puller(store, client, centre_id, clock, policy=self.policy, rand=rand)
        self.heartbeat_interval_s = heartbeat_interval_s
        self.pull_interval_s = pull_interval_s
        self.idle_interval_s = idle_interval_s
        self.health_file = health_file
        self.disk_path = disk_path or (sqlite_file(terminal_db_url) or Path(".")).parent
        self._last_heartbeat: float | None = None
        self._last_pull: float | None = None
        self.wake = threading.Event()

    def close(self) -> None:
        self.kiosk.close()

    def heartbeat_payload(self, now: datetime) -> dict[str, Any]:
        st = sync_status(self.terminal_db_url, self.store.url, now)
        try:
            disk = shutil.disk_usage(self.disk_path if self.disk_path.exists() else Path("/"))
            free, total = disk.free, disk.total
        except OSError:
            free = total = 0
        camera, printer = read_kiosk_health(self.health_file, now)
        last = max(
            (s.last_success_at for s in st.streams.values() if s.last_success_at), default=None
        )
        return {
            "software_version": _software_version(),
            "uptime_s": _uptime_s(),
            "disk_free_bytes": free,
            "disk_total_bytes": total,
            "queue_depth": st.queue_depth,
            "oldest_unsynced_age_s": st.oldest_unsynced_age_s,
            "dead_letters": st.dead_letter_count,
            "blocked_streams": st.blocked_streams,
            "camera_status": camera,
            "printer_status": printer,
            "last_upload_at": last,
            "datasets": {k: f"v{d.version}" for k, d in st.datasets.items()},
        }

    def append_heartbeat(self) -> str:
        now = self.clock.now()
        record_id = new_ulid()
        self.agent_outbox.append("heartbeat", record_id, self.heartbeat_payload(now), now)
        return record_id

    def append_ota_status(self, payload: dict[str, Any]) -> str:
        """For the OTA client: report a step into the agent stream."""
        now = self.clock.now()
        record_id = new_ulid()
        self.agent_outbox.append("ota_status", record_id, payload, now)
        return record_id

    def cycle(
        self,
        *,
        force: bool = False,
        stop: threading.Event | None = None,
        max_batches: int | None = None,
        tick: Callable[[], object] | None = None,
    ) -> CycleReport:
        """One cycle. ``tick`` is called between its steps (each step is bounded
        by the client timeout), which is where the service watchdog is fed."""
        report = CycleReport()
        beat = tick or (lambda: None)
        mono = self.clock.monotonic()
        if (
            force
            or self._last_heartbeat is None
            or mono - self._last_heartbeat >= self.heartbeat_interval_s
        ):
            report.heartbeat = self.append_heartbeat()
            self._last_heartbeat = mono
        for up in self.uploaders:
            beat()
            report.uploads.append(
                up.run_once(ignore_schedule=force, stop=stop, max_batches=max_batches)
            )
        if force or self._last_pull is None or mono - self._last_pull >= self.pull_interval_s:
            for kind in DATASET_KINDS:
                beat()
                report.pulls.append(self.puller.pull(kind, ignore_schedule=force))
            self._last_pull = mono
        return report

    def status_line(self) -> str:
        """One line for ``systemctl status``: queue, last acknowledgement, trouble."""
        try:
            st = sync_status(self.terminal_db_url, self.store.url, self.clock.now())
        except TerminalError as exc:
            return f"sync: status unavailable ({exc.code})"
        last = max(
            (s.last_success_at for s in st.streams.values() if s.last_success_at), default=None
        )
        when = "never"
        if last:
            try:
                local = datetime.fromisoformat(last).astimezone(self.clock.now().tzinfo)
                when = local.strftime("%H:%M")
            except ValueError:
                when = last
        parts = [f"sync: {st.queue_depth} queued", f"last ack {when}"]
        if st.dead_letter_count:
            parts.append(f"{st.dead_letter_count} dead letters")
        if st.blocked_streams:
            parts.append("blocked: " + ",".join(st.blocked_streams))
        errors = [s.last_error for s in st.streams.values() if s.last_error and s.queue_depth]
        if errors:
            parts.append(f"retrying ({errors[0][:60]})")
        return ", ".join(parts)

    def next_sleep(self, report: CycleReport) -> float:
        now = self.clock.now().timestamp()
        delay = self.idle_interval_s
        for up in report.uploads:
            if up.waiting_until is not None:
                delay = min(delay, max(0.0, up.waiting_until - now))
            elif not up.drained:
                delay = 0.0
        return delay

    def run(self, stop: threading.Event, notifier: Notifier | None = None) -> None:
        """The agent loop. With a ``notifier`` the loop feeds the systemd
        watchdog itself: between the steps of a cycle (one batch per stream per
        cycle, so a long backlog is many short cycles) and while it sleeps. A
        step that never returns means no more pings."""
        log.info("sync_agent_started", device=self.device_id)
        ping = notifier.alive if notifier is not None else (lambda status=None: False)
        step = notifier.ping_every_s if notifier is not None else None
        status_at = float("-inf")
        while not stop.is_set():
            try:
                report = self.cycle(
                    stop=stop, max_batches=1 if step else None, tick=lambda: ping(None)
                )
                delay = self.next_sleep(report)
            except TerminalError as exc:
                log.error("sync_cycle_failed", error=str(exc)[:300])
                delay = self.idle_interval_s
            if notifier is not None and notifier.enabled:
                now_m = time.monotonic()
                if now_m - status_at >= STATUS_EVERY_S or delay > 0:
                    status_at = now_m
                    ping(self.status_line())
            deadline = time.monotonic() + delay
            while not stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0 or self.wake.wait(min(left, step) if step else left):
                    break
                ping(None)
            self.wake.clear()
        log.info("sync_agent_stopped", device=self.device_id)


# -- wiring from Settings ----------------------------------------------------------------


def policy_from(settings: Settings) -> BackoffPolicy:
    s = settings.sync
    return BackoffPolicy(
        base_s=s.backoff_base_s, cap_s=s.backoff_cap_s, max_retry_after_s=s.max_retry_after_s
    )


def build_client(settings: Settings, clock: Clock) -> PlatformClient:
    s = settings.sync
    key = load_device_key(settings.device_key_file)
    verify: Any = True
    if s.platform_url.startswith("https://"):
        verify = client_ssl_context(s.tls_ca_file, s.tls_client_cert, s.tls_client_key)
    return PlatformClient(
        s.platform_url,
        Signer(settings.centre.device_id, key),
        clock,
        verify=verify,
        timeout_s=s.timeout_s,
    )


def build_agent(settings: Settings, clock: Clock | None = None) -> SyncAgent:
    from terminal.db.crypto import FieldCipher, load_or_create_key

    clock = clock or SystemClock()
    cipher = FieldCipher(load_or_create_key(settings.data_key_file))
    store = SyncStore(settings.sync_db_url, cipher)
    s = settings.sync
    return SyncAgent(
        store,
        build_client(settings, clock),
        settings.database_url,
        settings.centre.device_id,
        settings.centre.centre_id,
        clock,
        batch_size=s.batch_size,
        policy=policy_from(settings),
        heartbeat_interval_s=s.heartbeat_interval_s,
        pull_interval_s=s.pull_interval_s,
        idle_interval_s=s.idle_interval_s,
        health_file=settings.kiosk_health_file,
        disk_path=settings.data_dir,
    )


def provision(settings: Settings) -> str:
    """Create the device key (once) and return the public key to register."""
    return provision_device_key(settings.device_key_file)


def run_agent(
    settings: Settings,
    clock: Clock | None = None,
    on_start: Callable[[threading.Event, SyncAgent], object] | None = None,
) -> int:
    """``care-terminal agent``: run until SIGTERM/SIGINT. Returns the exit code.
    ``on_start(stop, agent)`` lets the composition root start services beside
    the sync loop (the OTA client) that stop with it."""
    stop = threading.Event()
    notifier = Notifier()
    with writer_lock(settings.sync_db_url):
        agent = build_agent(settings, clock)
        if on_start is not None:
            on_start(stop, agent)

        def _stop(_sig: int, _frame: FrameType | None) -> None:
            stop.set()
            agent.wake.set()

        def _wake(_sig: int, _frame: FrameType | None) -> None:
            agent.wake.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGUSR1, _wake)
        notifier.ready(f"sync: started, platform {settings.sync.platform_url}")
        try:
            agent.run(stop, notifier)
        finally:
            notifier.stopping("sync: stopping")
            agent.client.close()
            agent.close()
            agent.store.close()
    return 0


def sync_now(settings: Settings, clock: Clock | None = None) -> dict[str, Any]:
    """``care-terminal sync now``: one upload + pull cycle in this process, or a
    wake-up of the running agent (which owns sync.db)."""
    try:
        with writer_lock(settings.sync_db_url):
            agent = build_agent(settings, clock)
            try:
                return agent.cycle(force=True).to_dict()
            finally:
                agent.client.close()
                agent.close()
                agent.store.close()
    except AgentBusy as busy:
        pid = getattr(busy, "holder_pid", None)
        if pid:
            os.kill(pid, signal.SIGUSR1)
        return CycleReport(delegated_to_pid=pid).to_dict()


def status(settings: Settings, clock: Clock | None = None) -> dict[str, Any]:
    """``care-terminal sync status``: read-only; safe while the kiosk and agent run."""
    now = (clock or SystemClock()).now()
    doc = sync_status(settings.database_url, settings.sync_db_url, now).to_dict()
    doc["checked_at"] = rfc3339(now)
    return doc


# -- a small entry point for tests and benchmarks (no Settings file needed) --------------


def _drain_main(argv: list[str] | None = None) -> int:
    """``python -m sync.agent drain ...``: upload the kiosk stream until it is empty.
    Used by the chaos test (which SIGKILLs it) and the benchmark."""
    p = argparse.ArgumentParser(prog="python -m sync.agent")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("drain")
    d.add_argument("--terminal-db", required=True)
    d.add_argument("--sync-db", required=True)
    d.add_argument("--url", required=True)
    d.add_argument("--device-id", required=True)
    d.add_argument("--centre-id", required=True)
    d.add_argument("--key", required=True, type=Path)
    d.add_argument("--batch-size", type=int, default=500)
    d.add_argument("--backoff-base", type=float, default=1.0)
    d.add_argument("--backoff-cap", type=float, default=300.0)
    d.add_argument("--timeout", type=float, default=30.0)
    d.add_argument("--no-validate-requests", action="store_true")
    d.add_argument("--max-seconds", type=float, default=600.0)
    args = p.parse_args(argv)
    clock = SystemClock()
    with writer_lock(args.sync_db):
        store = SyncStore(args.sync_db)
        client = PlatformClient(
            args.url,
            Signer(args.device_id, load_device_key(args.key)),
            clock,
            timeout_s=args.timeout,
            validate_requests=not args.no_validate_requests,
        )
        up = Uploader(
            store,
            client,
            KioskOutboxReader(args.terminal_db),
            args.device_id,
            args.centre_id,
            clock,
            batch_size=args.batch_size,
            policy=BackoffPolicy(base_s=args.backoff_base, cap_s=args.backoff_cap),
        )
        deadline = time.monotonic() + args.max_seconds
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        while not stop.is_set() and time.monotonic() < deadline:
            rep = up.run_once(stop=stop)
            if rep.drained:
                print(json.dumps({"drained": True, "acked_seq": rep.acked_seq}), flush=True)
                return 0
            if rep.blocked:
                print(json.dumps({"blocked": rep.blocked}), flush=True)
                return 3
            if rep.waiting_until is not None:
                stop.wait(max(0.0, rep.waiting_until - clock.now().timestamp()))
        return 4


if __name__ == "__main__":
    sys.exit(_drain_main())
