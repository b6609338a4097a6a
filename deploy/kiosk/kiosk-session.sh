#!/bin/sh
# The kiosk session: cage (a Wayland kiosk compositor) runs exactly one
# full-screen application. Installed into each release as
# share/care-terminal/kiosk-session.sh and started by care-terminal-kiosk.service.
set -eu
APP_DIR=$(CDPATH= cd -- "$(dirname -- "$0")/../.." && pwd)

# Screen blanking off: the text console (before cage takes the VT) ...
setterm --blank 0 --powersave off --powerdown 0 </dev/tty1 >/dev/tty1 2>/dev/null || true
# ... and Wayland: cage has no idle timeout of its own; the UI additionally holds
# an idle inhibitor while shown. (Kernel side: consoleblank=0 in cmdline.txt.)

# systemd's watchdog: the UI sends READY=1 / WATCHDOG=1 / STATUS= itself
# (NotifyAccess=all). Under cage it is a child of the main process, so the
# main PID that systemd names in WATCHDOG_PID is not the UI's: drop it, or
# the UI would (rightly, by the protocol) consider the watchdog not its own.
unset WATCHDOG_PID

export QT_QPA_PLATFORM=wayland
export QT_WAYLAND_DISABLE_WINDOWDECORATION=1
export QT_QUICK_BACKEND=software
export XCURSOR_SIZE=1
# Fallback without a Wayland seat (e.g. a bare console): Qt's eglfs on KMS.
if ! command -v cage >/dev/null 2>&1; then
    export QT_QPA_PLATFORM=eglfs
    exec "$APP_DIR/bin/care-terminal" kiosk
fi
# -d: no client-side decorations; -s: allow VT switching for technicians.
exec cage -d -s -- "$APP_DIR/bin/care-terminal" kiosk
