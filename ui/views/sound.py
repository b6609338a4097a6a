"""Voice prompts through Qt Multimedia.

Files are ``ui/sounds/<language>/<key>.wav`` (made by ``ui/sounds/make_prompts.py``;
recorded files with the same names replace them). Playing never blocks and
never fails a payment: without Qt Multimedia, an audio device or the file, the
prompt is skipped and logged once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from pathlib import Path

from PyQt6.QtCore import QObject, QUrl

from terminal.core.log import get_logger

log = get_logger(__name__)

SOUNDS_DIR = Path(__file__).resolve().parent.parent / "sounds"


class PromptPlayer(QObject):
    def __init__(
        self,
        language: Callable[[], str],
        sounds_dir: Path = SOUNDS_DIR,
        *,
        enabled: bool = True,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._language = language
        self.sounds_dir = sounds_dir
        self.enabled = enabled
        # keys asked for (tests, diagnostics); the recent part only, as the
        # kiosk runs for weeks and says a few prompts per payment
        self.played: deque[str] = deque(maxlen=1000)
        self.missing: set[str] = set()
        self._effect = None
        self._broken = False
        if enabled:
            try:
                from PyQt6.QtMultimedia import QSoundEffect

                self._effect = QSoundEffect(self)
                self._effect.setVolume(1.0)
            except Exception as exc:  # ImportError (no libpulse) or no backend
                self._broken = True
                log.warning("voice_unavailable", error=type(exc).__name__)

    def path_for(self, key: str) -> Path | None:
        for lang in (self._language(), "zh_CN"):
            p = self.sounds_dir / lang / f"{key}.wav"
            if p.is_file():
                return p
        return None

    def play(self, key: str) -> None:
        self.played.append(key)
        if not self.enabled or self._effect is None:
            return
        path = self.path_for(key)
        if path is None:
            if key not in self.missing:
                self.missing.add(key)
                log.warning("voice_prompt_missing", key=key)
            return
        try:
            self._effect.stop()
            self._effect.setSource(QUrl.fromLocalFile(str(path)))
            self._effect.play()
        except Exception as exc:
            if not self._broken:
                self._broken = True
                log.warning("voice_play_failed", error=type(exc).__name__)

    def stop(self) -> None:
        if self._effect is not None:
            self._effect.stop()
