#!/usr/bin/env bash
# care-terminal: one-time installation on Raspberry Pi OS (Bookworm, arm64),
# run by the technician as root on a freshly flashed card:
#
#   sudo ./install-rpi.sh --app care-terminal-1.0.0-arm64.tar.gz \
#        --release-key district-release-2026.pub \
#        --centre C0012 --device C0012-T01 \
#        --platform https://platform.district.example \
#        --ddi https://ota.district.example --ddi-token-file ddi-token.txt
#
# --app takes the application release (a virtual environment built for the
# Pi with the care-terminal wheel installed, as a tar.gz, or such a folder).
# Options for testing on another machine: --root DIR installs below DIR and
# --no-system skips apt, users, systemctl, udevadm and the boot config.
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
        --board) BOARD="$2"; shift 2 ;;
        --revision) REVISION="$2"; shift 2 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done

[ -n "$APP" ] || die "--app is required"
[ -n "$KEY" ] && [ -f "$KEY" ] || die "--release-key must name the district's release public key file"
[ -n "$CENTRE" ] && [ -n "$DEVICE" ] || die "--centre and --device are required"
[[ "$DEVICE" =~ ^[A-Za-z0-9._-]{1,64}$ ]] || die "--device may only use letters, digits, '.', '_' and '-'"
if [ "$SYSTEM" = 1 ]; then
    [ "$(id -u)" -eq 0 ] || die "run as root (sudo)"
    [ -r /etc/os-release ] && . /etc/os-release
    [ "${VERSION_CODENAME:-}" = "bookworm" ] || say "warning: tested on Raspberry Pi OS Bookworm, this is ${PRETTY_NAME:-unknown}"
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

say "release key and configuration"
install -m 0644 "$KEY" "$ETC/ota-keys/$(basename "${KEY%.pub}").pub"
if [ -n "$DDI_TOKEN_FILE" ]; then
    install -m 0600 "$DDI_TOKEN_FILE" "$ETC/ddi-token"
fi
cat > "$ETC/updater.toml" <<CONF
root = "/opt/care-terminal"
db_path = "/var/lib/care-terminal/terminal.db"
health_file = "/run/care-terminal/health.json"
health_timeout_s = 180
CONF
cat > "$ETC/ota.toml" <<CONF
[ddi]
base_url = "${DDI:-http://127.0.0.1:60053}"
controller_id = "$DEVICE"
$( [ -n "$DDI_TOKEN_FILE" ] && echo 'target_token_file = "/etc/care-terminal/ddi-token"' )

[device]
board = "$BOARD"
revision = "$REVISION"

[window]
allowed = ["14:00-16:30", "20:00-06:00"]
meal_slots = ["10:30-13:30", "16:30-18:30"]

[updater]
trigger = []  # care-terminal-updater.path starts the updater
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

if [ "$SYSTEM" = 1 ]; then
    chown -R care:care "$VAR" "$OPT/spool"
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
    systemctl enable care-terminal-updater-boot.service care-terminal-updater.path \
        care-terminal-agent.service care-terminal-kiosk.service
    timedatectl set-ntp true || true
    say "provisioning (device key, registration, configuration, hardware check)"
    ARGS=(--centre "$CENTRE" --device "$DEVICE")
    [ -n "$PLATFORM" ] && ARGS+=(--platform "$PLATFORM")
    runuser -u care -- "$OPT/current/app/bin/care-terminal" provision "${ARGS[@]}" || \
        say "provisioning reported problems (see above); fix them and run: care-terminal provision ${ARGS[*]}"
    systemctl start care-terminal-updater.path care-terminal-agent.service care-terminal-kiosk.service
fi
say "installed care-terminal $VERSION for device $DEVICE"
