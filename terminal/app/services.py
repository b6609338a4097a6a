"""Composition root helpers: build each service once, lazily, from Settings.

Commands and the kiosk ask this object for what they need; nothing here is
created until used, so ``care-terminal residents list`` never loads a model.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from terminal.config.settings import Settings, load_settings
from terminal.core.clock import Clock, SystemClock
from terminal.db.crypto import FieldCipher, load_or_create_key
from terminal.db.database import Database, open_database
from terminal.db.outbox import Outbox
from terminal.db.roster import RosterStore

if TYPE_CHECKING:
    from face.recognise import Recogniser
    from face.store import TemplateStore


class Services:
    def __init__(self, settings: Settings | None = None, clock: Clock | None = None) -> None:
        self.settings = settings or load_settings()
        self.clock: Clock = clock or SystemClock()

    @cached_property
    def db(self) -> Database:
        return open_database(self.settings.database_url)

    @cached_property
    def cipher(self) -> FieldCipher:
        return FieldCipher(load_or_create_key(self.settings.data_key_file))

    @cached_property
    def roster(self) -> RosterStore:
        return RosterStore(self.cipher)

    @cached_property
    def outbox(self) -> Outbox:
        return Outbox(self.settings.centre.device_id)

    @cached_property
    def templates(self) -> TemplateStore:
        from face.store import TemplateStore

        return TemplateStore(self.cipher)

    @cached_property
    def recogniser(self) -> Recogniser:
        """Verifies the model pack (refusing a tampered one), loads the models and
        the enrolled gallery."""
        from face.recognise import Recogniser

        rec = Recogniser.from_settings(self.settings.face_pack_dir, self.settings.face)
        with self.db.sessions() as session:
            rec.load_gallery(self.templates.load_all(session, pack_id=rec.pack_id))
        return rec

    def close(self) -> None:
        if "db" in self.__dict__:
            self.db.close()
