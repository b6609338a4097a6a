"""Archive hardening: link resolution against the planned tree, the raw tar
header pre-scan with byte caps (measured cost of a header bomb), the
interpreter check for CVE-2024-6232, and the cpio size limit of the bundle
container."""

from __future__ import annotations

import gzip
import io
import os
import stat
import sys
import tarfile
import time
import tracemalloc
import zlib
from pathlib import Path

import pytest
from bundle_cases import ext, header, pax_record, raw_tar, tar_bytes, ti, with_data

from sync.ota import swu
from sync.ota.archive import (
    ALLOW_FLAWED_ENV,
    ArchiveLimits,
    check_interpreter,
    prescan,
    safe_extract,
    tarfile_flaw,
)
from sync.ota.errors import BundleRejected, OtaError

END = bytes(1024)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def refused(path: Path, code: str, **limits: int) -> str:
    with pytest.raises(BundleRejected) as err:
        prescan(path, ArchiveLimits(**limits))
    assert err.value.code == code, str(err.value)
    return str(err.value)


# -- links resolved against the planned tree ------------------------------------------------------


def test_link_chains_that_stay_inside_are_extracted(tmp_path: Path) -> None:
    members = [
        (ti("lib", tarfile.DIRTYPE, mode=0o755), None),
        (ti("lib/python3.13", tarfile.DIRTYPE, mode=0o755), None),
        (ti("lib/python3.13/site.py"), b"# site\n"),
        (ti("lib64", tarfile.SYMTYPE, "lib"), None),  # the venv layout
        (ti("bin", tarfile.DIRTYPE, mode=0o755), None),
        (ti("bin/python", mode=0o755), b"#!/bin/sh\n"),
        (ti("bin/python3", tarfile.SYMTYPE, "python"), None),
        (ti("bin/python3.13", tarfile.SYMTYPE, "python3"), None),  # a link to a link
        (ti("site", tarfile.SYMTYPE, "lib/python3.13/site.py"), None),
    ]
    archive = write(tmp_path, "ok.tar.gz", tar_bytes(members))
    report = safe_extract(archive, tmp_path / "out")
    assert report.links == 4
    out = tmp_path / "out"
    assert (out / "bin" / "python3.13").resolve() == (out / "bin" / "python").resolve()
    assert (out / "lib64" / "python3.13" / "site.py").read_bytes() == b"# site\n"


@pytest.mark.parametrize(
    ("links", "message"),
    [
        # lib/up -> .. is harmless alone; lib/up/.. then climbs out of the release.
        ([("lib/up", ".."), ("esc", "lib/up/..")], "through another symbolic link"),
        ([("esc", "lib/up/../etc"), ("lib/up", "..")], "through another symbolic link"),
        ([("lib/a", "b/../.."), ("lib/b", ".")], "through another symbolic link"),
        ([("lib/deep", "../../x")], "outside the archive"),
    ],
)
def test_link_through_another_link_is_refused(tmp_path: Path, links, message) -> None:
    members = [(ti("lib", tarfile.DIRTYPE, mode=0o755), None)]
    members += [(ti(name, tarfile.SYMTYPE, target), None) for name, target in links]
    archive = write(tmp_path, "chain.tar.gz", tar_bytes(members))
    with pytest.raises(BundleRejected) as err:
        safe_extract(archive, tmp_path / "out")
    assert err.value.code == "unsafe_archive" and message in str(err.value)
    assert not (tmp_path / "out").exists()


def test_hard_link_may_not_name_a_path_through_a_symlink(tmp_path: Path) -> None:
    members = [
        (ti("bin", tarfile.DIRTYPE, mode=0o755), None),
        (ti("bin/tool"), b"x"),
        (ti("alias", tarfile.SYMTYPE, "bin"), None),
        (ti("hard", tarfile.LNKTYPE, "alias/tool"), None),
    ]
    archive = write(tmp_path, "hard.tar.gz", tar_bytes(members))
    with pytest.raises(BundleRejected) as err:
        safe_extract(archive, tmp_path / "out")
    assert err.value.code == "unsafe_archive"


# -- the pre-scan -------------------------------------------------------------------------------


def long_name_bomb(path: Path, size: int) -> Path:
    """A GNU long-name header of ``size`` bytes, gzipped in a stream (a 128 MiB
    header makes a 130 KB file, the shape of the attack-run bundle)."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b"a" * (1 << 20)
    with path.open("wb") as fh:
        fh.write(c.compress(header("././@LongLink", b"L", size)))
        left = size
        while left:
            n = min(left, len(chunk))
            fh.write(c.compress(chunk[:n]))
            left -= n
        fh.write(c.compress(bytes(-size % 512) + header("f", b"0") + END))
        fh.write(c.flush())
    return path


def test_header_bomb_is_refused_before_it_is_read(tmp_path: Path, record_property) -> None:
    bomb = long_name_bomb(tmp_path / "bomb.tar.gz", 128 << 20)
    assert bomb.stat().st_size < 200_000
    tracemalloc.start()
    t0 = time.process_time()
    try:
        with pytest.raises(BundleRejected) as err:
            safe_extract(bomb, tmp_path / "out")
        cpu = time.process_time() - t0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert err.value.code == "unsafe_archive"
    assert "134217728-byte extended header" in str(err.value)
    # Memory is a behaviour here: nothing near the header's size is ever held.
    assert peak < 1 << 20, peak
    assert not (tmp_path / "out").exists()
    record_property("header_bomb_peak_bytes", peak)
    record_property("header_bomb_cpu_s", round(cpu, 4))
    print(f"\n{bomb.stat().st_size} B bundle, 128 MiB long-name header: {peak} B peak, {cpu:.4f} s")


def header_data(kind: bytes, n: int) -> bytes:
    if kind == b"x":
        return pax_record("comment", b"c" * (n - 14))  # "NNNN comment=...\n": n bytes
    return kind.lower() * n


@pytest.mark.parametrize("kind", [b"L", b"K", b"x"])
def test_extended_header_over_the_limit_is_refused_by_its_size(tmp_path, kind) -> None:
    big = header_data(kind, 8193)
    assert len(big) > 8192
    path = write(tmp_path, "big.tar", ext(kind, big) + header("f", b"0") + END)
    assert "extended header" in refused(path, "unsafe_archive")
    ok = write(tmp_path, "ok.tar", ext(kind, header_data(kind, 4000)) + header("f", b"0") + END)
    assert prescan(ok, ArchiveLimits(max_path_len=8192)) == 1


@pytest.mark.parametrize(
    ("records", "why"),
    [
        (b"30 path=x\n", "wrong length"),
        (b"8 path=x\n", "wrong length"),  # one short: would eat the next record's first byte
        (b"x path=x\n", "no length"),
        (b"9 pathx\n\n", "malformed"),
        (b"10 a\nb=c\n\n", "malformed"),
        (pax_record("GNU.sparse.map", b"0,1"), "sparse"),
        (pax_record("comment", b"7" * 33), "32 digits"),
        (pax_record("size", b"-1"), "bad size"),
    ],
)
def test_malformed_pax_records_are_refused(tmp_path: Path, records: bytes, why: str) -> None:
    path = write(tmp_path, "pax.tar", ext(b"x", records) + header("f", b"0") + END)
    assert why in refused(path, "unsafe_archive")


def test_pax_long_names_and_gnu_long_names_still_work(tmp_path: Path) -> None:
    long = "lib/" + "/".join(["d" * 60] * 4) + "/module.py"
    for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
        raw = tmp_path / f"long-{fmt}.tar"
        with tarfile.open(raw, "w", format=fmt) as tf:
            info = tarfile.TarInfo(long)
            info.size = 3
            tf.addfile(info, io.BytesIO(b"abc"))
            link = tarfile.TarInfo("lib/link-" + "l" * 120)
            link.type, link.linkname = tarfile.SYMTYPE, long[4:]
            tf.addfile(link)
        assert prescan(raw, ArchiveLimits()) == 2
        safe_extract(raw, tmp_path / f"out-{fmt}")
        assert (tmp_path / f"out-{fmt}" / long).read_bytes() == b"abc"


def test_structure_caps(tmp_path: Path) -> None:
    # Two long-name headers for one entry (tarfile would recurse through a chain).
    chained = write(
        tmp_path, "chain.tar", ext(b"L", b"a\0") + ext(b"L", b"b\0") + header("f", b"0")
    )
    assert "two extended headers" in refused(chained, "unsafe_archive")
    # A global header may not rename or resize every entry that follows.
    glob = write(tmp_path, "g.tar", ext(b"g", pax_record("path", b"x")) + header("f", b"0") + END)
    assert "global PAX header" in refused(glob, "unsafe_archive")
    # PAX size moving the next header boundary on a directory: parsers would disagree.
    desync = ext(b"x", pax_record("size", b"512")) + header("d", tarfile.DIRTYPE) + bytes(512)
    assert "carries data" in refused(write(tmp_path, "d.tar", desync + END), "unsafe_archive")
    # Device files and FIFOs are refused before tarfile parses them.
    dev = write(tmp_path, "dev.tar", header("dev/mem", tarfile.CHRTYPE) + END)
    assert "device" in refused(dev, "unsafe_archive")
    # Header overhead, member count, file size and total are all capped.
    dirs = b"".join(header(f"d{i}", tarfile.DIRTYPE) for i in range(40)) + END
    assert "headers take more space" in refused(
        write(tmp_path, "dirs.tar", dirs), "oversize", max_meta_bytes=8192
    )
    assert "too many entries" in refused(write(tmp_path, "n.tar", dirs), "oversize", max_members=39)
    files = with_data(header("a", b"0", 4000), b"a" * 4000) + END
    assert "too large" in refused(write(tmp_path, "f.tar", files), "oversize", max_file_bytes=3999)
    with pytest.raises(BundleRejected) as err:
        prescan(write(tmp_path, "t.tar", files), ArchiveLimits(), declared_unpacked=100)
    assert err.value.code == "oversize"


def test_stream_damage_is_refused(tmp_path: Path) -> None:
    good = with_data(header("a", b"0", 3), b"abc")
    assert "end-of-archive" in refused(write(tmp_path, "noend.tar", good), "damaged_archive")
    assert "truncated" in refused(write(tmp_path, "cut.tar", good[:700]), "damaged_archive")
    bad_sum = bytearray(good)
    bad_sum[0] ^= 1
    assert "checksum" in refused(
        write(tmp_path, "sum.tar", bytes(bad_sum) + END), "damaged_archive"
    )
    hidden = write(tmp_path, "hidden.tar", good + END + b"payload")
    assert "after the end" in refused(hidden, "damaged_archive")
    zeros = gzip.compress(good + END + bytes(2 << 20))
    assert "padding" in refused(write(tmp_path, "z.tar.gz", zeros), "oversize")
    gz = gzip.compress(good + END)
    assert "truncated" in refused(write(tmp_path, "cut.tar.gz", gz[:-12]), "damaged_archive")
    assert "gzip" in refused(write(tmp_path, "junk.tar.gz", b"not gzip at all"), "damaged_archive")


def test_concatenated_gzip_members_are_read_like_gzipfile(tmp_path: Path) -> None:
    tar = with_data(header("a", b"0", 3), b"abc") + with_data(header("b", b"0", 2), b"de") + END
    split = gzip.compress(tar[:700]) + b"\0\0\0" + gzip.compress(tar[700:])
    path = write(tmp_path, "multi.tar.gz", split)
    assert prescan(path, ArchiveLimits()) == 2
    safe_extract(path, tmp_path / "out")
    assert (tmp_path / "out" / "b").read_bytes() == b"de"


def test_name_length_is_checked_before_its_characters(tmp_path: Path) -> None:
    members = [(ti("x" * 2000 + "\x01"), b"")]
    archive = write(tmp_path, "n.tar.gz", tar_bytes(members))
    with pytest.raises(BundleRejected) as err:
        safe_extract(archive, tmp_path / "out", ArchiveLimits(max_header_bytes=4096))
    assert "too long" in str(err.value)


def test_catalogue_raw_tar_helper_builds_a_valid_release() -> None:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(raw_tar()))) as tf:
        names = tf.getnames()
    assert names == ["bin", "release.json", "bin/kiosk"]


# -- the interpreter ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "flawed"),
    [
        ((3, 11, 7, "final", 0), True),  # this project's CI interpreter
        ((3, 11, 9, "final", 0), True),
        ((3, 11, 10, "final", 0), False),
        ((3, 12, 1, "final", 0), True),
        ((3, 12, 5, "final", 0), True),
        ((3, 12, 6, "final", 0), False),
        ((3, 13, 0, "candidate", 1), True),
        ((3, 13, 0, "final", 0), False),
        ((3, 13, 5, "final", 0), False),  # Raspberry Pi OS trixie
        ((3, 14, 0, "final", 0), False),
        ((3, 10, 14, "final", 0), True),
        ((3, 10, 15, "final", 0), False),
        ((3, 7, 17, "final", 0), True),
    ],
)
def test_tarfile_flaw_knows_the_fixed_releases(version, flawed: bool) -> None:
    flaw = tarfile_flaw(version)
    assert (flaw is not None) == flawed
    if flaw:
        assert "CVE-2024-6232" in flaw


def test_flawed_interpreter_is_refused_unless_explicitly_allowed(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv(ALLOW_FLAWED_ENV, raising=False)
    with pytest.raises(OtaError) as err:
        check_interpreter((3, 12, 5, "final", 0))
    assert err.value.code == "unsafe_interpreter" and "3.12.6" in str(err.value)
    check_interpreter((3, 13, 0, "final", 0))
    # On the interpreter running this test, safe_extract follows the same rule.
    archive = write(tmp_path, "a.tar.gz", tar_bytes([(ti("a"), b"x")]))
    if tarfile_flaw() is None:
        safe_extract(archive, tmp_path / "out")
        assert (tmp_path / "out" / "a").read_bytes() == b"x"
    else:
        with pytest.raises(OtaError) as err:
            safe_extract(archive, tmp_path / "out")
        assert err.value.code == "unsafe_interpreter"
        assert not (tmp_path / "out").exists()
    monkeypatch.setenv(ALLOW_FLAWED_ENV, "1")
    check_interpreter((3, 12, 5, "final", 0))
    assert sys.version_info >= (3, 11)


# -- the cpio container -----------------------------------------------------------------------


def test_cpio_header_refuses_sizes_over_8_hex_digits() -> None:
    head = swu._header(1, stat.S_IFREG | 0o644, swu.MAX_ENTRY_BYTES, 8)
    assert head[54:62] == b"FFFFFFFF" and len(head) == swu.HEADER_LEN
    for size in (1 << 32, 5 << 30, -1):
        with pytest.raises(swu.EntryTooLarge, match="4 GiB"):
            swu._header(1, stat.S_IFREG | 0o644, size, 8)


def test_write_swu_refuses_a_4_gib_payload_before_writing(tmp_path: Path) -> None:
    sparse = tmp_path / "huge.tar"
    with sparse.open("wb") as fh:
        fh.truncate(4 << 30)  # sparse: no 4 GiB written
    out = tmp_path / "out.swu"
    with pytest.raises(swu.EntryTooLarge, match=r"app\.tar: a 4294967296-byte entry"):
        swu.write_swu(out, [("sw-description", b"x"), ("app.tar", sparse)])
    assert not out.exists()
    assert os.stat(sparse).st_blocks * 512 < 1 << 20
