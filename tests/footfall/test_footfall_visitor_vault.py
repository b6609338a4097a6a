"""Unique visitors survive a service restart within the day, and what reaches
the disk is only an AES-GCM blob whose key lives in memory and in the kernel
keyring (``face/footfall/visitor_vault.py``).

Most tests use :class:`DictKeys`, a key store shared between "processes"
the way the user keyring is shared between service starts; the kernel
keyring itself is tested last (in real separate processes) and skipped, with
the reason, only where the keyring cannot be used.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from footfall_helpers import CHINA_TZ, EXPECT, STAFF, LockstepSource, clip, make_centre
from sqlalchemy import select
from test_footfall_privacy import unit_windows

from face.footfall import visitor_vault
from face.footfall.config import FootfallConfig
from face.footfall.identity import DailyVisitors
from face.footfall.service import build_service
from face.footfall.store import KIND_HOURLY, footfall_summary
from face.footfall.visitor_vault import (
    FILE_NAME,
    MAGIC,
    KernelKeyring,
    KeyringUnavailable,
    VisitorState,
    VisitorVault,
)
from terminal.db.tables import OutboxRow

DAY = "2026-01-05"
NOW = datetime(2026, 1, 5, 10, 0, tzinfo=CHINA_TZ)
REPO = Path(__file__).resolve().parents[2]


class DictKeys:
    """A key store in a dict: what the user keyring is across service starts."""

    def __init__(self) -> None:
        self.keys: dict[str, bytes] = {}
        self.timeouts: dict[str, int] = {}

    def get(self, name: str) -> bytes | None:
        return self.keys.get(name)

    def put(self, name: str, key: bytes, timeout_s: int) -> None:
        self.keys[name] = key
        self.timeouts[name] = timeout_s

    def drop(self, name: str) -> None:
        self.keys.pop(name, None)


def vectors(n: int, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        v = rng.normal(size=512).astype(np.float32)
        out.append(v / np.linalg.norm(v))
    return out


def state_of(dv: DailyVisitors) -> VisitorState:
    return VisitorState(*dv.export_state())


def make_vault(tmp_path: Path, keys: Any, *, device: str = "dev-1") -> VisitorVault:
    return VisitorVault(tmp_path, centre_id="centre-1", device_id=device, keys=keys)


def saved(tmp_path: Path, keys: DictKeys) -> tuple[VisitorVault, DailyVisitors, list[np.ndarray]]:
    faces = vectors(3)
    dv = DailyVisitors()
    for v in faces:
        dv.visit(v)
    dv.new_anonymous()  # no usable embedding: counted, never matched
    vault = make_vault(tmp_path, keys)
    vault.save(DAY, NOW, state_of(dv))
    return vault, dv, faces


# ---------------------------------------------------------------- (a) restart
def test_a_new_process_sees_a_returning_visitor_as_the_same(tmp_path: Path) -> None:
    keys = DictKeys()
    _, before, faces = saved(tmp_path, keys)
    assert before.count == 4
    # a new service object after a restart: a new vault, new visitors, the same keyring
    after = DailyVisitors()
    state = make_vault(tmp_path, keys).load(DAY)
    assert state is not None
    after.restore_state(state.visitors, state.owners, state.vectors)
    assert after.count == 4 and after.vectors_held == 3
    noisy = faces[1] + np.random.default_rng(9).normal(scale=0.01, size=512).astype(np.float32)
    who, new = after.visit(noisy)
    assert (who, new) == (2, False) and after.count == 4
    _, new = after.visit(vectors(1, seed=77)[0])  # a stranger is still a new visitor, number 5
    assert new and after.count == 5


def test_the_key_times_out_at_the_end_of_the_day(tmp_path: Path) -> None:
    keys = DictKeys()
    vault, _, _ = saved(tmp_path, keys)
    midnight = datetime(2026, 1, 6, tzinfo=CHINA_TZ)
    assert keys.timeouts == {vault.key_name(DAY): int((midnight - NOW).total_seconds()) + 60}
    assert DAY in vault.key_name(DAY) and vault.key_name(DAY) != vault.key_name("2026-01-06")


# ------------------------------------------------------------- (b) on disk
def test_the_file_holds_no_embedding_in_clear(tmp_path: Path) -> None:
    keys = DictKeys()
    _, _, faces = saved(tmp_path, keys)
    path = tmp_path / FILE_NAME
    data = path.read_bytes()
    assert data.startswith(MAGIC)
    assert path.stat().st_mode & 0o777 == 0o600
    for v in faces:
        for chunk in (v.tobytes(), v[:4].tobytes(), v[:4].astype(np.float64).tobytes()):
            assert chunk not in data
    assert unit_windows(data) == 0
    with pytest.raises(ValueError):
        np.load(io.BytesIO(data), allow_pickle=False)
    with pytest.raises(ValueError):
        np.load(path, allow_pickle=False)
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left, nothing else
    key = keys.get(make_vault(tmp_path, keys).key_name(DAY))
    assert key is not None and key not in data


@pytest.mark.parametrize("what", ["absent", "wrong", "other_device", "other_day", "damaged"])
def test_without_the_right_key_the_file_is_useless_and_deleted(tmp_path: Path, what: str) -> None:
    keys = DictKeys()
    vault, _, _ = saved(tmp_path, keys)
    path = tmp_path / FILE_NAME
    name = vault.key_name(DAY)
    day, device = DAY, "dev-1"
    if what == "absent":  # a reboot: the kernel keyring is empty
        keys = DictKeys()
    elif what == "wrong":
        keys.keys[name] = bytes(32)
    elif what == "other_device":
        device = "dev-2"
    elif what == "other_day":  # yesterday's file with today's key
        day = "2026-01-06"
        keys.keys[make_vault(tmp_path, keys).key_name(day)] = keys.keys[name]
    else:
        blob = bytearray(path.read_bytes())
        blob[-5] ^= 0x01
        path.write_bytes(bytes(blob))
    assert make_vault(tmp_path, keys, device=device).load(day) is None
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_the_service_starts_afresh_when_the_key_is_gone(rig: Rig) -> None:
    centre, vdir = rig.centre, rig.vdir
    rig.run()
    assert (vdir / FILE_NAME).is_file()
    # reboot: the keyring is empty; the file is deleted and the day starts afresh
    centre.clock.advance(30 * 60)
    svc = rig.run(DictKeys())
    assert svc.status().unique_visitors == EXPECT["unique_visitors"]
    assert totals(centre)["unique_visitors"] == 2 * EXPECT["unique_visitors"]  # double counted


# ------------------------------------------------------- the service, restarted
@pytest.fixture(scope="module")
def centre_clip(clip_dir: Path, sprites: dict[str, Any]) -> Path:
    return clip(clip_dir, sprites)


def run(
    centre: Any,
    video: Path,
    open_pack: Path,
    engine: Any,
    vault_dir: Path,
    keys: Any,
) -> Any:
    cfg = FootfallConfig(staff_ids=STAFF, max_fps=1000.0)
    svc = build_service(
        source=LockstepSource(video, clock=centre.clock),
        config=cfg,
        pack_dir=open_pack,
        face_settings=None,
        sessions=centre.db.sessions,
        outbox=centre.outbox,
        clock=centre.clock,
        gallery=centre.gallery,
        engine=engine,
        vault_dir=vault_dir,
        centre_id="centre-1",
        keys=keys,
    )
    assert svc.vault is not None
    svc.run_for(120)
    assert svc.status().error is None
    return svc


@dataclass
class Rig:
    """A centre, the clip, the vault directory and a key store that survives restarts."""

    centre: Any
    video: Path
    pack: Path
    engine: Any
    vdir: Path
    keys: DictKeys

    def run(self, keys: DictKeys | None = None) -> Any:
        k = self.keys if keys is None else keys
        return run(self.centre, self.video, self.pack, self.engine, self.vdir, k)


@pytest.fixture
def rig(
    tmp_path: Path, centre_clip: Path, open_pack: Path, engine: Any, faces_dir: Path
) -> Iterator[Rig]:
    centre = make_centre(tmp_path / "data", engine, faces_dir)
    vdir = tmp_path / "vault"
    vdir.mkdir()
    yield Rig(centre, centre_clip, open_pack, engine, vdir, DictKeys())
    centre.close()


def totals(centre: Any, day: str = DAY) -> dict[str, Any]:
    with centre.db.sessions() as s:
        return dict(footfall_summary(s, day)["totals"])


def test_a_restart_within_the_day_does_not_double_count_unique_visitors(rig: Rig) -> None:
    centre, vdir = rig.centre, rig.vdir
    first = rig.run()
    assert first.status().unique_visitors == EXPECT["unique_visitors"]
    assert (vdir / FILE_NAME).is_file()
    # the service restarts 30 minutes later and the same people walk in again
    centre.clock.advance(30 * 60)
    second = rig.run()
    assert second is not first
    assert second.status().unique_visitors == EXPECT["unique_visitors"]  # restored, none new
    t = totals(centre)
    assert t["visits_in"] == 2 * EXPECT["visits_in"]  # visits count twice ...
    assert t["unique_visitors"] == EXPECT["unique_visitors"]  # ... unique visitors once


# ---------------------------------------------------------------- (c) rollover
def test_day_rollover_removes_the_file_and_the_key(tmp_path: Path) -> None:
    keys = DictKeys()
    vault, dv, _ = saved(tmp_path, keys)
    assert keys.keys
    vault.forget(DAY)
    assert list(tmp_path.iterdir()) == [] and keys.keys == {}
    # a new day gets a new key, and yesterday's is gone
    tomorrow = NOW + timedelta(days=1)
    vault.save("2026-01-06", tomorrow, state_of(dv))
    assert list(keys.keys) == [vault.key_name("2026-01-06")]
    assert vault.load(DAY) is None and not (tmp_path / FILE_NAME).exists()


def test_the_service_forgets_yesterday_at_rollover(
    rig: Rig,
) -> None:
    centre, vdir, keys = rig.centre, rig.vdir, rig.keys
    svc = rig.run()
    assert svc.vault is not None
    old_key = svc.vault.key_name(DAY)
    assert old_key in keys.keys
    yesterday_blob = (vdir / FILE_NAME).read_bytes()
    centre.clock.advance(24 * 3600)  # the next day, the service restarts
    svc = rig.run()
    assert old_key not in keys.keys
    assert list(keys.keys) == [svc.vault.key_name("2026-01-06")]
    assert (vdir / FILE_NAME).read_bytes() != yesterday_blob  # today's visitors only
    assert svc.status().unique_visitors == EXPECT["unique_visitors"]  # a new day, counted anew
    assert totals(centre, "2026-01-06")["unique_visitors"] == EXPECT["unique_visitors"]


def test_rollover_while_running_wipes_the_file_and_the_key(tmp_path: Path) -> None:
    """The service's rollover step: a change of day forgets the vault (file
    overwritten and deleted, key dropped) and the day's visitors."""
    from face.footfall.service import FootfallService

    keys = DictKeys()
    vault, dv, _ = saved(tmp_path, keys)

    class Pipe:
        identities = True
        visitors = dv

    svc = FootfallService.__new__(FootfallService)
    svc.vault = vault
    svc._vault_day = DAY
    svc._saved_version = dv.version
    svc._keep_visitors(Pipe(), NOW + timedelta(days=1))  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == [] and keys.keys == {}
    assert dv.count == 0 and dv.vectors_held == 0
    # the pipeline rolled over itself and counted the new day's first visitor in
    # the same frame: yesterday is forgotten, the new visitor kept and saved
    svc._vault_day = DAY
    svc._saved_version = dv.version
    dv.visit(vectors(1, seed=3)[0])
    svc._keep_visitors(Pipe(), NOW + timedelta(days=1))  # type: ignore[arg-type]
    assert dv.count == 1 and list(keys.keys) == [vault.key_name("2026-01-06")]
    assert (tmp_path / FILE_NAME).is_file()


# ------------------------------------------------------------ (d) privacy
def test_on_disk_only_the_encrypted_blob(tmp_path: Path, rig: Rig) -> None:
    """The privacy test's file checks with the vault on: besides the database
    only the vault file is new, it is the encrypted blob (magic, nonce,
    ciphertext) with no embedding-shaped data, and no outbox row holds more
    than the documented counts."""
    centre, vdir = rig.centre, rig.vdir
    before = {p for p in tmp_path.rglob("*") if p.is_file()}
    svc = rig.run()
    after = {p for p in tmp_path.rglob("*") if p.is_file()}
    new = sorted(p.relative_to(tmp_path).as_posix() for p in after - before)
    allowed = {"data/terminal.db", "data/terminal.db-wal", "data/terminal.db-shm"}
    assert set(new) - allowed == {f"vault/{FILE_NAME}"}, new
    blob = (vdir / FILE_NAME).read_bytes()
    assert blob.startswith(MAGIC) and unit_windows(blob) == 0
    assert svc.vault is not None
    state = svc.vault.load(DAY)  # the same blob decrypts with the day's key ...
    assert state is not None and state.visitors == EXPECT["unique_visitors"]
    for v in state.vectors:
        assert v[:4].tobytes() not in blob  # ... and none of its vectors is in it in clear
    for path in sorted(after):
        if path.name != FILE_NAME:
            for v in state.vectors:
                assert v[:4].tobytes() not in path.read_bytes(), path
    with centre.db.sessions() as s:
        for row in s.scalars(select(OutboxRow).where(OutboxRow.kind == KIND_HOURLY)):
            assert len(json.dumps(json.loads(row.payload))) < 400


def test_memory_only_with_one_warning_when_there_is_no_keyring(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse() -> None:
        raise KeyringUnavailable("keyctl(KEYCTL_SEARCH) failed: Operation not permitted")

    warnings: list[tuple[str, dict[str, Any]]] = []

    class Log:
        def warning(self, event: str, **kw: Any) -> None:
            warnings.append((event, kw))

    monkeypatch.setattr(visitor_vault, "KernelKeyring", refuse)
    monkeypatch.setattr(visitor_vault, "log", Log())
    monkeypatch.setattr(visitor_vault, "_warned", type(visitor_vault._warned)())
    assert visitor_vault.kernel_keyring() is None
    assert visitor_vault.kernel_keyring() is None
    assert [w[0] for w in warnings] == ["footfall_visitors_memory_only"]


# ------------------------------------------------------ the real kernel keyring
_CHILD = """
import ctypes, sys
from pathlib import Path
import numpy as np
from datetime import datetime, timezone, timedelta
from face.footfall.identity import DailyVisitors
from face.footfall.visitor_vault import KernelKeyring, VisitorState, VisitorVault
ring = KernelKeyring()
# like systemd's KeyringMode=private: each start gets a new session keyring
ring._kc(1, ctypes.c_char_p(None))
vault = VisitorVault(Path(sys.argv[2]), centre_id="c", device_id="d", keys=ring)
day, now = sys.argv[3], datetime.now(timezone(timedelta(hours=8)))
vec = np.load(sys.argv[4])
dv = DailyVisitors()
if sys.argv[1] == "save":
    dv.visit(vec)
    vault.save(day, now, VisitorState(*dv.export_state()))
    print("saved", dv.count)
else:
    state = vault.load(day)
    if state is not None:
        dv.restore_state(state.visitors, state.owners, state.vectors)
    who, new = dv.visit(vec)
    print("visit", dv.count, new)
"""


def test_the_kernel_user_keyring_carries_the_key_to_a_new_process(tmp_path: Path) -> None:
    try:
        ring = KernelKeyring()
    except KeyringUnavailable as exc:
        pytest.skip(f"kernel keyring unusable here: {exc}")
    day = datetime.now().strftime("test-%Y%m%d%H%M%S%f")  # a unique day: no clash with others
    vec_file = tmp_path / "vec.npy"
    np.save(vec_file, vectors(1, seed=5)[0])  # input of the test, outside the vault directory
    vdir = tmp_path / "vault"
    vdir.mkdir()
    vault = VisitorVault(vdir, centre_id="c", device_id="d", keys=ring)

    def child(mode: str) -> str:
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, mode, str(vdir), day, str(vec_file)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
            check=False,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout.strip()

    try:
        assert child("save") == "saved 1"
        assert ring.get(vault.key_name(day)) is not None  # in the user keyring, not in a file
        assert child("load") == "visit 1 False"  # a new process: the same visitor
        vault.forget(day)  # rollover: key and file gone
        assert ring.get(vault.key_name(day)) is None and not (vdir / FILE_NAME).exists()
        child("save")
        ring.drop(vault.key_name(day))  # a reboot: the key is gone
        assert child("load") == "visit 1 True"  # counted afresh ...
        assert not (vdir / FILE_NAME).exists()  # ... and the useless file was deleted
    finally:
        ring.drop(vault.key_name(day))
