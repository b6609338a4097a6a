"""The OTA agent: one DDI poll cycle at a time (run by ``care-terminal agent``).

Per cycle: report any outcome the updater left behind, poll the controller
base, put config data when asked or when it changed, answer cancel and
confirmation requests, and move the open deployment one step on:

    download (resumable) -> check DDI hashes -> "downloaded"
    -> verify bundle (signature, replay, downgrade, lengths, hashes)
    -> wait for the maintenance window / meal service / payment flag
    -> stage (allow-listed extraction) -> activation request -> updater

Every refusal is reported as DDI feedback ``closed``/``failure`` with the
reason code and message in ``details``. A bundle the updater rolled back is
remembered in the agent's state (its artifact hashes, version and counter)
and refused (``rolled_back``) when it is offered again, before it is
downloaded, so its migration and rollback do not run a second time. The updater (deploy/updater) switches
releases, checks health, rolls back, and reports the final outcome itself; it
also leaves a result file that this agent re-sends if the updater could not
reach the server.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sync.ota.archive import ArchiveLimits
from sync.ota.bundle import InstalledState, VerifiedBundle, VerifyPolicy, verify_bundle
from sync.ota.config import window_policy
from sync.ota.ddi import Artifact, DdiClient, Deployment, Execution, Finished
from sync.ota.errors import BundleRejected, DdiError, OtaError
from sync.ota.manifest import TrustStore
from sync.ota.staging import (
    FeedbackTarget,
    atomic_write_json,
    read_release_json,
    stage_bundle,
    write_activation_request,
)
from sync.ota.window import PaymentActivityFlag, decide
from sync.retry import BackoffPolicy, next_delay
from terminal.config.ota import OtaSettings
from terminal.core.clock import Clock, rfc3339
from terminal.core.log import get_logger

log = get_logger(__name__)

STATE_NAME = "agent-state.json"
MAX_FINISHED = 50
MAX_BAD = 50
MAX_RELEASE_HASHES = 10
_HASH_NAMES = ("sha256", "sha1", "md5")
_RELEASE_NAME = re.compile(r"^(?P<version>.+)-c(?P<counter>[0-9]+)$")


def make_trigger(cfg: OtaSettings) -> Callable[[Path], None]:
    """The default way to start the updater: run ``[ota.updater] trigger`` (an
    empty list means the ``care-terminal-updater.path`` unit notices the
    request file by itself)."""

    def trigger(request: Path) -> None:
        argv = list(cfg.updater.trigger)
        if not argv:
            return
        proc = subprocess.run(argv, capture_output=True, timeout=60, check=False)  # noqa: S603
        if proc.returncode != 0:
            log.warning("updater_trigger_failed", rc=proc.returncode)

    return trigger


def installed_release(root: Path, fallback_version: str = "0.0.0") -> InstalledState:
    """Version and manifest counter of the release ``root/current`` points at
    (a factory install without a manifest has counter 0)."""
    current = root / "current"
    try:
        doc = json.loads((current / "manifest.json").read_text(encoding="utf-8"))
        return InstalledState(str(doc["version"]), int(doc["counter"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        doc = json.loads((current / "app" / "release.json").read_text(encoding="utf-8"))
        return InstalledState(str(doc["version"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return InstalledState(fallback_version, 0)


@dataclass
class _Action:
    id: str
    phase: str  # downloading | verified | waiting | activating
    bundle: str = ""
    version: str = ""
    counter: int = 0
    wait_reason: str = ""
    hashes: dict[str, str] = field(default_factory=dict)  # of the downloaded .swu

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "phase": self.phase,
            "bundle": self.bundle,
            "version": self.version,
            "counter": self.counter,
            "wait_reason": self.wait_reason,
            "hashes": dict(self.hashes),
        }


class OtaAgent:
    """Drives one terminal's OTA over DDI. Call :meth:`run_once` in a loop
    (it returns how long to sleep) or :meth:`run_forever`."""

    def __init__(
        self,
        client: DdiClient,
        cfg: OtaSettings,
        trust: TrustStore,
        clock: Clock,
        *,
        trigger_updater: Callable[[Path], None],
        fallback_version: str = "0.0.0",
        extra_config_data: Callable[[], Mapping[str, str]] | None = None,
        on_status: Callable[[Mapping[str, Any]], None] | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.client = client
        self.cfg = cfg
        self.trust = trust
        self.clock = clock
        self.trigger_updater = trigger_updater
        self.fallback_version = fallback_version
        self.extra_config_data = extra_config_data
        self.on_status = on_status
        self.rand = rand
        self.root = cfg.paths.root
        self.work = cfg.paths.work_dir
        self.downloads = self.work / "downloads"
        self.spool = self.root / "spool"
        self.flag = PaymentActivityFlag(cfg.window.payment_flag, cfg.window.payment_flag_stale_s)
        self.policy = window_policy(cfg.window)
        self.backoff = BackoffPolicy(base_s=5.0, cap_s=600.0)
        self._failures = 0
        self._lock = threading.Lock()
        self.pending_confirmation: str | None = None
        self._state = self._load_state()

    # -- state ------------------------------------------------------------------------------

    def _load_state(self) -> dict[str, Any]:
        try:
            doc = json.loads((self.work / STATE_NAME).read_text(encoding="utf-8"))
            if isinstance(doc, dict):
                return doc
        except (OSError, ValueError):
            pass
        return {"highest_counter": 0, "config_digest": "", "action": None, "finished": {}}

    def _save(self) -> None:
        atomic_write_json(self.work / STATE_NAME, self._state, 0o600)

    @property
    def action(self) -> _Action | None:
        a = self._state.get("action")
        return _Action(**a) if isinstance(a, dict) else None

    def _set_action(self, a: _Action | None) -> None:
        self._state["action"] = a.to_json() if a else None
        self._save()

    def installed(self) -> InstalledState:
        inst = installed_release(self.root, self.fallback_version)
        return InstalledState(
            inst.version, max(inst.counter, int(self._state.get("highest_counter", 0)))
        )

    def _finish(self, action_id: str, result: str, details: list[str]) -> None:
        fin: dict[str, Any] = self._state.setdefault("finished", {})
        fin[action_id] = {"result": result, "details": details}
        while len(fin) > MAX_FINISHED:
            fin.pop(next(iter(fin)))
        a = self.action
        if a and a.id == action_id:
            self._state["action"] = None
            self._discard_downloads()
        self._save()

    def _discard_downloads(self) -> None:
        shutil.rmtree(self.downloads, ignore_errors=True)

    def _status(self, aid: str, step: str, status: str, to: str, detail: str = "") -> None:
        if self.on_status is None:
            return
        doc = {
            "deployment_id": aid[:64],
            "action": step,
            "status": status,
            "version_from": self.installed().version,
            "version_to": to or "unknown",
            "detail": detail[:500] or None,
        }
        try:
            self.on_status(doc)
        except Exception:  # the status sink must not stop an update
            log.exception("ota_status_sink_failed")

    # -- the cycle --------------------------------------------------------------------------

    def run_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            delay = self.run_once()
            stop.wait(delay)

    def run_once(self) -> float:
        """One cycle; returns seconds until the next one."""
        with self._lock:
            try:
                delay = self._cycle()
                self._failures = 0
                return delay
            except DdiError as exc:
                log.warning("ddi_failed", code=exc.code, status=exc.status, retryable=exc.retryable)
                delay = next_delay(
                    self.backoff, self._failures, self.rand, self.clock.now(), exc.retry_after
                )
                self._failures += 1
                return max(1.0, delay)

    def _cycle(self) -> float:
        self.report_results()
        base = self.client.poll()
        self._config_data(force=base.link("configData") is not None)
        if (href := base.link("cancelAction")) is not None:
            self._cancel(href)
        if (href := base.link("confirmationBase")) is not None:
            self._confirmation(href)
        if (href := base.link("deploymentBase")) is not None:
            retry = self._deployment(href)
            if retry is not None:
                return min(base.sleep_s, retry)
        return base.sleep_s

    def config_data(self) -> dict[str, str]:
        inst = self.installed()
        data = {
            "hw_boardname": self.cfg.device.board,
            "hw_revision": self.cfg.device.revision,
            "sw_version": inst.version,
            "release_counter": str(inst.counter),
        }
        if self.extra_config_data is not None:
            data.update({str(k): str(v) for k, v in self.extra_config_data().items()})
        return data

    def _config_data(self, force: bool) -> None:
        data = self.config_data()
        digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
        if force or digest != self._state.get("config_digest"):
            self.client.put_config_data(data)
            self._state["config_digest"] = digest
            self._save()

    def _feedback(
        self, aid: str, execution: Execution, finished: Finished, details: list[str]
    ) -> None:
        self.client.send_feedback(aid, execution, finished, details)

    def _fail(self, aid: str, exc: OtaError, version: str = "") -> None:
        details = [f"refused: {exc.code}", str(exc)]
        log.warning("ota_refused", action=aid, code=exc.code)
        self._feedback(aid, "closed", "failure", details)
        self._status(aid, "verify", "failed", version, f"{exc.code}: {exc}")
        self._finish(aid, "failure", details)

    # -- bundles that were rolled back -------------------------------------------------------

    def _bad_bundles(self) -> list[dict[str, Any]]:
        bad = self._state.get("bad_bundles")
        return [b for b in bad if isinstance(b, dict)] if isinstance(bad, list) else []

    def _refuse_if_rolled_back(
        self, hashes: Mapping[str, str], version: str = "", counter: int = 0
    ) -> None:
        """Raise BundleRejected(rolled_back) for a bundle that was rolled back
        here before: same artifact hash (any algorithm both sides know), or
        the same signed version and counter."""
        want = {k: v.lower() for k, v in hashes.items() if k in _HASH_NAMES and v}
        for b in self._bad_bundles():
            known = b.get("hashes")
            if not isinstance(known, dict):
                known = {}
            same_hash = any(known.get(k) == v for k, v in want.items())
            same_release = counter > 0 and (b.get("version"), b.get("counter")) == (
                version,
                counter,
            )
            if same_hash or same_release:
                raise BundleRejected(
                    f"bundle {b.get('version')} (counter {b.get('counter')}) was rolled back "
                    f"on this terminal at {b.get('at')} ({b.get('reason')}); it is not installed "
                    "again: publish a fixed bundle with a new manifest counter",
                    code="rolled_back",
                )

    def _remember_rolled_back(self, doc: Mapping[str, Any], details: list[str]) -> None:
        release = str(doc.get("release") or "")
        m = _RELEASE_NAME.fullmatch(release)
        try:
            counter = int(doc.get("counter") or (m["counter"] if m else 0))
        except (TypeError, ValueError):
            counter = 0
        hashes = self._state.get("release_hashes", {}).get(release)
        entry = {
            "release": release,
            "version": str(doc.get("version") or (m["version"] if m else "")),
            "counter": counter,
            "hashes": dict(hashes) if isinstance(hashes, dict) else {},
            "action_id": str(doc.get("action_id", "")),
            "reason": (details[0] if details else "rolled back")[:200],
            "at": rfc3339(self.clock.now()),
        }
        self._state["bad_bundles"] = [*self._bad_bundles(), entry][-MAX_BAD:]
        log.warning("ota_bundle_marked_bad", release=release, action=entry["action_id"])

    # -- cancel / confirmation ----------------------------------------------------------------

    def _cancel(self, href: str) -> None:
        c = self.client.get_cancel(href)
        a = self.action
        if a is not None and a.id == c.stop_id and a.phase == "activating":
            self.client.send_cancel_feedback(
                c.action_id, False, ["already activating; cannot cancel"]
            )
            return
        if a is not None and a.id == c.stop_id:
            self._state["action"] = None
            self._discard_downloads()
            self._save()
        self.client.send_cancel_feedback(c.action_id, True, ["cancelled before activation"])
        log.info("ota_cancelled", action=c.stop_id)

    def _confirmation(self, href: str) -> None:
        dep = self.client.get_confirmation_action(href)
        if self.cfg.policy.confirmation == "auto":
            self.client.send_confirmation(dep.action_id, True, ["confirmed by terminal policy"])
            self.pending_confirmation = None
        else:
            self.pending_confirmation = dep.action_id

    def confirm_pending(self, confirmed: bool, who: str = "staff") -> bool:
        """Staff answered the confirmation question on the kiosk."""
        with self._lock:
            aid = self.pending_confirmation
            if aid is None:
                return False
            self.client.send_confirmation(
                aid, confirmed, [f"{'confirmed' if confirmed else 'denied'} by {who}"]
            )
            self.pending_confirmation = None
            return True

    # -- deployment ---------------------------------------------------------------------------

    def _pick_artifact(self, dep: Deployment) -> Artifact:
        arts = [a for a in dep.artifacts() if a.filename.endswith(".swu")]
        if len(arts) != 1:
            raise BundleRejected(
                f"the deployment must carry exactly one .swu bundle (found {len(arts)})",
                code="bad_container",
            )
        return arts[0]

    def _verify_policy(self) -> VerifyPolicy:
        p = self.cfg.policy
        return VerifyPolicy(
            board=self.cfg.device.board,
            revision=self.cfg.device.revision,
            allow_downgrade=p.allow_downgrade,
            max_bundle_bytes=p.max_bundle_mb << 20,
            max_payload_bytes=p.max_bundle_mb << 20,
            max_unpacked_bytes=p.max_unpacked_mb << 20,
        )

    def _deployment(self, href: str) -> float | None:
        dep = self.client.get_deployment(href)
        aid = dep.action_id
        finished = self._state.get("finished", {}).get(aid)
        if finished is not None:
            # Our final feedback was lost or ignored: say it again, do nothing else.
            ok = finished["result"] == "success"
            self._feedback(aid, "closed", "success" if ok else "failure", list(finished["details"]))
            return None
        a = self.action
        if a is not None and a.id != aid:
            log.info("ota_action_replaced", old=a.id, new=aid)
            if a.phase == "activating":
                return 30.0
            a = None
            self._set_action(None)
            self._discard_downloads()
        if a is not None and a.phase == "activating":
            request = self.spool / "request.json"
            if request.exists():  # not picked up yet (updater unit missed it): ask again
                self.trigger_updater(request)
            return 30.0  # the updater is at work; it reports the outcome
        if dep.download == "skip":
            return None
        if a is None:
            try:  # a bundle that was rolled back here is refused before any download
                for art in dep.artifacts():
                    self._refuse_if_rolled_back(art.hashes)
            except BundleRejected as exc:
                self._fail(aid, exc)
                return None
            a = _Action(id=aid, phase="downloading")
            self._set_action(a)
            self._feedback(aid, "proceeding", "none", ["downloading"])
        if a.phase == "downloading":
            try:
                art = self._pick_artifact(dep)
                self.downloads.mkdir(parents=True, exist_ok=True)
                self._status(aid, "download", "started", "")
                path = self.client.download(
                    art,
                    self.downloads / f"action-{_safe(aid)}.swu",
                    max_bytes=self.cfg.policy.max_bundle_mb << 20,
                )
            except BundleRejected as exc:
                self._fail(aid, exc)
                return None
            self._feedback(aid, "downloaded", "none", [f"downloaded {art.filename[:80]}"])
            hashes = {k: v.lower() for k, v in art.hashes.items() if k in _HASH_NAMES}
            hashes["sha256"] = _sha256_file(path)
            try:
                vb = verify_bundle(path, self.trust, self._verify_policy(), self.installed())
                self._refuse_if_rolled_back(hashes, vb.manifest.version, vb.manifest.counter)
            except BundleRejected as exc:
                self._fail(aid, exc)
                return None
            a = _Action(
                id=aid,
                phase="verified",
                bundle=str(path),
                version=vb.manifest.version,
                counter=vb.manifest.counter,
                hashes=hashes,
            )
            self._set_action(a)
            self._feedback(
                aid,
                "proceeding",
                "none",
                [
                    f"verified {vb.manifest.version} (counter {vb.manifest.counter}, key {vb.key_id})"
                ],
            )
        if dep.update == "skip":
            return None  # download-only action
        now = self.clock.now()
        gate = decide(
            now,
            self.policy,
            payment_active=self.flag.is_active(now),
            server_window_available=dep.maintenance_window != "unavailable",
        )
        if not gate.allowed:
            if a.wait_reason != gate.reason:
                a.phase, a.wait_reason = "waiting", gate.reason
                self._set_action(a)
                self._feedback(aid, "proceeding", "none", [f"waiting to activate: {gate.reason}"])
            return gate.retry_in_s
        return self._activate(aid, a)

    def _activate(self, aid: str, a: _Action) -> float | None:
        try:
            vb: VerifiedBundle = verify_bundle(
                Path(a.bundle), self.trust, self._verify_policy(), self.installed()
            )
            inst = self.installed()
            current = (
                (self.root / "current").resolve().name if (self.root / "current").exists() else ""
            )
            staged = stage_bundle(
                vb,
                self.root / "releases",
                ArchiveLimits(max_total_bytes=self.cfg.policy.max_unpacked_mb << 20),
                protected=frozenset({current}),
            )
            read_release_json(staged.path / "app", staged.version)
        except OtaError as exc:
            self._fail(aid, exc, a.version)
            return None
        self._status(aid, "stage", "success", staged.version)
        d = self.cfg.ddi
        target = FeedbackTarget(
            url=f"{self.client.cfg.controller_url}/deploymentBase/{aid}/feedback",
            token_file=str(d.target_token_file or d.gateway_token_file or "") or None,
            token_kind="TargetToken" if d.target_token_file else "GatewayToken",
            ca_file=str(d.ca_file) if d.ca_file else None,
            cert_file=str(d.cert_file) if d.cert_file else None,
            key_file=str(d.key_file) if d.key_file else None,
        )
        timeout = vb.manifest.health_timeout_s or self.cfg.policy.health_timeout_s
        request = write_activation_request(
            self.spool,
            staged,
            action_id=aid,
            from_version=inst.version,
            health_timeout_s=timeout,
            feedback=target,
            requested_at=rfc3339(self.clock.now()),
        )
        self._feedback(aid, "proceeding", "none", [f"staged {staged.name}; activating"])
        a = _Action(
            id=aid,
            phase="activating",
            bundle="",
            version=staged.version,
            counter=staged.counter,
            hashes=a.hashes,
        )
        known: dict[str, Any] = self._state.setdefault("release_hashes", {})
        known[staged.name] = dict(a.hashes)
        while len(known) > MAX_RELEASE_HASHES:
            known.pop(next(iter(known)))
        self._set_action(a)
        self._discard_downloads()
        self._status(aid, "activate", "started", staged.version)
        self.trigger_updater(request)
        return 30.0

    # -- outcomes left by the updater ---------------------------------------------------------

    def report_results(self) -> None:
        """Send the final feedback for every updater result not yet reported,
        and record its outcome."""
        results = self.spool / "results"
        if not results.is_dir():
            return
        for path in sorted(results.glob("*.json")):
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
                aid, outcome = str(doc["action_id"]), str(doc["outcome"])
                details = [str(d) for d in doc.get("details", [])][:20]
            except (OSError, ValueError, KeyError, TypeError):
                log.warning("updater_result_unreadable", file=path.name)
                continue
            if doc.get("agent_seen"):
                continue
            ok = outcome == "success"
            if not doc.get("reported"):
                self._feedback(aid, "closed", "success" if ok else "failure", details)
                doc["reported"] = True
            if ok:
                self._state["highest_counter"] = max(
                    int(self._state.get("highest_counter", 0)), int(doc.get("counter", 0))
                )
            self._status(
                aid,
                "health_check" if ok else "rollback",
                "success" if ok else "rolled_back",
                str(doc.get("version", "")),
                "; ".join(details),
            )
            if outcome == "rolled_back":
                self._remember_rolled_back(doc, details)
            doc["agent_seen"] = True
            atomic_write_json(path, doc, 0o600)
            self._finish(aid, "success" if ok else "failure", details)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:64]
