"""A terminal from zero to acknowledged meals, with processes only.

``install-rpi.sh --root <tmp> --no-system`` installs a release whose
``bin/care-terminal`` is this checkout and provisions it against a platform
URL nobody answers yet; district IT registers the printed key at
``care-terminal platform serve`` (loopback, its own SQLite file); the
technician re-runs ``provision``, which now proves the registration; staff set
up a menu, residents and wallets; the agent and the kiosk run as their units
start them; meals are paid headless by staff lookup and by card (a face
payment from a still image is refused: the flow asks for an active liveness
challenge, which a photo cannot answer), and by face at the running kiosk: the
camera is a network camera on loopback (MJPEG over HTTP, ``tests/mjpeg_peer.py``)
showing an enrolled senior as a 3-D head rendered from a photo not used for
enrolment, who turns the way the kiosk asks (read from the kiosk's journal
lines) and taps 确认支付 (Qt's VNC platform stands in for the touch screen);
the records arrive at the provisioned platform URL under the provisioned key,
and ``sync status`` reports them acknowledged.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import socket
import sqlite3
import stat
import subprocess
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from mjpeg_peer import MjpegCamera
from unit_runner import DEPLOY, VENV_BIN, Service, make_app_release, start_service

from face.liveness_synth import FRAME_H, FRAME_W, SimulatedSenior, plain_background
from face.pipeline import FaceEngine, load_image
from terminal.app.soak import PAY_BUTTON, PAY_GREEN, SCREEN, VncInput, near

CENTRE, DEVICE = "C0012", "C0012-T01"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(
    cmd: list[str], env: dict[str, str], timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def serve_platform(db: Path, port: int, register: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            str(VENV_BIN / "care-terminal"),
            "platform",
            "serve",
            "--port",
            str(port),
            "--db",
            f"sqlite:///{db}",
            "--register",
            register,
            "--print-url",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "CARE_DEVICE": "0"},
    )
    assert proc.stdout is not None
    assert json.loads(proc.stdout.readline())["url"] == f"http://127.0.0.1:{port}"
    return proc


def wait_face_charge(db: Path, resident: str, timeout: float) -> str | None:
    """The record id of ``resident``'s face-verified charge, read from the
    kiosk's database (read-only) once it has committed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            rows = con.execute(
                "SELECT record_id, kind, payload FROM outbox ORDER BY seq"
            ).fetchall()
        for record_id, kind, payload in rows:
            doc = json.loads(payload)
            method = doc.get("verification", {}).get("method")
            if (kind, doc.get("resident_id"), method) == ("meal_transaction", resident, "face"):
                return str(record_id)
        time.sleep(0.5)
    return None


def one_identity(faces_dir: Path) -> list[Path]:
    """The photos of the identity with the most photos in labels.csv."""
    by: dict[str, list[Path]] = {}
    with (faces_dir / "labels.csv").open(encoding="utf-8-sig", newline="") as fh:
        for row in csv.DictReader(fh):
            by.setdefault(row["identity"], []).append(faces_dir / row["file"])
    return max(by.values(), key=len)


@pytest.mark.slow  # about 80 s on two cores: ./run test -m slow tests/e2e
def test_from_zero_to_acknowledged_meals(tmp_path: Path, faces_dir: Path) -> None:
    root = tmp_path / "root"
    etc, var = root / "etc/care-terminal", root / "var/lib/care-terminal"
    port = free_port()
    platform_url = f"http://127.0.0.1:{port}"
    release_key = tmp_path / "district-2026.pub"
    release_key.write_text("MCowBQYDK2VwAyEA\n")
    pepper = tmp_path / "district-pepper"  # the file the platform made for district IT
    pepper.write_bytes(bytes(range(32)))

    # 1. install and provision from zero
    install = run(
        [
            "bash",
            str(DEPLOY / "install-rpi.sh"),
            "--root",
            str(root),
            "--no-system",
            "--app",
            str(make_app_release(tmp_path / "app", "1.0.0")),
            "--release-key",
            str(release_key),
            "--centre",
            CENTRE,
            "--device",
            DEVICE,
            "--platform",
            platform_url,
            "--district-pepper",
            str(pepper),
        ],
        env={"HOME": str(tmp_path)},
    )
    assert install.returncode == 0, install.stderr
    printed = json.loads(install.stdout)  # what provision printed for the technician
    assert printed["registered"] is False and "not reachable" in printed["detail"]
    key_file = var / "keys/device_ed25519.pem"
    assert printed["device_key_file"] == str(key_file) and key_file.is_file()
    installed_pepper = var / "keys/district-pepper"
    assert installed_pepper.read_bytes() == pepper.read_bytes()
    assert stat.S_IMODE(installed_pepper.stat().st_mode) == 0o600
    assert printed["district_pepper"] == f"district pepper installed at {installed_pepper}"
    conf = tomllib.loads((etc / "config.toml").read_text())
    assert conf["sync"]["platform_url"] == platform_url
    assert conf["sync"]["device_key_file"] == str(key_file) and conf["data_dir"] == str(var)
    for unit in ("care-terminal-agent.service", "care-terminal-kiosk.service"):
        assert (root / "etc/systemd/system" / unit).read_text() == (
            DEPLOY / "systemd" / unit
        ).read_text()
    assert (root / "opt/care-terminal/current/app/share/care-terminal/kiosk-session.sh").is_file()
    assert "ota" not in conf and not (etc / "ota.toml").exists()  # no DDI server given: OTA off

    # 2. district IT registers the printed key; the technician checks again
    platform_db = tmp_path / "platform.db"
    platform = serve_platform(platform_db, port, str(printed["platform_register_arg"]))
    services: list[Service] = []
    cleanups: list[Callable[[], None]] = []
    try:
        env = {
            "CARE_DEVICE": "1",
            "CARE_CONFIG": str(etc / "config.toml"),
            "HOME": str(var),
        }
        ct = str(root / "opt/care-terminal/current/app/bin/care-terminal")

        def care(*args: str) -> subprocess.CompletedProcess[str]:
            return run([ct, *args], env)

        again = care(
            "provision", "--centre", CENTRE, "--device", DEVICE, "--platform", platform_url,
            "--config", str(etc / "config.toml"), "--data-dir", str(var), "--no-hw-check",
        )  # fmt: skip
        assert again.returncode == 0, again.stdout + again.stderr
        assert json.loads(again.stdout)["registered"] is True
        assert json.loads(again.stdout)["public_key"] == printed["public_key"]  # key kept

        # 3. the centre's day: models, a menu served all day, residents, wallets
        (etc / "config.toml").write_text(
            (etc / "config.toml").read_text()
            + '\n[payment.slot_windows]\nbreakfast = "00:00-09:59"\n'
            'lunch = "10:00-15:59"\ndinner = "16:00-23:59"\n'
        )
        for args in (
            ("models", "fetch"),
            ("menu", "set", "--item", "M1,午餐套餐,15.00,breakfast+lunch+dinner", "--staff", "S01"),
            ("residents", "add", "--resident-id", "R1", "--name", "张三", "--card", "20260001"),
            ("residents", "add", "--resident-id", "R3", "--name", "王五", "--card", "20260003"),
        ):
            r = care(*args)
            assert r.returncode == 0, (args, r.stderr)
        photos = one_identity(faces_dir)
        r = care("enroll", "--resident-id", "R2", "--name", "李四", *map(str, photos[:2]))
        assert r.returncode == 0, r.stderr
        for resident in ("R1", "R2", "R3"):
            assert (
                care("topup", "--resident", resident, "--amount", "50", "--staff", "S01").returncode
                == 0
            )

        # 4. the services, as their units start them; the camera is a network
        # camera showing an empty entrance until the senior walks up
        engine = FaceEngine.from_pack(var / "models" / "open")
        live_photo = load_image(photos[-1])  # not one of the enrolment photos
        faces = engine.detect(live_photo)
        assert faces and faces[0].landmarks68 is not None
        senior = SimulatedSenior(live_photo, faces[0].landmarks68, seed=7)
        empty = plain_background((FRAME_H, FRAME_W), np.random.default_rng(3))
        present = False
        camera = MjpegCamera(lambda now: senior.frame(now) if present else empty, fps=10)
        camera.start()
        cleanups.append(camera.stop)
        (etc / "environment").write_text(f"CARE_CAMERA__SOURCE={camera.url}\nCARE_CAMERA__FPS=10\n")
        extra = {"CARE_CONFIG": str(etc / "config.toml")}
        agent = start_service(
            "care-terminal-agent.service", root, tmp_path / "agent", extra_env=extra
        )
        services.append(agent)
        vnc_port = free_port()
        kiosk = start_service(
            "care-terminal-kiosk.service",
            root,
            tmp_path / "kiosk",
            extra_env={
                **extra,
                "FAKE_CAGE_QPA": f"vnc:size={SCREEN[0]}x{SCREEN[1]}:port={vnc_port}",
            },
        )
        services.append(kiosk)
        agent.notify.wait_for("READY", "1", timeout=60)
        kiosk.notify.wait_for("READY", "1", timeout=120)

        # 5. meals: staff lookup and card; a face from a still photo is refused
        paid = []
        r = care(
            "pay",
            "--resident",
            "R1",
            "--method",
            "staff",
            "--slot",
            "lunch",
            "--staff",
            "S01",
            "--yes",
            "--json",
        )
        assert r.returncode == 0, r.stderr
        paid.append(json.loads(r.stdout)["record_id"])
        r = care("pay", "--resident", "R3", "--method", "card", "--yes", "--json")
        assert r.returncode == 0, r.stderr
        paid.append(json.loads(r.stdout)["record_id"])
        r = care(
            "pay",
            "--resident",
            "R2",
            "--method",
            "face",
            "--image",
            str(photos[-1]),
            "--yes",
            "--json",
        )
        assert r.returncode == 2, r.stdout + r.stderr  # a still photo never pays
        assert "liveness challenge" in r.stderr, r.stderr

        # ... and a face meal at the kiosk: R2 walks up, turns as asked, taps 确认支付
        vnc = VncInput("127.0.0.1", vnc_port)
        cleanups.append(vnc.close)
        log_at = kiosk.log.stat().st_size
        present = True
        answered: set[int] = set()
        deadline = time.monotonic() + 90
        tapped = False
        while time.monotonic() < deadline and not tapped:
            lines = kiosk.log.read_text(errors="replace")[log_at:].splitlines()
            for i, line in enumerate(lines):
                if '"kiosk_challenge_prompt"' in line and i not in answered:
                    answered.add(i)
                    prompt = json.loads(line[line.index("{") :])["prompt"]
                    if prompt.startswith("face.liveness.turn_"):
                        senior.respond(prompt.rsplit("_", 1)[1], time.monotonic())
            if near(vnc.pixel(*PAY_BUTTON), PAY_GREEN):
                vnc.tap(*PAY_BUTTON)
                tapped = True
            time.sleep(0.1)
        assert tapped, kiosk.output()[-3000:]
        face_paid = wait_face_charge(var / "terminal.db", "R2", timeout=30)
        assert face_paid is not None, kiosk.output()[-3000:]
        paid.append(face_paid)
        present = False
        assert answered, "the kiosk never asked for a head turn"

        # 6. sync now wakes the running agent (it owns sync.db) ...
        r = care("sync", "now", "--json")
        assert r.returncode == 0 and json.loads(r.stdout)["delegated_to_pid"], r.stdout + r.stderr
        deadline = time.monotonic() + 60
        status: dict[str, object] = {}
        while time.monotonic() < deadline:
            status = json.loads(care("sync", "status", "--json").stdout)
            kiosk_stream = status["streams"]["kiosk"]  # type: ignore[index]
            if status["queue_depth"] == 0 and kiosk_stream["acked_seq"] >= len(paid):
                break
            time.sleep(0.5)
        # ... and `sync status` reports every record acknowledged
        streams = status["streams"]
        assert status["queue_depth"] == 0 and status["dead_letters"] == 0, status
        assert streams["kiosk"]["acked_seq"] == streams["kiosk"]["head_seq"] >= len(paid), status  # type: ignore[index]
        assert streams["kiosk"]["last_success_at"], status  # type: ignore[index]

        # 7. at the platform: the meals, from this device, under the provisioned key
        with sqlite3.connect(platform_db) as db:
            (registered_key,) = db.execute(
                "SELECT public_key FROM devices WHERE device_id = ?", (DEVICE,)
            ).fetchone()
            rows = dict(
                db.execute(
                    "SELECT record_id, kind FROM records WHERE device_id = ? AND stream = 'kiosk'",
                    (DEVICE,),
                ).fetchall()
            )
        private = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        raw = private.public_key().public_bytes(  # type: ignore[union-attr]
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        assert registered_key == base64.b64encode(raw).decode() == printed["public_key"]
        for record_id in paid:
            assert record_id in rows, (record_id, rows)

        # the agent's status line tells a technician the same
        assert any("sync: 0 queued, last ack" in v for v in agent.notify.values("STATUS"))

        for svc in services:
            assert svc.terminate(timeout=30) == 0, svc.output()[-2000:]
            assert svc.notify.wait_for("STOPPING", "1", timeout=1)
    finally:
        for svc in services:
            svc.kill()
            svc.notify.close()
        for cleanup in cleanups:
            cleanup()
        platform.terminate()
        platform.wait(20)
