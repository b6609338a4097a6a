"""Activation, health check, rollback and crash-loop handling.

Every step is written to ``updater-state.json`` *before* it is taken, so a
power cut at any point leaves enough on disk for ``boot`` to finish or undo
the step:

1. stop the kiosk and the agent;
2. back up the database (SQLite online backup) if the bundle has migrations;
3. switch ``current`` to the new release (symlink + rename: atomic);
4. run the new release's migrate command;
5. start the services and wait up to ``health_timeout_s`` for a health
   report from the *new* version written after the switch;
6. healthy: keep it, report success, prune old releases;
   not healthy, migration failed, or the kiosk crash-looped: stop, switch
   back, restore the database backup if migrations ran, start the previous
   release, report failure with the reason.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from care_updater import feedback
from care_updater.config import UpdaterConfig
from care_updater.fsutil import (
    copy_file_synced,
    current_name,
    fsync_dir,
    locked,
    read_json,
    switch_symlink,
    write_json,
)
from care_updater.health import report_problem, run_health_command

_RELEASE_RE = re.compile(r"^[0-9][0-9.]*-c[0-9]+$")
CRASH_FLAG = ".kiosk-failed"


class UpdaterError(Exception):
    """A request the updater cannot act on (nothing was changed)."""


def log(event: str, **fields: Any) -> None:
    doc = {"ts": round(time.time(), 3), "logger": "care_updater", "event": event, **fields}
    print(json.dumps(doc, ensure_ascii=False, default=str), file=sys.stderr, flush=True)


class Updater:
    def __init__(self, cfg: UpdaterConfig) -> None:
        self.cfg = cfg

    # -- state ------------------------------------------------------------------------------

    def load_state(self) -> dict[str, Any]:
        try:
            doc = read_json(self.cfg.state_file)
            if isinstance(doc, dict):
                return doc
        except (OSError, ValueError):
            pass
        return {
            "known_good": current_name(self.cfg.current),
            "previous": None,
            "trial": None,
            "crashes": [],
            "bad": [],
        }

    def save_state(self, state: dict[str, Any]) -> None:
        write_json(self.cfg.state_file, state, 0o600)

    # -- helpers ----------------------------------------------------------------------------

    def _run(
        self, argv: list[str], what: str, timeout: float | None = None, cwd: Path | None = None
    ) -> str | None:
        if not argv:
            return None
        try:
            proc = subprocess.run(
                argv,
                cwd=cwd,
                capture_output=True,
                timeout=timeout or self.cfg.command_timeout_s,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            log("command_failed", what=what, error=type(exc).__name__)
            return f"{what} failed to run ({type(exc).__name__})"
        if proc.returncode != 0:
            tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
            log("command_failed", what=what, rc=proc.returncode, stderr=tail[0][:200])
            return f"{what} exited {proc.returncode}"
        return None

    def _release_json(self, release: str) -> dict[str, Any]:
        try:
            doc = read_json(self.cfg.releases / release / "app" / "release.json")
        except (OSError, ValueError):
            return {}
        return doc if isinstance(doc, dict) else {}

    def _version_of(self, release: str | None) -> str:
        if not release:
            return ""
        return str(self._release_json(release).get("version", ""))

    def _result(self, trial: dict[str, Any], outcome: str, details: list[str]) -> None:
        aid = str(trial.get("action_id") or f"local-{int(time.time())}")
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in aid)[:64]
        ok = outcome == "success"
        reported = feedback.send(
            trial.get("feedback"),
            "closed",
            "success" if ok else "failure",
            details,
            self.cfg.feedback_retries,
            self.cfg.feedback_timeout_s,
        )
        write_json(
            self.cfg.spool / "results" / f"{safe}.json",
            {
                "action_id": aid,
                "outcome": outcome,
                "release": trial.get("release"),
                "version": trial.get("version"),
                "counter": trial.get("counter", 0),
                "from_version": trial.get("from_version"),
                "details": details,
                "reported": reported,
                "finished_at": time.time(),
            },
            0o600,
        )
        log("activation_result", action=aid, outcome=outcome, reported=reported, details=details)

    def _progress(self, trial: dict[str, Any], detail: str) -> None:
        feedback.send(
            trial.get("feedback"), "proceeding", "none", [detail], 1, self.cfg.feedback_timeout_s
        )

    # -- database backup / restore ------------------------------------------------------------

    def backup_db(self, tag: str) -> str:
        """Online backup of the database to ``backups/``; returns its path, or
        "absent" when there was no database yet."""
        db = self.cfg.db_path
        if not db.exists():
            return "absent"
        self.cfg.backups.mkdir(parents=True, exist_ok=True)
        dest = self.cfg.backups / f"{db.stem}-{tag}-{int(time.time())}.db"
        tmp = dest.with_suffix(".db.tmp")
        src = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            dst = sqlite3.connect(tmp)
            try:
                src.backup(dst)
                ok = dst.execute("PRAGMA quick_check").fetchone()[0] == "ok"
            finally:
                dst.close()
        finally:
            src.close()
        if not ok:
            tmp.unlink(missing_ok=True)
            raise UpdaterError("database backup failed its integrity check")
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
        return str(dest)

    def restore_db(self, backup: str) -> None:
        db = self.cfg.db_path
        for suffix in ("-wal", "-shm", "-journal"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        if backup == "absent":
            db.unlink(missing_ok=True)
            return
        copy_file_synced(Path(backup), db)

    # -- health -----------------------------------------------------------------------------

    def wait_healthy(
        self,
        release: str,
        version: str,
        not_before: float,
        timeout: float,
        watch_crash: bool = True,
    ) -> tuple[bool, str, float]:
        """Poll until healthy, crashed, or timed out. Returns (ok, why, seconds)."""
        start = time.monotonic()
        app = self.cfg.releases / release / "app"
        health_argv = self._release_json(release).get("health")
        last = "no health report yet"
        crash_flag = self.cfg.root / CRASH_FLAG
        while True:
            elapsed = time.monotonic() - start
            problem = report_problem(self.cfg.health_file, version, not_before)
            if problem is None and isinstance(health_argv, list) and health_argv:
                problem = run_health_command(
                    app, [str(a) for a in health_argv], min(30.0, max(1.0, timeout - elapsed))
                )
            if problem is None:
                return True, "healthy", elapsed
            last = problem
            if watch_crash:
                try:
                    if crash_flag.stat().st_mtime >= not_before:
                        return (
                            False,
                            "the kiosk crash-looped (systemd gave up restarting it)",
                            elapsed,
                        )
                except FileNotFoundError:
                    pass
            if elapsed >= timeout:
                return False, f"not healthy within {timeout:.0f} s: {last}", elapsed
            time.sleep(min(self.cfg.health_poll_s, max(0.05, timeout - elapsed)))

    # -- activation -------------------------------------------------------------------------

    def read_request(self, path: Path) -> dict[str, Any]:
        try:
            req = read_json(path)
        except FileNotFoundError:
            raise UpdaterError(f"no activation request at {path}") from None
        except (OSError, ValueError):
            raise UpdaterError("activation request is not valid JSON") from None
        if not isinstance(req, dict) or req.get("format") != 1:
            raise UpdaterError("activation request has an unknown format")
        release = req.get("release")
        if not isinstance(release, str) or not _RELEASE_RE.fullmatch(release):
            raise UpdaterError("activation request names no valid release")
        rdir = self.cfg.releases / release
        if rdir.is_symlink() or not (rdir / "app").is_dir():
            raise UpdaterError(f"release {release} is not staged")
        try:
            manifest = read_json(rdir / "manifest.json")
        except (OSError, ValueError):
            raise UpdaterError(f"release {release} has no manifest") from None
        if manifest.get("version") != req.get("version") or self._version_of(release) != req.get(
            "version"
        ):
            raise UpdaterError(f"release {release} does not hold version {req.get('version')}")
        return req

    def activate(self, request_path: Path | None = None) -> int:
        """Activate the requested release (or resume a pending trial). Exit
        codes: 0 healthy, 1 rolled back, 2 nothing done."""
        with locked(self.cfg.root / ".updater.lock"):
            state = self.load_state()
            trial = state.get("trial")
            if trial:
                return self._resume(state, trial)
            req = self.read_request(request_path or self.cfg.spool / "request.json")
            current = current_name(self.cfg.current)
            if current == req["release"]:
                raise UpdaterError(f"release {req['release']} is already current")
            if req["release"] in state.get("bad", []):
                return self._refuse_bad(req, request_path)
            trial = {
                "action_id": req.get("action_id"),
                "release": req["release"],
                "version": req["version"],
                "counter": int(req.get("counter", 0)),
                "previous": current,
                "from_version": self._version_of(current) or req.get("from_version"),
                "migrations": bool(req.get("migrations")),
                "health_timeout_s": float(req.get("health_timeout_s") or self.cfg.health_timeout_s),
                "feedback": req.get("feedback"),
                "phase": "stopping",
                "backup": None,
                "migrations_ran": False,
                "switched_at": None,
                "boots": 0,
            }
            state["trial"] = trial
            self.save_state(state)
            (self.cfg.spool / "request.json").unlink(missing_ok=True)
            log("activation_start", release=trial["release"], previous=current)
            self._progress(trial, f"updater: activating {trial['release']}")
            if err := self._run(self.cfg.stop_command, "stop services"):
                log("stop_warning", detail=err)
            if trial["migrations"]:
                try:
                    trial["backup"] = self.backup_db(current or "none")
                except (UpdaterError, sqlite3.Error, OSError) as exc:
                    return self._abort_before_switch(state, trial, f"database backup failed: {exc}")
                self.save_state(state)
            trial["phase"] = "switching"
            trial["switched_at"] = time.time()
            self.save_state(state)
            switch_symlink(self.cfg.current, trial["release"])
            trial["phase"] = "switched"
            self.save_state(state)
            if trial["migrations"]:
                argv = self._release_json(trial["release"]).get("migrate")
                if isinstance(argv, list) and argv:
                    trial["migrations_ran"] = True
                    self.save_state(state)
                    app = self.cfg.releases / trial["release"] / "app"
                    if err := self._run(
                        [str(app / argv[0]), *map(str, argv[1:])],
                        "migrations",
                        self.cfg.migrate_timeout_s,
                        cwd=app,
                    ):
                        return self._rollback(state, trial, f"migration failed: {err}")
            return self._start_and_check(state, trial)

    def _refuse_bad(self, req: dict[str, Any], request_path: Path | None) -> int:
        """A release this terminal already rolled back is not activated again
        (its migration and rollback would just run a second time). The
        refusal is reported like any other outcome; nothing is switched."""
        (request_path or self.cfg.spool / "request.json").unlink(missing_ok=True)
        trial = {
            "action_id": req.get("action_id"),
            "release": req["release"],
            "version": req["version"],
            "counter": int(req.get("counter", 0)),
            "from_version": req.get("from_version"),
            "feedback": req.get("feedback"),
        }
        self._result(
            trial,
            "failed",
            [
                f"refused: release {req['release']} was rolled back on this terminal before",
                "nothing was switched",
            ],
        )
        return 2

    def _start_and_check(self, state: dict[str, Any], trial: dict[str, Any]) -> int:
        trial["phase"] = "checking"
        self.save_state(state)
        if err := self._run(self.cfg.start_command, "start services"):
            log("start_warning", detail=err)
        ok, why, secs = self.wait_healthy(
            trial["release"],
            trial["version"],
            float(trial["switched_at"]),
            float(trial["health_timeout_s"]),
        )
        if not ok:
            return self._rollback(state, trial, why)
        return self._commit(state, trial, secs)

    def _commit(self, state: dict[str, Any], trial: dict[str, Any], secs: float) -> int:
        state["previous"] = trial["previous"]
        state["known_good"] = trial["release"]
        state["trial"] = None
        state["crashes"] = []
        self.save_state(state)
        self._result(
            trial,
            "success",
            [
                f"{trial['release']} healthy after {secs:.1f} s",
                f"previous release {trial['previous']} kept for rollback",
            ],
        )
        self.prune(state)
        return 0

    def _abort_before_switch(self, state: dict[str, Any], trial: dict[str, Any], why: str) -> int:
        self._run(self.cfg.start_command, "start services")
        state["trial"] = None
        self.save_state(state)
        self._result(trial, "failed", [why, "nothing was switched"])
        return 1

    def _rollback(self, state: dict[str, Any], trial: dict[str, Any], why: str) -> int:
        log("rollback_start", release=trial["release"], previous=trial["previous"], reason=why)
        details = [f"rolled back: {why}"]
        trial["phase"] = "rolling_back"
        self.save_state(state)
        self._run(self.cfg.stop_command, "stop services")
        back_at = time.time()
        if trial["previous"]:
            switch_symlink(self.cfg.current, trial["previous"])
        if trial.get("migrations_ran") and trial.get("backup"):
            try:
                self.restore_db(str(trial["backup"]))
                details.append("database restored from the backup taken before migrations")
            except OSError as exc:
                details.append(f"database restore FAILED: {exc}")
        (self.cfg.root / CRASH_FLAG).unlink(missing_ok=True)
        self._run(self.cfg.recover_command, "reset failed units")
        self._run(self.cfg.start_command, "start services")
        if trial["previous"]:
            prev_version = self._version_of(trial["previous"])
            ok, pwhy, secs = self.wait_healthy(
                trial["previous"],
                prev_version,
                back_at,
                float(trial["health_timeout_s"]),
                watch_crash=False,
            )
            details.append(
                f"previous release {trial['previous']} "
                + (f"healthy again after {secs:.1f} s" if ok else f"NOT healthy: {pwhy}")
            )
        state.setdefault("bad", []).append(trial["release"])
        state["bad"] = state["bad"][-10:]
        state["trial"] = None
        self.save_state(state)
        self._result(trial, "rolled_back", details)
        return 1

    def _resume(self, state: dict[str, Any], trial: dict[str, Any]) -> int:
        """A trial was interrupted (power cut, updater killed): finish or undo it."""
        current = current_name(self.cfg.current)
        phase = trial.get("phase")
        log("activation_resume", release=trial["release"], phase=phase, current=current)
        if current != trial["release"]:
            if phase in ("stopping",) or trial.get("switched_at") is None:
                return self._abort_before_switch(
                    state, trial, "activation was interrupted before the switch"
                )
            return self._rollback(state, trial, "activation was interrupted")
        if phase == "rolling_back":
            return self._rollback(state, trial, "rollback was interrupted")
        if trial.get("migrations") and not trial.get("migrations_ran") and phase == "switched":
            return self._rollback(state, trial, "activation was interrupted before migrations")
        if int(trial.get("boots", 0)) > self.cfg.max_boot_attempts:
            return self._rollback(state, trial, f"not healthy after {trial['boots']} boots")
        trial["switched_at"] = max(float(trial["switched_at"]), time.time() - 1.0)
        return self._start_and_check(state, trial)

    # -- boot and crash handling --------------------------------------------------------------

    def boot(self) -> int:
        """Run early at boot: count boots of a release still on trial; roll back
        when it has had its chances. Returns 3 when the caller should start
        ``activate`` to resume the trial, else 0/1."""
        with locked(self.cfg.root / ".updater.lock"):
            state = self.load_state()
            trial = state.get("trial")
            if not trial:
                return 0
            trial["boots"] = int(trial.get("boots", 0)) + 1
            self.save_state(state)
            if trial["boots"] > self.cfg.max_boot_attempts:
                return self._rollback(state, trial, f"not healthy after {trial['boots']} boots")
            return 3

    def on_failure(self) -> int:
        """Called when systemd gave up restarting the kiosk (OnFailure=)."""
        flag = self.cfg.root / CRASH_FLAG
        with locked(self.cfg.root / ".updater.lock", blocking=False) as got:
            if not got:  # an activation is running: tell it
                flag.touch()
                log("crash_flagged")
                return 0
            state = self.load_state()
            now = time.time()
            crashes = [
                t for t in state.get("crashes", []) if now - float(t) < self.cfg.crash_window_s
            ]
            crashes.append(now)
            state["crashes"] = crashes
            self.save_state(state)
            trial = state.get("trial")
            if trial:
                return self._rollback(state, trial, "the kiosk crash-looped on start")
            current = current_name(self.cfg.current)
            prev = state.get("previous")
            if (
                len(crashes) >= self.cfg.crash_threshold
                and prev
                and prev != current
                and prev not in state.get("bad", [])
                and (self.cfg.releases / prev / "app").is_dir()
            ):
                pseudo = {
                    "action_id": f"crashloop-{int(now)}",
                    "release": current,
                    "previous": prev,
                    "version": self._version_of(current),
                    "from_version": self._version_of(current),
                    "health_timeout_s": self.cfg.health_timeout_s,
                    "migrations_ran": False,
                    "feedback": None,
                }
                state["previous"] = None
                state["known_good"] = prev
                state["crashes"] = []
                return self._rollback(state, pseudo, f"{current} crash-looped {len(crashes)} times")
            self._run(self.cfg.recover_command, "reset failed units")
            self._run(self.cfg.start_command, "start services")
            return 0

    def rollback_manual(self, reason: str) -> int:
        with locked(self.cfg.root / ".updater.lock"):
            state = self.load_state()
            prev = state.get("previous")
            current = current_name(self.cfg.current)
            if not prev or prev == current or not (self.cfg.releases / prev / "app").is_dir():
                raise UpdaterError("there is no previous release to roll back to")
            pseudo = {
                "action_id": f"manual-{int(time.time())}",
                "release": current,
                "previous": prev,
                "version": self._version_of(current),
                "from_version": self._version_of(current),
                "health_timeout_s": self.cfg.health_timeout_s,
                "migrations_ran": False,
                "feedback": None,
            }
            state["previous"] = None
            state["known_good"] = prev
            return self._rollback(state, pseudo, reason or "manual rollback")

    def prune(self, state: dict[str, Any]) -> list[str]:
        """Delete old release folders, keeping current, previous and the newest
        ``keep_releases`` in total."""
        keep = {current_name(self.cfg.current), state.get("previous"), state.get("known_good")}
        releases = (
            sorted(
                (
                    p
                    for p in self.cfg.releases.iterdir()
                    if p.is_dir() and not p.name.startswith(".")
                ),
                key=lambda p: p.stat().st_mtime,
                reverse=True,
            )
            if self.cfg.releases.is_dir()
            else []
        )
        removed = []
        kept = 0
        for p in releases:
            if p.name in keep:
                kept += 1
                continue
            if kept < self.cfg.keep_releases:
                kept += 1
                continue
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p.name)
        for old in sorted(self.cfg.backups.glob("*.db"))[:-3] if self.cfg.backups.is_dir() else []:
            old.unlink(missing_ok=True)
        return removed

    def status(self) -> dict[str, Any]:
        state = self.load_state()
        state["current"] = current_name(self.cfg.current)
        return state
