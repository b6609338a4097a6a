#!/usr/bin/env bash
# The committed tree on the target platform: Raspberry Pi OS trixie is Debian 13
# for arm64, so this builds a Debian trixie arm64 root with debootstrap, runs it
# under qemu-user-static, and inside it runs `./run setup` and a smoke suite:
#
#   models verify, face compare, enrol + identify, headless payments (staff and
#   card) + `ledger verify`, `kiosk --demo --seconds 30` offscreen, and the sync
#   agent against the reference platform on loopback.
#
# Usage: sudo scripts/arm64-check.sh [options]
#   --work DIR        cache and work folder (default /var/tmp/care-arm64)
#   --mirror URL      Debian mirror for debootstrap (default: the main Debian
#                     archive this host's apt uses, read from apt's configuration)
#   --fresh           rebuild the cached trixie base root from scratch
#   --faces DIR       labelled faces (labels.csv: file,identity,...) to use instead
#                     of the repository's tests/data/faces
#   --qemu-cpu MODEL  CPU qemu emulates (default cortex-a76, the Raspberry Pi 5's core)
#
# What is tested is HEAD of the repository (a git clone inside the root), not
# the working tree. Each run starts from a pristine copy of the cached base root
# (debootstrap + apt sources only), so `./run setup` installs its Debian packages
# as on a freshly installed system; downloaded .deb, wheel and npm files are kept
# in <work>/cache between runs. /proc/cpuinfo inside the root is replaced by
# scripts/arm64-cpuinfo.txt (a Raspberry Pi 5's: 4 x Cortex-A76), because
# qemu-user shows the guest the host's x86 /proc/cpuinfo, on which onnxruntime's
# CPU detection crashes; a real Pi has an arm64 /proc/cpuinfo.
#
# Slow (30-90 minutes under emulation) and therefore not part of CI. Timings
# under emulation mean nothing; the results do. Exit status 0 only when every
# step passed.
set -euo pipefail
export LC_ALL=C

REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=/var/tmp/care-arm64
MIRROR=""
FRESH=0
FACES_OPT=""
QEMU_CPU_MODEL=cortex-a76
SUITE=trixie
CPUINFO="$REPO/scripts/arm64-cpuinfo.txt"

while [ $# -gt 0 ]; do
  case "$1" in
    --work) WORK=$2; shift 2 ;;
    --mirror) MIRROR=$2; shift 2 ;;
    --fresh) FRESH=1; shift ;;
    --faces) FACES_OPT=$(cd "$2" && pwd); shift 2 ;;
    --qemu-cpu) QEMU_CPU_MODEL=$2; shift 2 ;;
    -h|--help) sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [ "$(id -u)" -ne 0 ]; then
  exec sudo -- "$0" "$@"
fi
# Two cores are shared with other work: stay polite.
renice -n 10 $$ >/dev/null 2>&1 || true

BASE="$WORK/base"
ROOT="$WORK/root"
CACHE="$WORK/cache"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
LOGS="$WORK/logs/$STAMP"
mkdir -p "$LOGS" "$CACHE/apt" "$CACHE/pip" "$CACHE/npm"
T0=$(date +%s)
STARTED_AT=$(date -u '+%Y-%m-%d %H:%M UTC')

say() { printf '[arm64-check] %s\n' "$*" >&2; }

# ----------------------------------------------------------------- host tools

host_tools() {
  local need=()
  command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
  [ -x /usr/bin/qemu-aarch64-static ] || need+=(qemu-user-static)
  command -v update-binfmts >/dev/null 2>&1 || need+=(binfmt-support)
  if [ "${#need[@]}" -gt 0 ]; then
    say "installing host packages: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  if [ "$(uname -m)" != aarch64 ]; then
    mountpoint -q /proc/sys/fs/binfmt_misc ||
      mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
    if ! grep -q '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null; then
      say "qemu-aarch64 is not registered with binfmt_misc (update-binfmts --enable qemu-aarch64)"
      exit 1
    fi
  fi
}

# The main Debian archive (not the security one) this host's apt is configured for.
apt_uri() {  # LABEL
  apt-get indextargets --format '$(LABEL)|$(REPO_URI)' 2>/dev/null |
    awk -F'|' -v l="$1" '$1 == l { print $2; exit }'
}

default_mirror() {
  [ -n "$MIRROR" ] && return 0
  MIRROR=$(apt_uri Debian)
  if [ -z "$MIRROR" ]; then
    say "no Debian archive found in this host's apt sources; pass --mirror URL"
    exit 1
  fi
}

# Copy the binfmt interpreter into the root when the kernel does not keep it open
# (no F flag), so that binaries exec'd inside the chroot find it.
qemu_into() {
  local root=$1 interp
  [ "$(uname -m)" = aarch64 ] && return 0
  interp=$(sed -n 's/^interpreter //p' /proc/sys/fs/binfmt_misc/qemu-aarch64)
  if ! grep -q '^flags:.*F' /proc/sys/fs/binfmt_misc/qemu-aarch64; then
    mkdir -p "$root$(dirname "$interp")"
    cp -f "$interp" "$root$interp"
  fi
}

# ----------------------------------------------------------------- mounts

MOUNTED=()
mount_root() {
  local r=$1
  mount -t proc proc "$r/proc"; MOUNTED+=("$r/proc")
  mount --bind "$CPUINFO" "$r/proc/cpuinfo"; MOUNTED+=("$r/proc/cpuinfo")
  mount --bind /sys "$r/sys"; MOUNTED+=("$r/sys")
  mount -o remount,bind,ro "$r/sys" 2>/dev/null || true
  mount --bind /dev "$r/dev"; MOUNTED+=("$r/dev")
  mkdir -p "$r/dev/pts" "$r/dev/shm"
  mount --bind /dev/pts "$r/dev/pts"; MOUNTED+=("$r/dev/pts")
  mount -t tmpfs -o mode=1777 shm "$r/dev/shm"; MOUNTED+=("$r/dev/shm")
  mkdir -p "$r/var/cache/apt/archives" "$r/root/.cache/pip" "$r/root/.npm"
  mount --bind "$CACHE/apt" "$r/var/cache/apt/archives"; MOUNTED+=("$r/var/cache/apt/archives")
  mount --bind "$CACHE/pip" "$r/root/.cache/pip"; MOUNTED+=("$r/root/.cache/pip")
  mount --bind "$CACHE/npm" "$r/root/.npm"; MOUNTED+=("$r/root/.npm")
  cp -L /etc/resolv.conf "$r/etc/resolv.conf"
  # The root trusts what the host trusts: a network that inspects TLS has its CA
  # in the host's local certificates, and pip and npm inside need it too.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    mkdir -p "$r/usr/local/share/ca-certificates"
    cp -f /usr/local/share/ca-certificates/*.crt "$r/usr/local/share/ca-certificates/"
    chroot "$r" /usr/sbin/update-ca-certificates >/dev/null 2>&1 ||
      say "warning: update-ca-certificates failed inside the root"
  fi
}

unmount_all() {
  local i
  for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
    umount "${MOUNTED[i]}" 2>/dev/null || umount -l "${MOUNTED[i]}" 2>/dev/null || true
  done
  MOUNTED=()
}

# Refuse to delete a folder that still has anything mounted below it.
remove_tree() {
  local d=$1
  [ -e "$d" ] || return 0
  if awk -v d="$(realpath "$d")/" 'index($2 "/", d) == 1 { found = 1 } END { exit !found }' /proc/mounts; then
    say "refusing to delete $d: something is still mounted below it"; exit 1
  fi
  rm -rf --one-file-system "$d"
}

# Every process whose root is our chroot was started by this script (servers,
# the agent, anything a timed-out step left behind).
root_processes() {
  local p r
  for p in /proc/[0-9]*; do
    r=$(readlink "$p/root" 2>/dev/null) || continue
    [ "$r" = "$ROOT" ] && echo "${p#/proc/}"
  done
  return 0
}
kill_root_processes() {
  local pids
  pids=$(root_processes)
  [ -n "$pids" ] || return 0
  kill $pids 2>/dev/null || true
  sleep 3
  pids=$(root_processes)
  [ -n "$pids" ] && kill -9 $pids 2>/dev/null
  return 0
}
cleanup() {
  kill_root_processes
  unmount_all
}
trap cleanup EXIT
trap 'kill_root_processes; exit 130' INT TERM

# ----------------------------------------------------------------- the base root

build_base() {
  if [ "$FRESH" = 0 ] && [ -f "$BASE/.care-base-ok" ]; then
    say "using the cached trixie arm64 base root ($BASE; --fresh rebuilds it)"
    return 0
  fi
  default_mirror
  say "debootstrap $SUITE arm64 from $MIRROR into $BASE"
  remove_tree "$BASE"
  mkdir -p "$BASE"
  # python3: Raspberry Pi OS (Lite too) ships it; ./run needs it to start.
  local opts=(--arch=arm64 --variant=minbase --include=python3,ca-certificates)
  if [ "$(uname -m)" = aarch64 ] || grep -q '^flags:.*F' /proc/sys/fs/binfmt_misc/qemu-aarch64; then
    # One pass: debootstrap resolves packages with the host's tools and runs only
    # dpkg and the maintainer scripts under qemu (a second stage inside the root
    # would parse the package lists with emulated perl, many times slower).
    debootstrap "${opts[@]}" "$SUITE" "$BASE" "$MIRROR" >"$LOGS/debootstrap.log" 2>&1
  else
    debootstrap "${opts[@]}" --foreign "$SUITE" "$BASE" "$MIRROR" >"$LOGS/debootstrap-1.log" 2>&1
    qemu_into "$BASE"
    say "debootstrap second stage (under qemu)"
    chroot "$BASE" /debootstrap/debootstrap --second-stage >"$LOGS/debootstrap-2.log" 2>&1
  fi
  {
    echo "deb $MIRROR $SUITE main"
    echo "deb $MIRROR $SUITE-updates main"
    local sec
    sec=$(apt_uri Debian-Security)
    [ -n "$sec" ] && echo "deb $sec $SUITE-security main"
  } >"$BASE/etc/apt/sources.list"
  # No daemons start inside the chroot.
  printf '#!/bin/sh\nexit 101\n' >"$BASE/usr/sbin/policy-rc.d"
  chmod 755 "$BASE/usr/sbin/policy-rc.d"
  # Keep downloaded packages (the archive folder is a cache shared between runs).
  echo 'Binary::apt::APT::Keep-Downloaded-Packages "true";' >"$BASE/etc/apt/apt.conf.d/01keep"
  rm -f "$BASE/etc/apt/apt.conf.d/docker-clean"
  touch "$BASE/.care-base-ok"
}

# ----------------------------------------------------------------- steps

RESULTS=()
FAILED=0
step() {  # NAME FUNCTION
  local name=$1 fn=$2 t rc
  t=$(date +%s)
  say "step: $name"
  set +e
  # In the background and waited for, so that INT/TERM stop the run at once.
  ( set -e; trap kill_root_processes EXIT; "$fn" ) >>"$LOGS/$fn.log" 2>&1 &
  wait $!
  rc=$?
  set -e
  local took=$(( $(date +%s) - t ))
  if [ "$rc" -eq 0 ]; then
    RESULTS+=("$(printf 'PASS  %-44s %5ss' "$name" "$took")")
  else
    FAILED=1
    RESULTS+=("$(printf 'FAIL  %-44s %5ss  (rc %s, log %s)' "$name" "$took" "$rc" "$LOGS/$fn.log")")
    say "FAILED: $name (exit $rc); last lines of $LOGS/$fn.log:"
    tail -n 25 "$LOGS/$fn.log" | sed 's/^/    /' >&2
  fi
  return 0
}

APP=/opt/care-terminal
SMOKE=/tmp/care-smoke
DATA=$SMOKE/data

# Run a shell command inside the root as root, with a clean environment.
# in_root_bg does the same in the background and sets BG_PID (TERM to it reaches
# the command: timeout forwards it, and the chain below it execs).
in_root() {  # TIMEOUT_S COMMAND
  root_argv "$@"
  "${CMD[@]}"
}
in_root_bg() {  # TIMEOUT_S COMMAND
  root_argv "$@"
  "${CMD[@]}" &
  BG_PID=$!
}
root_argv() {
  local limit=$1; shift
  CMD=(timeout -k 30 "$limit" chroot "$ROOT" /usr/bin/env -i
    HOME=/root LANG=C.UTF-8 TERM=dumb QEMU_CPU="$QEMU_CPU_MODEL"
    NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    CARE_DATA_DIR="$DATA" XDG_DATA_HOME="$SMOKE/xdg-data" XDG_CONFIG_HOME="$SMOKE/xdg-config"
    CARE_CONFIG="$SMOKE/etc/config.toml"
    CARE_PAYMENT__SLOT_WINDOWS='{"breakfast": "00:00-10:00", "lunch": "10:00-15:00", "dinner": "15:00-23:59"}'
    /bin/bash -c "cd $APP && $*")
}
ct() {  # TIMEOUT_S ARGS... (the CLI through ./run, as a technician would)
  local limit=$1; shift
  in_root "$limit" "./run care-terminal $(printf '%q ' "$@")"
}
# Assert on JSON read from stdin: json_is 'PYTHON EXPRESSION over d' (host Python).
json_is() {
  python3 -c '
import json, sys
d = json.load(sys.stdin)
ok = eval(sys.argv[1], {"d": d})
print(("ok: " if ok else "NOT TRUE: ") + sys.argv[1], file=sys.stderr)
sys.exit(0 if ok else 1)' "$1"
}

s_platform() {
  chroot "$ROOT" /usr/bin/env -i QEMU_CPU="$QEMU_CPU_MODEL" /bin/sh -c \
    'uname -m; . /etc/os-release; echo "$PRETTY_NAME"; echo "glibc $(getconf GNU_LIBC_VERSION | cut -d" " -f2)"; python3 --version; grep -m1 "CPU part" /proc/cpuinfo' |
    tee "$LOGS/platform.txt"
  grep -qx aarch64 "$LOGS/platform.txt"
  grep -q "Debian GNU/Linux 13 (trixie)" "$LOGS/platform.txt"
  grep -q "0xd0b" "$LOGS/platform.txt"
}

s_clone() {
  git clone --quiet --no-hardlinks "$REPO" "$ROOT$APP"
  git -C "$ROOT$APP" log -1 --format='%H %cd %s' --date=iso
  mkdir -p "$ROOT$SMOKE" "$ROOT$DATA"
}

s_setup() {
  in_root 5400 ./run setup
}

s_models_verify() {
  ct 900 models verify
}

# Pick the faces: the identity with the most photos (enrol two, identify a
# third, pay with a fourth) and a photo of someone else.
FACES_DIR=""
A1="" A2="" A3="" A4="" STRANGER=""
pick_faces() {
  local dir
  if [ -n "$FACES_OPT" ]; then
    mkdir -p "$ROOT/opt/care-faces"
    cp -a "$FACES_OPT/." "$ROOT/opt/care-faces/"
    dir=/opt/care-faces
  elif [ -f "$ROOT$APP/tests/data/faces/labels.csv" ]; then
    dir=$APP/tests/data/faces
  else
    return 1
  fi
  FACES_DIR=$dir
  eval "$(python3 - "$ROOT$dir/labels.csv" "$dir" <<'EOF'
import csv, shlex, sys
from collections import defaultdict
by = defaultdict(list)
with open(sys.argv[1], encoding="utf-8-sig", newline="") as fh:
    for r in csv.DictReader(fh):
        if (r.get("file") or "").strip():
            by[r["identity"].strip()].append(r["file"].strip())
ident = max(sorted(by), key=lambda k: len(by[k]))
files = by[ident]
if len(files) < 4 or len(by) < 2:
    sys.exit("need an identity with 4 photos and a second identity")
other = next(k for k in sorted(by) if k != ident)
d = sys.argv[2]
for name, f in zip(("A1", "A2", "A3", "A4"), files):
    print(f"{name}={shlex.quote(d + '/' + f)}")
print(f"STRANGER={shlex.quote(d + '/' + by[other][0])}")
EOF
)"
}

s_face_compare() {
  ct 900 face compare "$A1" "$A2" --json | tee -a /dev/stderr | json_is 'd["decision"] == "same"'
  ct 900 face compare "$A1" "$STRANGER" --json | tee -a /dev/stderr | json_is 'd["decision"] == "different"'
}

s_provision() {
  ct 900 provision --centre SMOKE-C1 --device SMOKE-T1 --config-dir "$SMOKE/etc" \
    --key "$DATA/keys/device_ed25519.pem" --no-hw-check --json |
    tee -a /dev/stderr | json_is 'd["public_key"] and d["registration"]["platform_register_arg"]'
}

s_enrol_identify() {
  ct 900 enroll --resident-id R1 --name 张三华 --category age_80_89 --card C1 \
    --phone-last4 1234 --staff s1 --json "$A1" "$A2" |
    tee -a /dev/stderr | json_is 'd["resident_id"] == "R1" and d["templates"] >= 1'
  ct 900 identify "$A3" --json | tee -a /dev/stderr |
    json_is 'd["decision"] == "identified" and d["resident_id"] == "R1"'
  local rc=0
  ct 900 identify "$STRANGER" --json >"$LOGS/stranger.json" || rc=$?
  cat "$LOGS/stranger.json"
  [ "$rc" -eq 1 ] || { echo "identify of a stranger: exit $rc, expected 1"; return 1; }
  json_is 'd["decision"] == "unknown"' <"$LOGS/stranger.json"
}

s_payment() {
  cat >"$ROOT$SMOKE/policy.json" <<'EOF'
{"policy_id": "smoke", "version": 1, "effective_from": "2020-01-01",
 "rules": [{"category": "age_80_89", "slot": "*", "type": "fixed", "amount_fen": 500, "floor_fen": 100}]}
EOF
  ct 900 policy set "$SMOKE/policy.json"
  ct 900 menu set --staff s1 --item "L1,午餐套餐,15.00,breakfast+lunch+dinner"
  ct 900 topup --resident R1 --amount 100 --staff s1 --json |
    tee -a /dev/stderr | json_is 'd["balance_after_fen"] == 10000'
  # A card payment for the slot served now (the all-day windows above), then a
  # staff payment for another slot. A face payment is not made headless: it needs
  # the live challenge at the camera (the kiosk demo covers the face path).
  local now_slot staff_slot
  now_slot=$(TZ=Asia/Shanghai date +%H | awk '{ h = $1 + 0; print (h < 10 ? "breakfast" : h < 15 ? "lunch" : "dinner") }')
  staff_slot=dinner; [ "$now_slot" = dinner ] && staff_slot=lunch
  ct 900 pay --resident R1 --method card --yes --json |
    tee -a /dev/stderr | json_is "d['kind'] == 'charge' and d['slot'] == '$now_slot' and d['due_fen'] == 1000 and d['balance_after_fen'] == 9000"
  ct 900 pay --resident R1 --slot "$staff_slot" --method staff --staff s1 --yes --json |
    tee -a /dev/stderr | json_is 'd["kind"] == "charge" and d["due_fen"] == 1000 and d["balance_after_fen"] == 8000'
  ct 900 ledger verify --json | tee -a /dev/stderr | json_is 'd["ok"] is True'
}

s_kiosk_demo() {
  in_root 2400 "QT_QPA_PLATFORM=offscreen ./run care-terminal kiosk --demo --seconds 30" \
    >"$LOGS/kiosk.out" 2>&1 || { cat "$LOGS/kiosk.out"; return 1; }
  cat "$LOGS/kiosk.out"
  # It got as far as the running kiosk (models loaded, residents enrolled, clip rendered).
  grep -q "the simulated camera" "$LOGS/kiosk.out"
}

s_agent() {
  local url="" i arg
  arg=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["platform_register_arg"])' \
        "$ROOT$SMOKE/etc/registration.json")
  rm -f "$ROOT$SMOKE/platform.url"
  in_root_bg 3600 "exec ./run care-terminal platform serve --port 0 --db sqlite:///$SMOKE/platform.db --register '$arg' --print-url >$SMOKE/platform.url 2>$SMOKE/platform.err"
  for i in $(seq 1 300); do
    url=$(sed -n 's/.*"url": *"\([^"]*\)".*/\1/p' "$ROOT$SMOKE/platform.url" 2>/dev/null || true)
    [ -n "$url" ] && break
    sleep 2
  done
  [ -n "$url" ] || { echo "the platform did not start"; cat "$ROOT$SMOKE/platform.err"; return 1; }
  echo "platform: $url"
  # The provisioning check: a signed request the platform accepts.
  ct 900 provision --centre SMOKE-C1 --device SMOKE-T1 --config-dir "$SMOKE/etc" \
    --key "$DATA/keys/device_ed25519.pem" --no-hw-check --platform "$url" --json |
    tee -a /dev/stderr | json_is 'd["registered"] is True'
  ct 900 sync status --json | tee -a /dev/stderr | json_is 'd["queue_depth"] > 0'
  in_root_bg 3600 "CARE_SYNC__PLATFORM_URL=$url exec ./run care-terminal agent >$SMOKE/agent.log 2>&1"
  local agent=$BG_PID
  local drained=0
  for i in $(seq 1 120); do
    sleep 5
    if ct 600 sync status --json >"$LOGS/status.json" 2>/dev/null &&
       json_is 'd["queue_depth"] == 0 and d["streams"]["kiosk"]["acked_seq"] >= 1' \
         <"$LOGS/status.json" 2>/dev/null; then
      drained=1; break
    fi
  done
  kill -TERM "$agent" 2>/dev/null || true
  wait "$agent" 2>/dev/null || true
  cat "$LOGS/status.json"
  tail -n 5 "$ROOT$SMOKE/agent.log" | cut -c1-300
  [ "$drained" = 1 ] || { echo "the agent did not drain the queue in 10 minutes"; return 1; }
  json_is 'd["dead_letters"] == 0 and d["streams"]["kiosk"]["acked_seq"] == d["streams"]["kiosk"]["head_seq"]' \
    <"$LOGS/status.json"
}

# ----------------------------------------------------------------- main

host_tools
if [ "$FRESH" = 1 ] || [ ! -f "$BASE/.care-base-ok" ]; then
  t=$(date +%s)
  if ( build_base ); then
    RESULTS+=("$(printf 'PASS  %-44s %5ss' "debootstrap $SUITE arm64 base root" "$(( $(date +%s) - t ))")")
  else
    RESULTS+=("$(printf 'FAIL  %-44s %5ss  (logs in %s)' "debootstrap $SUITE arm64 base root" "$(( $(date +%s) - t ))" "$LOGS")")
    printf '%s\n' "${RESULTS[@]}"; exit 1
  fi
else
  say "using the cached trixie arm64 base root ($BASE; --fresh rebuilds it)"
fi

say "fresh working root from the base"
remove_tree "$ROOT"
cp -a "$BASE" "$ROOT"
qemu_into "$ROOT"
mount_root "$ROOT"

step "platform: aarch64, Debian 13 trixie, Cortex-A76" s_platform
step "git clone of HEAD into the root" s_clone
COMMIT=$(git -C "$ROOT$APP" rev-parse --short HEAD 2>/dev/null || echo "?")
step "./run setup" s_setup
if [ "$FAILED" = 1 ]; then
  RESULTS+=("SKIP  the smoke suite (./run setup failed)")
  SKIP_SUITE=1
fi
if [ "${SKIP_SUITE:-0}" = 0 ]; then
  step "models verify" s_models_verify
  if pick_faces; then
    say "faces: $FACES_DIR ($(basename "$A1") ... stranger $(basename "$STRANGER"))"
    step "face compare (same / different)" s_face_compare
    step "provision (device key, config)" s_provision
    step "enroll + identify (and a stranger)" s_enrol_identify
    step "payments (card, staff) + ledger verify" s_payment
  else
    RESULTS+=("FAIL  labelled test faces (tests/data/faces/labels.csv or --faces DIR) not found")
    FAILED=1
    step "provision (device key, config)" s_provision
  fi
  step "kiosk --demo --seconds 30 (offscreen)" s_kiosk_demo
  step "agent -> reference platform on loopback" s_agent

fi

TOTAL=$(( $(date +%s) - T0 ))
{
  echo "arm64 check of care-terminal $COMMIT: Debian $SUITE arm64 under qemu-user ($QEMU_CPU_MODEL)"
  echo "started $STARTED_AT, took $((TOTAL / 60)) min $((TOTAL % 60)) s"
  cat "$LOGS/platform.txt" 2>/dev/null | paste -sd ';' | sed 's/;/; /g'
  printf '%s\n' "${RESULTS[@]}"
  if [ "$FAILED" = 0 ]; then echo "RESULT: PASS"; else echo "RESULT: FAIL"; fi
  echo "logs: $LOGS"
} | tee "$LOGS/summary.txt"
cp "$LOGS/summary.txt" "$WORK/last-summary.txt"
exit "$FAILED"
