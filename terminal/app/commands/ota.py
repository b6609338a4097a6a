"""Fleet commands: ``provision``, ``ota keygen|build|verify|poll|status``, ``health``."""

from __future__ import annotations

import argparse
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from terminal import __version__
from terminal.app.output import emit
from terminal.core.errors import TerminalError

if TYPE_CHECKING:
    from terminal.config.settings import Settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "provision", help="create the device key, write config, register, check the hardware"
    )
    p.add_argument("--centre", required=True)
    p.add_argument("--device", required=True)
    p.add_argument("--centre-name", default="")
    p.add_argument("--platform", default="", help="district platform URL (https://...)")
    p.add_argument(
        "--ddi", default="", help="hawkBit DDI base URL (turns OTA on: [ota] in config.toml)"
    )
    p.add_argument("--ddi-tenant", default="DEFAULT")
    p.add_argument("--ddi-token-file", type=Path, help="file holding the target token")
    p.add_argument("--board", default="care-pi4")
    p.add_argument("--revision", default="1")
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--config",
        type=Path,
        help="config.toml to write (default: $CARE_CONFIG, /etc/care-terminal/config.toml "
        "on a device); the DDI token and registration.json go beside it",
    )
    where.add_argument("--config-dir", type=Path, help="same as --config DIR/config.toml")
    p.add_argument(
        "--data-dir",
        type=Path,
        help="data directory (default: $CARE_DATA_DIR, /var/lib/care-terminal on a device)",
    )
    p.add_argument(
        "--key",
        type=Path,
        help="device key file (default: <data dir>/keys/device_ed25519.pem)",
    )
    p.add_argument(
        "--district-pepper",
        type=Path,
        help="the district's pepper file (32 bytes, the one the platform was given with "
        "--district-pepper): installed as <data dir>/keys/district-pepper for city-wide meals",
    )
    p.add_argument(
        "--release-root",
        type=Path,
        default=Path("/opt/care-terminal"),
        help="where releases live (written to [ota.paths] root)",
    )
    p.add_argument("--no-hw-check", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_provision)

    o = sub.add_parser("ota", help="signed update bundles and the DDI client")
    osub = o.add_subparsers(dest="action", required=True)
    k = osub.add_parser(
        "keygen", help="create an Ed25519 release signing key (keep it off the devices)"
    )
    k.add_argument("--out", type=Path, required=True)
    k.add_argument("--json", action="store_true")
    k.set_defaults(handler=cmd_keygen)
    b = osub.add_parser("build", help="build a signed .swu bundle from a release folder")
    b.add_argument("--version", required=True)
    b.add_argument(
        "--counter", type=int, required=True, help="monotonic manifest counter (anti-replay)"
    )
    b.add_argument("--key", type=Path, required=True)
    b.add_argument("--key-id", required=True)
    b.add_argument("--app", type=Path, required=True, help="application release folder or .tar.gz")
    b.add_argument("--model-pack", type=Path)
    b.add_argument("--migrations", type=Path)
    b.add_argument("--board", action="append", default=[], metavar="BOARD:REV[,REV]")
    b.add_argument("--allow-downgrade", action="store_true")
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--json", action="store_true")
    b.set_defaults(handler=cmd_build)
    v = osub.add_parser("verify", help="verify a bundle's signature, hashes, lengths and version")
    v.add_argument("bundle", type=Path)
    v.add_argument("--trust", type=Path, required=True, help="folder of trusted public keys")
    v.add_argument("--installed-version", default=__version__)
    v.add_argument("--installed-counter", type=int, default=0)
    v.add_argument("--allow-downgrade", action="store_true")
    v.add_argument("--json", action="store_true")
    v.set_defaults(handler=cmd_verify)
    po = osub.add_parser("poll", help="one DDI poll cycle now (config: [ota] in config.toml)")
    po.add_argument("--json", action="store_true")
    po.set_defaults(handler=cmd_poll)
    st = osub.add_parser("status", help="installed release and OTA configuration")
    st.add_argument("--json", action="store_true")
    st.set_defaults(handler=cmd_status)


def _load_signing_key(path: Path) -> Any:
    from cryptography.hazmat.primitives import serialization

    try:
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise TerminalError(f"cannot read the signing key {path}: {exc}") from exc


def cmd_provision(args: argparse.Namespace) -> int:
    import os

    from sync.ota.provision import ProvisionRequest, provision, summarize
    from terminal.config.settings import default_config_file, default_data_dir

    token = None
    if args.ddi_token_file:
        try:
            token = args.ddi_token_file.read_text().strip()
        except OSError as exc:
            raise TerminalError(f"cannot read {args.ddi_token_file}: {exc.strerror}") from exc
    req = ProvisionRequest(
        centre_id=args.centre,
        device_id=args.device,
        platform_url=args.platform,
        ddi_url=args.ddi,
        ddi_tenant=args.ddi_tenant,
        ddi_token=token,
        board=args.board,
        revision=args.revision,
        centre_name=args.centre_name,
        config_file=(
            args.config
            or (args.config_dir / "config.toml" if args.config_dir else default_config_file())
        ).absolute(),
        data_dir=(
            args.data_dir
            or (Path(os.environ["CARE_DATA_DIR"]) if os.environ.get("CARE_DATA_DIR") else None)
            or default_data_dir()
        ).absolute(),
        key_file=args.key.absolute() if args.key else None,
        district_pepper_file=args.district_pepper.absolute() if args.district_pepper else None,
        release_root=args.release_root.absolute(),
    )
    report = provision(
        req, sw_version=__version__, now=datetime.now(UTC), check_hw=not args.no_hw_check
    )
    emit(args, report.to_json() if args.json else dict(summarize(report)))
    return 0 if report.ok else 2


def cmd_keygen(args: argparse.Namespace) -> int:
    from sync.ota.provision import create_device_key

    if args.out.exists():
        raise TerminalError(f"{args.out} exists; refusing to overwrite a signing key")
    public = create_device_key(args.out)
    emit(
        args,
        {"key": str(args.out), "public_key": public},
        f"signing key written to {args.out} (0600)\npublic key for the devices' trust folder:\n{public}",
    )
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from sync.ota.bundle import build_bundle

    boards: dict[str, list[str]] = {}
    for spec in args.board:
        name, _, revs = spec.partition(":")
        boards[name] = [r for r in revs.split(",") if r] or ["1"]
    manifest = build_bundle(
        args.out,
        version=args.version,
        counter=args.counter,
        key=_load_signing_key(args.key),
        key_id=args.key_id,
        app=args.app,
        model_pack=args.model_pack,
        migrations=args.migrations,
        boards=boards or None,
        created=datetime.now(UTC),
        downgrade=args.allow_downgrade,
    )
    emit(
        args,
        {"bundle": str(args.out), "version": manifest.version, "counter": manifest.counter},
        f"bundle {args.out} built: version {manifest.version}, counter {manifest.counter}",
    )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from sync.ota.bundle import InstalledState, VerifyPolicy, verify_bundle
    from sync.ota.manifest import TrustStore

    verified = verify_bundle(
        args.bundle,
        TrustStore.from_dir(args.trust),
        VerifyPolicy(allow_downgrade=args.allow_downgrade),
        InstalledState(args.installed_version, args.installed_counter),
    )
    m = verified.manifest
    emit(
        args,
        {"ok": True, "version": m.version, "counter": m.counter, "key_id": verified.key_id},
        f"{args.bundle}: signature, hashes and lengths ok; version {m.version} (key {verified.key_id})",
    )
    return 0


def _agent(settings: Settings, on_status: Callable[[dict[str, Any]], object] | None = None) -> Any:
    from sync.ota.agent import OtaAgent, make_trigger
    from sync.ota.config import ddi_config
    from sync.ota.ddi import DdiClient
    from sync.ota.manifest import TrustStore
    from terminal.core.clock import SystemClock

    cfg = settings.ota
    if not cfg.enabled:
        raise TerminalError(
            "OTA is off ([ota] enabled = false in config.toml); "
            "`care-terminal provision --ddi URL` turns it on",
            code="ota_disabled",
        )
    return OtaAgent(
        DdiClient(ddi_config(cfg.ddi)),
        cfg,
        TrustStore.from_dir(cfg.paths.trust_dir),
        SystemClock(),
        trigger_updater=make_trigger(cfg),
        fallback_version=__version__,
        on_status=_status_sink(on_status),
    )


def _status_sink(
    on_status: Callable[[dict[str, Any]], object] | None,
) -> Callable[[Mapping[str, Any]], None] | None:
    if on_status is None:
        return None
    sink = on_status

    def forward(doc: Mapping[str, Any]) -> None:
        sink(dict(doc))

    return forward


def cmd_poll(args: argparse.Namespace) -> int:
    from terminal.config.settings import load_settings

    delay = _agent(load_settings()).run_once()
    emit(args, {"next_poll_s": round(delay, 1)}, f"polled; next poll in {delay:.0f} s")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from sync.ota.agent import installed_release
    from terminal.config.settings import default_config_file, load_settings

    path = default_config_file()
    cfg = load_settings().ota
    installed = installed_release(cfg.paths.root, __version__)
    emit(
        args,
        {
            "config": str(path),
            "config_exists": path.is_file(),
            "enabled": cfg.enabled,
            "ddi": cfg.ddi.base_url,
            "controller_id": cfg.ddi.controller_id,
            "installed_version": installed.version,
            "installed_counter": installed.counter,
        },
    )
    return 0


def start_ota_thread(
    stop: threading.Event,
    settings: Settings,
    on_status: Callable[[dict[str, Any]], object] | None = None,
) -> threading.Thread | None:
    """Run the OTA agent beside the sync agent when OTA is provisioned
    (``[ota] enabled = true``)."""
    if not settings.ota.enabled:
        return None
    agent = _agent(settings, on_status)
    t = threading.Thread(target=agent.run_forever, args=(stop,), name="ota-agent", daemon=True)
    t.start()
    return t
