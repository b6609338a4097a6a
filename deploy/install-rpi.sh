#!/usr/bin/env bash
# care-terminal: one-time installation on Raspberry Pi OS trixie (Debian 13,
# arm64), run by the technician as root on a freshly flashed card:
#
#   sudo ./install-rpi.sh --app care-terminal-1.0.0-arm64.tar.gz \
#        --release-key district-release-2026.pub \
#        --centre C0012 --device C0012-T01 \
#        --platform https://platform.district.example \
#        --ddi https://ota.district.example --ddi-token-file ddi-token.txt \
#        --district-pepper district-pepper
#
# --app takes the application release (a virtual environment built for the
# Pi with the care-terminal wheel installed, as a tar.gz, or such a folder).
# It then runs `care-terminal provision` (device key, config.toml with its
# [ota] section when --ddi is given, registration record, hardware check; an
# ota.toml left by an older install is moved into [ota]). --district-pepper
# installs the district's pepper file (the one the platform was given), which
# city-wide meals need: without it visitors from other centres are off.
# Options for testing
# on another machine: --root DIR installs below DIR and --no-system skips the
# OS check, apt, users, systemctl, udevadm, the boot config and the hardware check.
set -euo pipefail

ROOT=""
SYSTEM=1
APP=""
KEY=""
CENTRE=""
DEVICE=""
PLATFORM=""
DDI=""
DDI_TOKEN_FILE=""
PEPPER=""
BOARD="care-pi4"
REVISION="1"
HERE=$(cd "$(dirname "$0")" && pwd)

say() { printf '\033[1m[install]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[install] error:\033[0m %s\n' "$*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT="$2"; shift 2 ;;
        --no-system) SYSTEM=0; shift ;;
        --app) APP="$2"; shift 2 ;;
        --release-key) KEY="$2"; shift 2 ;;
        --centre) CENTRE="$2"; shift 2 ;;
        --device) DEVICE="$2"; shift 2 ;;
        --platform) PLATFORM="$2"; shift 2 ;;
        --ddi) DDI="$2"; shift 2 ;;
        --ddi-token-file) DDI_TOKEN_FILE="$2"; shift 2 ;;
        --district-pepper) PEPPER="$2"; shift 2 ;;
        --board) BOARD="$2"; shift 2 ;;
        --revision) REVISION="$2"; shift 2 ;;
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done

[ -n "$APP" ] || die "--app is required"
[ -n "$KEY" ] && [ -f "$KEY" ] || die "--release-key must name the district's release public key file"
[ -n "$CENTRE" ] && [ -n "$DEVICE" ] || die "--centre and --device are required"
[[ "$DEVICE" =~ ^[A-Za-z0-9._-]{1,64}$ ]] || die "--device may only use letters, digits, '.', '_' and '-'"
[[ "$PLATFORM" =~ ^https?://[^[:space:]]+$ ]] || die "--platform must give the district platform URL (https://...)"
[ -z "$DDI_TOKEN_FILE" ] || [ -f "$DDI_TOKEN_FILE" ] || die "--ddi-token-file $DDI_TOKEN_FILE not found"
[ -z "$PEPPER" ] || [ -f "$PEPPER" ] || die "--district-pepper $PEPPER not found"

# The target is Raspberry Pi OS trixie (Debian 13, glibc 2.41). Bookworm
# (Debian 12, glibc 2.36) cannot install the locked PyQt6 wheels.
check_os() {
    local file="${CARE_OS_RELEASE:-/etc/os-release}" id="" codename="" pretty="" version=""
    if [ -r "$file" ]; then
        id=$(. "$file"; echo "${ID:-}")
        codename=$(. "$file"; echo "${VERSION_CODENAME:-}")
        pretty=$(. "$file"; echo "${PRETTY_NAME:-}")
        version=$(. "$file"; echo "${VERSION_ID:-}")
    fi
    local problem=""
    case "$codename" in
        trixie|forky|sid) ;;
        buster|bullseye|bookworm)
            problem="${pretty:-$codename} is too old: care-terminal needs Raspberry Pi OS trixie (Debian 13); bookworm's glibc 2.36 cannot install the locked PyQt6 wheels. Flash a trixie image." ;;
        *)
            if [[ "$version" =~ ^[0-9]+$ ]] && [ "$version" -lt 13 ]; then
                problem="${pretty:-$id $version} is too old: care-terminal needs Debian 13 (trixie) or newer."
            else
                say "warning: made for Raspberry Pi OS trixie (Debian 13), this is ${pretty:-unknown}"
            fi ;;
    esac
    if [ -n "$problem" ]; then
        if [ "$SYSTEM" = 1 ]; then die "$problem"; else say "warning: $problem"; fi
    fi
    if [ "$SYSTEM" = 1 ] && [ "$(uname -m)" != "aarch64" ]; then
        say "warning: the release is built for arm64; this machine is $(uname -m)"
    fi
}
check_os
if [ "$SYSTEM" = 1 ]; then
    [ "$(id -u)" -eq 0 ] || die "run as root (sudo)"
fi

OPT="$ROOT/opt/care-terminal"
ETC="$ROOT/etc/care-terminal"
VAR="$ROOT/var/lib/care-terminal"

if [ "$SYSTEM" = 1 ]; then
    say "installing system packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        python3 python3-venv cage fonts-noto-cjk sqlite3 v4l-utils alsa-utils espeak-ng \
        systemd-timesyncd util-linux >/dev/null
    if ! id care >/dev/null 2>&1; then
        useradd --system --home-dir /var/lib/care-terminal --shell /usr/sbin/nologin care
    fi
    usermod -a -G video,render,input,dialout,audio,lp,plugdev care
fi

say "creating folders"
install -d -m 0755 "$OPT" "$OPT/releases" "$OPT/updater"
install -d -m 0750 "$OPT/spool" "$OPT/backups" "$ETC" "$ETC/ota-keys" "$VAR" "$VAR/ota"

say "installing the updater (standard-library Python, outside any release)"
rm -rf "$OPT/updater/care_updater"
cp -r "$HERE/updater/care_updater" "$OPT/updater/"
install -m 0755 "$HERE/updater/run_updater.py" "$OPT/updater/run_updater.py"
find "$OPT/updater" -name __pycache__ -prune -exec rm -rf {} +

say "installing the first application release"
REL="$OPT/releases/factory-c0"
rm -rf "$REL"
install -d -m 0755 "$REL/app"
if [ -d "$APP" ]; then
    cp -a "$APP/." "$REL/app/"
else
    tar -xzf "$APP" -C "$REL/app" --no-same-owner --no-same-permissions
fi
[ -f "$REL/app/release.json" ] || die "the application release has no release.json"
VERSION=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$REL/app/release.json")
[[ "$VERSION" =~ ^[0-9]+(\.[0-9]+){0,3}$ ]] || die "release.json has a bad version"
FINAL="$OPT/releases/$VERSION-c0"
rm -rf "$FINAL"
mv "$REL" "$FINAL"
printf '{"version": "%s", "counter": 0}\n' "$VERSION" > "$FINAL/manifest.json"
ln -sfn "releases/$VERSION-c0" "$OPT/current.new"
mv -T "$OPT/current.new" "$OPT/current"
install -d -m 0755 "$FINAL/app/share/care-terminal"
install -m 0755 "$HERE/kiosk/kiosk-session.sh" "$FINAL/app/share/care-terminal/kiosk-session.sh"

say "release key and updater configuration"
install -m 0644 "$KEY" "$ETC/ota-keys/$(basename "${KEY%.pub}").pub"
# Paths as the device sees them (below --root only when testing elsewhere).
cat > "$ETC/updater.toml" <<CONF
root = "$OPT"
db_path = "$VAR/terminal.db"
health_file = "/run/care-terminal/health.json"
health_timeout_s = 180
CONF

say "systemd units, udev rules, journald limits, kiosk PAM session"
install -d -m 0755 "$ROOT/etc/systemd/system" "$ROOT/etc/udev/rules.d" \
    "$ROOT/etc/systemd/journald.conf.d" "$ROOT/etc/pam.d"
for unit in "$HERE"/systemd/*.service "$HERE"/systemd/*.path; do
    install -m 0644 "$unit" "$ROOT/etc/systemd/system/"
done
install -m 0644 "$HERE/udev/99-care-terminal.rules" "$ROOT/etc/udev/rules.d/"
install -m 0644 "$HERE/journald/care-terminal.conf" "$ROOT/etc/systemd/journald.conf.d/"
install -m 0644 "$HERE/kiosk/pam-care-kiosk" "$ROOT/etc/pam.d/care-kiosk"

say "provisioning (device key, configuration, registration check, hardware check)"
# One convention for every path: config in $ETC, data and the device key
# (keys/device_ed25519.pem) in $VAR; the services read the same files.
ARGS=(--centre "$CENTRE" --device "$DEVICE" --platform "$PLATFORM"
      --config "$ETC/config.toml" --data-dir "$VAR" --release-root "$OPT"
      --board "$BOARD" --revision "$REVISION")
[ -n "$DDI" ] && ARGS+=(--ddi "$DDI")
[ -n "$DDI_TOKEN_FILE" ] && ARGS+=(--ddi-token-file "$DDI_TOKEN_FILE")
[ -n "$PEPPER" ] && ARGS+=(--district-pepper "$PEPPER")
[ -n "$PEPPER" ] || say "no --district-pepper given: visitors from other centres stay off (run provision again with --district-pepper)"
[ -n "$DDI" ] || say "no --ddi given: OTA updates stay off (run provision again with --ddi to turn them on)"
[ "$SYSTEM" = 1 ] || ARGS+=(--no-hw-check)
CT="$OPT/current/app/bin/care-terminal"
[ -x "$CT" ] || die "the application release has no bin/care-terminal"
PROVISIONED=0
if CARE_DEVICE=1 "$CT" provision "${ARGS[@]}"; then
    PROVISIONED=1
else
    say "provisioning reported problems (above). Give district IT $ETC/registration.json"
    say "(platform_register_arg), fix what the hardware check names, then check again with:"
    say "  sudo $CT provision ${ARGS[*]}"
fi
[ -f "$VAR/keys/device_ed25519.pem" ] || die "provisioning did not create the device key"

if [ "$SYSTEM" = 1 ]; then
    # The services run as care: it owns the data and reads (group) the configuration.
    chown -R care:care "$VAR" "$OPT/spool"
    chown -R root:care "$ETC"
    chmod 0750 "$ETC"
    chown -R care:care "$OPT/releases"
    # Screen blanking off on the console, quiet boot.
    CMDLINE=/boot/firmware/cmdline.txt
    if [ -f "$CMDLINE" ] && ! grep -q consoleblank=0 "$CMDLINE"; then
        sed -i '1 s/$/ consoleblank=0/' "$CMDLINE"
    fi
    udevadm control --reload && udevadm trigger
    systemctl daemon-reload
    systemctl restart systemd-journald
    systemctl disable --now getty@tty1.service >/dev/null 2>&1 || true
    # the footfall counter runs only where /dev/care-camera-door exists (its
    # ConditionPathExists=), and starts when that camera is plugged in
    systemctl enable care-terminal-updater-boot.service care-terminal-updater.path \
        care-terminal-agent.service care-terminal-kiosk.service care-terminal-footfall.service
    timedatectl set-ntp true || true
    systemctl start care-terminal-updater.path care-terminal-agent.service care-terminal-kiosk.service \
        care-terminal-footfall.service
fi
say "installed care-terminal $VERSION for device $DEVICE (provisioned: $([ "$PROVISIONED" = 1 ] && echo yes || echo 'with problems'))"
