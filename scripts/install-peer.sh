#!/usr/bin/env bash
# Install the side-by-side peer for `care-terminal bench face --peer` into the
# project's virtual environment: the face_recognition library on dlib.
#
#   scripts/install-peer.sh            (then: ./run care-terminal bench face --peer --json)
#
# dlib comes from the prebuilt `dlib-bin` wheel (x86_64 and aarch64, installs in
# seconds) instead of a source build of `dlib` (about 12 minutes on 2 cores).
# face_recognition declares `dlib` as a dependency, so it is installed with
# --no-deps; what it really imports (numpy, Pillow, dlib, face_recognition_models)
# is already in the environment or installed here. The peer is a benchmark
# tool only: it is not in the device locks and the terminal never imports it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${CARE_VENV:-$PWD/.venv}"
PY="$VENV/bin/python"
[ -x "$PY" ] || { echo "no virtual environment at $VENV (run ./run setup first)" >&2; exit 1; }

# The same packages as pyproject.toml's `peer` extra, pinned to the measured versions.
"$PY" -m pip install -q "dlib-bin==20.0.1.post1" "face_recognition_models==0.3.0"
"$PY" -m pip install -q --no-deps "face_recognition==1.3.0"
"$PY" - <<'PY'
from face.bench import load_peer

fr, reason = load_peer()
if fr is None:
    raise SystemExit(f"peer not usable: {reason}")
import dlib

print(f"peer ready: face_recognition with dlib {dlib.__version__}")
PY
