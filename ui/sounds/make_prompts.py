#!/usr/bin/env python3
"""Make the kiosk's voice prompts from their text with espeak-ng (reproducible).

    python ui/sounds/make_prompts.py            # write ui/sounds/<lang>/<key>.wav
    python ui/sounds/make_prompts.py --check    # list keys without a file (exit 1 if any)

One WAV file (16-bit mono PCM, what Qt's QSoundEffect plays) per translation
key ``pay.*`` and language, spoken from the texts in ``ui/i18n.py`` by the
Debian package ``espeak-ng`` (voices ``cmn`` and ``en``). ``prompts.json``
records the text, the voice, the espeak-ng version and each file's sha256, so a
rerun on another machine can be compared. Recorded prompts (a human voice is
much kinder to the ear) simply replace the files of the same name; mark them
``"recorded": true`` in ``prompts.json`` and this script leaves them alone.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import wave
from array import array
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from ui.i18n import TABLES, voice_keys  # noqa: E402

VOICES = {"zh_CN": ("cmn", 150), "en": ("en-gb", 150)}
MANIFEST = HERE / "prompts.json"


def espeak_version(exe: str) -> str:
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True, timeout=30)  # noqa: S603
    return out.stdout.strip().split("  Data at")[0]


def shrink(src: Path, dest: Path, quiet: int = 300, pad_s: float = 0.08) -> None:
    """Trim silence at both ends. (The 22.05 kHz rate is kept: audio devices
    without a sound server may refuse unusual rates such as 11.025 kHz.)"""
    with wave.open(str(src), "rb") as r:
        if r.getsampwidth() != 2 or r.getnchannels() != 1:
            raise SystemExit(f"{src.name}: expected 16-bit mono from espeak-ng")
        rate = r.getframerate()
        pcm = array("h", r.readframes(r.getnframes()))
    if sys.byteorder == "big":
        pcm.byteswap()
    loud = [i for i, v in enumerate(pcm) if abs(v) > quiet]
    if loud:
        pad = int(pad_s * rate)
        pcm = pcm[max(0, loud[0] - pad) : loud[-1] + pad]
    if sys.byteorder == "big":
        pcm.byteswap()
    with wave.open(str(dest), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def make(exe: str, lang: str, key: str, text: str, dest: Path) -> None:
    voice, speed = VOICES[lang]
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp.wav")
    subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [exe, "-v", voice, "-s", str(speed), "-a", "180", "-w", str(tmp), text],
        check=True,
        capture_output=True,
        timeout=60,
    )
    try:
        shrink(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only report missing prompt files")
    ap.add_argument("--espeak", default="espeak-ng")
    args = ap.parse_args()
    keys = voice_keys()
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8")) if MANIFEST.is_file() else {}
    if args.check:
        missing = [
            f"{lang}/{k}"
            for lang in VOICES
            for k in keys
            if not (HERE / lang / f"{k}.wav").is_file()
        ]
        for m in missing:
            print(f"missing: {m}")
        return 1 if missing else 0
    exe = shutil.which(args.espeak)
    if exe is None:
        print("espeak-ng is not installed (Debian: apt-get install espeak-ng)", file=sys.stderr)
        return 2
    version = espeak_version(exe)
    files: dict[str, dict[str, object]] = dict(manifest.get("files", {}))
    for lang in VOICES:
        for key in keys:
            rel = f"{lang}/{key}.wav"
            entry = files.get(rel, {})
            if entry.get("recorded"):
                continue
            text = TABLES[lang][key]
            dest = HERE / rel
            make(exe, lang, key, text, dest)
            files[rel] = {
                "text": text,
                "voice": VOICES[lang][0],
                "sha256": hashlib.sha256(dest.read_bytes()).hexdigest(),
            }
    for rel in [r for r in files if r.split("/", 1)[1].removesuffix(".wav") not in keys]:
        (HERE / rel).unlink(missing_ok=True)
        del files[rel]
    doc = {
        "generator": "ui/sounds/make_prompts.py",
        "espeak_ng": version,
        "files": dict(sorted(files.items())),
    }
    MANIFEST.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"{len(files)} prompts in {HERE} ({version})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
